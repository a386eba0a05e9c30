"""Fleet mode: a scenario's agents, links and hubs as SimPy processes on simulated time.

Each agent runs the runtime's own :class:`edge_agent.Planner` (``auto``) or a
fixed cut, on its own device (a ``simpy.Resource`` of one: the agent's ORT
thread) and its own link (two :class:`simulations.Direction` models, the same
ones the emulating proxy uses). Hub replicas share the requests round-robin
(MQTT shared subscriptions), each with ``workers`` slots and a bounded queue;
they report their queue wait every ``status_interval_s`` to every planner, as
a hub's retained status does. Compute times come from a measured
:class:`~simulations._calibrate.ModelProfile`: a device takes its profile's
factor times this host's head time (times a multiple drawn from the
profile's ``head_spread``, when it has one); a hub takes this host's tail
time.

A request the hub does not answer within the agent's deadline (a replica
down or hung, an outage, a broker restart) runs its tail on the device once the deadline has passed,
as the runtime's fallback does, and tells the planner to back off. Every
finished request is handed to ``record`` as one :class:`RequestRecord`.

Every random stream derives from the scenario's seed by name
(``"<seed>/<agent>/up"``), so the same seed gives the same records, and adding
an agent changes no other agent's draws.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import random
import statistics
import zlib
from typing import TYPE_CHECKING

import simpy

from edge_agent import CLOUD_ONLY, EDGE_ONLY, Candidate, Observation, Planner
from protocol.errors import ConfigError
from protocol.mqtt import Backoff
from simulations._devices import PROFILES
from simulations._link import Direction

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator, Mapping

    from simulations._calibrate import CutCost, ModelProfile
    from simulations._scenario import FaultSpec, GroupSpec, Scenario

_PING_BYTES = 96
"""A ping's message besides its padding, and a pong's."""
_PROBE_TIMEOUT_S = 2.0
_PROBE_FOLLOW_UPS = 3
_START_PINGS = 4
_WAIT_WINDOW_S = 10.0
_POLICY_CUTS = {"edge": EDGE_ONLY, "cloud": CLOUD_ONLY}
_DROPPED_AFTER_S = 15.0
"""A broker drops a silent client 1.5 keepalives (10 s: protocol.mqtt.Connection's) after its last packet."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RequestRecord:
    """One finished request. Times are simulated seconds and milliseconds.

    Attributes:
        run: The policy the whole scenario ran with, or ``"scenario"`` for each group's own.
        group: The agent's group.
        agent: The agent.
        policy: ``edge``, ``cloud``, ``auto`` or a cut id.
        start_s: When the request was made.
        cut: The cut it used.
        bytes_up: Bytes sent (0 on the device alone).
        edge_ms: Head compute on the device.
        network_ms: Transfers both ways.
        hub_queue_ms: Waiting at the hub.
        hub_compute_ms: The tail on the hub.
        fallback_ms: The tail on the device after no answer in time.
        total_ms: From request to answer.
        predicted_ms: The planner's prediction (``nan`` for fixed cuts).
        fallback: Why the device ran the tail itself (empty when it did not).
        error: Why the request failed (empty when it was answered): the error
            it raised, or ``lost: ...`` when, long past its deadline, it still
            had neither an answer nor a fallback as the run ended.
        hub: The replica that answered (empty when none did).
    """

    run: str
    group: str
    agent: str
    policy: str
    start_s: float
    cut: str
    bytes_up: int
    edge_ms: float
    network_ms: float
    hub_queue_ms: float
    hub_compute_ms: float
    fallback_ms: float
    total_ms: float
    predicted_ms: float
    fallback: str
    error: str = ""
    hub: str


COLUMNS = tuple(field.name for field in dataclasses.fields(RequestRecord))
"""The per-request CSV's columns, in order."""
LOST = "lost"
"""How a lost request's ``error`` begins."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Served:
    hub: str
    queue_ms: float
    compute_ms: float


class _Hub:
    """One replica: workers, a bounded queue, and the waits it reports."""

    def __init__(self, env: simpy.Environment, name: str, workers: int, max_queue: int) -> None:
        self.env = env
        self.name = name
        self.workers = simpy.Resource(env, capacity=workers)
        self.max_queue = max_queue
        self.up = True
        self.generation = 0  # bumped when the replica stops: what it held is lost
        self.stalled_until = 0.0  # hung (SIGSTOP) until then: holds what it has, runs nothing
        self.waits: collections.deque[tuple[float, float]] = collections.deque()  # (when, ms)

    def serve(self, tail_ms: float) -> Generator[simpy.Event, object, _Served | None]:
        """Queue for a worker, run the tail; ``None`` when the request is refused or lost."""
        if not self.up or len(self.workers.queue) >= self.max_queue:
            return None
        generation, arrived = self.generation, self.env.now
        with self.workers.request() as slot:
            yield slot
            yield from self._while_stalled()
            if generation != self.generation:
                return None
            queue_ms = (self.env.now - arrived) * 1000
            yield self.env.timeout(tail_ms / 1000)
            yield from self._while_stalled()  # a hang that began during the run holds its reply
            if generation != self.generation:
                return None
        self.waits.append((self.env.now, queue_ms))
        return _Served(self.name, queue_ms, tail_ms)

    def _while_stalled(self) -> Generator[simpy.Event, object, None]:
        while self.env.now < self.stalled_until:
            yield self.env.timeout(self.stalled_until - self.env.now)

    def wait_ms(self) -> float:
        """The median wait of the last 10 s (0 when idle), as a hub's status reports it."""
        while self.waits and self.env.now - self.waits[0][0] > _WAIT_WINDOW_S:
            self.waits.popleft()
        return statistics.median(ms for _, ms in self.waits) if self.waits else 0.0


class _Hubs:
    """The replicas behind one shared subscription: round-robin over those up."""

    def __init__(self, env: simpy.Environment, scenario: Scenario) -> None:
        spec = scenario.hub
        self.replicas = [_Hub(env, f"hub-{index}", spec.workers, spec.max_queue) for index in range(spec.replicas)]
        self._turn = itertools.count()

    def route(self) -> _Hub | None:
        alive = [hub for hub in self.replicas if hub.up]
        return alive[next(self._turn) % len(alive)] if alive else None


class _Agent:
    """One agent: its device, link, policy and (for ``auto``) planner."""

    def __init__(
        self, env: simpy.Environment, scenario: Scenario, group: GroupSpec, index: int, profile: ModelProfile
    ) -> None:
        self.env = env
        self.group = group
        self.name = f"{group.name}-{index}"
        self.profile = profile
        self.factor = PROFILES[group.device].factor
        self.device = simpy.Resource(env, capacity=1)
        seed = scenario.seed
        self.up = Direction(group.link.up, random.Random(f"{seed}/{self.name}/up"))  # noqa: S311 - not crypto
        self.down = Direction(group.link.down, random.Random(f"{seed}/{self.name}/down"))  # noqa: S311
        self.arrivals = random.Random(f"{seed}/{self.name}/arrivals")  # noqa: S311
        self.compute = random.Random(f"{seed}/{self.name}/device")  # noqa: S311
        self.outage_until_s = 0.0
        self.planner: Planner | None = None
        self.probing = False

    def start_planner(self, seed: int) -> None:
        candidates = [
            Candidate(id=cut.id, bytes=cut.request_bytes, edge_only=cut.id == EDGE_ONLY) for cut in self.profile.cuts
        ]
        self.planner = Planner(candidates, seed=zlib.crc32(f"{seed}/{self.name}/planner".encode()))
        for cut in self.profile.cuts:  # the agent's warm-up
            self.planner.seed_head(cut.id, cut.head_ms * self.factor, self.env.now)

    def run_s(self, host_ms: float) -> float:
        """Seconds this device takes for what this host computes in ``host_ms`` (its spread drawn, if any)."""
        spread = self.profile.head_spread
        multiple = self.compute.choice(spread) if spread else 1.0
        return host_ms * self.factor * multiple / 1000

    def transfer(self, direction: Direction, nbytes: int) -> simpy.Timeout:
        """Wait until ``nbytes`` entering ``direction`` now have come out (after any outage)."""
        start = max(self.env.now, self.outage_until_s)
        return self.env.timeout(direction.departure(start, nbytes) - self.env.now)


class Fleet:
    """A scenario's world on simulated time; :meth:`run` runs it.

    Args:
        scenario: The scenario.
        profiles: A measured profile for every model the groups use.
        record: Receives every finished request.
        policy: Every group's policy for this run (``None``: each group's own).

    Raises:
        ConfigError: A group's policy names a cut its model has no candidate for.
    """

    def __init__(
        self,
        scenario: Scenario,
        profiles: Mapping[str, ModelProfile],
        record: Callable[[RequestRecord], None],
        *,
        policy: str | None = None,
    ) -> None:
        self.env = simpy.Environment()
        self.scenario = scenario
        self.run_name = policy or "scenario"
        self.record = record
        self.finished = 0
        """Requests recorded so far."""
        self._ended = self.env.event()  # the scenario's request count reached
        self.hubs = _Hubs(self.env, scenario)
        self.agents: list[tuple[_Agent, str]] = []
        for group in scenario.groups:
            chosen = policy or group.policy
            _check_policy(chosen, group, profiles[group.model])
            for index in range(group.count):
                self.agents.append((_Agent(self.env, scenario, group, index, profiles[group.model]), chosen))

    def run(self) -> None:
        """Run to the scenario's end; requests still in flight then are not recorded."""
        self.start()
        self.advance(self.scenario.duration_s)

    @property
    def ended(self) -> bool:
        """True once the scenario's request count has finished (its ``duration_s`` aside)."""
        return bool(self._ended.triggered)

    def start(self) -> None:
        """Start every agent, hub status and fault (then :meth:`advance` the clock)."""
        for agent, policy in self.agents:
            self.env.process(self._agent(agent, policy))
        for hub in self.hubs.replicas:
            self.env.process(self._status(hub))
        for fault in self.scenario.faults:
            self.env.process(self._fault(fault))

    def advance(self, until_s: float) -> None:
        """Run the simulation up to ``until_s`` simulated seconds, or until the scenario's request count."""
        if until_s > self.env.now and not self.ended:
            self.env.run(until=self.env.timeout(until_s - self.env.now) | self._ended)

    # --- processes ----------------------------------------------------------------------

    def _agent(self, agent: _Agent, policy: str) -> Generator[simpy.Event, object, None]:
        group = agent.group
        if policy == "auto":
            agent.start_planner(self.scenario.seed)
            for _ in range(_START_PINGS):
                nbytes = agent.planner.probe(self.env.now) if agent.planner else None
                if nbytes is None:
                    break
                yield self.env.process(self._ping(agent, nbytes))
        if group.arrival == "closed":
            while True:
                yield self.env.process(self._request(agent, policy))
                yield self.env.timeout(group.think_s)
        yield self.env.timeout(agent.arrivals.uniform(0, 1 / group.rate_hz))  # agents do not start in step
        while True:
            self.env.process(self._request(agent, policy))
            yield self.env.timeout(agent.arrivals.expovariate(group.rate_hz))

    def _request(self, agent: _Agent, policy: str) -> Generator[simpy.Event, object, None]:
        env, start = self.env, self.env.now
        planner = agent.planner
        if planner is not None:
            decision = planner.choose(start)
            cut_id, predicted = decision.cut_id, decision.predicted_ms
        else:
            cut_id, predicted = _POLICY_CUTS.get(policy, policy), math.nan
        cut = agent.profile.cut(cut_id)
        with agent.device.request() as slot:
            yield slot
            head_started = env.now
            yield env.timeout(agent.run_s(cut.head_ms))
            edge_ms = (env.now - head_started) * 1000
        if cut_id == EDGE_ONLY:
            self._finish(agent, policy, start, cut, edge_ms=edge_ms, predicted=predicted)
            return
        sent = env.now
        exchange = env.process(self._exchange(agent, cut))
        deadline = env.timeout(max(0.0, start + agent.group.deadline_s - env.now))
        yield exchange | deadline
        served = exchange.value if exchange.triggered else None
        if isinstance(served, _Served):
            network_ms = (env.now - sent) * 1000 - served.queue_ms - served.compute_ms
            self._finish(
                agent, policy, start, cut, edge_ms=edge_ms, predicted=predicted, served=served, network_ms=network_ms
            )
            return
        if not deadline.triggered:  # refused or lost: the agent learns it when its deadline passes
            yield deadline
        with agent.device.request() as slot:  # the local fallback
            yield slot
            tail_started = env.now
            yield env.timeout(agent.run_s(cut.tail_ms))
            fallback_ms = (env.now - tail_started) * 1000
        self._finish(agent, policy, start, cut, edge_ms=edge_ms, predicted=predicted, fallback_ms=fallback_ms)

    def _exchange(self, agent: _Agent, cut: CutCost) -> Generator[simpy.Event, object, _Served | None]:
        yield agent.transfer(agent.up, cut.request_bytes)
        hub = self.hubs.route()
        if hub is None:
            return None
        served = yield self.env.process(hub.serve(cut.tail_ms))
        if not isinstance(served, _Served):
            return None
        yield agent.transfer(agent.down, agent.profile.reply_bytes)
        return served

    def _ping(self, agent: _Agent, nbytes: int) -> Generator[simpy.Event, object, None]:
        sent = self.env.now
        exchange = self.env.process(self._pong(agent, nbytes))
        yield exchange | self.env.timeout(_PROBE_TIMEOUT_S)
        if exchange.triggered and exchange.value and agent.planner is not None:
            agent.planner.observe_probe(nbytes, (self.env.now - sent) * 1000, self.env.now)

    def _pong(self, agent: _Agent, nbytes: int) -> Generator[simpy.Event, object, bool]:
        yield agent.transfer(agent.up, nbytes + _PING_BYTES)
        if self.hubs.route() is None:
            return False
        yield agent.transfer(agent.down, _PING_BYTES)
        return True

    def _probes(self, agent: _Agent, nbytes: int) -> Generator[simpy.Event, object, None]:
        """A ping, then the ones the planner urgently wants after it (as the agent chains them)."""
        agent.probing = True
        for _ in range(1 + _PROBE_FOLLOW_UPS):
            yield self.env.process(self._ping(agent, nbytes))
            wanted = agent.planner.probe(self.env.now) if agent.planner else None
            if wanted is None:
                break
            nbytes = wanted
        agent.probing = False

    def _status(self, hub: _Hub) -> Generator[simpy.Event, object, None]:
        tails: dict[str, dict[str, float]] = {}
        for agent, _ in self.agents:
            tails.setdefault(agent.profile.model, {cut.id: cut.tail_ms for cut in agent.profile.cuts})
        planners = [agent for agent, _ in self.agents]
        while True:
            if hub.up and self.env.now >= hub.stalled_until:
                wait = hub.wait_ms()
                for agent in planners:
                    if agent.planner is not None:
                        agent.planner.observe_hub(self.env.now, tail_ms=tails[agent.profile.model], queue_ms=wait)
            yield self.env.timeout(self.scenario.hub.status_interval_s)

    def _fault(self, fault: FaultSpec) -> Generator[simpy.Event, object, None]:
        yield self.env.timeout(fault.at_s)
        affected = [agent for agent, _ in self.agents if agent.group.name == fault.group]
        if fault.kind == "hub-stall":
            yield from self._hub_stall(fault)
        elif fault.kind == "hub-down":
            hub = self.hubs.replicas[fault.replica or 0]
            hub.up, hub.generation = False, hub.generation + 1
            if fault.for_s is not None:
                yield self.env.timeout(fault.for_s)
                hub.up = True
        elif fault.kind == "broker-restart":
            self._broker_restart(fault)
        elif fault.kind == "outage":
            until = self.env.now + (fault.for_s if fault.for_s is not None else math.inf)
            for agent in affected:
                agent.outage_until_s = until
        else:
            before = [(agent.up.spec, agent.down.spec) for agent in affected]
            for agent in affected:
                agent.up.spec = dataclasses.replace(agent.up.spec, rate_bit_s=fault.rate_bit_s, trace=None)
                agent.down.spec = dataclasses.replace(agent.down.spec, rate_bit_s=fault.rate_bit_s, trace=None)
            if fault.for_s is not None:
                yield self.env.timeout(fault.for_s)
                for agent, (up, down) in zip(affected, before, strict=True):
                    agent.up.spec, agent.down.spec = up, down

    def _hub_stall(self, fault: FaultSpec) -> Generator[simpy.Event, object, None]:
        """A replica hangs: the broker keeps routing to it until it drops it for silence, losing what it held."""
        hub = self.hubs.replicas[fault.replica or 0]
        ends = self.env.now + (fault.for_s if fault.for_s is not None else math.inf)
        hub.stalled_until = ends
        if ends - self.env.now <= _DROPPED_AFTER_S:
            return
        yield self.env.timeout(_DROPPED_AFTER_S)
        hub.up, hub.generation = False, hub.generation + 1
        if fault.for_s is not None:
            yield self.env.timeout(ends - self.env.now)
            hub.up = True  # it wakes, reconnects and serves again

    def _broker_restart(self, fault: FaultSpec) -> None:
        """Every client loses the broker now and reconnects on its backoff schedule once it is back.

        What the broker held is lost; agents publish their open requests again
        on reconnecting and hubs answer repeats from their reply cache, so an
        agent's transfers wait until both it and a hub are connected again.
        """
        down = self.env.now
        back = down + (fault.for_s if fault.for_s is not None else math.inf)
        seed = self.scenario.seed
        hubs = min(
            _reconnected(down, back, random.Random(f"{seed}/{hub.name}/reconnect"))  # noqa: S311
            for hub in self.hubs.replicas
        )
        for agent, _ in self.agents:
            mine = _reconnected(down, back, random.Random(f"{seed}/{agent.name}/reconnect"))  # noqa: S311
            agent.outage_until_s = max(agent.outage_until_s, mine, hubs)

    # --- records ----------------------------------------------------------------------------

    def _finish(
        self,
        agent: _Agent,
        policy: str,
        start: float,
        cut: CutCost,
        *,
        edge_ms: float,
        predicted: float,
        served: _Served | None = None,
        network_ms: float = 0.0,
        fallback_ms: float = 0.0,
    ) -> None:
        if self.ended:
            return  # past the scenario's request count: the run is over
        now = self.env.now
        remote = cut.id != EDGE_ONLY
        fell_back = remote and served is None
        record = RequestRecord(
            run=self.run_name,
            group=agent.group.name,
            agent=agent.name,
            policy=policy,
            start_s=start,
            cut=cut.id,
            bytes_up=cut.request_bytes if remote else 0,
            edge_ms=edge_ms,
            network_ms=network_ms,
            hub_queue_ms=served.queue_ms if served else 0.0,
            hub_compute_ms=served.compute_ms if served else 0.0,
            fallback_ms=fallback_ms,
            total_ms=(now - start) * 1000,
            predicted_ms=predicted,
            fallback="no reply within the deadline" if fell_back else "",
            hub=served.hub if served else "",
        )
        self.record(record)
        self.finished += 1
        if self.finished == self.scenario.requests:
            self._ended.succeed()
        planner = agent.planner
        if planner is None:
            return
        if fell_back:
            planner.observe_unanswered(now, sent_s=start)
        planner.observe(
            Observation(
                cut_id=cut.id,
                bytes_sent=record.bytes_up,
                edge_ms=edge_ms,
                network_ms=network_ms,
                hub_queue_ms=record.hub_queue_ms,
                hub_compute_ms=record.hub_compute_ms,
                total_ms=record.total_ms,
                answered_by_hub=served is not None,
            ),
            now,
        )
        if not agent.probing:
            nbytes = planner.probe(now)
            if nbytes is not None:
                self.env.process(self._probes(agent, nbytes))


def _check_policy(policy: str, group: GroupSpec, profile: ModelProfile) -> None:
    if policy == "auto":
        return
    cut_id = _POLICY_CUTS.get(policy, policy)
    known = [cut.id for cut in profile.cuts]
    if cut_id not in known:
        msg = (
            f"group {group.name!r}: policy {policy!r} is not auto, edge, cloud or a candidate cut of "
            f"{group.model} ({', '.join(known)})"
        )
        raise ConfigError(msg)


def _reconnected(down_s: float, back_s: float, rng: random.Random) -> float:
    """When a client that lost its broker at ``down_s`` is connected again, the broker being back at ``back_s``."""
    if math.isinf(back_s):
        return back_s
    attempt = down_s
    for pause in Backoff().delays(rng):
        attempt += pause
        if attempt >= back_s:
            return attempt
    return attempt  # pragma: no cover - delays() never ends


def models_of(scenario: Scenario) -> Iterator[str]:
    """The models a scenario's groups use, each once."""
    yield from dict.fromkeys(group.model for group in scenario.groups)

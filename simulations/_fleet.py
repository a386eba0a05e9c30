"""Fleet mode: a scenario's agents, links and hubs as SimPy processes on simulated time.

Each agent (:class:`~simulations._fleet_agent.SimulatedAgent`) holds the
runtime's own :class:`edge_agent.AgentCore`, the object an
:class:`edge_agent.EdgeAgent` runs: it decides each request's cut (the
planner with ``auto``, else the fixed cut), learns from every result, ping
and hub status, asks for the pings it wants, and says what a request does
when the hub refuses it or stays silent. This module only carries those
commands out on simulated time, as the asyncio agent carries them out on
sockets: no measuring or planning happens here.

An agent runs on its own device (a ``simpy.Resource`` of one: the agent's
ORT thread, which a cloud-only request, running nothing, does not wait for)
and its own link (two :class:`simulations.Direction` models, the
same ones the emulating proxy uses). Hub replicas
(:mod:`simulations._hubs`) share the requests round-robin and report their
queue wait every ``status_interval_s`` to every planner, as a hub's retained
status does. Compute times come from a measured
:class:`~simulations.ModelProfile`: a device takes its profile's factor times
this host's head time (times a multiple drawn from the profile's
``head_spread``, when it has one); a hub takes this host's tail time.

A request the hubs lose (a replica down or hung, an outage, a broker
restart) gets no answer: its agent falls back at its deadline, counted from
when the request was ready to send, as the runtime does; a replica whose
queue is full answers ``overloaded`` at once, and the agent falls back then.
Every finished request is handed to ``record`` as one
:class:`~simulations.RequestRecord`.

Every random stream derives from the scenario's seed by name
(``"<seed>/<agent>/up"``), so the same seed gives the same records, and adding
an agent changes no other agent's draws.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple, NoReturn

import simpy

from edge_agent import CLOUD_ONLY, EDGE_ONLY, FallBack, HubReports, InferenceResult, SendPing, Timings
from simulations._arrivals import arrivals
from simulations._fleet_agent import SimulatedAgent
from simulations._fleet_faults import fault_process
from simulations._hubs import Hub, Hubs, Refused, Served, Work
from simulations._report import RequestRecord
from simulations._scenario import check_policy

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Mapping

    from edge_agent import Request, Step
    from simulations._calibrate import CutCost, ModelProfile
    from simulations._scenario import Scenario

_SMALL_MESSAGE_BYTES = 96
"""A ping's message besides its padding, a pong, and an error reply."""


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
        check_policy(scenario, profiles, policy)
        self.hubs = Hubs(self.env, scenario.hub)
        self._reports = {profile.model_sha256: HubReports() for profile in profiles.values()}  # heard once, shared
        speedup = scenario.hub.speedup
        self._timed = {  # what a hub's run from each cut times: that cut's tail and every later one's
            (profile.model_sha256, cut.id): {
                later.id: later.tail_ms / speedup for later in profile.cuts[index:] if later.id != EDGE_ONLY
            }
            for profile in profiles.values()
            for index, cut in enumerate(profile.cuts)
        }
        self.agents: list[SimulatedAgent] = []
        for group in scenario.groups:
            chosen, profile = policy or group.policy, profiles[group.model]
            for index in range(group.count):
                agent = SimulatedAgent(
                    self.env,
                    scenario.seed,
                    group,
                    index,
                    profile=profile,
                    policy=chosen,
                    hubs=self._reports[profile.model_sha256],
                )
                self.agents.append(agent)

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
        for agent in self.agents:
            self.env.process(self._agent(agent))
        for hub in self.hubs.replicas:
            self.env.process(self._status(hub))
        for fault in self.scenario.faults:
            self.env.process(fault_process(self.env, fault, self.agents, self.hubs, self.scenario.seed))

    def advance(self, until_s: float) -> None:
        """Run the simulation up to ``until_s`` simulated seconds, or until the scenario's request count."""
        if until_s > self.env.now and not self.ended:
            self.env.run(until=self.env.timeout(until_s - self.env.now) | self._ended)

    # --- an agent's processes -----------------------------------------------------------

    def _agent(self, agent: SimulatedAgent) -> Generator[simpy.Event, object, None]:
        """Join with the group, ping, make the group's requests until it leaves.

        A request due while the start's pings are out waits for them, as an
        application's first call waits for ``async with EdgeAgent(...)``.
        """
        env, group = self.env, agent.group
        start_s, stop_s = group.start_s, self.scenario.stop_s(group)
        yield env.timeout(start_s)
        yield from self._pings(agent, agent.core.start(env.now))  # the link known before the first request
        if group.arrival == "closed":
            while env.now < stop_s:
                yield env.process(self._request(agent))
                yield env.timeout(group.think_s)
            return
        for at_s in arrivals(self.scenario.seed, agent.name, group.rate_hz, start_s=start_s, stop_s=stop_s):
            yield env.timeout(max(0.0, at_s - env.now))
            env.process(self._request(agent))

    def _request(self, agent: SimulatedAgent) -> Generator[simpy.Event, object, None]:
        env = self.env
        request = agent.core.request(env.now)
        cut = agent.profile.cut(request.decision.cut_id)
        head = _NO_HEAD
        if cut.id != CLOUD_ONLY:  # cloud-only (raw) runs nothing: the agent sends it without waiting for its device
            head_started, head_done = agent.run(cut.head_ms)
            yield env.timeout(head_done - env.now)
            head = _Head(edge_ms=(head_done - head_started) * 1000, queue_ms=(head_started - request.started_s) * 1000)
        if cut.id == EDGE_ONLY:
            timings = Timings(edge_ms=head.edge_ms, device_queue_ms=head.queue_ms, total_ms=self._total_ms(request))
            self._finish(agent, request, cut, timings)
        else:
            yield from self._remote(agent, request, cut, head)

    def _remote(
        self, agent: SimulatedAgent, request: Request, cut: CutCost, head: _Head
    ) -> Generator[simpy.Event, object, None]:
        """Send the request and wait for its answer; at the deadline with none yet, fall back as the core says.

        The deadline is a timer beside the exchange, not a race of two
        processes: the exchange goes on after it (the hub still runs what it
        was sent, and the reply still crosses the link) but no longer counts.
        """
        env = self.env
        request.sent(env.now, can_fall_back=True)
        deadline = env.timeout(request.deadline_s - env.now)

        def give_up(_: simpy.Event) -> None:
            env.process(self._fall_back(agent, request, cut, head, request.timed_out(env.now)))

        deadline.callbacks.append(give_up)
        answer = yield from self._exchange(agent, request, cut)
        if deadline.processed:
            return  # the agent fell back at the deadline
        deadline.callbacks.clear()
        if isinstance(answer, Refused):
            step = request.refused(answer.code, answer.message, env.now)
            yield from self._fall_back(agent, request, cut, head, step)
            return
        network_ms = (env.now - request.sent_s) * 1000 - answer.queue_ms - answer.compute_ms
        timings = Timings(
            edge_ms=head.edge_ms,
            device_queue_ms=head.queue_ms,
            network_ms=network_ms,
            hub_queue_ms=answer.queue_ms,
            hub_compute_ms=answer.compute_ms,
            total_ms=self._total_ms(request),
        )
        self._finish(agent, request, cut, timings, hub_id=answer.hub, hub_batch=answer.batch)

    def _fall_back(
        self, agent: SimulatedAgent, request: Request, cut: CutCost, head: _Head, step: Step
    ) -> Generator[simpy.Event, object, None]:
        """Carry out the core's ``step`` after the hub's refusal or silence: the tail on the device."""
        env = self.env
        if not isinstance(step, FallBack):  # fleet hubs neither load models nor shut down
            msg = f"fleet mode cannot carry out {step} for request at cut {cut.id!r}"
            raise TypeError(msg)
        tail_started, tail_done = agent.run(agent.profile.rest_ms(cut.id))
        yield env.timeout(tail_done - env.now)
        fallback_ms = (tail_done - tail_started) * 1000
        timings = Timings(
            edge_ms=head.edge_ms,
            device_queue_ms=head.queue_ms,
            fallback_ms=fallback_ms,
            total_ms=self._total_ms(request),
        )
        self._finish(agent, request, cut, timings, fallback=step.reason)

    def _exchange(
        self, agent: SimulatedAgent, request: Request, cut: CutCost
    ) -> Generator[simpy.Event, object, Served | Refused]:
        """The request's way to a hub and the answer's way back; a request lost on the way never returns."""
        yield agent.transfer(agent.up, cut.request_bytes)
        hub = self.hubs.route()
        work = Work(
            tail=(agent.profile.model_sha256, cut.id),
            tail_ms=cut.tail_ms / self.scenario.hub.speedup,
            sent_s=request.sent_s,
            deadline_s=agent.group.deadline_s,
            timed=self._timed[agent.profile.model_sha256, cut.id],
        )
        answer = None if hub is None else (yield from hub.serve(work))
        if isinstance(answer, Served):
            yield agent.transfer(agent.down, agent.profile.reply_bytes)
            return answer
        if isinstance(answer, Refused):
            yield agent.transfer(agent.down, _SMALL_MESSAGE_BYTES)
            return answer
        return (yield from _lost(self.env))

    def _pings(self, agent: SimulatedAgent, ping: SendPing | None) -> Generator[simpy.Event, object, None]:
        """Send the core's ping, then each next one it asks for, reporting every answer or loss.

        Once a ping reaches a hub its answer's arrival is known (or that none
        comes: no hub up), so one process waits for the answer or the
        timeout, whichever is first, without racing two. A ping that reaches
        the hub only after its timeout is still answered there, on the
        agent's down link, as a real hub does.
        """
        env = self.env

        def answer_late(_: simpy.Event) -> None:
            self._pong(agent)

        while ping is not None:
            sent_s = env.now
            lost_s = sent_s + ping.timeout_s
            at_hub_s = agent.arrival(agent.up, ping.nbytes + _SMALL_MESSAGE_BYTES)
            answered_s = math.inf
            if at_hub_s < lost_s:
                yield env.timeout(at_hub_s - env.now)
                answered_s = self._pong(agent)
            else:
                env.timeout(at_hub_s - env.now).callbacks.append(answer_late)
            yield env.timeout(min(answered_s, lost_s) - env.now)
            if answered_s <= lost_s:
                ping = agent.core.ping_answered((env.now - sent_s) * 1000, env.now)
            else:
                ping = agent.core.ping_lost(env.now)

    def _pong(self, agent: SimulatedAgent) -> float:
        """A hub answers a ping that reached it now: when the answer reaches the agent (never with no hub up)."""
        if self.hubs.route() is None:
            return math.inf
        return agent.arrival(agent.down, _SMALL_MESSAGE_BYTES)

    def _total_ms(self, request: Request) -> float:
        """The request's time from its start until now."""
        return (self.env.now - request.started_s) * 1000

    def _finish(
        self,
        agent: SimulatedAgent,
        request: Request,
        cut: CutCost,
        timings: Timings,
        *,
        hub_id: str | None = None,
        hub_batch: int | None = None,
        fallback: str | None = None,
    ) -> None:
        """Record the request as the runtime's result would say it (what it sent, who answered); tell the core."""
        if self.ended:
            return  # past the scenario's request count: the run is over
        sent = 0 if cut.id == EDGE_ONLY else cut.request_bytes
        result = InferenceResult(
            {},
            cut.id,
            timings,
            bytes_sent=sent,
            bytes_received=agent.profile.reply_bytes if hub_id is not None and fallback is None else 0,
            hub_id=hub_id,
            hub_batch_size=hub_batch,
            fallback=fallback,
            predicted_ms=request.decision.predicted_ms,
            reason=request.decision.reason,
        )
        self.record(
            RequestRecord.of(
                result,
                run=self.run_name,
                group=agent.group.name,
                agent=agent.name,
                policy=agent.policy,
                start_s=request.started_s,
            )
        )
        self.finished += 1
        if self.finished == self.scenario.requests:
            self._ended.succeed()
        ping = agent.core.finished(request, result, self.env.now)
        if ping is not None:
            self.env.process(self._pings(agent, ping))

    # --- the hubs -----------------------------------------------------------------------

    def _status(self, hub: Hub) -> Generator[simpy.Event, object, None]:
        """The replica's retained status, every interval: heard once per model, by the view its planners share."""
        while True:
            status = hub.status()
            if status is not None:
                for model_sha256, reports in self._reports.items():
                    reports.hear(status, model_sha256, self.env.now)
            yield self.env.timeout(self.scenario.hub.status_interval_s)


class _Head(NamedTuple):
    """A request's head on its device: how long it ran, and how long it waited for the device first (ms)."""

    edge_ms: float
    queue_ms: float


_NO_HEAD = _Head(0.0, 0.0)
"""Cloud-only (raw): nothing runs on the device."""


def _lost(env: simpy.Environment) -> Generator[simpy.Event, object, NoReturn]:
    """A message lost on the way: nothing ever comes back (whoever waits for it gives up on their own)."""
    yield env.event()  # triggered by nobody
    msg = "an event nobody triggers was triggered"
    raise AssertionError(msg)

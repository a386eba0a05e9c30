"""Fleet mode: a scenario's agents, links and hubs as SimPy processes on simulated time.

Each agent (:class:`~simulations._fleet_agent.SimulatedAgent`) holds the
runtime's own :class:`edge_agent.AgentCore`, the object an
:class:`edge_agent.EdgeAgent` runs: it decides each request's cut (the
planner with ``auto``, else the fixed cut), learns from every result, ping
and hub status, asks for the pings it wants, and says what a request does
when the hub refuses it or stays silent. This module only carries those
commands out on simulated time, as the asyncio agent carries them out on
sockets: no measuring or planning happens here.

An agent runs on its own device (one ORT thread, first come first served,
which a cloud-only request, running nothing, does not wait for) and its own
link (two :class:`simulations.Direction` models, the same ones the emulating
proxy uses). Hub replicas (:mod:`simulations._hubs`) share the requests
round-robin and report their queue wait every ``status_interval_s`` to every
planner, as a hub's retained status does. Compute times come from a measured
:class:`~simulations.ModelProfile`: a device takes its profile's factor times
this host's head time (times a multiple drawn from the profile's
``head_spread``, when it has one); a hub takes this host's tail time.

Nothing an agent does waits on anything but the clock: its arrivals, its
pings and each of its requests (a
:class:`~simulations._fleet_request.Flight`) are chains of timers and
callbacks, as a hub's workers are, not SimPy processes, which cost an
event to start, one to end and a wake-up for each event they wait for
(fleets make millions of requests): a cloud-only request is four SimPy
events with its arrival, where a process for it made eight. Each hub's
status and each fault remain processes. Where a link or a device's queue
says when something happens, that is computed, not waited for event by
event.

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

import functools
import math
from typing import TYPE_CHECKING

import simpy

from edge_agent import EDGE_ONLY, HubReports, InferenceResult, SendPing
from simulations._arrivals import arrivals
from simulations._fleet_agent import SimulatedAgent
from simulations._fleet_faults import fault_process
from simulations._fleet_request import SMALL_MESSAGE_BYTES, Deadlines, Flight
from simulations._hubs import Hub, Hubs, Tail
from simulations._report import RequestRecord
from simulations._scenario import check_policy

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator, Mapping

    from edge_agent import Request, Timings
    from simulations._calibrate import CutCost, ModelProfile
    from simulations._scenario import Scenario


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
        self.tails = {
            (profile.model_sha256, cut.id): Tail(
                profile.model_sha256,
                cut.id,
                cut.tail_ms / speedup,
                {later.id: later.tail_ms / speedup for later in profile.cuts[index:] if later.id != EDGE_ONLY},
            )
            for profile in profiles.values()
            for index, cut in enumerate(profile.cuts)
        }
        """What a replica runs from each model's cut, by model sha256 and cut id."""
        self.deadlines = {group.deadline_s: Deadlines(self.env) for group in scenario.groups}
        """The deadlines of the requests out, by deadline length."""
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
            self._after(agent.group.start_s, functools.partial(self._join, agent))
        for hub in self.hubs.replicas:
            self.env.process(self._status(hub))
        for fault in self.scenario.faults:
            self.env.process(fault_process(self.env, fault, self.agents, self.hubs, self.scenario.seed))

    def advance(self, until_s: float) -> None:
        """Run the simulation up to ``until_s`` simulated seconds, or until the scenario's request count."""
        if until_s > self.env.now and not self.ended:
            self.env.run(until=self.env.timeout(until_s - self.env.now) | self._ended)

    # --- an agent's timers ---------------------------------------------------------------

    def _join(self, agent: SimulatedAgent) -> None:
        """The agent's group joins: its start pings (the link known before the first request), then its requests.

        A request due while the start's pings are out waits for them, as an
        application's first call waits for ``async with EdgeAgent(...)``.
        """
        self._ping(agent, agent.core.start(self.env.now), then=lambda: self._requests(agent))

    def _requests(self, agent: SimulatedAgent) -> None:
        group = agent.group
        if group.arrival == "closed":
            self._closed_request(agent)
            return
        stop_s = self.scenario.stop_s(group)
        self._arrive_next(
            agent, arrivals(self.scenario.seed, agent.name, group.rate_hz, start_s=group.start_s, stop_s=stop_s)
        )

    def _closed_request(self, agent: SimulatedAgent) -> None:
        """A closed loop's next request, unless the group has left; the one after it ``think_s`` after it is over."""
        if self.env.now < self.scenario.stop_s(agent.group):
            Flight(
                self, agent, on_end=lambda: self._after(agent.group.think_s, lambda: self._closed_request(agent))
            ).start()

    def _arrive_next(self, agent: SimulatedAgent, times: Iterator[float]) -> None:
        """Make the agent's next request at its time (now, if it is past)."""
        at_s = next(times, None)
        if at_s is not None:
            self._after(max(0.0, at_s - self.env.now), lambda: self._arrive(agent, times))

    def _arrive(self, agent: SimulatedAgent, times: Iterator[float]) -> None:
        Flight(self, agent).start()
        self._arrive_next(agent, times)

    def _ping(self, agent: SimulatedAgent, ping: SendPing | None, then: Callable[[], None] | None = None) -> None:
        """Send the core's ping, then each next one it asks for, reporting every answer or loss; ``then`` after.

        Once a ping reaches a hub its answer's arrival is known (or that none
        comes: no hub up), so one timer waits for the answer or the timeout,
        whichever is first, without racing two. A ping that reaches the hub
        only after its timeout is still answered there, on the agent's down
        link, as a real hub does.
        """
        if ping is None:
            if then is not None:
                then()
            return
        now = self.env.now
        lost_s = now + ping.timeout_s
        at_hub_s = agent.arrival(agent.up, ping.nbytes + SMALL_MESSAGE_BYTES)

        def reported(answered_s: float) -> None:
            if answered_s <= lost_s:
                next_ping = agent.core.ping_answered((self.env.now - now) * 1000, self.env.now)
            else:
                next_ping = agent.core.ping_lost(self.env.now)
            self._ping(agent, next_ping, then)

        def at_hub() -> None:
            answered_s = self._pong(agent)
            self._after(min(answered_s, lost_s) - self.env.now, lambda: reported(answered_s))

        def answered_late() -> None:
            self._pong(agent)

        if at_hub_s < lost_s:
            self._after(at_hub_s - now, at_hub)
        else:
            self._after(at_hub_s - now, answered_late)
            self._after(lost_s - now, lambda: reported(math.inf))

    def _pong(self, agent: SimulatedAgent) -> float:
        """A hub answers a ping that reached it now: when the answer reaches the agent (never with no hub up)."""
        if self.hubs.route() is None:
            return math.inf
        return agent.arrival(agent.down, SMALL_MESSAGE_BYTES)

    def finish(
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
        if self.finished == self.scenario.requests:
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
            self._ping(agent, ping)

    def _after(self, delay_s: float, then: Callable[[], None]) -> None:
        """Call ``then`` ``delay_s`` from now (a timer: an agent waits for nothing in between, so needs no process)."""
        self.env.timeout(delay_s).callbacks.append(lambda _: then())

    # --- the hubs -----------------------------------------------------------------------

    def _status(self, hub: Hub) -> Generator[simpy.Event, object, None]:
        """The replica's retained status, every interval: heard once per model, by the view its planners share."""
        while True:
            status = hub.status()
            if status is not None:
                for model_sha256, reports in self._reports.items():
                    reports.hear(status, model_sha256, self.env.now)
            yield self.env.timeout(self.scenario.hub.status_interval_s)

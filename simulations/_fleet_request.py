"""Fleet mode's requests: one request's life, from the core's decision to its record, as timers on simulated time.

A :class:`Flight` carries out what an agent's :class:`edge_agent.Request`
says, as :class:`~simulations._fleet.Fleet` carries out the rest of the
core's commands: the head on the device, the request over the up link to a
hub replica, the answer back over the down link, the deadline, and the
fallback when the hub refuses or stays silent. Nothing in between waits on
anything but the clock, so a request is a chain of timers and callbacks,
not a SimPy process: a process costs three events more (its start, its end,
and a wake-up per event it waits for), and fleets make millions of
requests. Besides its agent's timer for its arrival, a cloud-only request
is then three events (its arrival at the hub, the end of the hub's run,
the answer's arrival), an edge-only one a single event (its head's end).

The deadline is beside the exchange, not a race: the exchange goes on after
it (the hub still runs what it was sent, and the reply still crosses the
link) but no longer counts. Nor is it a timer per request: almost every
request is answered long before its deadline, and a timer that fires for
nothing costs as much as one that matters. Requests sent later with the
same deadline length are due later, so :class:`Deadlines` keeps them in
the order they were sent, behind one timer for the earliest unanswered one.
"""

from __future__ import annotations

import collections
import math
from typing import TYPE_CHECKING, NamedTuple, cast

from edge_agent import CLOUD_ONLY, EDGE_ONLY, FallBack, Timings
from simulations._hubs import Refused, Served, Work

if TYPE_CHECKING:
    from collections.abc import Callable

    import simpy

    from edge_agent import Step
    from simulations._fleet import Fleet
    from simulations._fleet_agent import SimulatedAgent
    from simulations._hubs import Answer

SMALL_MESSAGE_BYTES = 96
"""A ping's message besides its padding, a pong, and an error reply."""


class Flight:
    """One request of ``agent``, decided by its core now; :meth:`start` sets it going.

    Args:
        fleet: The fleet it runs in: its clock, its hubs, and where it is recorded.
        agent: The agent that makes it.
        on_end: Called once the request has its result (the hub's answer,
            or the device's fallback), as an application's ``await
            agent.infer(...)`` returns: for a closed loop's next request. A
            request the hub lost, or whose answer comes after its deadline,
            ends at its fallback.
    """

    __slots__ = ("agent", "answered", "cut", "due_s", "env", "fleet", "head", "late", "on_end", "request")

    def __init__(self, fleet: Fleet, agent: SimulatedAgent, *, on_end: Callable[[], None] | None = None) -> None:
        self.fleet = fleet
        self.env = fleet.env
        self.agent = agent
        self.request = agent.core.request(self.env.now)
        self.cut = agent.profile.cut(self.request.decision.cut_id)
        self.head = _NO_HEAD
        self.due_s = math.inf
        """When its deadline passes, once sent."""
        self.answered = False
        """An answer came before the deadline: the deadline no longer counts."""
        self.late = False
        """The deadline passed without an answer: the device ran the tail."""
        self.on_end = on_end

    def start(self) -> None:
        """Run the head on the device, then send; cloud-only (raw) runs nothing, and is sent at once."""
        if self.cut.id == CLOUD_ONLY:  # the agent sends it without waiting for its device
            self._send()
            return
        head_started, head_done = self.agent.run(self.cut.head_ms)
        self.head = _Head(
            edge_ms=(head_done - head_started) * 1000, queue_ms=(head_started - self.request.started_s) * 1000
        )
        self._at(head_done, self._headed)

    def _headed(self, _: simpy.Event) -> None:
        if self.cut.id == EDGE_ONLY:
            head = self.head
            self._finish(Timings(edge_ms=head.edge_ms, device_queue_ms=head.queue_ms, total_ms=self._total_ms()))
        else:
            self._send()

    def _send(self) -> None:
        """The request leaves for the hubs, and its deadline starts."""
        now = self.env.now
        self.request.sent(now, can_fall_back=True)
        self.due_s = now + (self.request.deadline_s - now)  # where a timer set now for the deadline falls, rounded
        self.fleet.deadlines[self.agent.group.deadline_s].add(self)
        self._at(self.agent.arrival(self.agent.up, self.cut.request_bytes), self._at_hub)

    def _at_hub(self, _: simpy.Event) -> None:
        """The request reaches the broker: the replica whose turn it is takes it (none up: it is lost)."""
        hub = self.fleet.hubs.route()
        if hub is not None:
            tail = self.fleet.tails[self.agent.profile.model_sha256, self.cut.id]
            hub.serve(
                Work(tail=tail, sent_s=self.request.sent_s, deadline_s=self.agent.group.deadline_s, answer=self._answer)
            )

    def _answer(self, answer: Answer) -> None:
        """The replica's answer leaves it, for the agent's down link."""
        nbytes = self.agent.profile.reply_bytes if isinstance(answer, Served) else SMALL_MESSAGE_BYTES
        self._at(self.agent.arrival(self.agent.down, nbytes), self._answered, answer)

    def _answered(self, timer: simpy.Event) -> None:
        """The answer reaches the agent: finish with it, or fall back if the hub refused (unless already late)."""
        if self.late:
            return  # the device answered at the deadline; the exchange is over now
        answer = cast("Answer", timer.value)
        self.answered = True
        if isinstance(answer, Refused):
            self._fall_back(self.request.refused(answer.code, answer.message, self.env.now))
            return
        head, request = self.head, self.request
        network_ms = (self.env.now - request.sent_s) * 1000 - answer.queue_ms - answer.compute_ms
        timings = Timings(
            edge_ms=head.edge_ms,
            device_queue_ms=head.queue_ms,
            network_ms=network_ms,
            hub_queue_ms=answer.queue_ms,
            hub_compute_ms=answer.compute_ms,
            total_ms=self._total_ms(),
        )
        self._finish(timings, hub_id=answer.hub, hub_batch=answer.batch)

    def deadline_passed(self) -> None:
        """No answer by the deadline: fall back as the core says."""
        self.late = True
        self._fall_back(self.request.timed_out(self.env.now))

    def _fall_back(self, step: Step) -> None:
        """Carry out the core's ``step`` after the hub's refusal or silence: the tail on the device."""
        if not isinstance(step, FallBack):  # fleet hubs neither load models nor shut down
            msg = f"fleet mode cannot carry out {step} for request at cut {self.cut.id!r}"
            raise TypeError(msg)
        tail_started, tail_done = self.agent.run(self.agent.profile.rest_ms(self.cut.id))

        def done(_: simpy.Event) -> None:
            timings = Timings(
                edge_ms=self.head.edge_ms,
                device_queue_ms=self.head.queue_ms,
                fallback_ms=(tail_done - tail_started) * 1000,
                total_ms=self._total_ms(),
            )
            self._finish(timings, fallback=step.reason)

        self._at(tail_done, done)

    def _finish(
        self, timings: Timings, *, hub_id: str | None = None, hub_batch: int | None = None, fallback: str | None = None
    ) -> None:
        self.fleet.finish(
            self.agent, self.request, self.cut, timings, hub_id=hub_id, hub_batch=hub_batch, fallback=fallback
        )
        if self.on_end is not None:
            self.on_end()

    def _total_ms(self) -> float:
        """The request's time from its start until now."""
        return (self.env.now - self.request.started_s) * 1000

    def _at(self, t_s: float, then: Callable[[simpy.Event], None], value: object = None) -> None:
        """Call ``then`` at ``t_s`` with a timer whose ``value`` is ``value`` (SimPy is told the delay from now)."""
        self.env.timeout(t_s - self.env.now, value).callbacks.append(then)


class _Head(NamedTuple):
    """A request's head on its device: how long it ran, and how long it waited for the device first (ms)."""

    edge_ms: float
    queue_ms: float


_NO_HEAD = _Head(0.0, 0.0)
"""Cloud-only (raw): nothing runs on the device."""


class Deadlines:
    """The deadlines of the requests sent with one deadline length: one timer at a time, not one per request.

    Requests are added as they are sent, so in the order of their
    deadlines. One timer stands for the earliest unanswered request, and
    fires at its deadline to the float, as a timer of its own would have;
    answered requests leave the queue as they reach its head. Requests due
    at the same instant pass their deadlines in the order they were sent.

    Args:
        env: The simulation.
    """

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self._queue: collections.deque[Flight] = collections.deque()
        self._armed = False  # a timer is set for the head's deadline

    def add(self, flight: Flight) -> None:
        """Watch the deadline of ``flight``, sent now (its ``due_s``)."""
        self._queue.append(flight)
        if not self._armed:  # the timer the request would have had: the same delay from the same time
            self._arm(flight.request.deadline_s - self.env.now)

    def _arm(self, delay_s: float) -> None:
        self._armed = True
        self.env.timeout(delay_s).callbacks.append(self._due)

    def _due(self, _: simpy.Event) -> None:
        """The head's deadline: every unanswered request due now passes its deadline, in turn."""
        self._armed = False
        queue, now = self._queue, self.env.now
        while queue:
            flight = queue[0]
            if flight.due_s > now and not flight.answered:
                # Lands on due_s exactly: now is a deadline, so at least one deadline length, and the head
                # was sent by now, so due at most one deadline length later: due_s <= 2 * now, and then
                # the subtraction is exact (Sterbenz), so SimPy's now + delay is due_s again.
                self._arm(flight.due_s - now)
                return
            queue.popleft()
            if not flight.answered:
                flight.deadline_passed()

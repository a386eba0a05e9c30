"""Fleet mode's hub replicas: workers, a bounded queue, hangs and restarts, and the statuses they publish.

Replicas share the requests round-robin among those up (MQTT shared
subscriptions). Each has ``workers`` slots and refuses a request when it
holds ``max_queue`` (waiting or running, as a real hub counts them), with an
``overloaded`` answer as a real hub gives one; a replica that goes down loses what it holds, and a hung one holds
what it has until it wakes. Its status carries its recent queue wait and its
tail times per model, as a hub's retained status does.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import statistics
from typing import TYPE_CHECKING

import simpy

from protocol import NodeStatus

if TYPE_CHECKING:
    from collections.abc import Generator, Mapping

    from simulations._scenario import HubSpec

_WAIT_WINDOW_S = 10.0
"""A status reports the median queue wait of this many seconds, as a hub's does."""


@dataclasses.dataclass(frozen=True, slots=True)
class Served:
    """A request a replica ran: which one, and its wait and compute."""

    hub: str
    queue_ms: float
    compute_ms: float


@dataclasses.dataclass(frozen=True, slots=True)
class Refused:
    """A request a replica answered ``overloaded`` at once."""

    message: str


class Hub:
    """One replica: workers, a bounded queue, and the waits it reports.

    Args:
        env: The simulation.
        name: The replica's id (``hub-<index>``).
        workers: Requests it runs at once.
        max_queue: Requests held (waiting or running) beyond which it refuses more.
    """

    def __init__(self, env: simpy.Environment, name: str, workers: int, max_queue: int) -> None:
        self.env = env
        self.name = name
        self.workers = simpy.Resource(env, capacity=workers)
        self.max_queue = max_queue
        self.up = True
        self.generation = 0  # bumped when the replica stops: what it held is lost
        self.stalled_until = 0.0  # hung (SIGSTOP) until then: holds what it has, runs nothing
        self.waits: collections.deque[tuple[float, float]] = collections.deque()  # (when, ms)

    def serve(self, tail_ms: float) -> Generator[simpy.Event, object, Served | Refused | None]:
        """Queue for a worker and run the tail; :class:`Refused` when the queue is full, ``None`` when lost."""
        if not self.up:
            return None
        held = len(self.workers.queue) + self.workers.count  # a real hub counts those it runs too
        if held >= self.max_queue:
            return Refused(f"hub {self.name} has {held} requests queued (max_queue {self.max_queue})")
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
        return Served(self.name, queue_ms, tail_ms)

    def stop(self) -> None:
        """The replica stops (killed, or dropped by the broker): what it holds is lost."""
        self.up, self.generation = False, self.generation + 1

    def _while_stalled(self) -> Generator[simpy.Event, object, None]:
        while self.env.now < self.stalled_until:
            yield self.env.timeout(self.stalled_until - self.env.now)

    def status(self, tails: Mapping[str, Mapping[str, float]]) -> NodeStatus | None:
        """The status it publishes now (``None`` while down or hung): its wait, and ``tails`` by model sha256."""
        if not self.up or self.env.now < self.stalled_until:
            return None
        return NodeStatus(self.name, "hub", "online", self.env.now, queue_wait_ms=self._wait_ms(), tail_ms=tails)

    def _wait_ms(self) -> float:
        """The median wait of the last 10 s (0 when idle)."""
        while self.waits and self.env.now - self.waits[0][0] > _WAIT_WINDOW_S:
            self.waits.popleft()
        return statistics.median(ms for _, ms in self.waits) if self.waits else 0.0


class Hubs:
    """The replicas behind one shared subscription: round-robin over those up."""

    def __init__(self, env: simpy.Environment, spec: HubSpec) -> None:
        self.replicas = [Hub(env, f"hub-{index}", spec.workers, spec.max_queue) for index in range(spec.replicas)]
        self.start_s = spec.start_s
        """How long a replica back from ``hub-down`` takes before it answers."""
        self._turn = itertools.count()

    def route(self) -> Hub | None:
        """The replica the broker hands the next message to, or ``None`` when none is up."""
        alive = [hub for hub in self.replicas if hub.up]
        return alive[next(self._turn) % len(alive)] if alive else None

"""Fleet mode's hub replicas: workers, a bounded queue, hangs and restarts, and the statuses they publish.

Replicas share the requests round-robin among those up (MQTT shared
subscriptions). Each has ``workers`` slots and refuses a request when it
holds ``max_queue`` (waiting or running, as a real hub counts them), with an
``overloaded`` answer as a real hub gives one; a replica that goes down
loses what it holds, and a hung one holds what it has until it wakes. Its
status carries its recent queue wait and its tail times per model, as a
hub's retained status does.

A replica without preloaded tails loads one on its first use, as a hub
given no ``--preload`` does (docs/protocol.md): requests for it wait for the
load until 250 ms before their deadline, then are answered ``loading``; the
load goes on, and a restarted replica has loaded nothing.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import statistics
from typing import TYPE_CHECKING

import simpy

from protocol import ErrorCode, NodeStatus

if TYPE_CHECKING:
    from collections.abc import Generator, Hashable, Mapping

    from simulations._scenario import HubSpec

_WAIT_WINDOW_S = 10.0
"""A status reports the median queue wait of this many seconds, as a hub's does."""
_LOADING_MARGIN_S = 0.25
"""A request waits for its tail's load until this long before its deadline (docs/protocol.md), as a hub's does."""
_LOADING_MIN_WAIT_S = 0.01
"""What a request waits for a load at least, whatever its deadline."""


@dataclasses.dataclass(frozen=True, slots=True)
class Served:
    """A request a replica ran: which one, and its wait and compute."""

    hub: str
    queue_ms: float
    compute_ms: float


@dataclasses.dataclass(frozen=True, slots=True)
class Refused:
    """A request a replica answered with an error: ``overloaded`` at once, or ``loading`` near its deadline."""

    message: str
    code: str = ErrorCode.OVERLOADED


@dataclasses.dataclass(slots=True)
class Work:
    """A request as a replica sees it.

    Attributes:
        tail: Which tail it runs (the model's sha256 and the cut).
        tail_ms: What the tail takes on this replica.
        sent_s: When the agent sent it: its age, by the agent's clock (a
            hub judges staleness by it).
        deadline_s: How long the agent waits for it (its ``deadline_ms``).
    """

    tail: Hashable
    tail_ms: float
    sent_s: float
    deadline_s: float


class Hub:
    """One replica: workers, a bounded queue, and the waits it reports.

    Args:
        env: The simulation.
        name: The replica's id (``hub-<index>``).
        workers: Requests it runs at once.
        max_queue: Requests held (waiting or running) beyond which it refuses more.
        load_s: How long it takes to load a tail on first use; ``None``: every tail is preloaded.
    """

    def __init__(
        self,
        env: simpy.Environment,
        name: str,
        workers: int,
        max_queue: int,
        *,
        load_s: float | None = None,
    ) -> None:
        self.env = env
        self.name = name
        self.workers = simpy.Resource(env, capacity=workers)
        self.max_queue = max_queue
        self.load_s = load_s
        self._loaded: set[Hashable] = set()
        self._loads: dict[Hashable, simpy.Process] = {}  # under way
        self.up = True
        self.generation = 0  # bumped when the replica stops: what it held is lost
        self.stalled_until = 0.0  # hung (SIGSTOP) until then: holds what it has, runs nothing
        self.waits: collections.deque[tuple[float, float]] = collections.deque()  # (when, ms)

    def serve(self, work: Work) -> Generator[simpy.Event, object, Served | Refused | None]:
        """Run ``work``'s tail (loading it first if need be); ``None`` when lost.

        :class:`Refused` when the queue is full, when the tail's load
        outlasts the request's deadline less 250 ms (``loading``), or when a
        worker takes the request up past its deadline (``deadline_exceeded``,
        nothing run: nobody waits for it any more). A reply's queue time
        counts the wait for a load, as a hub's does; the wait its status
        reports does not.
        """
        if not self.up:
            return None
        held = len(self.workers.queue) + self.workers.count  # a real hub counts those it runs too
        if held >= self.max_queue:
            return Refused(f"hub {self.name} has {held} requests queued (max_queue {self.max_queue})")
        generation, arrived = self.generation, self.env.now
        loaded = yield from self._ready(work.tail, max(work.deadline_s - _LOADING_MARGIN_S, _LOADING_MIN_WAIT_S))
        ready = self.env.now
        ran = (yield from self._run(work, generation)) if loaded else None
        if generation != self.generation:
            return None  # the replica stopped meanwhile
        if not loaded:
            return Refused(f"its tail is loading on hub {self.name}; send a new request soon", ErrorCode.LOADING)
        if ran is None:
            return Refused(f"past its {work.deadline_s:g} s deadline on hub {self.name}", ErrorCode.DEADLINE_EXCEEDED)
        self.waits.append((self.env.now, (ran - ready) * 1000))
        return Served(self.name, (ran - arrived) * 1000, work.tail_ms)

    def _run(self, work: Work, generation: int) -> Generator[simpy.Event, object, float | None]:
        """Queue for a worker and run the tail: when it started (``None``: stopped first, or taken up too late)."""
        with self.workers.request() as slot:
            yield slot
            yield from self._while_stalled()
            if generation != self.generation or self.env.now - work.sent_s > work.deadline_s:
                return None
            started = self.env.now
            yield self.env.timeout(work.tail_ms / 1000)
            yield from self._while_stalled()  # a hang that began during the run holds its reply
        return started

    def stop(self) -> None:
        """The replica stops (killed, or dropped by the broker): what it holds and what it loaded are lost."""
        self.up, self.generation = False, self.generation + 1
        self._loaded.clear()
        self._loads.clear()

    def _ready(self, tail: Hashable, wait_s: float) -> Generator[simpy.Event, object, bool]:
        """Whether ``tail`` is loaded, waiting at most ``wait_s`` for its load (started now if none is under way)."""
        if self.load_s is None or tail in self._loaded:
            return True
        load = self._loads.get(tail)
        if load is None:
            load = self._loads[tail] = self.env.process(self._load(tail, self.generation))
        yield load | self.env.timeout(wait_s)
        return tail in self._loaded

    def _load(self, tail: Hashable, generation: int) -> Generator[simpy.Event, object, None]:
        assert self.load_s is not None  # noqa: S101 - only started without preloading
        yield self.env.timeout(self.load_s)
        if generation == self.generation:  # else the replica restarted meanwhile: it loaded nothing
            self._loaded.add(tail)
            del self._loads[tail]

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
        load_s = None if spec.preload else spec.load_s
        self.replicas = [
            Hub(env, f"hub-{index}", spec.workers, spec.max_queue, load_s=load_s) for index in range(spec.replicas)
        ]
        self.start_s = spec.start_s
        """How long a replica back from ``hub-down`` takes before it answers."""
        self._turn = itertools.count()

    def route(self) -> Hub | None:
        """The replica the broker hands the next message to, or ``None`` when none is up."""
        alive = [hub for hub in self.replicas if hub.up]
        return alive[next(self._turn) % len(alive)] if alive else None

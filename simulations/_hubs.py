"""Fleet mode's hub replicas: workers, a bounded queue, hangs and restarts, and the statuses they publish.

Replicas share the requests round-robin among those up (MQTT shared
subscriptions). Each has ``workers`` slots and refuses a request when it
holds ``max_queue`` (waiting or running, as a real hub counts them), with an
``overloaded`` answer as a real hub gives one; a replica that goes down
loses what it holds, and a hung one holds what it has until it wakes. Its
status carries its recent mean queue wait and its tail times per model, as a
hub's retained status does: the median of its last 16 runs per model and
cut, of the tails it has run since it started (a run from a cut also times
every later cut, as a run through a hub's chain of segments does).

A worker that comes free takes the request that waited longest and, as a
hub's dynamic batching does (``max_batch_size``, no batch delay), the other
waiting requests for the same tail, up to ``max_batch`` in all, leaving
those past their deadline to be refused alone. A batch takes as long as its
requests one after another (ONNX Runtime on a CPU gains little from a
batch: the profile measures one request), and every member's reply says the
whole run's time and size, as a hub's does.

A replica without preloaded tails loads a model on the first use of any of
its tails, as a hub given no ``--preload`` does (docs/protocol.md): a hub
holds a model as one chain of segments through every candidate cut
(docs/runtime.md), so one load serves every cut an agent may choose.
Requests wait for the load until 250 ms before their deadline, then are
answered ``loading``; the load goes on, and a restarted replica has loaded
nothing.

A replica answers by calling the request's :attr:`Work.answer` (a lost
request is never answered) from the timers and callbacks it runs on, not
from a process per request: fleets send millions of requests, and each
process would cost SimPy three events more (its start, its wake-up when
its run is over, its end). A request past its deadline when a worker takes
it up, and every reply held by a hang, is answered through a zero-delay
event instead, after whatever else happens at that instant: the order of
events at one instant then stays what it was when each request was a
process waiting for its run.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import math
import statistics
from typing import TYPE_CHECKING, NamedTuple, cast

from protocol import ErrorCode, NodeStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Mapping

    import simpy

    from simulations._scenario import HubSpec

_WAIT_WINDOW_S = 10.0
"""A status reports the mean queue wait of this many seconds, as a hub's does."""
_LOADING_MARGIN_S = 0.25
"""A request waits for its tail's load until this long before its deadline (docs/protocol.md), as a hub's does."""
_TAIL_WINDOW = 16
"""A status's tail time is the median of this many runs, as a hub's (``cloud_hub.LoadProfile``) is."""
_LOADING_MIN_WAIT_S = 0.01
"""What a request waits for a load at least, whatever its deadline."""


class Served(NamedTuple):
    """A request a replica ran: which one, its wait, and the compute and size of the run (its batch) it was in.

    A named tuple, not a frozen dataclass: a replica makes one per request,
    in a third of the time.
    """

    hub: str
    queue_ms: float
    compute_ms: float
    batch: int = 1


@dataclasses.dataclass(frozen=True, slots=True)
class Refused:
    """A request a replica answered with an error: ``overloaded`` at once, or ``loading`` near its deadline."""

    message: str
    code: str = ErrorCode.OVERLOADED


Answer = Served | Refused
"""What a replica answers a request."""


class Tail(NamedTuple):
    """What a replica runs for a request at one cut of a model (the same for every such request).

    Attributes:
        model_sha256: The model.
        cut: The cut the request was made at.
        ms: What the tail takes on the replica.
        timed: What its run tells the replica's status, by cut: the tail
            time from its own cut and from every later one (a run through a
            hub's chain of segments times each).
    """

    model_sha256: str
    cut: str
    ms: float
    timed: Mapping[str, float]


@dataclasses.dataclass(slots=True, kw_only=True)
class Work:
    """A request as a replica sees it.

    Attributes:
        tail: What it runs.
        sent_s: When the agent sent it: its age, by the agent's clock (a
            hub judges staleness by it).
        deadline_s: How long the agent waits for it (its ``deadline_ms``).
        answer: Called once with the replica's answer, when it leaves the
            replica; never for a request lost there.
        arrived: When it reached the replica (set by the replica).
        ready: When its tail was ready for it there, loaded (set by the replica).
    """

    tail: Tail
    sent_s: float
    deadline_s: float
    answer: Callable[[Answer], None]
    arrived: float = math.nan
    ready: float = math.nan


class _Run(NamedTuple):
    """Requests a worker runs as one batch: from when, how long, and in which life of the replica."""

    members: list[Work]
    started: float
    compute_ms: float
    generation: int


class Hub:
    """One replica: workers, a bounded queue, and the waits it reports.

    Args:
        env: The simulation.
        name: The replica's id (``hub-<index>``).
        workers: Runs (a request, or a batch) it makes at once.
        max_queue: Requests held (waiting or running) beyond which it refuses more.
        load_s: How long it takes to load a model (every candidate cut's tail) on first use;
            ``None``: every model is preloaded.
        max_batch: Most requests one run takes (1: no batching).
    """

    def __init__(
        self,
        env: simpy.Environment,
        name: str,
        workers: int,
        max_queue: int,
        *,
        load_s: float | None = None,
        max_batch: int = 1,
    ) -> None:
        self.env = env
        self.name = name
        self.workers = workers
        self.max_queue = max_queue
        self.max_batch = max_batch
        self._idle = workers
        self._waiting: collections.deque[Work] = collections.deque()
        self._running = 0  # requests in the runs under way
        self.load_s = load_s
        self._loaded: set[str] = set()  # models, by sha256
        self._loads: dict[str, simpy.Process] = {}  # under way
        self.up = True
        self.generation = 0  # bumped when the replica stops: what it held is lost
        self.stalled_until = 0.0  # hung (SIGSTOP) until then: holds what it has, runs nothing
        # The waits of the last 10 s, as two deques (when, and the wait in ms), so that a status averages
        # the second in C (statistics.fmean on a deque is math.fsum over it): a generator over (when, ms)
        # pairs took 4 times as long, 5% of a cloud-only fleet run at 1,000 agents.
        self._wait_times: collections.deque[float] = collections.deque()
        self._waits_ms: collections.deque[float] = collections.deque()
        self._timed: dict[str, dict[str, collections.deque[float]]] = {}  # by model sha256 and cut

    def serve(self, work: Work) -> None:
        """Take ``work`` in: run its tail (loading it first if need be) and answer it; a lost request never is.

        :class:`Refused` when the queue is full, when the tail's load
        outlasts the request's deadline less 250 ms (``loading``), or when a
        worker takes the request up past its deadline (``deadline_exceeded``,
        nothing run: nobody waits for it any more). A reply's queue time
        counts the wait for a load, as a hub's does; the wait its status
        reports does not. A replica that is down, or that stops before it
        answers, loses the request.
        """
        if not self.up:
            return
        held = len(self._waiting) + self._running  # a real hub counts those it runs too
        if held >= self.max_queue:
            work.answer(Refused(f"hub {self.name} has {held} requests queued (max_queue {self.max_queue})"))
            return
        work.arrived = self.env.now
        if self.load_s is None or work.tail.model_sha256 in self._loaded:
            self._queue(work)
        else:
            self._await_load(work, work.tail.model_sha256)

    def _queue(self, work: Work) -> None:
        """Queue ``work``, its tail ready now."""
        work.ready = self.env.now
        self._waiting.append(work)
        self._dispatch()

    def _dispatch(self) -> None:
        """Give every idle worker the request that waited longest, with those that join it in a batch."""
        while self._idle and self._waiting:
            first = self._waiting.popleft()
            members = [first]
            if self.max_batch > 1 and self._waiting:
                members += self._joining(first.tail)
            self._idle -= 1
            self._running += len(members)
            self._start(members, self.generation)

    def _joining(self, tail: Tail) -> list[Work]:
        """Waiting requests for ``tail`` within their deadline, in turn, up to a batch: taken out of the queue."""
        now = self.env.now
        chosen: list[Work] = []
        left: list[Work] = []
        for work in self._waiting:
            if len(chosen) < self.max_batch - 1 and work.tail == tail and now - work.sent_s <= work.deadline_s:
                chosen.append(work)
            else:
                left.append(work)
        if chosen:
            self._waiting = collections.deque(left)
        return chosen

    def _start(self, members: list[Work], generation: int) -> None:
        """Run ``members`` once the replica is not hung; those past their deadline by then are refused, not run."""
        if generation != self.generation:
            return  # stopped: what it held is lost
        now = self.env.now
        if now < self.stalled_until:
            self._after(self.stalled_until - now, lambda: self._start(members, generation))
            return
        live = []
        for work in members:
            if now - work.sent_s > work.deadline_s:
                self._running -= 1
                refused = Refused(
                    f"past its {work.deadline_s:g} s deadline on hub {self.name}", ErrorCode.DEADLINE_EXCEEDED
                )
                self._soon(functools.partial(work.answer, refused), generation)
            else:
                live.append(work)
        if not live:
            self._free()
            return
        run = _Run(live, now, sum(work.tail.ms for work in live), generation)
        self.env.timeout(run.compute_ms / 1000, run).callbacks.append(self._ran)

    def _ran(self, timer: simpy.Event) -> None:
        self._finish(cast("_Run", timer.value))

    def _finish(self, run: _Run, *, held: bool = False) -> None:
        """The run is over: its replies go out (once a hang that began during it ends), and its worker is free.

        ``held``: a hang held the replies until now; they then leave after
        whatever else happens at this instant (:meth:`_soon`).
        """
        if run.generation != self.generation:
            return
        now = self.env.now
        if now < self.stalled_until:  # a hang that began during the run holds its reply
            self._after(self.stalled_until - now, lambda: self._finish(run, held=True))
            return
        live = run.members
        self._running -= len(live)
        for work in live:
            self._note(work, len(live))
        for work in live:
            served = Served(self.name, (run.started - work.arrived) * 1000, run.compute_ms, len(live))
            wait_ms = (run.started - work.ready) * 1000
            if held:
                self._soon(functools.partial(self._served, work, served, wait_ms), run.generation)
            else:
                self._served(work, served, wait_ms)
        self._free()

    def _served(self, work: Work, served: Served, wait_ms: float) -> None:
        """Answer ``work`` now, counting its wait for a worker (``wait_ms``) in the waits the status reports."""
        self._wait_times.append(self.env.now)
        self._waits_ms.append(wait_ms)
        work.answer(served)

    def _soon(self, then: Callable[[], None], generation: int) -> None:
        """Call ``then`` once everything else due at this instant has happened, unless the replica stops first.

        As when each request was a process woken by its run's end (one
        zero-delay event): a status or a fault due at the same instant comes
        first.
        """

        def unless_stopped() -> None:
            if generation == self.generation:
                then()

        self._after(0.0, unless_stopped)

    def _note(self, work: Work, batch: int) -> None:
        """What ``work``'s run timed, for the status (a batch's run times the whole batch, as a hub's reply says)."""
        cuts = self._timed.setdefault(work.tail.model_sha256, {})
        for cut_id, ms in work.tail.timed.items():
            samples = cuts.get(cut_id)
            if samples is None:  # not setdefault: that would make a deque every time, to throw it away
                samples = cuts[cut_id] = collections.deque(maxlen=_TAIL_WINDOW)
            samples.append(ms * batch)

    def _free(self) -> None:
        self._idle += 1
        self._dispatch()

    def _after(self, delay_s: float, then: Callable[[], None]) -> None:
        """Call ``then`` ``delay_s`` from now (a timer, not a process: fleets run millions of these)."""
        self.env.timeout(delay_s).callbacks.append(lambda _: then())

    def stop(self) -> None:
        """The replica stops (killed, or dropped by the broker): what it holds and what it loaded are lost."""
        self.up, self.generation = False, self.generation + 1
        self._loaded.clear()
        self._loads.clear()
        self._waiting = collections.deque()  # lost: never answered
        self._idle, self._running = self.workers, 0  # runs under way end unanswered (their generation is gone)
        self._timed.clear()  # a new process: it has run nothing

    def _await_load(self, work: Work, model_sha256: str) -> None:
        """Queue ``work`` once its model is loaded, waiting for the load (started now if none is under way).

        It waits at most until 250 ms before its deadline, then is answered
        ``loading``; a replica that stops meanwhile loses it.
        """
        env, generation = self.env, self.generation
        load = self._loads.get(model_sha256)
        if load is None:
            load = self._loads[model_sha256] = env.process(self._load(model_sha256, generation))

        def loaded_or_not(_: simpy.Event) -> None:
            if generation != self.generation:
                return  # the replica stopped meanwhile
            if model_sha256 in self._loaded:
                self._queue(work)
            else:
                work.answer(
                    Refused(f"its tail is loading on hub {self.name}; send a new request soon", ErrorCode.LOADING)
                )

        wait_s = max(work.deadline_s - _LOADING_MARGIN_S, _LOADING_MIN_WAIT_S)
        (load | env.timeout(wait_s)).callbacks.append(loaded_or_not)

    def _load(self, model_sha256: str, generation: int) -> Generator[simpy.Event, object, None]:
        assert self.load_s is not None  # noqa: S101 - only started without preloading
        yield self.env.timeout(self.load_s)
        if generation == self.generation:  # else the replica restarted meanwhile: it loaded nothing
            self._loaded.add(model_sha256)
            del self._loads[model_sha256]

    def status(self) -> NodeStatus | None:
        """The status it publishes now (``None`` while down or hung): its wait, and its runs' tail times."""
        if not self.up or self.env.now < self.stalled_until:
            return None
        tails = {
            sha: {cut_id: statistics.median(samples) for cut_id, samples in cuts.items()}
            for sha, cuts in self._timed.items()
        }
        return NodeStatus(self.name, "hub", "online", self.env.now, queue_wait_ms=self._wait_ms(), tail_ms=tails)

    def _wait_ms(self) -> float:
        """The mean wait of the last 10 s (0 when idle), as a hub's status reports it."""
        times, waits = self._wait_times, self._waits_ms
        while times and self.env.now - times[0] > _WAIT_WINDOW_S:
            times.popleft()
            waits.popleft()
        return statistics.fmean(waits) if waits else 0.0


class Hubs:
    """The replicas behind one shared subscription: round-robin over those up."""

    def __init__(self, env: simpy.Environment, spec: HubSpec) -> None:
        load_s = None if spec.preload else spec.load_s
        self.replicas = [
            Hub(env, f"hub-{index}", spec.workers, spec.max_queue, load_s=load_s, max_batch=spec.max_batch_size)
            for index in range(spec.replicas)
        ]
        self.start_s = spec.start_s
        """How long a replica back from ``hub-down`` takes before it answers."""
        self._turn = itertools.count()

    def route(self) -> Hub | None:
        """The replica the broker hands the next message to, or ``None`` when none is up."""
        alive = [hub for hub in self.replicas if hub.up]
        return alive[next(self._turn) % len(alive)] if alive else None

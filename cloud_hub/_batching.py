"""Dynamic batching: queued requests for one tail run together, as one batch.

When a worker takes the request whose turn it is and that request's tail has
a batch axis, it also takes the queued requests it can run in one batch with
it (:meth:`Batcher.take`), up to ``max_batch_size`` rows along the batch axis;
with ``max_batch_delay_ms`` it waits that long at most for more to arrive,
while nothing else is queued (:meth:`Batcher.fill`). By default it never waits: it takes what is queued,
as Triton's dynamic batcher does with no queue delay. The batch then runs as
one tail run in the worker thread (:func:`run_batch`): each request's tensors
decoded, concatenated along the batch axis, the tail run once, the outputs
split back by each request's own batch size, one reply each, every reply
saying the batch size it ran in.

What runs together (:meth:`Batcher.take`): requests of the same loaded tail
that pass their own checks (tensors fit the cut, a pinned tail hash matches,
the deadline has not passed, the reply fits in a message) and agree on every
axis but the batch axis. Codecs may differ: tensors are decoded before they
are joined. Anything else runs alone, when its turn comes.

A tail can run a batch (:func:`batch_axis`) when its model's batch axis is the
first axis of every tensor that crosses the cut and of every output, and
appears nowhere else, and every other size of its outputs is fixed or set by
its inputs. Batching assumes, as Triton does of a model with a batch
dimension, that row ``i`` of the outputs depends on row ``i`` of the inputs
alone; ``max_batch_size`` 1 turns batching off for a model that mixes rows.

Fairness (:func:`pick`): a batch takes queued requests in the fair queue's
order. One it cannot take keeps its turn: after it, the batch takes only
requests of the same round (one per other agent at most), so that a request
waits for at most one request of every other agent, as without batching.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from cloud_hub._execution import Ran, refusal, run_tail, tail_times
from models import batch_symbols, run_timed
from protocol import ErrorCode, InferenceReply, ReplyError, encode_reply
from protocol.errors import ProtocolError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from cloud_hub._admission import Admission
    from cloud_hub._fairness import FairQueue
    from cloud_hub._jobs import Job
    from cloud_hub._store import Tail, TailStore
    from models import Manifest, TensorSpec
    from protocol import EncodedRequest, InferenceRequest

logger = logging.getLogger("edgecut.hub")

_T = TypeVar("_T")

_SCAN = 256
"""Most queued requests looked at for one batch: a batch needs only the first few that fit."""


def pick(queued: Iterable[tuple[int, _T]], rows_of: Callable[[_T], int | None], room: int) -> list[_T]:
    """The queued items that run in one batch with ``room`` rows left, in the queue's order.

    Args:
        queued: ``(round, item)`` in the order the queue would take them (the
            round is the item's start tag in :class:`~cloud_hub._fairness.FairQueue`).
        rows_of: The rows an item adds to the batch, or ``None`` when it
            cannot run in it.
        room: Rows the batch may still take.

    An item passed over (it cannot run in the batch, or is larger than the
    room left) keeps its turn: after it, only items of its round are taken,
    so it waits for at most one item of each other sender more, as in the
    queue.
    """
    chosen: list[_T] = []
    last_round: int | None = None
    for round_, item in queued:
        if room <= 0 or (last_round is not None and round_ > last_round):
            break
        rows = rows_of(item)
        if rows is None or rows > room:
            last_round = round_ if last_round is None else last_round
            continue
        chosen.append(item)
        room -= rows
    return chosen


def batch_axis(manifest: Manifest) -> str | None:
    """The name of the tail's batch axis when it can run a batch (module docstring), else ``None``."""
    return _batch_axis(manifest.inputs, manifest.crossing, manifest.outputs)


@functools.lru_cache(maxsize=256)
def _batch_axis(
    inputs: tuple[TensorSpec, ...], crossing: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]
) -> str | None:
    firsts = {spec.shape[0] if spec.shape else None for spec in (*crossing, *outputs)}
    if len(firsts) != 1:
        return None
    axis = firsts.pop()
    if not isinstance(axis, str) or axis not in batch_symbols(inputs):
        return None
    bound = {dim for spec in crossing for dim in spec.shape[1:]}
    for spec in (*crossing, *outputs):
        rest = spec.shape[1:]
        if axis in rest or any(isinstance(dim, str) and dim not in bound for dim in rest):
            return None
    return axis


@functools.lru_cache(maxsize=256)
def _batched_inputs(inputs: tuple[TensorSpec, ...], crossing: tuple[TensorSpec, ...]) -> tuple[str, ...]:
    """The crossing tensors whose first axis is the model's batch axis."""
    symbols = batch_symbols(inputs)
    return tuple(spec.name for spec in crossing if spec.shape and spec.shape[0] in symbols)


def own_rows(manifest: Manifest, request: EncodedRequest) -> int:
    """The request's own batch size: its size of the model's batch axis (1 for a model without one)."""
    names = _batched_inputs(manifest.inputs, manifest.crossing)
    return max((request.tensors[name].shape[0] for name in names if name in request.tensors), default=1)


def _rest_of_shapes(request: EncodedRequest) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Every tensor's sizes but the first: what the requests of one batch must agree on."""
    return tuple((name, tensor.shape[1:]) for name, tensor in sorted(request.tensors.items()))


@dataclasses.dataclass(frozen=True, slots=True)
class Member:
    """A request in a batch, and its own batch size."""

    job: Job
    request: EncodedRequest
    rows: int


@dataclasses.dataclass(slots=True)
class Batch:
    """Requests that run in one tail run; the first is the one whose turn it was.

    Attributes:
        tail: The tail they run on.
        members: The requests, the first one first.
        open: Whether more may join (the tail has a batch axis and rows are left).
    """

    tail: Tail
    members: list[Member]
    open: bool

    @property
    def rows(self) -> int:
        """The size of the batch axis in the run: every member's rows together."""
        return sum(member.rows for member in self.members)


class Batcher:
    """Takes the queued requests that run in one batch with the request whose turn it is.

    Args:
        queue: The hub's queue of jobs.
        store: The hub's tails, to tell which loaded tail a queued request runs on.
        admission: The hub's rules, for the age of queued requests.
        max_batch_size: Most rows along the batch axis in one run (1: no batching).
        max_batch_delay_s: Longest a worker waits for more requests to join a batch.
        limits: What :func:`~cloud_hub._execution.refusal` checks each request against.
    """

    def __init__(
        self,
        *,
        queue: FairQueue[Job],
        store: TailStore,
        admission: Admission,
        max_batch_size: int,
        max_batch_delay_s: float,
        limits: dict[str, int],
    ) -> None:
        self._queue = queue
        self._store = store
        self._admission = admission
        self._max_rows = max_batch_size
        self.delay_s = max_batch_delay_s
        """How long :meth:`fill` waits for more requests (0: never)."""
        self._limits = limits

    def take(self, job: Job, request: EncodedRequest, tail: Tail) -> Batch:
        """``job``, whose turn it is, and the queued requests that run with it (taken out of the queue)."""
        rows = own_rows(tail.manifest, request)
        open_ = rows < self._max_rows and batch_axis(tail.manifest) is not None
        batch = Batch(tail=tail, members=[Member(job, request, rows)], open=open_)
        if open_ and len(self._queue):
            self._join(batch)
        return batch

    async def fill(self, batch: Batch) -> None:
        """Wait up to the batch delay for more requests to join ``batch``, while rows are left and nothing else waits.

        Requests that can join are taken the moment they arrive
        (:meth:`FairQueue.claim_arrivals`), before an idle worker could take
        them alone, and so are those queued since :meth:`take` (the same
        socket read may hand the hub several requests before the wait
        begins). A request that cannot join (another tail's, say) ends the
        wait: the delay is spent only while the hub has nothing else to do.
        """
        if not batch.open or self.delay_s <= 0:
            return
        if self._queue and batch.rows < self._max_rows:
            self._join(batch)
        if self._queue or batch.rows >= self._max_rows:
            return
        first = batch.members[0].request
        shapes = _rest_of_shapes(first)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def claim(job: Job) -> bool:
            rows = self._rows_in(batch, first, shapes, job)
            if rows is None or batch.rows + rows > self._max_rows:
                return False
            batch.members.append(Member(job, _request_of(job), rows))
            if batch.rows >= self._max_rows and not done.done():
                done.set_result(None)
            return True

        with self._queue.claim_arrivals(claim, done), contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.delay_s):
                await done

    def _join(self, batch: Batch) -> None:
        first = batch.members[0].request
        shapes = _rest_of_shapes(first)

        def rows_of(job: Job) -> int | None:
            return self._rows_in(batch, first, shapes, job)

        chosen = pick(self._queue.queued(_SCAN), rows_of, self._max_rows - batch.rows)
        if chosen:
            self._queue.take(chosen)
            batch.members += [
                Member(job, _request_of(job), own_rows(batch.tail.manifest, _request_of(job))) for job in chosen
            ]

    def _rows_in(
        self, batch: Batch, first: EncodedRequest, shapes: tuple[tuple[str, tuple[int, ...]], ...], job: Job
    ) -> int | None:
        """The rows ``job`` adds to ``batch``, or ``None`` when it cannot run in it (it runs alone, in turn)."""
        request = job.request
        if request is None:
            return None
        header = request.header
        if header.model_sha256 != first.header.model_sha256 or header.cut_id != first.header.cut_id:
            return None
        tail = self._store.ready_now(header.model_sha256, header.cut_id, pinned=header.tail_sha256 is not None)
        if tail is None or tail.session is not batch.tail.session or _rest_of_shapes(request) != shapes:
            return None
        if self._admission.staleness(job, header) is not None or refusal(request, tail, **self._limits) is not None:
            return None  # refused when its turn comes
        return own_rows(tail.manifest, request)


def _request_of(job: Job) -> EncodedRequest:
    if job.request is None:  # only requests read whole are queued
        msg = f"request {job.request_id} was not read"
        raise RuntimeError(msg)
    return job.request


Outcome = Ran | ReplyError
"""What a batch's run gives one member: its reply, or the error it is answered with."""


def run_batch(batch: Batch, *, hub_id: str, queue_depth: int) -> list[Outcome]:
    """Decode, join, run and split ``batch`` in one worker-thread hop: one outcome per member.

    A member whose tensors do not decode is answered with its error and the
    others run without it. Should the joined run fail, each member runs alone,
    so that one request never fails another. A batch of one runs as it is,
    without joining.
    """
    if len(batch.members) == 1:
        return [_run_alone(batch.tail, batch.members[0], hub_id=hub_id, queue_depth=queue_depth)]
    outcomes: list[Outcome | None] = [None] * len(batch.members)
    decoded: list[tuple[Member, InferenceRequest]] = []
    for index, member in enumerate(batch.members):
        try:
            decoded.append((member, member.request.decode()))
        except ProtocolError as exc:
            outcomes[index] = ReplyError(code=exc.code, message=str(exc))
    if decoded:
        try:
            ran: list[Outcome] = list(_run_joined(batch.tail, decoded, hub_id=hub_id, queue_depth=queue_depth))
        except Exception:
            logger.exception("a batch of %d requests failed: running each alone", len(decoded))
            ran = [_run_alone(batch.tail, member, hub_id=hub_id, queue_depth=queue_depth) for member, _ in decoded]
        done = iter(ran)
        outcomes = [next(done) if outcome is None else outcome for outcome in outcomes]
    return [outcome for outcome in outcomes if outcome is not None]


def _run_joined(
    tail: Tail, decoded: list[tuple[Member, InferenceRequest]], *, hub_id: str, queue_depth: int
) -> list[Ran]:
    rows = [member.rows for member, _ in decoded]
    total = sum(rows)
    feeds = {name: np.concatenate([request.tensors[name] for _, request in decoded]) for name in decoded[0][1].tensors}
    started = time.perf_counter()
    outputs, compute_ms, segment_ms = run_timed(tail.session, feeds)
    if any(array.shape[:1] != (total,) for array in outputs.values()):
        msg = f"the tail's outputs are not {total} rows long: {[array.shape for array in outputs.values()]}"
        raise RuntimeError(msg)
    bounds = np.cumsum(rows)[:-1]
    parts = {name: np.split(array, bounds) for name, array in outputs.items()}
    tail_ms = tail_times(tail, segment_ms)
    runs = []
    for index, (member, request) in enumerate(decoded):
        reply = InferenceReply(
            request_id=request.request_id,
            hub_id=hub_id,
            outputs={name: split[index] for name, split in parts.items()},
            error=None,
            queue_ms=(started - member.job.received) * 1000,
            compute_ms=compute_ms,
            queue_depth=queue_depth,
            batch_size=total,
        )
        runs.append(Ran(encode_reply(reply), reply.queue_ms, compute_ms, tail_ms))
    return runs


def _run_alone(tail: Tail, member: Member, *, hub_id: str, queue_depth: int) -> Outcome:
    try:
        return run_tail(
            tail,
            member.request,
            hub_id=hub_id,
            received=member.job.received,
            queue_depth=queue_depth,
            batch_size=member.rows,
        )
    except ProtocolError as exc:
        return ReplyError(code=exc.code, message=str(exc))
    except Exception as exc:  # one request's failure is its own
        logger.exception("request %s failed", member.job.request_id)
        return ReplyError(code=ErrorCode.INTERNAL, message=f"{type(exc).__name__}: {exc}")

"""Whether a hub runs a request, and running it: the checks before the tail, and the tail.

Every check here is made before anything is decoded or run, from the request
as read (its tensors' declared dtypes and shapes) and the tail's manifest
alone: matching halves, tensors that fit the cut, a batch within the hub's
bound, and a reply that will fit in a message. Only then are the tensors
decoded, in the worker thread that runs the tail.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING

import numpy as np

from models import ChainPart, batch_symbols, run_timed, tensors_mismatch
from protocol import ErrorCode, InferenceReply, ReplyError, encode_reply

if TYPE_CHECKING:
    from cloud_hub._store import Tail
    from protocol import EncodedRequest

# Room for a reply's fields around its tensor data: the fixed fields, and per output
# its name and the dtype/shape map (a generous bound, so the check never lets too much through).
_REPLY_ENVELOPE_BYTES = 1024
_PER_OUTPUT_BYTES = 256


def refusal(request: EncodedRequest, tail: Tail, *, max_batch: int, max_reply_bytes: int) -> ReplyError | None:
    """Why the hub must not run ``request`` on ``tail``, or ``None`` when it may: nothing decoded yet."""
    manifest = tail.manifest
    header = request.header
    if header.tail_sha256 is not None and header.tail_sha256 != manifest.tail_sha256:
        msg = f"the agent's split of cut {header.cut_id!r} expects another tail than this hub's"
        return ReplyError(code=ErrorCode.MODEL_MISMATCH, message=msg)
    symbols: dict[str, int] = {}
    why = tensors_mismatch(manifest.crossing, request.tensors, symbols)
    if why is not None:
        return ReplyError(code=ErrorCode.TENSOR_MISMATCH, message=f"cut {header.cut_id!r} {why}")
    # Only the model's batch axis is a batch: a data-dependent first axis (a number of boxes) is bounded by
    # the message and memory limits instead.
    batch = max((symbols[axis] for axis in batch_symbols(manifest.inputs) if axis in symbols), default=1)
    if batch > max_batch:
        msg = f"a batch of {batch} is more than this hub's max_batch of {max_batch}"
        return ReplyError(code=ErrorCode.BAD_REQUEST, message=msg)
    reply_bytes = _reply_bytes_bound(tail, symbols)
    if reply_bytes is not None and reply_bytes > max_reply_bytes:
        msg = f"the reply would take up to {reply_bytes:,} bytes, more than the {max_reply_bytes:,} byte limit"
        return ReplyError(code=ErrorCode.TOO_LARGE, message=msg)
    return None


def _reply_bytes_bound(tail: Tail, symbols: dict[str, int]) -> int | None:
    """An upper bound of the encoded reply's size, or ``None`` when an output's size is unknown beforehand."""
    total = _REPLY_ENVELOPE_BYTES
    for spec in tail.manifest.outputs:
        if any(isinstance(dim, str) and dim not in symbols for dim in spec.shape):
            return None  # a size only the run decides (data-dependent)
        elements = math.prod(symbols[dim] if isinstance(dim, str) else dim for dim in spec.shape)
        total += _PER_OUTPUT_BYTES + len(spec.name.encode()) + elements * np.dtype(spec.dtype).itemsize
    return total


@dataclasses.dataclass(frozen=True, slots=True)
class Ran:
    """A tail run: the encoded reply, and its timings as the reply states them."""

    reply: bytes
    queue_ms: float
    compute_ms: float
    tail_ms: dict[str, float]
    """Tail times this run measured, by cut: its own, and for a chain's tail those of every later cut."""


def run_tail(
    tail: Tail, encoded: EncodedRequest, *, hub_id: str, received: float, queue_depth: int, batch_size: int = 1
) -> Ran:
    """Decode the request, run the tail and encode the reply, in one worker-thread hop.

    ``queue_ms`` in the reply is all the hub's time before the tail runs:
    waiting in the queue, loading the tail on first use, the thread hop,
    decoding the tensors. ``batch_size`` is the request's own batch, as the
    reply states it (:mod:`cloud_hub._batching` runs larger batches).

    Raises:
        ProtocolError: A tensor's data does not decode to what it declared.
    """
    request = encoded.decode()
    started = time.perf_counter()
    outputs, compute_ms, segment_ms = run_timed(tail.session, request.tensors)
    reply = InferenceReply(
        request_id=request.request_id,
        hub_id=hub_id,
        outputs=outputs,
        error=None,
        queue_ms=(started - received) * 1000,
        compute_ms=compute_ms,
        queue_depth=queue_depth,
        batch_size=batch_size,
    )
    return Ran(
        reply=encode_reply(reply), queue_ms=reply.queue_ms, compute_ms=compute_ms, tail_ms=tail_times(tail, segment_ms)
    )


def tail_times(tail: Tail, segment_ms: list[float]) -> dict[str, float]:
    """The tail time from each cut a chain's run passed, from its segments' times (empty for a plain session)."""
    if not isinstance(tail.session, ChainPart):
        return {}
    cut_ids = tail.session.chain.manifest.cut_ids
    first = cut_ids.index(tail.session.start)
    return {cut_ids[first + i]: sum(segment_ms[i:]) for i in range(len(segment_ms))}

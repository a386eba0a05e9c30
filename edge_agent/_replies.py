"""What an agent takes as the answer to its request: a reply that decodes, answers its id and fits its model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from models import tensors_mismatch
from protocol import decode_reply
from protocol.errors import ProtocolError

if TYPE_CHECKING:
    from models import Manifest
    from protocol import InferenceReply, InferenceRequest


def read_reply(raw: bytes, request: InferenceRequest, manifest: Manifest) -> tuple[InferenceReply | None, str]:
    """The reply to ``request`` decoded from ``raw``, or ``None`` and why it cannot be used."""
    try:
        reply = decode_reply(raw)
    except ProtocolError as exc:
        return None, f"undecodable reply: {exc}"
    misfit = _misfit(reply, request, manifest)
    if misfit is not None:
        return None, f"the reply does not fit the request: {misfit}"
    return reply, ""


def _misfit(reply: InferenceReply, request: InferenceRequest, manifest: Manifest) -> str | None:
    """Why ``reply`` cannot be the answer to ``request``, or ``None``.

    A reply must answer this request id, and a successful one must hold the
    model's outputs with the request's batch size (every symbolic dimension
    bound by the request's tensors keeps its size in the outputs).
    """
    if reply.request_id != request.request_id:
        return f"it answers request {reply.request_id!r}"
    if reply.error is not None:
        return None
    symbols: dict[str, int] = {}
    tensors_mismatch(manifest.crossing, request.tensors, symbols)  # binds the request's sizes, e.g. the batch
    why = tensors_mismatch(manifest.outputs, reply.outputs, symbols)
    return None if why is None else f"the outputs: {why}"

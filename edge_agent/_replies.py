"""What an agent takes as the answer to its request: a reply that decodes, answers its id and fits its model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from models import tensors_mismatch
from protocol import decode_encoded_reply
from protocol.errors import ProtocolError

if TYPE_CHECKING:
    from models import Manifest
    from protocol import EncodedReply, InferenceReply, InferenceRequest


def read_reply(raw: bytes, request: InferenceRequest, manifest: Manifest) -> tuple[InferenceReply | None, str]:
    """The reply to ``request`` decoded from ``raw``, or ``None`` and why it cannot be used.

    The outputs' declared names, dtypes and shapes are checked against the
    model's before any of them is decoded: a reply that does not fit costs no
    allocation or decompression.
    """
    try:
        encoded = decode_encoded_reply(raw)
    except ProtocolError as exc:
        return None, f"undecodable reply: {exc}"
    misfit = _misfit(encoded, request, manifest)
    if misfit is not None:
        return None, f"the reply does not fit the request: {misfit}"
    try:
        return encoded.decode(), ""
    except ProtocolError as exc:
        return None, f"undecodable reply: {exc}"


def _misfit(reply: EncodedReply, request: InferenceRequest, manifest: Manifest) -> str | None:
    """Why ``reply`` cannot be the answer to ``request``, or ``None``.

    A reply must answer this request id, and a successful one must declare
    the model's outputs with the request's batch size (every symbolic
    dimension bound by the request's tensors keeps its size in the outputs).
    """
    if reply.header.request_id != request.request_id:
        return f"it answers request {reply.header.request_id!r}"
    if reply.header.error is not None:
        return None
    symbols: dict[str, int] = {}
    tensors_mismatch(manifest.crossing, request.tensors, symbols)  # binds the request's sizes, e.g. the batch
    why = tensors_mismatch(manifest.outputs, reply.outputs, symbols)
    return None if why is None else f"the outputs: {why}"

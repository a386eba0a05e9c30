"""The wire form of the messages, and encoding them for sending (:mod:`protocol._decode` reads them)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from protocol._checks import (
    check_batch_size,
    check_count,
    check_id,
    check_non_negative,
    check_positive,
    check_real,
    check_sha256,
    check_str,
    check_topic_id,
    nullable,
    type_name,
)
from protocol._limits import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_PING_PADDING,
    MAX_TENSOR_NAME_LENGTH,
    MAX_TENSORS,
    PROTOCOL_VERSION,
)
from protocol._messages import (
    InferenceReply,
    InferenceRequest,
    NodeStatus,
    Ping,
    ReplyError,
)
from protocol._msgpack import pack
from protocol._status_checks import (
    check_counts,
    check_models,
    check_profile,
    check_providers,
    check_role,
    check_state,
)
from protocol._tensors import TensorPayload, encode_tensor, get_codec

if TYPE_CHECKING:
    import numpy.typing as npt


class _ErrorWire(TypedDict):
    code: str
    message: str


class _TimingWire(TypedDict):
    queue_ms: float
    compute_ms: float


class _LoadWire(TypedDict):
    queue_depth: int


class _ReplyLoadWire(_LoadWire, total=False):
    batch_size: int


class _StatusLoadWire(_LoadWire, total=False):
    wait_ms: float


class _RequestWire(TypedDict):
    v: int
    t: str
    id: str
    agent: str
    model: str
    model_sha256: str
    cut: str
    tail_sha256: str | None
    codec: str
    sent_at: float
    deadline_ms: float
    tensors: dict[str, TensorPayload]


class _ReplyWire(TypedDict):
    v: int
    t: str
    id: str
    hub: str
    ok: bool
    codec: str
    error: _ErrorWire | None
    timing: _TimingWire
    load: _ReplyLoadWire
    outputs: dict[str, TensorPayload]


class _StatusWire(TypedDict):
    v: int
    t: str
    node: str
    role: str
    state: str
    sent_at: float
    load: _StatusLoadWire
    version: str


class _StatusProfileWire(_StatusWire, total=False):
    profile: dict[str, dict[str, float]]
    loading: dict[str, dict[str, float]]
    refused: dict[str, int]
    providers: dict[str, list[str]]
    models: dict[str, str]


class _PingWire(TypedDict):
    v: int
    t: str
    id: str
    sent_at: float
    pad: bytes


def encode_request(request: InferenceRequest, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> bytes:
    """Encode a request for the wire.

    Args:
        request: The request; its tensors are read, not copied, when they are
            C-contiguous little-endian arrays.
        max_bytes: Largest encoded size allowed.

    Returns:
        The msgpack bytes.

    Raises:
        TypeError: A field has the wrong type.
        ValueError: A field is invalid, there are no or too many tensors, or
            the message would exceed ``max_bytes``.
    """
    get_codec(request.codec)
    wire: _RequestWire = {
        "v": PROTOCOL_VERSION,
        "t": "req",
        "id": check_id(request.request_id, "request_id"),
        "agent": check_topic_id(request.agent_id, "agent_id"),
        "model": check_id(request.model_id, "model_id"),
        "model_sha256": check_sha256(request.model_sha256, "model_sha256"),
        "cut": check_id(request.cut_id, "cut_id"),
        "tail_sha256": nullable(check_sha256)(request.tail_sha256, "tail_sha256"),
        "codec": request.codec,
        "sent_at": check_real(request.sent_at, "sent_at"),
        "deadline_ms": check_positive(request.deadline_ms, "deadline_ms"),
        "tensors": _encode_tensors(request.tensors, "tensors", request.codec, allow_empty=False),
    }
    return _pack_within(wire, max_bytes)


def encode_reply(reply: InferenceReply, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> bytes:
    """Encode a reply for the wire.

    Args:
        reply: The reply.
        max_bytes: Largest encoded size allowed.

    Returns:
        The msgpack bytes.

    Raises:
        TypeError: A field has the wrong type.
        ValueError: A field is invalid, a failed reply has outputs, there are
            too many outputs, or the message would exceed ``max_bytes``.
    """
    get_codec(reply.codec)
    if reply.error is not None and reply.outputs:
        msg = "a failed reply (error set) must have no outputs"
        raise ValueError(msg)
    load: _ReplyLoadWire = {"queue_depth": check_count(reply.queue_depth, "queue_depth")}
    if reply.batch_size is not None:
        load["batch_size"] = check_batch_size(reply.batch_size, "batch_size")
    wire: _ReplyWire = {
        "v": PROTOCOL_VERSION,
        "t": "resp",
        "id": check_id(reply.request_id, "request_id"),
        "hub": check_topic_id(reply.hub_id, "hub_id"),
        "ok": reply.error is None,
        "codec": reply.codec,
        "error": None if reply.error is None else _encode_error(reply.error),
        "timing": {
            "queue_ms": check_non_negative(reply.queue_ms, "queue_ms"),
            "compute_ms": check_non_negative(reply.compute_ms, "compute_ms"),
        },
        "load": load,
        "outputs": _encode_tensors(reply.outputs, "outputs", reply.codec, allow_empty=True),
    }
    return _pack_within(wire, max_bytes)


def encode_status(status: NodeStatus) -> bytes:
    """Encode a status announcement for the wire.

    Raises:
        TypeError: A field has the wrong type.
        ValueError: A field is invalid.
    """
    load: _StatusLoadWire = {"queue_depth": check_count(status.queue_depth, "queue_depth")}
    if status.queue_wait_ms is not None:
        load["wait_ms"] = check_non_negative(status.queue_wait_ms, "queue_wait_ms")
    wire: _StatusProfileWire = {
        "v": PROTOCOL_VERSION,
        "t": "status",
        "node": check_topic_id(status.node_id, "node_id"),
        "role": check_role(status.role, "role"),
        "state": check_state(status.state, "state"),
        "sent_at": check_real(status.sent_at, "sent_at"),
        "load": load,
        "version": check_str(status.version, "version"),
    }
    if status.tail_ms:
        wire["profile"] = check_profile(status.tail_ms, "tail_ms")
    if status.loading_s:
        wire["loading"] = check_profile(status.loading_s, "loading_s")
    if status.refused:
        wire["refused"] = check_counts(status.refused, "refused")
    if status.providers:
        checked = check_providers(status.providers, "providers")
        wire["providers"] = {sha: list(names) for sha, names in checked.items()}
    if status.models:
        wire["models"] = check_models(status.models, "models")
    return pack(wire)


def encode_ping(ping: Ping, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> bytes:
    """Encode a ping for the wire.

    Raises:
        TypeError: A field has the wrong type.
        ValueError: A field is invalid, or the ping would exceed ``max_bytes``.
    """
    if not isinstance(ping.padding, bytes):
        msg = f"padding must be bytes, not {type_name(ping.padding)}"
        raise TypeError(msg)
    if len(ping.padding) > MAX_PING_PADDING:
        msg = f"padding of {len(ping.padding):,} bytes is more than {MAX_PING_PADDING:,}: hubs drop such pings"
        raise ValueError(msg)
    wire: _PingWire = {
        "v": PROTOCOL_VERSION,
        "t": "ping",
        "id": check_id(ping.request_id, "request_id"),
        "sent_at": check_real(ping.sent_at, "sent_at"),
        "pad": ping.padding,
    }
    return _pack_within(wire, max_bytes)


def _encode_error(error: ReplyError) -> _ErrorWire:
    if not isinstance(error, ReplyError):
        msg = f"error must be a ReplyError or None, not {type_name(error)}"
        raise TypeError(msg)
    return {
        "code": check_id(str(error.code), "error.code"),
        "message": check_str(error.message, "error.message", max_length=sys.maxsize),
    }


def _encode_tensors(
    tensors: Mapping[str, npt.NDArray[Any]], name: str, codec: str, *, allow_empty: bool
) -> dict[str, TensorPayload]:
    if not isinstance(tensors, Mapping):
        msg = f"{name} must be a mapping of names to arrays, not {type_name(tensors)}"
        raise TypeError(msg)
    if len(tensors) > MAX_TENSORS or not (tensors or allow_empty):
        least = 0 if allow_empty else 1
        msg = f"{name} must hold {least} to {MAX_TENSORS} tensors, not {len(tensors)}"
        raise ValueError(msg)
    encoded: dict[str, TensorPayload] = {}
    for key, array in tensors.items():
        tensor_name = check_id(key, f"a name in {name}", max_length=MAX_TENSOR_NAME_LENGTH)
        try:
            encoded[tensor_name] = encode_tensor(array, codec)
        except (TypeError, ValueError) as exc:
            msg = f"{name}[{tensor_name!r}]: {exc}"
            raise type(exc)(msg) from exc
    return encoded


def _pack_within(wire: object, max_bytes: int) -> bytes:
    data = pack(wire)
    if len(data) > max_bytes:
        msg = f"the encoded message is {len(data)} bytes, more than max_bytes={max_bytes}"
        raise ValueError(msg)
    return data

"""The wire form of the messages: encode for sending, decode and check on receipt."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, TypedDict

from protocol._checks import (
    Fields,
    check_bin,
    check_bool,
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
from protocol._codes import ErrorCode
from protocol._limits import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_PING_PADDING,
    MAX_TENSOR_NAME_LENGTH,
    MAX_TENSORS,
    PROTOCOL_VERSION,
)
from protocol._messages import (
    EncodedRequest,
    InferenceReply,
    InferenceRequest,
    NodeRole,
    NodeState,
    NodeStatus,
    Ping,
    ReplyError,
)
from protocol._msgpack import pack, unpack
from protocol._tensors import EncodedTensor, TensorPayload, encode_tensor, get_codec, read_tensor
from protocol.errors import ProtocolError

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy.typing as npt

_ROLES: Final[Mapping[str, NodeRole]] = {"hub": "hub", "agent": "agent"}
_STATES: Final[Mapping[str, NodeState]] = {"online": "online", "offline": "offline"}


class _ErrorWire(TypedDict):
    code: str
    message: str


class _TimingWire(TypedDict):
    queue_ms: float
    compute_ms: float


class _LoadWire(TypedDict):
    queue_depth: int


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
    load: _LoadWire
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
        "load": {"queue_depth": check_count(reply.queue_depth, "queue_depth")},
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
        "role": _check_role(status.role, "role"),
        "state": _check_state(status.state, "state"),
        "sent_at": check_real(status.sent_at, "sent_at"),
        "load": load,
        "version": check_str(status.version, "version"),
    }
    if status.tail_ms:
        wire["profile"] = _check_profile(status.tail_ms, "tail_ms")
    if status.loading_s:
        wire["loading"] = _check_profile(status.loading_s, "loading_s")
    if status.refused:
        wire["refused"] = _check_counts(status.refused, "refused")
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


def decode_request(
    data: bytes | bytearray | memoryview, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> InferenceRequest:
    """Decode and check a request received from the wire.

    Args:
        data: The MQTT payload.
        max_bytes: Largest payload accepted, checked before unpacking.

    Returns:
        The request; its tensors are read-only views over the received data.

    Raises:
        ProtocolError: Anything is wrong; ``code`` says what to reply.
    """
    return _request(_open(data, "req", max_bytes))


def _request(fields: Fields) -> InferenceRequest:
    return _encoded_request(fields).decode()


def _encoded_request(fields: Fields) -> EncodedRequest:
    codec = fields.get("codec", _check_codec)
    header = InferenceRequest(
        request_id=fields.get("id", check_id),
        agent_id=fields.get("agent", check_topic_id),
        model_id=fields.get("model", check_id),
        model_sha256=fields.get("model_sha256", check_sha256),
        cut_id=fields.get("cut", check_id),
        tail_sha256=fields.get("tail_sha256", nullable(check_sha256)),
        codec=codec,
        sent_at=fields.get("sent_at", check_real),
        deadline_ms=fields.get("deadline_ms", check_positive),
        tensors={},
    )
    return EncodedRequest(header, fields.get("tensors", _tensors_check(codec, allow_empty=False)))


def decode_incoming(
    data: bytes | bytearray | memoryview, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> EncodedRequest | Ping:
    """Read what arrives on a request topic: a request (its tensors not decoded yet), or a ping sent there.

    Every field is checked, the tensors' declared dtypes and shapes included,
    but no tensor is decoded: the receiver checks them against its own limits
    first, then calls :meth:`EncodedRequest.decode`. Pings belong on ping
    topics; a hub drops one that comes on a request topic (it is read here
    so that it can be told apart from a bad request, which gets an answer).

    Raises:
        ProtocolError: Anything is wrong; ``code`` says what to reply.
    """
    fields, kind = _open_any(data, ("req", "ping"), max_bytes)
    if kind == "req":
        return _encoded_request(fields)
    return _ping(fields)


def decode_ping(data: bytes | bytearray | memoryview, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Ping:
    """Decode and check a ping (from a ping topic).

    Raises:
        ProtocolError: Anything is wrong (a hub drops such a ping unanswered).
    """
    return _ping(_open(data, "ping", max_bytes))


def _ping(fields: Fields) -> Ping:
    return Ping(
        request_id=fields.get("id", check_id),
        sent_at=fields.get("sent_at", check_real),
        padding=fields.get("pad", check_bin),
    )


def decode_reply(data: bytes | bytearray | memoryview, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> InferenceReply:
    """Decode and check a reply received from the wire.

    Args:
        data: The MQTT payload.
        max_bytes: Largest payload accepted, checked before unpacking.

    Returns:
        The reply; its outputs are read-only views over the received data.

    Raises:
        ProtocolError: Anything is wrong.
    """
    fields = _open(data, "resp", max_bytes)
    codec = fields.get("codec", _check_codec)
    ok = fields.get("ok", check_bool)
    error = fields.get("error", nullable(_check_error))
    encoded = fields.get("outputs", _tensors_check(codec, allow_empty=True))
    outputs = {name: tensor.decode() for name, tensor in encoded.items()}
    if ok != (error is None) or (error is not None and outputs):
        msg = "reply: 'ok' must be true iff 'error' is nil; 'outputs' empty on error"
        raise ProtocolError(msg, code=ErrorCode.BAD_REQUEST)
    timing = fields.get("timing", Fields)
    return InferenceReply(
        request_id=fields.get("id", check_id),
        hub_id=fields.get("hub", check_topic_id),
        outputs=outputs,
        error=error,
        queue_ms=timing.get("queue_ms", check_non_negative),
        compute_ms=timing.get("compute_ms", check_non_negative),
        queue_depth=fields.get("load", Fields).get("queue_depth", check_count),
        codec=codec,
    )


def decode_status(data: bytes | bytearray | memoryview, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> NodeStatus:
    """Decode and check a status announcement received from the wire.

    Raises:
        ProtocolError: Anything is wrong.
    """
    fields = _open(data, "status", max_bytes)
    load = fields.get("load", Fields)
    return NodeStatus(
        node_id=fields.get("node", check_topic_id),
        role=fields.get("role", _check_role),
        state=fields.get("state", _check_state),
        sent_at=fields.get("sent_at", check_real),
        queue_depth=load.get("queue_depth", check_count),
        version=fields.get("version", check_str),
        queue_wait_ms=load.get_optional("wait_ms", check_non_negative),
        tail_ms=fields.get_optional("profile", _check_profile) or {},
        loading_s=fields.get_optional("loading", _check_profile) or {},
        refused=fields.get_optional("refused", _check_counts) or {},
    )


def peek_request_id(data: bytes | bytearray | memoryview, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> str | None:
    """Best-effort id of a request that :func:`decode_request` rejected.

    Lets a hub address its error reply when the MQTT CorrelationData is
    missing. Never raises.

    Returns:
        The ``"id"`` field if the payload is a msgpack map with a valid one,
        else ``None``.
    """
    try:
        value = unpack(data, max_bytes=max_bytes)
    except ProtocolError:
        return None
    if not isinstance(value, dict):
        return None
    try:
        return check_id(value.get("id"), "id")
    except (TypeError, ValueError):
        return None


_WHERE: Final = {"req": "request", "resp": "reply", "status": "status", "ping": "ping"}


def _open(data: bytes | bytearray | memoryview, kind: str, max_bytes: int) -> Fields:
    return _open_any(data, (kind,), max_bytes)[0]


def _open_any(data: bytes | bytearray | memoryview, kinds: tuple[str, ...], max_bytes: int) -> tuple[Fields, str]:
    unpacked = unpack(data, max_bytes=max_bytes)
    kind = unpacked.get("t") if isinstance(unpacked, dict) else None
    fields = Fields(unpacked, _WHERE[kind] if isinstance(kind, str) and kind in kinds else _WHERE[kinds[0]])
    fields.get("v", _check_version)
    actual = fields.get("t", check_str)
    if actual not in kinds:
        expected = " or ".join(repr(k) for k in kinds)
        msg = f"expected a message of type {expected}, got {actual!r}"
        raise ProtocolError(msg, code=ErrorCode.BAD_REQUEST)
    return fields, actual


def _check_profile(value: object, name: str) -> dict[str, dict[str, float]]:
    """Model sha256 to cut id to a number >= 0 (a tail's ms in ``profile``, a load's seconds in ``loading``)."""
    if not isinstance(value, Mapping):
        msg = f"{name} must be a map, not {type_name(value)}"
        raise TypeError(msg)
    profile: dict[str, dict[str, float]] = {}
    for sha, cuts in value.items():
        where = f"{name}[{sha!r}]"
        if not isinstance(cuts, Mapping):
            msg = f"{where} must be a map, not {type_name(cuts)}"
            raise TypeError(msg)
        profile[check_sha256(sha, f"{name} key")] = {
            check_id(cut, f"{where} key"): check_non_negative(ms, f"{where}[{cut!r}]") for cut, ms in cuts.items()
        }
    return profile


def _check_counts(value: object, name: str) -> dict[str, int]:
    """A map of ids (e.g. error codes) to counts."""
    if not isinstance(value, Mapping):
        msg = f"{name} must be a map, not {type_name(value)}"
        raise TypeError(msg)
    return {check_id(key, f"{name} key"): check_count(count, f"{name}[{key!r}]") for key, count in value.items()}


def _check_version(value: object, name: str) -> int:
    if type(value) is not int or value != PROTOCOL_VERSION:
        msg = f"{name} is {value!r}; this peer speaks protocol version {PROTOCOL_VERSION}"
        raise ProtocolError(msg, code=ErrorCode.UNSUPPORTED_VERSION)
    return value


def _check_codec(value: object, name: str) -> str:
    codec = check_id(value, name)
    try:
        get_codec(codec)
    except ValueError as exc:
        msg = f"{name}: {exc}"
        raise ProtocolError(msg, code=ErrorCode.UNSUPPORTED_CODEC) from exc
    return codec


def _check_error(value: object, name: str) -> ReplyError:
    fields = Fields(value, name)
    return ReplyError(
        code=fields.get("code", check_id),
        message=fields.get("message", _check_error_message),
    )


def _check_error_message(value: object, name: str) -> str:
    return check_str(value, name, max_length=sys.maxsize)


def _check_role(value: object, name: str) -> NodeRole:
    role = _ROLES.get(check_str(value, name))
    if role is None:
        msg = f"{name} must be one of {', '.join(_ROLES)}, not {value!r}"
        raise ValueError(msg)
    return role


def _check_state(value: object, name: str) -> NodeState:
    state = _STATES.get(check_str(value, name))
    if state is None:
        msg = f"{name} must be one of {', '.join(_STATES)}, not {value!r}"
        raise ValueError(msg)
    return state


def _tensors_check(codec: str, *, allow_empty: bool) -> Callable[[object, str], dict[str, EncodedTensor]]:
    def check(value: object, name: str) -> dict[str, EncodedTensor]:
        return _read_tensors(value, name, codec, allow_empty=allow_empty)

    return check


def _read_tensors(value: object, name: str, codec: str, *, allow_empty: bool) -> dict[str, EncodedTensor]:
    if not isinstance(value, dict):
        msg = f"{name} must be a map, not {type_name(value)}"
        raise ProtocolError(msg, code=ErrorCode.BAD_REQUEST)
    if len(value) > MAX_TENSORS:
        msg = f"{name} holds {len(value)} tensors, more than {MAX_TENSORS}"
        raise ProtocolError(msg, code=ErrorCode.TOO_LARGE)
    if not (value or allow_empty):
        msg = f"{name} must hold at least one tensor"
        raise ProtocolError(msg, code=ErrorCode.BAD_REQUEST)
    tensors: dict[str, EncodedTensor] = {}
    for key, payload in value.items():
        tensor_name = check_id(key, f"a name in {name}", max_length=MAX_TENSOR_NAME_LENGTH)
        tensors[tensor_name] = read_tensor(payload, name=tensor_name, codec=codec)
    return tensors

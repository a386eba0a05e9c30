"""Reading messages received from the wire: every field checked; a request's tensors not decoded until asked."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Final

from protocol._checks import (
    Fields,
    check_batch_size,
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
from protocol._limits import DEFAULT_MAX_MESSAGE_BYTES, MAX_TENSOR_NAME_LENGTH, MAX_TENSORS, PROTOCOL_VERSION
from protocol._messages import (
    EncodedReply,
    EncodedRequest,
    InferenceReply,
    InferenceRequest,
    NodeStatus,
    Ping,
    ReplyError,
)
from protocol._msgpack import unpack
from protocol._status_checks import (
    check_counts,
    check_models,
    check_profile,
    check_providers,
    check_role,
    check_state,
)
from protocol._tensors import EncodedTensor, get_codec, read_tensor
from protocol.errors import ProtocolError

if TYPE_CHECKING:
    from collections.abc import Callable


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
    fields, kind = open_message(data, ("req", "ping"), max_bytes)
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
    return reply_of(_open(data, "resp", max_bytes))


def decode_encoded_reply(
    data: bytes | bytearray | memoryview, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> EncodedReply:
    """Read a reply received from the wire without decoding its outputs.

    Every field is checked, the outputs' declared dtypes and shapes included,
    but no output is decoded: the receiver checks them against the outputs
    it expects first, then calls :meth:`EncodedReply.decode`.

    Raises:
        ProtocolError: Anything is wrong.
    """
    return _encoded_reply(_open(data, "resp", max_bytes))


def reply_of(fields: Fields) -> InferenceReply:
    """The reply in ``fields``, a message of type ``"resp"``, every field checked.

    Raises:
        ProtocolError: Anything is wrong.
    """
    return _encoded_reply(fields).decode()


def _encoded_reply(fields: Fields) -> EncodedReply:
    codec = fields.get("codec", _check_codec)
    ok = fields.get("ok", check_bool)
    error = fields.get("error", nullable(_check_error))
    encoded = fields.get("outputs", _tensors_check(codec, allow_empty=True))
    if ok != (error is None) or (error is not None and encoded):  # before a byte of the outputs is decoded
        msg = "reply: 'ok' must be true iff 'error' is nil; 'outputs' empty on error"
        raise ProtocolError(msg, code=ErrorCode.BAD_REQUEST)
    timing = fields.get("timing", Fields)
    load = fields.get("load", Fields)
    header = InferenceReply(
        request_id=fields.get("id", check_id),
        hub_id=fields.get("hub", check_topic_id),
        outputs={},
        error=error,
        queue_ms=timing.get("queue_ms", check_non_negative),
        compute_ms=timing.get("compute_ms", check_non_negative),
        queue_depth=load.get("queue_depth", check_count),
        codec=codec,
        batch_size=load.get_optional("batch_size", check_batch_size),
    )
    return EncodedReply(header, encoded)


def decode_status(data: bytes | bytearray | memoryview, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> NodeStatus:
    """Decode and check a status announcement received from the wire.

    Raises:
        ProtocolError: Anything is wrong.
    """
    fields = _open(data, "status", max_bytes)
    load = fields.get("load", Fields)
    return NodeStatus(
        node_id=fields.get("node", check_topic_id),
        role=fields.get("role", check_role),
        state=fields.get("state", check_state),
        sent_at=fields.get("sent_at", check_real),
        queue_depth=load.get("queue_depth", check_count),
        version=fields.get("version", check_str),
        queue_wait_ms=load.get_optional("wait_ms", check_non_negative),
        tail_ms=fields.get_optional("profile", check_profile) or {},
        loading_s=fields.get_optional("loading", check_profile) or {},
        refused=fields.get_optional("refused", check_counts) or {},
        providers=fields.get_optional("providers", check_providers) or {},
        models=fields.get_optional("models", check_models) or {},
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


_WHERE: Final = {
    "req": "request",
    "resp": "reply",
    "status": "status",
    "ping": "ping",
    "offer": "offer",
    "fetch": "fetch",
    "block": "block",
}


def _open(data: bytes | bytearray | memoryview, kind: str, max_bytes: int) -> Fields:
    return open_message(data, (kind,), max_bytes)[0]


def open_message(data: bytes | bytearray | memoryview, kinds: tuple[str, ...], max_bytes: int) -> tuple[Fields, str]:
    """Unpack a message whose ``"t"`` is one of ``kinds``: its fields, and its type; ``"v"`` checked.

    Raises:
        ProtocolError: Not a message of one of ``kinds`` (code ``bad_request``), or of another version.
    """
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

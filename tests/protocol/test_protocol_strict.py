"""Strictness: every malformed message is a ProtocolError with the right code,
and every invalid message to encode is a TypeError or ValueError."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from protocol import (
    MAX_CONTAINERS,
    MAX_ELEMENTS,
    MAX_ID_LENGTH,
    MAX_TENSORS,
    ErrorCode,
    InferenceReply,
    InferenceRequest,
    NodeStatus,
    Ping,
    ProtocolError,
    ReplyError,
    decode_incoming,
    decode_reply,
    decode_request,
    decode_status,
    decode_tensor,
    encode_ping,
    encode_reply,
    encode_request,
    encode_status,
    encode_tensor,
)

BAD = ErrorCode.BAD_REQUEST
GOLDEN_DIR = Path(__file__).parent / "golden"
REQUEST = (GOLDEN_DIR / "request.msgpack").read_bytes()
REPLY = (GOLDEN_DIR / "reply_ok.msgpack").read_bytes()
STATUS = (GOLDEN_DIR / "status.msgpack").read_bytes()


class _Missing:
    """A field left out; its repr is stable, so test ids match across processes (pytest-xdist)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()
Decoder = Callable[..., object]


def changed(data: bytes, path: str, value: object) -> bytes:
    """``data`` with the field at dotted ``path`` set to ``value`` (or deleted if MISSING)."""
    wire = msgpack.unpackb(data)
    *parents, last = path.split(".")
    target = wire
    for key in parents:
        target = target[key]
    if value is MISSING:
        del target[last]
    else:
        target[last] = value
    return msgpack.packb(wire)


def tensor(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {"dtype": "float32", "shape": [1, 2, 2], "data": b"\0" * 16}
    return {k: v for k, v in (fields | changes).items() if v is not MISSING}


def expect(code: str, decode: Decoder, data: bytes, **kwargs: int) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(data, **kwargs)
    assert info.value.code == code, str(info.value)
    return info.value


# ---------------------------------------------------------------- not a message at all


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # a byte msgpack never uses
        REQUEST[:-1],  # truncated
        REQUEST[:1],
        REQUEST + b"\x00",  # trailing data
        msgpack.packb([1, 2]),
        msgpack.packb("req"),
        msgpack.packb(None),
        msgpack.packb({1: 2}),  # int keys
        b"\xa3\xff\xfe\xfd",  # invalid UTF-8 in a str
        msgpack.packb(msgpack.ExtType(1, b"x")),
        msgpack.packb({"v": 1, "x": msgpack.ExtType(1, b"x")}),
        msgpack.packb({"v": 1, "x": msgpack.Timestamp(1, 0)}),
        b"\x91" * 5000,  # nested deeper than msgpack's stack
        b"\xdd\xff\xff\xff\xff",  # array claiming 4 G elements
    ],
    ids=repr,
)
@pytest.mark.parametrize("decode", [decode_request, decode_reply, decode_status])
def test_not_a_message(decode: Decoder, data: bytes) -> None:
    expect(BAD, decode, data)


@pytest.mark.parametrize("decode", [decode_request, decode_reply, decode_status])
def test_over_the_size_limit(decode: Decoder) -> None:
    data = {decode_request: REQUEST, decode_reply: REPLY, decode_status: STATUS}[decode]
    decode(data, max_bytes=len(data))
    message = expect(ErrorCode.TOO_LARGE, decode, data, max_bytes=len(data) - 1)
    assert str(len(data)) in str(message)


def test_oversize_input_is_rejected_before_unpacking() -> None:
    expect(ErrorCode.TOO_LARGE, decode_request, b"\xc1" * 100, max_bytes=99)


def test_too_many_containers() -> None:
    data = changed(REQUEST, "padding", [[]] * MAX_CONTAINERS)
    expect(ErrorCode.TOO_LARGE, decode_request, data)
    decode_request(changed(REQUEST, "padding", [[]] * (MAX_CONTAINERS - 10)))


# ---------------------------------------------------------------- version and type


@pytest.mark.parametrize("version", [0, 2, -1, "1", 1.0, True, None, [1]], ids=repr)
def test_unknown_version(version: object) -> None:
    expect(ErrorCode.UNSUPPORTED_VERSION, decode_request, changed(REQUEST, "v", version))


@pytest.mark.parametrize("decode", [decode_request, decode_reply, decode_status])
def test_missing_version_or_type(decode: Decoder) -> None:
    expect(BAD, decode, changed(REQUEST, "v", MISSING))
    expect(BAD, decode, msgpack.packb({"v": 1}))


@pytest.mark.parametrize(
    ("decode", "data"),
    [(decode_request, REPLY), (decode_request, STATUS), (decode_reply, REQUEST), (decode_status, REPLY)],
)
def test_wrong_message_type(decode: Decoder, data: bytes) -> None:
    expect(BAD, decode, data)


def test_version_is_checked_before_type() -> None:
    expect(ErrorCode.UNSUPPORTED_VERSION, decode_reply, changed(REQUEST, "v", 2))


# ---------------------------------------------------------------- request fields

LONG_ID = "x" * (MAX_ID_LENGTH + 1)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("id", MISSING),
        ("id", 5),
        ("id", ""),
        ("id", LONG_ID),
        ("id", None),
        ("id", b"r-1"),
        ("agent", "a/b"),
        ("agent", "+"),
        ("agent", "$sys"),
        ("agent", "a\0"),
        ("agent", MISSING),
        ("model", ""),
        ("model", 1),
        ("cut", None),
        ("model_sha256", "AB" * 32),
        ("model_sha256", "ab" * 31),
        ("model_sha256", "zz" * 32),
        ("model_sha256", None),
        ("tail_sha256", "abc"),
        ("tail_sha256", 5),
        ("tail_sha256", MISSING),
        ("codec", 5),
        ("codec", ""),
        ("codec", MISSING),
        ("sent_at", True),
        ("sent_at", "1700000000"),
        ("sent_at", None),
        ("sent_at", math.nan),
        ("sent_at", math.inf),
        ("sent_at", -math.inf),
        ("deadline_ms", 0),
        ("deadline_ms", -1.0),
        ("deadline_ms", 0.0),
        ("deadline_ms", False),
        ("deadline_ms", math.nan),
        ("deadline_ms", math.inf),
        ("deadline_ms", MISSING),
        ("tensors", {}),
        ("tensors", []),
        ("tensors", None),
        ("tensors", MISSING),
        ("tensors", {"": tensor()}),
        ("tensors", {"x" * 1025: tensor()}),
        ("tensors", {b"x": tensor()}),
        ("tensors", {"x": None}),
        ("tensors", {"x": [1, 2]}),
    ],
    ids=repr,
)
def test_bad_request_fields(path: str, value: object) -> None:
    error = expect(BAD, decode_request, changed(REQUEST, path, value))
    assert path.rsplit(".", maxsplit=1)[-1] in str(error) or path == "tensors"


def test_unknown_codec() -> None:
    expect(ErrorCode.UNSUPPORTED_CODEC, decode_request, changed(REQUEST, "codec", "brotli"))
    expect(ErrorCode.UNSUPPORTED_CODEC, decode_reply, changed(REPLY, "codec", "brotli"))


def test_too_many_tensors() -> None:
    tensors = {f"t{i}": tensor() for i in range(MAX_TENSORS + 1)}
    expect(ErrorCode.TOO_LARGE, decode_request, changed(REQUEST, "tensors", tensors))


def test_nil_tail_sha256_is_fine() -> None:
    assert decode_request(changed(REQUEST, "tail_sha256", None)).tail_sha256 is None


# ---------------------------------------------------------------- tensors

HUGE = 2**32


@pytest.mark.parametrize(
    "payload",
    [
        tensor(dtype="object"),
        tensor(dtype="complex64"),
        tensor(dtype="<U4"),
        tensor(dtype="<f4"),
        tensor(dtype="float"),
        tensor(dtype="Float32"),
        tensor(dtype="float32 "),
        tensor(dtype="bfloat16"),
        tensor(dtype="datetime64"),
        tensor(dtype=b"float32"),
        tensor(dtype=None),
        tensor(dtype=MISSING),
        tensor(shape=[1, 2]),  # 8 bytes expected, 16 given
        tensor(shape=[1, 2, 3]),
        tensor(shape=[]),
        tensor(shape=[-1, 4]),
        tensor(shape=[4, -1]),
        tensor(shape=[1.0, 2, 2]),
        tensor(shape=[True, 2, 2]),
        tensor(shape=["1", 2, 2]),
        tensor(shape=[None]),
        tensor(shape=4),
        tensor(shape={"0": 4}),
        tensor(shape=MISSING),
        tensor(shape=[1] * 9),
        tensor(shape=[HUGE, HUGE], data=b""),
        tensor(shape=[2**64 - 1, 2**64 - 1], data=b""),
        tensor(shape=[0, HUGE], data=b""),
        tensor(shape=[0, 2**40, 2**40], data=b""),
        tensor(shape=[MAX_ELEMENTS + 1], data=b""),
        tensor(data=b"\0" * 15),
        tensor(data=b"\0" * 17),
        tensor(data=b""),
        tensor(data="\0" * 16),
        tensor(data=[0] * 16),
        tensor(data=None),
        tensor(data=MISSING),
        tensor(dtype="bool", shape=[2], data=b"\x00\x02"),
        tensor(dtype="bool", shape=[1], data=b"\xff"),
        tensor(params=[1]),
        tensor(params="x"),
        tensor(params={1: 2}),
    ],
    ids=repr,
)
def test_bad_tensors(payload: dict[str, object]) -> None:
    error = expect(BAD, decode_request, changed(REQUEST, "tensors", {"act": payload}))
    assert "'act'" in str(error) or "map key" in str(error)  # int keys fail in msgpack itself
    with pytest.raises(ProtocolError):
        decode_tensor(msgpack.unpackb(msgpack.packb(payload), strict_map_key=False), name="act", codec="raw")


@pytest.mark.parametrize(
    "payload",
    [
        tensor(shape=[0, MAX_ELEMENTS], data=b""),
        tensor(shape=[1] * 8, data=b"\0" * 4),
        tensor(params={}),
        tensor(params={"ignored": 1}),
        tensor(extra="ignored"),
        tensor(dtype="bool", shape=[2], data=b"\x00\x01"),
    ],
    ids=repr,
)
def test_edge_tensors_that_are_valid(payload: dict[str, object]) -> None:
    decode_request(changed(REQUEST, "tensors", {"act": payload}))


def test_decode_tensor_unknown_codec() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_tensor(tensor(), name="x", codec="brotli")
    assert info.value.code == ErrorCode.UNSUPPORTED_CODEC


# ---------------------------------------------------------------- reply fields


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("ok", False),  # but error is nil
        ("ok", 1),
        ("ok", None),
        ("ok", MISSING),
        ("error", {"code": "internal", "message": "x"}),  # but ok is true and outputs set
        ("error", "internal"),
        ("error", MISSING),
        ("hub", ""),
        ("hub", "a/b"),
        ("id", MISSING),
        ("timing", MISSING),
        ("timing", [1.0, 2.0]),
        ("timing.queue_ms", -1.0),
        ("timing.queue_ms", True),
        ("timing.compute_ms", math.nan),
        ("timing.compute_ms", MISSING),
        ("load", None),
        ("load.queue_depth", -1),
        ("load.queue_depth", 1.5),
        ("load.queue_depth", True),
        ("load.queue_depth", 2**63),
        ("load.batch_size", 0),
        ("load.batch_size", 2.0),
        ("load.batch_size", None),
        ("outputs", None),
        ("outputs", MISSING),
        ("outputs", {"logits": tensor(dtype="complex128")}),
    ],
    ids=repr,
)
def test_bad_reply_fields(path: str, value: object) -> None:
    expect(BAD, decode_reply, changed(REPLY, path, value))


def test_a_reply_without_a_batch_size_is_read_as_not_saying() -> None:
    assert decode_reply(REPLY).batch_size == 1
    assert decode_reply(changed(REPLY, "load.batch_size", MISSING)).batch_size is None


def failed_reply_wire() -> dict[str, Any]:
    wire = msgpack.unpackb((GOLDEN_DIR / "reply_error.msgpack").read_bytes())
    assert wire["ok"] is False
    return wire


@pytest.mark.parametrize(
    "change",
    [
        lambda w: w.update(ok=True),  # error set but ok true
        lambda w: w.update(outputs={"y": tensor()}),  # outputs on error
        lambda w: w["error"].update(code=""),
        lambda w: w["error"].update(code=5),
        lambda w: w["error"].pop("message"),
        lambda w: w["error"].update(message=None),
        lambda w: w.update(error=[]),
    ],
)
def test_bad_failed_replies(change: Callable[[dict[str, Any]], object]) -> None:
    wire = failed_reply_wire()
    decode_reply(msgpack.packb(wire))
    change(wire)
    expect(BAD, decode_reply, msgpack.packb(wire))


# ---------------------------------------------------------------- status fields


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("node", ""),
        ("node", "a/b"),
        ("role", "client"),
        ("role", "Hub"),
        ("role", None),
        ("state", "sleeping"),
        ("state", True),
        ("sent_at", math.nan),
        ("sent_at", True),
        ("load", MISSING),
        ("load.queue_depth", -1),
        ("version", 1),
        ("version", None),
        ("version", "x" * (MAX_ID_LENGTH + 1)),
        ("version", MISSING),
    ],
    ids=repr,
)
def test_bad_status_fields(path: str, value: object) -> None:
    expect(BAD, decode_status, changed(STATUS, path, value))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("load.wait_ms", -1.0),
        ("load.wait_ms", "fast"),
        ("profile", []),
        ("profile", {"not-a-sha": {"input": 1.0}}),
        ("profile", {"ab" * 32: [1.0]}),
        ("profile", {"ab" * 32: {"input": -1.0}}),
        ("profile", {"ab" * 32: {"": 1.0}}),
        ("profile", {"ab" * 32: {"input": math.inf}}),
    ],
    ids=repr,
)
def test_bad_optional_status_fields(path: str, value: object) -> None:
    expect(BAD, decode_status, changed(STATUS, path, value))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("t", "pong", "expected a message of type 'req' or 'ping'"),
        ("pad", "text", "ping.pad must be bin"),
        ("pad", MISSING, "ping lacks the field 'pad'"),
        ("id", "", "ping.id must not be empty"),
    ],
)
def test_bad_pings(path: str, value: object, message: str) -> None:
    ping = encode_ping(Ping(request_id="p-1", sent_at=1.0))
    assert message in str(expect(BAD, decode_incoming, changed(ping, path, value)))


# ---------------------------------------------------------------- encoding invalid messages


def request_with(**changes: object) -> InferenceRequest:
    original = decode_request(REQUEST)
    fields = {field: getattr(original, field) for field in original.__dataclass_fields__}
    return InferenceRequest(**(fields | changes))


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"request_id": ""}, ValueError),
        ({"request_id": LONG_ID}, ValueError),
        ({"request_id": 5}, TypeError),
        ({"agent_id": "a/b"}, ValueError),
        ({"agent_id": "$x"}, ValueError),
        ({"model_id": ""}, ValueError),
        ({"cut_id": None}, TypeError),
        ({"model_sha256": "AB" * 32}, ValueError),
        ({"tail_sha256": "ab"}, ValueError),
        ({"codec": "brotli"}, ValueError),
        ({"sent_at": math.nan}, ValueError),
        ({"sent_at": True}, TypeError),
        ({"sent_at": "now"}, TypeError),
        ({"deadline_ms": 0}, ValueError),
        ({"deadline_ms": -5}, ValueError),
        ({"deadline_ms": math.inf}, ValueError),
        ({"tensors": {}}, ValueError),
        ({"tensors": [np.zeros(1)]}, TypeError),
        ({"tensors": {"x": [1.0, 2.0]}}, TypeError),
        ({"tensors": {"x": np.float32(1.0)}}, TypeError),
        ({"tensors": {"": np.zeros(1)}}, ValueError),
        ({"tensors": {5: np.zeros(1)}}, TypeError),
        ({"tensors": {"x": np.zeros(1, np.complex64)}}, ValueError),
        ({"tensors": {"x": np.array(["a"])}}, ValueError),
        ({"tensors": {"x": np.array([None])}}, ValueError),
        ({"tensors": {"x": np.zeros(1, np.uint16)}}, ValueError),
        ({"tensors": {"x": np.zeros([1] * 9)}}, ValueError),
        ({"tensors": {"x": np.zeros((0, 2**31))}}, ValueError),
        ({"tensors": {f"t{i}": np.zeros(1) for i in range(MAX_TENSORS + 1)}}, ValueError),
    ],
    ids=repr,
)
def test_encoding_an_invalid_request(changes: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        encode_request(request_with(**changes))


def test_encoding_over_max_bytes() -> None:
    request = request_with(tensors={"x": np.zeros(1000, np.float64)})
    size = len(encode_request(request))
    assert len(encode_request(request, max_bytes=size)) == size
    with pytest.raises(ValueError, match="max_bytes"):
        encode_request(request, max_bytes=size - 1)


def test_encode_tensor_errors_name_the_tensor() -> None:
    with pytest.raises(ValueError, match=r"tensors\['weird'\]"):
        encode_request(request_with(tensors={"weird": np.zeros(1, np.complex128)}))
    with pytest.raises(ValueError, match="codec"):
        encode_tensor(np.zeros(1), codec="nope")


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"error": ReplyError("internal", "x"), "outputs": {"y": np.zeros(1)}}, ValueError),
        ({"error": "internal", "outputs": {}}, TypeError),
        ({"error": ReplyError("", "x"), "outputs": {}}, ValueError),
        ({"error": ReplyError("internal", None), "outputs": {}}, TypeError),  # type: ignore[arg-type]
        ({"hub_id": "a+b"}, ValueError),
        ({"queue_ms": -0.5}, ValueError),
        ({"compute_ms": math.nan}, ValueError),
        ({"queue_depth": -1}, ValueError),
        ({"queue_depth": 1.0}, TypeError),
        ({"queue_depth": True}, TypeError),
        ({"queue_depth": 2**63}, ValueError),
        ({"codec": "brotli"}, ValueError),
        ({"outputs": {f"t{i}": np.zeros(1) for i in range(MAX_TENSORS + 1)}}, ValueError),
    ],
    ids=repr,
)
def test_encoding_an_invalid_reply(changes: dict[str, Any], error: type[Exception]) -> None:
    original = decode_reply(REPLY)
    fields = {field: getattr(original, field) for field in original.__dataclass_fields__}
    with pytest.raises(error):
        encode_reply(InferenceReply(**(fields | changes)))


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"role": "client"}, ValueError),
        ({"state": "up"}, ValueError),
        ({"node_id": "#"}, ValueError),
        ({"sent_at": math.inf}, ValueError),
        ({"version": None}, TypeError),
        ({"version": "v" * 200}, ValueError),
        ({"queue_depth": -3}, ValueError),
    ],
    ids=repr,
)
def test_encoding_an_invalid_status(changes: dict[str, Any], error: type[Exception]) -> None:
    original = decode_status(STATUS)
    fields = {field: getattr(original, field) for field in original.__dataclass_fields__}
    with pytest.raises(error):
        encode_status(NodeStatus(**(fields | changes)))


def test_a_failed_reply_carrying_outputs_is_refused_before_they_are_decoded() -> None:
    wire = failed_reply_wire()
    wire["outputs"] = {"y": tensor(data=b"not the 16 bytes declared")}  # decoding it would fail otherwise
    error = expect(BAD, decode_reply, msgpack.packb(wire))
    assert "'outputs' empty on error" in str(error)

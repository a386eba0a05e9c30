"""Fuzzing: whatever arrives, decoders return a message or raise ProtocolError.

Nothing else may escape: no msgpack, numpy, Unicode, overflow or recursion error.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import (
    ALLOWED_DTYPES,
    InferenceReply,
    InferenceRequest,
    ProtocolError,
    decode_reply,
    decode_request,
    decode_status,
    encode_reply,
    encode_request,
    peek_request_id,
)

DECODERS = (decode_request, decode_reply, decode_status)
GOLDEN = [path.read_bytes() for path in sorted((Path(__file__).parent / "golden").glob("*.msgpack"))]
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.binary(max_size=40)
    | st.sampled_from(["req", "resp", "status", "raw", "float32", "bool", "hub", "online", 1, 0, -1])
)
WIRE_KEYS = (
    *("v", "t", "id", "agent", "model", "model_sha256", "cut", "tail_sha256", "codec", "tensors", "sent_at"),
    *("deadline_ms", "hub", "ok", "error", "timing", "load", "outputs", "node", "role", "state", "version"),
    *("dtype", "shape", "data", "params", "code", "message", "queue_ms", "compute_ms", "queue_depth", "x"),
)
keys = st.sampled_from(WIRE_KEYS) | st.text(max_size=8)
structures = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(keys, children, max_size=8),
    max_leaves=40,
)


def decode_all(data: bytes) -> None:
    codes = []
    for decode in DECODERS:
        try:
            decode(data)
        except ProtocolError as exc:
            codes.append(exc.code)
    assert all(isinstance(code, str) and code for code in codes)
    peek_request_id(data)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    decode_all(data)


@FUZZ
@given(structures)
def test_random_msgpack_structures(value: object) -> None:
    decode_all(msgpack.packb(value))


@FUZZ
@given(st.sampled_from(GOLDEN), st.data())
def test_flipped_bytes(original: bytes, data: st.DataObject) -> None:
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(mutated) - 1))
        mutated[index] = data.draw(st.integers(0, 255))
    decode_all(bytes(mutated))


@FUZZ
@given(st.sampled_from(GOLDEN), st.data())
def test_truncated_and_extended(original: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(original)))
    decode_all(original[:cut])
    decode_all(original[:cut] + data.draw(st.binary(min_size=1, max_size=20)))


def paths(value: object, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into nested maps and lists."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


@FUZZ
@given(st.sampled_from(GOLDEN), st.data())
def test_a_field_replaced_by_a_random_value(original: bytes, data: st.DataObject) -> None:
    wire = msgpack.unpackb(original)
    path = data.draw(st.sampled_from(paths(wire)))
    target = wire
    for step in path[:-1]:
        target = target[step]
    if isinstance(target, dict) and data.draw(st.booleans()):
        del target[path[-1]]
    else:
        target[path[-1]] = data.draw(structures)
    decode_all(msgpack.packb(wire))


ids = st.text(alphabet=string.ascii_letters + string.digits + "-_.ü", min_size=1, max_size=20)
shapes = st.lists(st.integers(0, 4), max_size=4)


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray[Any, Any]:
    dtype = np.dtype(draw(st.sampled_from(ALLOWED_DTYPES)))
    shape = tuple(draw(shapes))
    raw = draw(st.binary(min_size=dtype.itemsize * int(np.prod(shape)), max_size=dtype.itemsize * int(np.prod(shape))))
    # bool arrays may hold bytes other than 0 and 1: the encoder must cope
    return np.frombuffer(raw, dtype=dtype.newbyteorder(draw(st.sampled_from("<>")))).reshape(shape)


tensor_maps = st.dictionaries(ids, arrays(), max_size=4)


@settings(max_examples=200, deadline=None)
@given(
    request_id=ids,
    agent=ids,
    tensors=tensor_maps.filter(bool),
    sent_at=st.floats(allow_nan=False, allow_infinity=False),
    deadline_ms=st.floats(min_value=1e-3, max_value=1e9),
    tail=st.one_of(st.none(), st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)),
)
def test_valid_requests_round_trip(
    *,
    request_id: str,
    agent: str,
    tensors: dict[str, Any],
    sent_at: float,
    deadline_ms: float,
    tail: str | None,
) -> None:
    request = InferenceRequest(request_id, agent, "m", "0" * 64, "c", tensors, sent_at, deadline_ms, tail_sha256=tail)
    assert decode_request(encode_request(request)) == request


@settings(max_examples=150, deadline=None)
@given(ids, tensor_maps, st.floats(0, 1e6), st.floats(0, 1e6), st.integers(0, 2**63 - 1))
def test_valid_replies_round_trip(
    hub: str, outputs: dict[str, Any], queue_ms: float, compute_ms: float, depth: int
) -> None:
    reply = InferenceReply("r", hub, outputs, None, queue_ms, compute_ms, depth)
    assert decode_reply(encode_reply(reply)) == reply

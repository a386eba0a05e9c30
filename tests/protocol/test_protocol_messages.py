"""Round trips of every message type, dtype and array layout."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np
import numpy.typing as npt
import pytest

import protocol
from protocol import (
    ALLOWED_DTYPES,
    MAX_TENSORS,
    EncodedReply,
    EncodedRequest,
    ErrorCode,
    InferenceReply,
    InferenceRequest,
    NodeRole,
    NodeState,
    NodeStatus,
    Ping,
    ProtocolError,
    ReplyError,
    decode_encoded_reply,
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
    peek_request_id,
    tensors_equal,
)

if TYPE_CHECKING:
    from collections.abc import Callable

SHA = "ab" * 32
SHAPES = [(), (0,), (5,), (2, 3), (0, 4), (3, 0, 2), (1, 2, 3, 4)]


def sample(dtype: str, shape: tuple[int, ...], seed: int = 0) -> npt.NDArray[Any]:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return np.asarray(rng.integers(0, 2, size=shape), dtype=bool)
    if dtype.startswith(("int", "uint")):
        info = np.iinfo(dtype)
        return np.asarray(rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True))
    return np.asarray(rng.standard_normal(size=shape) * 100, dtype=dtype)


def request(tensors: dict[str, npt.NDArray[Any]], **changes: object) -> InferenceRequest:
    fields: dict[str, object] = {
        "request_id": "r-1",
        "agent_id": "cam-01",
        "model_id": "tiny-cnn",
        "model_sha256": SHA,
        "cut_id": "relu1",
        "tensors": tensors,
        "sent_at": 1700000000.5,
        "deadline_ms": 250.0,
    }
    return InferenceRequest(**(fields | changes))


def reply(outputs: dict[str, npt.NDArray[Any]], **changes: object) -> InferenceReply:
    fields: dict[str, object] = {
        "request_id": "r-1",
        "hub_id": "hub-a",
        "outputs": outputs,
        "error": None,
        "queue_ms": 1.25,
        "compute_ms": 3.5,
        "queue_depth": 4,
    }
    return InferenceReply(**(fields | changes))


def assert_same_array(actual: npt.NDArray[Any], expected: npt.NDArray[Any]) -> None:
    assert actual.dtype == expected.dtype.newbyteorder("<")
    assert actual.shape == expected.shape
    assert actual.tobytes() == np.ascontiguousarray(expected, dtype=actual.dtype).tobytes()


# ---------------------------------------------------------------- tensors


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", ALLOWED_DTYPES)
def test_every_dtype_and_shape_round_trips(dtype: str, shape: tuple[int, ...]) -> None:
    array = sample(dtype, shape)
    decoded = decode_request(encode_request(request({"x": array}))).tensors["x"]
    assert_same_array(decoded, array)


@pytest.mark.parametrize("dtype", [d for d in ALLOWED_DTYPES if np.dtype(d).itemsize > 1])
def test_big_endian_input_is_sent_little_endian(dtype: str) -> None:
    array = sample(dtype, (3, 4)).astype(np.dtype(dtype).newbyteorder(">"))
    payload = encode_tensor(array)
    assert bytes(payload["data"]) == array.astype(np.dtype(dtype).newbyteorder("<")).tobytes()
    decoded = decode_tensor(dict(payload, data=bytes(payload["data"])), name="x", codec="raw")
    assert decoded.dtype.str.startswith(("<", "|"))
    np.testing.assert_array_equal(decoded, array)


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a[:, ::2],
        lambda a: a.T,
        np.asfortranarray,
        lambda a: a[::-1, 1:],
        lambda a: a.astype(">f4")[:, ::3],
    ],
    ids=["strided", "transposed", "fortran", "reversed", "big-endian-strided"],
)
def test_non_contiguous_input(make: Callable[[npt.NDArray[Any]], npt.NDArray[Any]]) -> None:
    array = make(np.arange(24, dtype=np.float32).reshape(4, 6))
    decoded = decode_request(encode_request(request({"x": array}))).tensors["x"]
    assert decoded.flags.c_contiguous
    np.testing.assert_array_equal(decoded, array)


def test_encoding_a_c_contiguous_little_endian_array_copies_nothing() -> None:
    array = np.arange(12, dtype="<f4").reshape(3, 4)
    payload = encode_tensor(array)
    assert isinstance(payload["data"], memoryview)
    assert np.shares_memory(np.frombuffer(payload["data"], dtype=np.uint8), array)
    assert "params" not in payload


def test_decoded_tensors_are_read_only_views_of_the_received_bytes() -> None:
    array = np.arange(6, dtype=np.int32).reshape(2, 3)
    payload = encode_tensor(array)
    data = bytes(payload["data"])
    decoded = decode_tensor({"dtype": "int32", "shape": [2, 3], "data": data}, name="x", codec="raw")
    assert not decoded.flags.writeable
    assert np.shares_memory(decoded, np.frombuffer(data, dtype=np.uint8))


def test_scalar_tensor() -> None:
    decoded = decode_request(encode_request(request({"x": np.array(2.5, dtype=np.float64)}))).tensors["x"]
    assert decoded.shape == ()
    assert decoded == 2.5


def test_tensor_order_is_preserved() -> None:
    names = ["zeta", "alpha", "/layer1/Relu_output_0", "mid", "b"]
    tensors = {name: np.full((2,), i, dtype=np.int64) for i, name in enumerate(names)}
    decoded = decode_request(encode_request(request(tensors)))
    assert list(decoded.tensors) == names


def test_the_maximum_number_of_tensors() -> None:
    tensors = {f"t{i}": np.array([i], dtype=np.uint8) for i in range(MAX_TENSORS)}
    assert len(decode_request(encode_request(request(tensors))).tensors) == MAX_TENSORS


# ---------------------------------------------------------------- messages


def test_request_round_trip_with_every_field() -> None:
    original = request(
        {"a": sample("float16", (1, 8)), "b": sample("int64", (2,))},
        tail_sha256="cd" * 32,
        sent_at=-0.0,
        deadline_ms=0.001,
    )
    decoded = decode_request(encode_request(original))
    assert decoded == original
    assert decoded.tail_sha256 == "cd" * 32


def test_reply_round_trip() -> None:
    original = reply({"logits": sample("float32", (1, 10)), "mask": sample("bool", (1, 10))})
    decoded = decode_reply(encode_reply(original))
    assert decoded == original
    assert decoded.ok


def test_failed_reply_round_trip() -> None:
    original = InferenceReply.failure("r-9", "hub-a", ErrorCode.OVERLOADED, "queue full", queue_depth=100)
    decoded = decode_reply(encode_reply(original))
    assert decoded == original
    assert not decoded.ok
    assert decoded.error == ReplyError(code="overloaded", message="queue full")
    assert decoded.error.code == ErrorCode.OVERLOADED
    assert decoded.outputs == {}


def test_reply_error_codes_unknown_to_this_version_are_kept() -> None:
    original = InferenceReply.failure("r-9", "hub-a", "some_future_code", "")
    assert decode_reply(encode_reply(original)).error == ReplyError("some_future_code", "")


@pytest.mark.parametrize("role", ["hub", "agent"])
@pytest.mark.parametrize("state", ["online", "offline"])
def test_status_round_trip(role: NodeRole, state: NodeState) -> None:
    original = NodeStatus(node_id="n-1", role=role, state=state, sent_at=1.5, queue_depth=3, version="1.2.3")
    assert decode_status(encode_status(original)) == original


def test_status_defaults() -> None:
    decoded = decode_status(encode_status(NodeStatus("hub-a", "hub", "offline", 0)))
    assert decoded == NodeStatus("hub-a", "hub", "offline", 0.0, 0, "")
    assert isinstance(decoded.sent_at, float)


def test_a_hub_status_may_report_its_queue_wait_and_tail_times() -> None:
    sha = "ab" * 32
    original = NodeStatus(
        "hub-a", "hub", "online", 2.0, queue_depth=4, queue_wait_ms=12.5, tail_ms={sha: {"input": 9.0, "pool": 0.5}}
    )
    decoded = decode_status(encode_status(original))
    assert decoded == original
    assert b"profile" not in encode_status(NodeStatus("hub-a", "hub", "online", 2.0))  # optional: left out when empty


def test_a_hub_status_may_report_what_it_is_loading() -> None:
    sha = "cd" * 32
    original = NodeStatus("hub-a", "hub", "online", 2.0, loading_s={sha: {"layer3.1.out": 1.25}})
    decoded = decode_status(encode_status(original))
    assert decoded.loading_s == {sha: {"layer3.1.out": 1.25}}
    assert b"loading" not in encode_status(NodeStatus("hub-a", "hub", "online", 2.0))  # left out when empty
    with pytest.raises(ValueError, match="loading_s"):
        encode_status(NodeStatus("hub-a", "hub", "online", 2.0, loading_s={sha: {"c": -1.0}}))


def test_a_hub_status_may_report_the_providers_its_models_run_on() -> None:
    sha = "ef" * 32
    providers = {sha: ("CUDAExecutionProvider", "CPUExecutionProvider")}
    decoded = decode_status(encode_status(NodeStatus("hub-a", "hub", "online", 2.0, providers=providers)))
    assert decoded.providers == providers
    assert b"providers" not in encode_status(NodeStatus("hub-a", "hub", "online", 2.0))  # left out when empty
    with pytest.raises(ValueError, match="providers key"):
        encode_status(NodeStatus("hub-a", "hub", "online", 2.0, providers={"not-a-sha": ("CPUExecutionProvider",)}))
    with pytest.raises(TypeError, match="must be an array"):
        encode_status(NodeStatus("hub-a", "hub", "online", 2.0, providers={sha: "CPUExecutionProvider"}))  # type: ignore[dict-item]


def test_a_ping_round_trips_through_decode_incoming() -> None:
    ping = Ping(request_id="p-1", sent_at=3.25, padding=b"\x00" * 1000)
    assert decode_incoming(encode_ping(ping)) == ping
    original = request({"x": np.zeros(3, np.float32)})
    read = decode_incoming(encode_request(original))
    assert isinstance(read, EncodedRequest)
    assert read.decode() == original


def test_decode_incoming_reads_a_request_without_decoding_its_tensors() -> None:
    pytest.importorskip("zstandard")
    original = request({"x": np.zeros((64, 1024, 1024), np.uint8), "y": np.zeros(3, np.float32)}, codec="zstd")
    read = decode_incoming(encode_request(original))
    assert isinstance(read, EncodedRequest)
    assert read.header.tensors == {}
    x = read.tensors["x"]
    assert (x.dtype, x.shape, x.ndim, x.nbytes, x.codec) == (np.dtype(np.uint8), (64, 1024, 1024), 3, 64 << 20, "zstd")
    assert len(x.data) < 64 << 10  # the compressed bytes, as received: nothing allocated for 64 MiB
    assert read.nbytes == (64 << 20) + 12
    assert read.decode() == original


def test_a_tensor_that_does_not_decode_to_what_it_declares_fails_on_decode_not_on_read() -> None:
    wire = msgpack.unpackb(encode_request(request({"x": np.zeros(3, np.float32)})))
    wire["tensors"]["x"]["shape"] = [4]  # 12 bytes of data cannot be float32[4]
    read = decode_incoming(msgpack.packb(wire))
    assert isinstance(read, EncodedRequest)
    with pytest.raises(ProtocolError, match=r"tensor 'x': has 12 bytes") as caught:
        read.decode()
    assert caught.value.code == ErrorCode.BAD_REQUEST


def test_a_reply_is_read_without_decoding_its_outputs() -> None:
    original = reply({"y": np.zeros((2, 5), np.float32)}, batch_size=2)
    wire = msgpack.unpackb(encode_reply(original))
    wire["outputs"]["y"]["shape"] = [2, 1 << 28]  # 40 bytes of data cannot be float32[2, 2**28]
    read = decode_encoded_reply(msgpack.packb(wire))
    assert isinstance(read, EncodedReply)
    assert read.header.outputs == {}
    assert (read.header.request_id, read.header.batch_size) == (original.request_id, 2)
    assert (read.outputs["y"].shape, read.outputs["y"].nbytes) == ((2, 1 << 28), 2 << 30)  # declared, not allocated
    with pytest.raises(ProtocolError, match=r"tensor 'y': has 40 bytes"):
        read.decode()
    assert decode_encoded_reply(encode_reply(original)).decode() == original


def test_numpy_scalars_are_accepted_when_encoding() -> None:
    original = reply({}, queue_ms=np.float32(1.5), compute_ms=np.float64(2.0), queue_depth=np.int64(3))
    decoded = decode_reply(encode_reply(original))
    assert (decoded.queue_ms, decoded.compute_ms, decoded.queue_depth) == (1.5, 2.0, 3)
    assert type(decoded.queue_depth) is int


@pytest.mark.parametrize("batch_size", [None, 1, 8])
def test_the_batch_size_round_trips_and_is_left_out_when_unsaid(batch_size: int | None) -> None:
    original = reply({"y": np.zeros((1, 2), np.float32)}, batch_size=batch_size)
    data = encode_reply(original)
    assert decode_reply(data).batch_size == batch_size
    assert ("batch_size" in msgpack.unpackb(data)["load"]) == (batch_size is not None)


def test_all_messages_accept_memoryview_and_bytearray() -> None:
    data = encode_request(request({"x": np.zeros(3, np.float32)}))
    assert decode_request(memoryview(data)) == decode_request(bytearray(data))


# ---------------------------------------------------------------- equality


def test_equality_compares_tensor_values_order_and_dtype() -> None:
    base = {"a": np.array([1.0, np.nan], np.float32), "b": np.array([1], np.int8)}
    assert request(base) == request({"a": base["a"].copy(), "b": base["b"].copy()})
    assert request(base) == request({"a": base["a"].astype(">f4"), "b": base["b"]})
    assert request(base) != request({"b": base["b"], "a": base["a"]})
    assert request(base) != request({"a": base["a"].astype(np.float64), "b": base["b"]})
    assert request(base) != request({"a": base["a"], "b": base["b"].reshape(1, 1)})
    assert request(base) != request({"a": np.array([1.0, 2.0], np.float32), "b": base["b"]})
    assert request(base) != request(base, cut_id="other")
    assert request(base) != "not a request"
    assert not tensors_equal(base, {"a": base["a"]})


def test_messages_holding_arrays_are_unhashable() -> None:
    with pytest.raises(TypeError):
        hash(request({"x": np.zeros(1)}))
    with pytest.raises(TypeError):
        hash(reply({}))
    assert hash(NodeStatus("n", "hub", "online", 1.0)) == hash(NodeStatus("n", "hub", "online", 1.0))


def test_ok_property() -> None:
    assert reply({}).ok
    assert not reply({}, error=ReplyError("internal", "boom")).ok


# ---------------------------------------------------------------- forward compatibility


def test_unknown_keys_are_ignored_at_every_level() -> None:
    wire = msgpack.unpackb(encode_reply(reply({"y": np.arange(3, dtype=np.int16)})))
    wire["new_top_level"] = {"nested": [1, 2, 3]}
    wire["timing"]["network_ms"] = 5.0
    wire["load"]["gpu"] = 0.5
    wire["outputs"]["y"]["checksum"] = "abc"
    decoded = decode_reply(msgpack.packb(wire))
    assert decoded == reply({"y": np.arange(3, dtype=np.int16)})


def test_ints_are_accepted_where_numbers_are_expected() -> None:
    wire = msgpack.unpackb(encode_request(request({"x": np.zeros(1, np.uint8)})))
    wire["sent_at"] = 1700000000
    wire["deadline_ms"] = 100
    decoded = decode_request(msgpack.packb(wire))
    assert (decoded.sent_at, decoded.deadline_ms) == (1700000000.0, 100.0)
    assert isinstance(decoded.sent_at, float)


def test_float32_numbers_are_accepted() -> None:
    wire = msgpack.unpackb(encode_request(request({"x": np.zeros(1, np.uint8)})))
    data = msgpack.packb(wire, use_single_float=True)
    assert math.isclose(decode_request(data).sent_at, 1700000000.5, rel_tol=1e-6)


# ---------------------------------------------------------------- peek_request_id


def test_peek_request_id() -> None:
    assert peek_request_id(encode_request(request({"x": np.zeros(1)}))) == "r-1"
    assert peek_request_id(msgpack.packb({"id": "abc", "tensors": "garbage"})) == "abc"
    assert peek_request_id(msgpack.packb({"id": ""})) is None
    assert peek_request_id(msgpack.packb({"id": 5})) is None
    assert peek_request_id(msgpack.packb([1])) is None
    assert peek_request_id(b"\xc1") is None
    assert peek_request_id(msgpack.packb({"id": "abc"}), max_bytes=3) is None


def test_decode_errors_are_protocol_errors_from_the_public_package() -> None:
    with pytest.raises(protocol.ProtocolError) as info:
        decode_request(b"")
    assert isinstance(info.value, protocol.EdgecutError)
    assert info.value.code == ErrorCode.BAD_REQUEST
    assert ProtocolError is protocol.errors.ProtocolError

"""fp16 and int8 as docs/protocol.md (3.2.1) states them: each encoding rule, the decoder's checks, the tolerances."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto, helper

from protocol import encode_tensor
from tests.protocol._support import bad_request, decode, round_trip, scales

ONE = np.float32(1).tobytes()


def _params(array: npt.NDArray[Any], codec: str = "int8") -> tuple[list[float], list[int]]:
    params = encode_tensor(array, codec)["params"]
    return np.frombuffer(params["scale"], "<f4").tolist(), np.frombuffer(params["zero_point"], np.int8).tolist()


def _quantised(array: npt.NDArray[Any], codec: str = "int8") -> list[int]:
    return np.frombuffer(encode_tensor(array, codec)["data"], np.int8).tolist()


# --- int8: encoding ----------------------------------------------------------


def test_the_scale_is_computed_in_float64_so_the_widest_range_encodes() -> None:
    array = np.array([-3e38, 3e38, 1.0], np.float32)
    (scale,), (zero_point,) = _params(array)
    assert scale == np.float32((np.float64(array[1]) - np.float64(array[0])) / 255)  # float32 arithmetic: inf
    assert zero_point == 0
    decoded, _ = round_trip(array, "int8")
    assert (np.abs(decoded.astype(np.float64) - array) <= 0.5001 * scale).all()


@pytest.mark.parametrize(
    "array",
    [np.zeros(4, np.float32), np.zeros(0, np.float32), np.array([0, 1e-44, -1e-40], np.float32)],
    ids=["zeros", "empty", "under 255 * 2**-126"],
)
def test_a_scale_below_the_smallest_normal_float32_is_1(array: npt.NDArray[np.float32]) -> None:
    assert _params(array) == ([1.0], [-128])
    decoded, _ = round_trip(array, "int8")
    assert not decoded.any()


def test_a_narrow_range_above_it_keeps_its_scale() -> None:
    array = np.array([0, 1e-30], np.float32)
    assert _params(array)[0] == [np.float32(np.float64(array[1]) / 255)]
    assert _quantised(array) == [-128, 127]


def test_a_constant_tensor_decodes_as_itself() -> None:
    for value, zero_point, q in [(7.0, -128, 127), (-7.0, 127, -128)]:
        array = np.full(4, value, np.float32)
        assert _params(array) == ([np.float32(7.0 / 255)], [zero_point])
        assert _quantised(array) == [q] * 4
        np.testing.assert_allclose(round_trip(array, "int8")[0], array, rtol=2**-23)


BOUND = 2.0**100  # far from float32's edge, where a range's end may decode as +-inf
SHAPES = hnp.array_shapes(min_dims=1, max_dims=4, max_side=6)
FLOAT32 = hnp.arrays(np.float32, SHAPES, elements=st.floats(-BOUND, BOUND, width=32))
FLOATS = st.one_of(FLOAT32, hnp.arrays(np.float64, SHAPES, elements=st.floats(-BOUND, BOUND)))


@given(FLOAT32)
@settings(max_examples=200, deadline=None)
def test_min_quantises_to_minus_128_and_zero_to_the_zero_point(array: npt.NDArray[np.float32]) -> None:
    (_, (zero_point,)), quantised = _params(array), np.array(_quantised(array))
    if array.min() < 0:
        assert quantised[array.reshape(-1) == array.min()].tolist() == [-128] * int((array == array.min()).sum())
    assert (quantised[array.reshape(-1) == 0] == zero_point).all()


def test_ties_round_half_to_even() -> None:
    array = np.array([0, 0.5, 1.5, 2.5, 3.5, 254.5, 255], np.float32)  # scale 1, zero point -128
    assert _params(array) == ([1.0], [-128])
    assert _quantised(array) == [-128, -128, -126, -126, -124, 126, 127]


def test_nan_encodes_as_the_zero_point_and_infinities_as_the_ends_of_the_range() -> None:
    array = np.array([np.nan, np.inf, -np.inf, -1.0, 3.0], np.float32)
    (scale,), (zero_point,) = _params(array)
    assert scale == np.float32(4 / 255)
    assert _quantised(array)[:3] == [zero_point, 127, -128]
    decoded, _ = round_trip(array, "int8")
    assert decoded[0] == 0
    np.testing.assert_allclose(decoded[1:3], [3.0, -1.0], atol=scale / 2)


def test_a_float64_tensor_is_rounded_to_float32_first() -> None:
    array = np.array([1e300, -2.0, 1 / 3, 0.1, 1.0 + 2**-30])
    as_float32 = np.array([np.inf, -2.0, 1 / 3, 0.1, 1.0], np.float32)
    assert encode_tensor(array, "int8") == encode_tensor(as_float32, "int8") | {"dtype": "float64"}
    assert _quantised(array)[0] == 127  # beyond float32: +inf, saturated


def _quantize_linear(axis: int | None) -> onnxruntime.InferenceSession:
    """ONNX QuantizeLinear (opset 19) in ONNX Runtime: ``x``, ``scale``, ``zero_point`` in, int8 out."""
    names = [("x", TensorProto.FLOAT), ("scale", TensorProto.FLOAT), ("zero_point", TensorProto.INT8)]
    inputs = [helper.make_tensor_value_info(name, kind, None) for name, kind in names]
    output = helper.make_tensor_value_info("q", TensorProto.INT8, None)
    node = helper.make_node(
        "QuantizeLinear", [name for name, _ in names], ["q"], **({} if axis is None else {"axis": axis})
    )
    model = helper.make_model(
        helper.make_graph([node], "q", inputs, [output]), opset_imports=[helper.make_opsetid("", 19)]
    )
    model.ir_version = 9
    return onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("codec", ["int8", "int8-channel"])
def test_the_elements_are_quantised_as_onnx_quantize_linear_does(codec: str) -> None:
    rng = np.random.default_rng(6)
    per_channel = codec == "int8-channel"
    session = _quantize_linear(1 if per_channel else None)
    for _ in range(50):
        array = (rng.normal(size=(2, 3, 40)) * rng.uniform(1e-3, 1e3)).astype(np.float32)
        payload = encode_tensor(array, codec)
        scale = np.frombuffer(payload["params"]["scale"], "<f4")
        zero_point = np.frombuffer(payload["params"]["zero_point"], np.int8)
        if not per_channel:
            scale, zero_point = scale.reshape(()), zero_point.reshape(())
        (expected,) = session.run(None, {"x": array, "scale": scale, "zero_point": zero_point})
        assert bytes(payload["data"]) == expected.tobytes()


@pytest.mark.parametrize(
    ("shape", "axis"),
    [((1, 2, 16), 1), ((3, 4, 4, 4), 1), ((16, 8), 1), ((1, 2, 15), None), ((64,), None), ((2, 0, 16), None)],
)
def test_int8_channel_quantises_along_axis_1_where_each_channel_holds_16_values(
    shape: tuple[int, ...], axis: int | None
) -> None:
    params = encode_tensor(np.ones(shape, np.float32), "int8-channel")["params"]
    assert list(params) == ["scale", "zero_point", "axis"] if axis is not None else ["scale", "zero_point"]
    assert params.get("axis") == axis
    assert len(params["scale"]) == 4 * (shape[1] if axis is not None else 1)


def test_int8_writes_one_scale_whatever_the_shape() -> None:
    assert list(encode_tensor(np.ones((1, 4, 16), np.float32), "int8")["params"]) == ["scale", "zero_point"]


@given(
    FLOATS,
    st.sampled_from(["int8", "int8-channel", "int8+zstd", "int8-channel+lz4"]),
)
@settings(max_examples=300, deadline=None)
def test_int8_stays_within_the_stated_tolerance(array: npt.NDArray[np.floating[Any]], codec: str) -> None:
    decoded, size = round_trip(array, codec)
    assert decoded.dtype == array.dtype
    assert decoded.shape == array.shape
    if "+" not in codec:
        assert size == array.size
    scale = scales(encode_tensor(array, codec)["params"], array.ndim).astype(np.float64)
    error = np.abs(decoded.astype(np.float64) - array)
    assert (error <= 0.5001 * scale + 2**-22 * np.abs(array)).all()  # docs/protocol.md: half a step
    assert (decoded[array == 0] == 0).all()  # zero is exact: ReLU zeros stay zeros


# --- int8: decoding ----------------------------------------------------------


def test_decoding_is_float32_arithmetic_widened_to_the_dtype() -> None:
    q = np.array([-128, -1, 0, 77, 127], np.int8)
    scale = np.float32(0.1)
    params = {"scale": scale.tobytes(), "zero_point": np.int8(-3).tobytes()}
    expected = (q.astype(np.float32) + np.float32(3)) * scale
    assert decode("int8", q.tobytes(), "float64", [5], params).tolist() == expected.astype(np.float64).tolist()


def test_a_product_beyond_float32_decodes_as_infinity() -> None:
    params = {"scale": np.float32(3e38).tobytes(), "zero_point": b"\x00"}
    assert decode("int8", bytes([127, 0x81]), "float32", [2], params).tolist() == [np.inf, -np.inf]


def test_either_int8_name_decodes_per_channel_params() -> None:
    channels = np.stack([np.arange(16), np.arange(16) * -3]).astype(np.float32)[np.newaxis]
    payload = encode_tensor(channels, "int8-channel")
    data, params = bytes(payload["data"]), payload["params"]
    assert params["axis"] == 1
    by_int8 = decode("int8", data, "float32", [1, 2, 16], params)
    assert np.array_equal(by_int8, decode("int8-channel", data, "float32", [1, 2, 16], params))


def test_a_subnormal_scale_is_accepted() -> None:
    params = {"scale": np.float32(1e-40).tobytes(), "zero_point": b"\x00"}
    assert decode("int8", b"\x02", "float32", [1], params).tolist() == [np.float32(2) * np.float32(1e-40)]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({}, "params.scale must be 4 bytes"),
        ({"scale": [1.0], "zero_point": b"\x00"}, "params.scale must be 4 bytes"),
        ({"scale": np.float32(0).tobytes(), "zero_point": b"\x00"}, "finite and positive"),
        ({"scale": np.float32(-0.0).tobytes(), "zero_point": b"\x00"}, "finite and positive"),
        ({"scale": np.float32(-1).tobytes(), "zero_point": b"\x00"}, "finite and positive"),
        ({"scale": np.float32(np.inf).tobytes(), "zero_point": b"\x00"}, "finite and positive"),
        ({"scale": np.float32(np.nan).tobytes(), "zero_point": b"\x00"}, "finite and positive"),
        ({"scale": ONE, "zero_point": 0}, "params.zero_point must be 1 bytes"),
        ({"scale": ONE * 2, "zero_point": b"\x00\x00"}, "params.scale must be 4 bytes"),
        ({"scale": ONE, "zero_point": b"\x00", "axis": 5}, "must be an axis"),
        ({"scale": ONE, "zero_point": b"\x00", "axis": -1}, "must be an axis"),
        ({"scale": ONE, "zero_point": b"\x00", "axis": True}, "must be an axis"),
        ({"scale": ONE, "zero_point": b"\x00", "axis": 1.0}, "must be an axis"),
        ({"scale": ONE, "zero_point": b"\x00", "axis": 1}, "params.scale must be 16 bytes"),
    ],
)
def test_int8_params_are_checked(params: dict[str, object], words: str) -> None:
    assert words in bad_request("int8", bytes(8), "float32", [2, 4], params)


def test_int8_data_must_fit_the_shape() -> None:
    params = {"scale": ONE, "zero_point": b"\x00"}
    assert "needs 8" in bad_request("int8", bytes(7), "float32", [2, 4], params)


# --- fp16 ----------------------------------------------------------------------


def _halves(array: npt.NDArray[Any]) -> list[int]:
    return np.frombuffer(encode_tensor(array, "fp16")["data"], "<u2").tolist()


def test_fp16_rounds_to_the_nearest_half_float_ties_to_even() -> None:
    array = np.array([1 + 2**-11, 1 + 3 * 2**-11, 2**-25, 3 * 2**-26, -(2**-24)], np.float32)
    assert _halves(array) == [0x3C00, 0x3C02, 0x0000, 0x0001, 0x8001]


def test_fp16_rounds_a_float64_once() -> None:
    array = np.array([1 + 2**-11 + 2**-40])  # via float32 this would be a tie, rounded down to 1
    assert _halves(array) == [0x3C01]


def test_fp16_saturates_at_65504_and_keeps_nan() -> None:
    array = np.array([np.inf, -np.inf, 65519.0, 65520.0, -1e6, np.nan], np.float32)
    assert _halves(array)[:5] == [0x7BFF, 0xFBFF, 0x7BFF, 0x7BFF, 0xFBFF]
    decoded, size = round_trip(array, "fp16")
    assert size == 2 * array.size
    assert np.isnan(decoded[5])


def test_fp16_decodes_every_half_float_exactly() -> None:
    every = np.arange(2**16, dtype=np.uint16)
    for dtype in ("float32", "float64"):
        decoded = decode("fp16", every.astype("<u2").tobytes(), dtype, [2**16], {})
        expected = every.view(np.float16).astype(dtype)
        assert np.array_equal(decoded, expected, equal_nan=True)


@given(FLOATS.map(lambda array: np.clip(array, -65504, 65504)))
@settings(max_examples=200, deadline=None)
def test_fp16_stays_within_the_stated_tolerance(array: npt.NDArray[np.floating[Any]]) -> None:
    decoded, _ = round_trip(array, "fp16")
    assert decoded.dtype == array.dtype
    error = np.abs(decoded.astype(np.float64) - array)
    assert (error <= 2**-11 * np.abs(array) + 2**-25).all()  # docs/protocol.md: the nearest half float


def test_fp16_data_must_be_two_bytes_per_element() -> None:
    assert "needs 8" in bad_request("fp16", bytes(7), "float32", [4], {})

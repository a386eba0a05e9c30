"""Tensor specs: what fits, what does not, and one value per symbolic dimension; the dtype table."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from models import Session, TensorSpec, tensors_mismatch
from protocol import ALLOWED_DTYPES, ONNX_ELEMENT_TYPES, ONNX_TYPE_NAMES

IMAGE = TensorSpec(name="image", dtype="uint8", shape=("N", 4, 4, 3))
MASK = TensorSpec(name="mask", dtype="bool", shape=("N", 4))


@pytest.mark.parametrize("batch", [0, 1, 7])
def test_a_symbolic_dimension_takes_any_size(batch: int) -> None:
    assert IMAGE.mismatch(np.zeros((batch, 4, 4, 3), np.uint8)) is None


@pytest.mark.parametrize(
    ("array", "why"),
    [
        (np.zeros((1, 4, 4, 3), np.float32), "is float32[1, 4, 4, 3], expected uint8['N', 4, 4, 3]"),
        (np.zeros((1, 4, 5, 3), np.uint8), "is uint8[1, 4, 5, 3], expected uint8['N', 4, 4, 3]"),
        (np.zeros((4, 4, 3), np.uint8), "is uint8[4, 4, 3], expected uint8['N', 4, 4, 3]"),
    ],
    ids=["dtype", "a fixed dim", "rank"],
)
def test_a_mismatch_says_what_was_got_and_expected(array: np.ndarray, why: str) -> None:
    assert IMAGE.mismatch(array) == why


def test_bound_symbols_hold_across_tensors() -> None:
    symbols: dict[str, int] = {}
    assert IMAGE.mismatch(np.zeros((2, 4, 4, 3), np.uint8), symbols) is None
    assert symbols == {"N": 2}
    assert MASK.mismatch(np.zeros((2, 4), bool), symbols) is None
    assert MASK.mismatch(np.zeros((3, 4), bool), symbols) == "is bool[3, 4], expected bool['N', 4]"


def test_tensors_mismatch_checks_names_then_each_tensor() -> None:
    specs = (IMAGE, MASK)
    good = {"image": np.zeros((2, 4, 4, 3), np.uint8), "mask": np.zeros((2, 4), bool)}
    assert tensors_mismatch(specs, good) is None
    assert tensors_mismatch(specs, {"image": good["image"]}) == "takes tensors ['image', 'mask'], got ['image']"
    uneven = good | {"mask": np.zeros((1, 4), bool)}
    assert tensors_mismatch(specs, uneven) == "tensor 'mask' is bool[1, 4], expected bool['N', 4]"
    assert (
        tensors_mismatch(specs, good, {"N": 5}) == "tensor 'image' is uint8[2, 4, 4, 3], expected uint8['N', 4, 4, 3]"
    )


@pytest.mark.parametrize("dtype", ALLOWED_DTYPES)
def test_the_protocols_dtype_table_agrees_with_onnx_and_onnx_runtime(dtype: str) -> None:
    (onnx_type,) = [key for key, name in ONNX_ELEMENT_TYPES.items() if name == dtype]
    assert helper.tensor_dtype_to_np_dtype(onnx_type) == np.dtype(dtype)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", onnx_type, [1])],
        [helper.make_tensor_value_info("y", onnx_type, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = Session(model.SerializeToString())
    assert session.inputs[0].dtype == dtype  # through ONNX_TYPE_NAMES
    assert sorted(ONNX_TYPE_NAMES.values()) == sorted(ALLOWED_DTYPES)
    assert onnx.TensorProto.DataType.Name(onnx_type).lower() in {dtype, "float", "double"}

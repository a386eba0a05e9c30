"""KServe v2 JSON tensors in and out, without a server: nested and flat data, datatypes, output selection."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from edge_agent import InferenceResult, Timings
from edge_agent._kserve import InferRequest, KServeError, decode_infer_request, infer_response, tensor_metadata
from models import TensorSpec

SPECS = (TensorSpec("tokens", "int64", ("N", 4)), TensorSpec("mask", "bool", ("N", 4)))


def _body(**tensors: tuple[list[int], str, object]) -> bytes:
    inputs = [
        {"name": name, "shape": shape, "datatype": kind, "data": data} for name, (shape, kind, data) in tensors.items()
    ]
    return json.dumps({"id": 7, "inputs": inputs}).encode()


def test_nested_and_flat_data_decode_to_the_same_arrays() -> None:
    nested = _body(tokens=([1, 4], "INT64", [[1, 2, 3, 4]]), mask=([1, 4], "BOOL", [[True, False, True, True]]))
    flat = _body(tokens=([1, 4], "INT64", [1, 2, 3, 4]), mask=([1, 4], "BOOL", [True, False, True, True]))
    for body in (nested, flat):
        request = decode_infer_request(body, SPECS)
        assert request.id == "7"
        np.testing.assert_array_equal(request.inputs["tokens"], np.array([[1, 2, 3, 4]], dtype=np.int64))
        assert request.inputs["mask"].dtype == np.bool_


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_body(tokens=([1, 4], "INT64", [1, 2, 3, 4])), "missing input(s) 'mask'"),
        (_body(tokens=([1, 4], "INT64", [[1, 2], [3]]), mask=([1, 4], "BOOL", [1] * 4)), "evenly nested"),
        (_body(tokens=([1, 4], "INT64", ["a"] * 4), mask=([1, 4], "BOOL", [True] * 4)), "not INT64 numbers"),
        (_body(tokens=([1, -4], "INT64", [1] * 4), mask=([1, 4], "BOOL", [True] * 4)), "must be a list of sizes"),
        (
            _body(tokens=([1, 4], "INT64", [1] * 4), mask=([1, 4], "BOOL", [True] * 4)).replace(
                b"}]}", b'}], "outputs": 1}'
            ),
            "outputs must be a list",
        ),
        (b"[1, 2]", 'an object with "inputs"'),
        (b"\xff", "not JSON"),
    ],
)
def test_malformed_tensors_are_400s_that_say_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(KServeError, match=re.escape(message)) as caught:
        decode_infer_request(body, SPECS)
    assert caught.value.status == 400


def test_the_answer_carries_the_outputs_asked_for_and_what_the_split_did() -> None:
    outputs = {"logits": np.arange(6, dtype=np.float32).reshape(1, 6), "features": np.zeros((1, 2), np.float16)}
    result = InferenceResult(outputs=outputs, cut_id="stem.out", timings=Timings(edge_ms=1.0, total_ms=2.0))
    answer = infer_response("m", "v1", InferRequest({}, "9", ("logits",)), result)
    assert answer["outputs"] == [{"name": "logits", "shape": [1, 6], "datatype": "FP32", "data": [0, 1, 2, 3, 4, 5]}]
    assert (answer["id"], answer["parameters"]["cut"], answer["parameters"]["timings_ms"]["total_ms"]) == (
        "9",
        "stem.out",
        2.0,
    )
    every = infer_response("m", "v1", InferRequest({}), result)
    assert [output["datatype"] for output in every["outputs"]] == ["FP32", "FP16"]
    with pytest.raises(KServeError, match="no output"):
        infer_response("m", "v1", InferRequest({}, "", ("probabilities",)), result)


def test_metadata_shows_free_sizes_as_minus_one() -> None:
    assert tensor_metadata(SPECS[0]) == {"name": "tokens", "datatype": "INT64", "shape": [-1, 4]}

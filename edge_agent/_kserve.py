"""The KServe v2 inference protocol's JSON form, as the agent service speaks it (no I/O).

A request names each input's ``name``, ``shape``, ``datatype`` and ``data``
(flat in row-major order, or nested)::

    {"id": "42", "inputs": [{"name": "image", "shape": [1, 32, 32, 3], "datatype": "UINT8", "data": [...]}]}

and may list the ``outputs`` it wants by name. The answer carries the
outputs the same way, and in ``parameters`` what the split did: the cut,
why, the timing breakdown in ms, and the fallback if the tail ran here. Every
mistake in a request is a :class:`KServeError` with the HTTP status and a
message the caller can act on; the API answers it as ``{"error": "..."}``.
"""

from __future__ import annotations

import dataclasses
import http
import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from edge_agent._results import InferenceResult
    from models import TensorSpec

DATATYPES = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
}
"""KServe v2 datatypes by name, as numpy dtype names (``BYTES`` is not taken: no model here has strings)."""
_DATATYPE_OF = {dtype: name for name, dtype in DATATYPES.items()}


class KServeError(Exception):
    """A request the API refuses: its HTTP status and why.

    Args:
        status: 400 for a malformed request, 404 for an unknown model, 503 while it cannot serve.
        message: What is wrong, for the caller.
    """

    def __init__(self, status: http.HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def _bad(message: str) -> KServeError:
    return KServeError(http.HTTPStatus.BAD_REQUEST, message)


@dataclasses.dataclass(frozen=True, slots=True)
class InferRequest:
    """A decoded infer request.

    Attributes:
        inputs: The arrays by input name.
        id: The caller's request id, echoed in the answer (``""`` if none).
        outputs: The outputs asked for by name (empty: all).
    """

    inputs: dict[str, np.ndarray]
    id: str = ""
    outputs: tuple[str, ...] = ()


def datatype(dtype: str) -> str:
    """The KServe datatype of a numpy dtype name (``"float32"`` -> ``"FP32"``)."""
    return _DATATYPE_OF.get(dtype, dtype.upper())


def tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    """A tensor as model metadata lists it: symbolic dimensions are ``-1``."""
    shape = [size if isinstance(size, int) else -1 for size in spec.shape]
    return {"name": spec.name, "datatype": datatype(spec.dtype), "shape": shape}


def decode_infer_request(body: bytes, specs: Sequence[TensorSpec]) -> InferRequest:
    """Decode a JSON infer request for a model with the inputs ``specs``.

    Raises:
        KServeError: 400, naming what is wrong: not JSON, a missing or
            unknown input, a datatype other than the input's, a shape whose
            size is not the data's.
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"the body is not JSON: {exc}"
        raise _bad(msg) from exc
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list):
        msg = 'the body must be an object with "inputs": a list of tensors'
        raise _bad(msg)
    by_name = {spec.name: spec for spec in specs}
    inputs = {}
    for index, tensor in enumerate(document["inputs"]):
        name, array = _tensor(tensor, f"inputs[{index}]", by_name)
        inputs[name] = array
    missing = [name for name in by_name if name not in inputs]
    if missing:
        msg = f"missing input(s) {', '.join(map(repr, missing))}"
        raise _bad(msg)
    return InferRequest(inputs, str(document.get("id", "")), _wanted(document.get("outputs", [])))


def _tensor(tensor: object, where: str, specs: Mapping[str, TensorSpec]) -> tuple[str, np.ndarray]:
    if not isinstance(tensor, dict):
        msg = f"{where} must be an object with name, shape, datatype and data"
        raise _bad(msg)
    name, shape, kind, data = (tensor.get(key) for key in ("name", "shape", "datatype", "data"))
    spec = specs.get(name) if isinstance(name, str) else None
    if spec is None:
        msg = f"{where}.name: {name!r} is not an input of this model; its inputs: {', '.join(specs)}"
        raise _bad(msg)
    if kind != datatype(spec.dtype):
        msg = f"{where}.datatype: input {name!r} takes {datatype(spec.dtype)}, not {kind!r}"
        raise _bad(msg)
    if not isinstance(shape, list) or not all(isinstance(size, int) and size >= 0 for size in shape):
        msg = f"{where}.shape must be a list of sizes, not {shape!r}"
        raise _bad(msg)
    try:
        array = np.asarray(data, dtype=spec.dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        msg = f"{where}.data: not {kind} numbers in a flat or evenly nested list: {exc}"
        raise _bad(msg) from exc
    if array.size != math.prod(shape):
        msg = f"{where}: shape {shape} holds {math.prod(shape)} values, data has {array.size}"
        raise _bad(msg)
    return spec.name, array.reshape(shape)


def _wanted(outputs: object) -> tuple[str, ...]:
    names = [item.get("name") for item in outputs if isinstance(item, dict)] if isinstance(outputs, list) else None
    if names is None or not all(isinstance(name, str) for name in names):
        msg = 'outputs must be a list of {"name": ...} objects'
        raise _bad(msg)
    return tuple(names)  # type: ignore[arg-type]  # all str, checked


def infer_response(model: str, version: str, request: InferRequest, result: InferenceResult) -> dict[str, Any]:
    """The JSON answer to ``request``: the outputs asked for, and what the split did.

    Raises:
        KServeError: 400 when an output asked for is not one of the model's.
    """
    unknown = [name for name in request.outputs if name not in result.outputs]
    if unknown:
        msg = f"no output(s) {', '.join(map(repr, unknown))}; this model's: {', '.join(result.outputs)}"
        raise _bad(msg)
    names = request.outputs or tuple(result.outputs)
    return {
        "model_name": model,
        "model_version": version,
        "id": request.id,
        "outputs": [_output(name, result.outputs[name]) for name in names],
        "parameters": result_parameters(result),
    }


def result_parameters(result: InferenceResult) -> dict[str, Any]:
    """What the split did for one result: cut, reason, prediction, codec, timings in ms, bytes sent, hub, fallback.

    The planner's predicted ms and joules are ``null`` where it made none (a
    fixed cut, no energy model): JSON has no NaN.
    """
    return {
        "cut": result.cut_id,
        "reason": result.reason,
        "predicted_ms": None if math.isnan(result.predicted_ms) else result.predicted_ms,
        "predicted_j": None if math.isnan(result.predicted_j) else result.predicted_j,
        "codec": result.codec,
        "timings_ms": dataclasses.asdict(result.timings),
        "bytes_sent": result.bytes_sent,
        "bytes_received": result.bytes_received,
        "hub": result.hub_id,
        "fallback": result.fallback,
    }


def _output(name: str, array: np.ndarray) -> dict[str, Any]:
    return {
        "name": name,
        "shape": list(array.shape),
        "datatype": datatype(array.dtype.name),
        "data": array.reshape(-1).tolist(),
    }

"""The bytes a model's tensors take at concrete input shapes (``models._input_shapes``).

With the inputs' shapes known, ONNX shape inference gives every tensor's
size but those that depend on the input's values (the boxes left after a
score threshold): those are measured by running the model once on a random
input of the same shapes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import onnx

from models._graph import initializer_names, tensor_spec
from models._input_shapes import resolve_input_shapes
from models._runtime import Session
from protocol import ONNX_ELEMENT_TYPES
from protocol.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

    from models._input_shapes import InputShapes
    from models._manifest import TensorSpec


def input_shapes(model: onnx.ModelProto, stated: InputShapes | None = None) -> dict[str, tuple[int, ...]]:
    """The concrete shape of each of ``model``'s inputs: :func:`resolve_input_shapes` on its declared inputs.

    Raises:
        ModelError: As :func:`resolve_input_shapes`, or an input's type is not a tensor the wire carries.
    """
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    return resolve_input_shapes(input_specs(model), stated, metadata)


def input_specs(model: onnx.ModelProto) -> list[TensorSpec]:
    """``model``'s inputs as declared (initializers listed as inputs left out).

    Raises:
        ModelError: An input's type is not a tensor the wire carries.
    """
    weights = initializer_names(model.graph)
    return [tensor_spec(vi.name, vi.type) for vi in model.graph.input if vi.name not in weights]


def with_input_shapes(model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]]) -> onnx.ModelProto:
    """A copy of ``model`` whose inputs have ``shapes``, with every tensor's shape inferred from them.

    Shapes inferred before (``value_info``, outputs) are dropped first, so a
    size the exporter left symbolic is not kept where the new shapes decide it.

    Raises:
        ModelError: Shape inference fails at these shapes (for example, two
            sizes a ``Concat`` joins differ).
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    del copy.graph.value_info[:]
    for output in copy.graph.output:
        output.type.tensor_type.ClearField("shape")
    for vi in copy.graph.input:
        if vi.name in shapes:
            vi.type.tensor_type.ClearField("shape")
            dims = vi.type.tensor_type.shape.dim
            vi.type.tensor_type.shape.SetInParent()
            for size in shapes[vi.name]:
                dims.add().dim_value = size
    try:
        return onnx.shape_inference.infer_shapes(copy, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, ValueError) as exc:
        stated = ", ".join(f"{name}={'x'.join(map(str, dims))}" for name, dims in shapes.items())
        msg = f"the model cannot take inputs of shapes {stated}: {exc}"
        raise ModelError(msg) from exc


def tensor_bytes(
    model: onnx.ModelProto, names: Collection[str], shapes: Mapping[str, Sequence[int]], feeds: Mapping[str, np.ndarray]
) -> tuple[dict[str, int], frozenset[str]]:
    """The bytes each of ``names`` takes when ``model`` runs on inputs of ``shapes``.

    Args:
        model: The model (its own dynamic shapes; it is not modified).
        names: Tensors of its main graph.
        shapes: A concrete shape per input, as :func:`resolve_input_shapes` gives.
        feeds: An input of those shapes, run once to measure the sizes that
            depend on the input's values (and only if some do).

    Returns:
        Bytes by tensor name, and the names whose size was measured on ``feeds``.
    """
    concrete = with_input_shapes(model, shapes)
    types = {vi.name: vi.type for vi in [*concrete.graph.value_info, *concrete.graph.input, *concrete.graph.output]}
    sizes: dict[str, int] = {}
    measured: list[str] = []
    for name in names:
        size = _static_bytes(types.get(name))
        if size is None:
            measured.append(name)
        else:
            sizes[name] = size
    if measured:
        sizes.update(_measured_bytes(model, measured, feeds))
    return sizes, frozenset(measured)


def _static_bytes(type_proto: onnx.TypeProto | None) -> int | None:
    if type_proto is None or not type_proto.tensor_type.HasField("shape"):
        return None
    dims = type_proto.tensor_type.shape.dim
    if not all(dim.HasField("dim_value") for dim in dims):
        return None
    dtype = ONNX_ELEMENT_TYPES.get(type_proto.tensor_type.elem_type)
    return None if dtype is None else math.prod(dim.dim_value for dim in dims) * np.dtype(dtype).itemsize


def _measured_bytes(model: onnx.ModelProto, names: Sequence[str], feeds: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Run ``model`` once with ``names`` as extra outputs; their sizes in bytes."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    outputs = {vi.name for vi in probe.graph.output}
    hidden = [name for name in names if name not in outputs and name not in initializer_names(probe.graph)]
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in hidden)
    session = Session(probe.SerializeToString())
    wanted = {spec.name for spec in session.inputs}
    try:
        results = session.run({name: value for name, value in feeds.items() if name in wanted})
    except Exception as exc:
        msg = f"running the model once to measure its data-dependent sizes failed: {exc}"
        raise ModelError(msg) from exc
    return {name: int(results[name].nbytes) for name in names}

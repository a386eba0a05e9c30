"""What a user runs first on their own model: ``edgecut models info FILE``.

Inputs and outputs, sizes (the file, its external data, the parameters),
opsets and producer, quantisation (QDQ pairs or QLinear operators), and how
it can be cut: the number of cuts, the candidates ``cut="auto"`` would
choose between, the single-tensor cuts that send the fewest bytes, and the
int8 cuts (where a QuantizeLinear output crosses: int8 on the wire for free).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from models._cuts import candidate_cuts, enumerate_cuts
from models._load import _external_tensors, load_model_file, model_file_sha256
from models._manifest import CLOUD_ONLY, EDGE_ONLY, TensorSpec
from models._shapes import input_shapes as resolved_shapes

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from models._cuts import Cut
    from models._input_shapes import InputShapes

_BEST = 5
_QDQ = frozenset({"QuantizeLinear", "DequantizeLinear"})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ModelInfo:
    """A model file described (see the module docstring)."""

    path: str
    sha256: str
    producer: str
    opsets: dict[str, int]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    input_shapes: dict[str, tuple[int, ...]]
    file_bytes: int
    external_files: tuple[str, ...]
    external_bytes: int
    parameters: int
    nodes: int
    operators: dict[str, int]
    quantisation: str
    cuts: int
    candidates: tuple[Cut, ...]
    smallest: tuple[Cut, ...]
    int8_cuts: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The description as JSON."""
        data = dataclasses.asdict(self)
        data["inputs"] = [spec.to_json() for spec in self.inputs]
        data["outputs"] = [spec.to_json() for spec in self.outputs]
        data["candidates"] = [cut.to_json() for cut in self.candidates]
        data["smallest"] = [cut.to_json() for cut in self.smallest]
        return data


def describe(path: Path, input_shapes: InputShapes | None = None) -> ModelInfo:
    """Describe the model in ``path`` (external data and links handled as :func:`load_model_file` does).

    Args:
        path: The ``.onnx`` file.
        input_shapes: The shapes to count the cuts' bytes at, for inputs with
            dynamic sizes (see ``models.partition.input_shapes``).

    Raises:
        ModelError: The file cannot be loaded, or an input's size is known
            from nowhere (the message names it and how to state it).
    """
    model = load_model_file(path)
    shallow = onnx.load_model_from_string(path.read_bytes())  # the file as stored: which tensors live beside it
    external = sorted({_location(tensor) for tensor in _external_tensors(shallow)})
    external_bytes = sum((path.parent / name).stat().st_size for name in external)
    operators = Counter(node.op_type for node in _all_nodes(model.graph))
    cuts = enumerate_cuts(model, input_shapes)
    inner = [cut for cut in cuts if cut.id not in {CLOUD_ONLY, EDGE_ONLY}]
    int8 = int8_cuts(model, inner)
    return ModelInfo(
        path=str(path),
        sha256=model_file_sha256(path),
        producer=" ".join(part for part in (model.producer_name, model.producer_version) if part),
        opsets={opset.domain or "ai.onnx": opset.version for opset in model.opset_import},
        inputs=cuts[0].tensors,
        outputs=cuts[-1].tensors,
        input_shapes=resolved_shapes(model, input_shapes),
        file_bytes=path.stat().st_size,
        external_files=tuple(external),
        external_bytes=external_bytes,
        parameters=sum(int(np.prod(tensor.dims)) for tensor in model.graph.initializer),
        nodes=sum(operators.values()),
        operators=dict(operators.most_common()),
        quantisation=_quantisation(operators),
        cuts=len(cuts),
        candidates=tuple(candidate_cuts(cuts)),
        smallest=tuple(sorted((cut for cut in inner if cut.single_tensor), key=lambda cut: cut.bytes)[:_BEST]),
        int8_cuts=tuple(cut.id for cut in inner if cut.id in int8),
    )


def int8_cuts(model: onnx.ModelProto, cuts: Sequence[Cut]) -> set[str]:
    """The cuts where only QuantizeLinear outputs cross: int8 on the wire, with no codec and no loss."""
    quantised = _quantised_tensors(model)
    return {cut.id for cut in cuts if cut.tensors and all(spec.name in quantised for spec in cut.tensors)}


def _location(tensor: onnx.TensorProto) -> str:
    return str(next(entry.value for entry in tensor.external_data if entry.key == "location"))


def _all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    nodes = list(graph.node)
    for node in graph.node:
        for attribute in node.attribute:
            for sub in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                nodes += _all_nodes(sub)
    return nodes


def _quantised_tensors(model: onnx.ModelProto) -> set[str]:
    """Tensors a QuantizeLinear writes: what an int8 cut sends."""
    return {node.output[0] for node in model.graph.node if node.op_type == "QuantizeLinear"}


def _quantisation(operators: Counter[str]) -> str:
    qdq = sum(operators[op] for op in _QDQ)
    qlinear = sum(
        count for op, count in operators.items() if op.startswith(("QLinear", "ConvInteger", "MatMulInteger"))
    )
    if qlinear:
        return f"integer operators ({qlinear} QLinear/Integer nodes)"
    if qdq:
        return f"QDQ ({operators['QuantizeLinear']} QuantizeLinear, {operators['DequantizeLinear']} DequantizeLinear)"
    return "none (float)"

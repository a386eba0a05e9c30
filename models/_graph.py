"""Dependency analysis of an ONNX graph: the ground work of partitioning.

Nodes that compute only from weights (``Constant`` nodes, and nodes whose every
input is an initializer or such a node's output, such as an ``Identity`` on a
weight) are *constant*: they stay out of the cut ordering and are recomputed on
whichever side needs them. A node with subgraphs (``If``, ``Loop``, ``Scan``)
depends on the outer-scope tensors its bodies read, as if they were inputs.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import defaultdict
from typing import TYPE_CHECKING

import onnx

from models._manifest import TensorSpec
from protocol import ALLOWED_DTYPES, ONNX_ELEMENT_TYPES
from protocol.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

# Recomputing these on both sides would give each side different values.
_NONDETERMINISTIC = frozenset(
    {
        "Bernoulli",
        "Multinomial",
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
    }
)


@dataclasses.dataclass(frozen=True)
class Graph:
    """A model's main graph in topological order, with what cuts need.

    Attributes:
        model: The model analysed: the caller's, or a copy with inferred
            shapes when some node output had no shape information.
        nodes: Every node of the main graph, topologically sorted.
        deps: Per node, the tensors it reads: its inputs and the outer-scope
            names its subgraphs read, without duplicates or empty names.
        rank: Per node, its position among the non-constant nodes, or -1 for
            a constant node.
        compute: Indexes into ``nodes`` of the non-constant nodes, in order.
        producer: Tensor name to the index of the node that produces it.
        inputs: Names of the graph inputs that are not initializers.
        outputs: Names of the graph outputs.
        constants: Initializer names and the outputs of constant nodes.
        types: Tensor name to the type the model declares or infers for it.
    """

    model: onnx.ModelProto
    nodes: tuple[onnx.NodeProto, ...]
    deps: tuple[tuple[str, ...], ...]
    rank: tuple[int, ...]
    compute: tuple[int, ...]
    producer: dict[str, int]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    constants: frozenset[str]
    types: dict[str, onnx.TypeProto]

    def spec(self, name: str) -> TensorSpec:
        """The dtype and shape of tensor ``name``.

        Raises:
            ModelError: The tensor's element type or shape is not fully known.
        """
        return tensor_spec(name, self.types.get(name))


def analyse(model: onnx.ModelProto) -> Graph:
    """Sort ``model``'s main graph and classify its nodes and tensors.

    The caller's model is never modified: an unsorted graph is sorted in a
    copy, and shape inference runs on a copy when some node output has no
    declared shape.

    Raises:
        ModelError: A node reads a tensor nothing provides, two producers share
            a name, the graph has a cycle, or shape inference fails.
    """
    initializers = initializer_names(model.graph)
    inputs = tuple(vi.name for vi in model.graph.input if vi.name not in initializers)
    deps = tuple(node_deps(node) for node in model.graph.node)
    order = _topological_order(model.graph.node, deps, set(inputs) | initializers)
    if order != sorted(order):
        model = _reordered(model, order)
        deps = tuple(deps[i] for i in order)
    types = _declared_types(model.graph)
    outputs = (name for node in model.graph.node for name in filter(None, node.output))
    if not all(_has_shape(types.get(name)) for name in outputs):
        model = _infer_shapes(model)
        types = _declared_types(model.graph)
    nodes = tuple(model.graph.node)
    rank, constants = _classify(nodes, deps, initializers)
    return Graph(
        model=model,
        nodes=nodes,
        deps=deps,
        rank=rank,
        compute=tuple(i for i, r in enumerate(rank) if r >= 0),
        producer={name: i for i, node in enumerate(nodes) for name in filter(None, node.output)},
        inputs=inputs,
        outputs=tuple(vi.name for vi in model.graph.output),
        constants=constants,
        types=types,
    )


def tensor_spec(name: str, type_proto: onnx.TypeProto | None) -> TensorSpec:
    """Turn an ONNX tensor type into a :class:`TensorSpec`.

    Raises:
        ModelError: The type is missing, not a tensor, has an element type
            the wire cannot carry, no shape, or a dimension that has
            neither a value nor a symbolic name.
    """
    if type_proto is None or type_proto.WhichOneof("value") != "tensor_type":
        msg = f"tensor {name!r} has no tensor type information"
        raise ModelError(msg)
    tensor = type_proto.tensor_type
    dtype = ONNX_ELEMENT_TYPES.get(tensor.elem_type)
    if dtype is None:
        kind = onnx.TensorProto.DataType.Name(tensor.elem_type)
        carried = ", ".join(ALLOWED_DTYPES)
        msg = f"tensor {name!r} has element type {kind}, which the wire cannot carry (it carries {carried})"
        raise ModelError(msg)
    if not tensor.HasField("shape"):
        msg = f"tensor {name!r} has no shape information"
        raise ModelError(msg)
    shape = tuple(_dim(name, axis, dim) for axis, dim in enumerate(tensor.shape.dim))
    return TensorSpec(name=name, dtype=dtype, shape=shape)


def _dim(name: str, axis: int, dim: onnx.TensorShapeProto.Dimension) -> int | str:
    if dim.HasField("dim_value"):
        return dim.dim_value
    if dim.dim_param:
        return dim.dim_param
    msg = f"tensor {name!r} has an unknown size on axis {axis}"
    raise ModelError(msg)


def initializer_names(graph: onnx.GraphProto) -> set[str]:
    """Names of ``graph``'s dense and sparse initializers."""
    return {t.name for t in graph.initializer} | {t.values.name for t in graph.sparse_initializer}


def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    """The graphs held in ``node``'s attributes (``If`` branches, loop bodies)."""
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def node_deps(node: onnx.NodeProto) -> tuple[str, ...]:
    """What ``node`` reads: its inputs, then the outer names its subgraphs read."""
    names = [name for name in node.input if name]
    for body in subgraphs(node):
        names.extend(outer_refs(body))
    return tuple(dict.fromkeys(names))


def outer_refs(graph: onnx.GraphProto) -> list[str]:
    """Names ``graph`` (at any depth) reads but does not define: outer-scope tensors."""
    defined = initializer_names(graph) | {vi.name for vi in graph.input}
    defined.update(name for node in graph.node for name in node.output)
    refs = [name for node in graph.node for name in node_deps(node)]
    refs.extend(vi.name for vi in graph.output)
    return [name for name in dict.fromkeys(refs) if name not in defined]


def dangling_inputs(graph: onnx.GraphProto, outer: Iterable[str] = ()) -> list[str]:
    """Names read in ``graph`` before (or without) being defined, at any depth.

    ``outer`` lists the names visible from enclosing scopes. An empty answer
    means every node input is a graph input, an initializer, or the output of an
    earlier node, in this graph or an enclosing one.
    """
    known = set(outer) | initializer_names(graph) | {vi.name for vi in graph.input}
    missing: list[str] = []
    for node in graph.node:
        missing.extend(name for name in node.input if name and name not in known)
        for body in subgraphs(node):
            missing.extend(dangling_inputs(body, known))
        known.update(name for name in node.output if name)
    missing.extend(vi.name for vi in graph.output if vi.name not in known)
    return list(dict.fromkeys(missing))


def _reordered(model: onnx.ModelProto, order: Sequence[int]) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    del copy.graph.node[:]
    copy.graph.node.extend(model.graph.node[i] for i in order)
    return copy


def _infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, data_prop=True)
    except (onnx.shape_inference.InferenceError, ValueError) as exc:
        msg = f"shape inference failed: {exc}"
        raise ModelError(msg) from exc


def _has_shape(type_proto: onnx.TypeProto | None) -> bool:
    return type_proto is not None and type_proto.tensor_type.HasField("shape")


def _declared_types(graph: onnx.GraphProto) -> dict[str, onnx.TypeProto]:
    # Graph inputs and outputs win over value_info: they are the interface.
    infos = [*graph.value_info, *graph.input, *graph.output]
    return {vi.name: vi.type for vi in infos if vi.HasField("type")}


def _classify(
    nodes: Sequence[onnx.NodeProto],
    deps: Sequence[Sequence[str]],
    initializers: set[str],
) -> tuple[tuple[int, ...], frozenset[str]]:
    """Each node's rank among non-constant nodes (-1: constant), and the constants."""
    constants = set(initializers)
    rank: list[int] = []
    count = 0
    for node, names in zip(nodes, deps, strict=True):
        if _is_constant(node, names, constants):
            rank.append(-1)
            constants.update(filter(None, node.output))
        else:
            rank.append(count)
            count += 1
    return tuple(rank), frozenset(constants)


def _is_constant(node: onnx.NodeProto, deps: Sequence[str], constants: set[str]) -> bool:
    if node.op_type == "Constant" and node.domain in {"", "ai.onnx"}:
        return True
    return bool(deps) and node.op_type not in _NONDETERMINISTIC and all(d in constants for d in deps)


def _topological_order(
    nodes: Sequence[onnx.NodeProto], deps: Sequence[Sequence[str]], available: set[str]
) -> list[int]:
    """Kahn's algorithm, lowest index first: a sorted graph keeps its order."""
    producer = _producers(nodes, available)
    waiting = [0] * len(nodes)
    users: defaultdict[int, list[int]] = defaultdict(list)
    for index, names in enumerate(deps):
        for name in names:
            if name in producer:
                waiting[index] += 1
                users[producer[name]].append(index)
            elif name not in available:
                node = _label(nodes[index], index)
                msg = f"node {node} reads {name!r}, which nothing in the graph defines"
                raise ModelError(msg)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    order: list[int] = []
    while ready:
        order.append(heapq.heappop(ready))
        for user in users[order[-1]]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, user)
    if len(order) < len(nodes):
        stuck = next(i for i, count in enumerate(waiting) if count)
        msg = f"the graph has a cycle through node {_label(nodes[stuck], stuck)}"
        raise ModelError(msg)
    return order


def _producers(nodes: Sequence[onnx.NodeProto], available: set[str]) -> dict[str, int]:
    producer: dict[str, int] = {}
    for index, node in enumerate(nodes):
        for name in filter(None, node.output):
            if name in producer or name in available:
                label = _label(node, index)
                msg = f"tensor name {name!r} is defined twice (node {label})"
                raise ModelError(msg)
            producer[name] = index
    return producer


def _label(node: onnx.NodeProto, index: int) -> str:
    return repr(node.name) if node.name else f"#{index} ({node.op_type})"

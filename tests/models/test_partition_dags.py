"""Cut enumeration against brute force on random DAGs, small and large."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import onnx
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from models import partition

if TYPE_CHECKING:
    from collections.abc import Sequence

TOLERANCE = 1e-4


def _weight(name: str, value: float) -> onnx.TensorProto:
    return numpy_helper.from_array(np.full((4,), value, dtype=np.float32), name)


def _model(nodes: list[onnx.NodeProto], inputs: Sequence[str], outputs: Sequence[str]) -> onnx.ModelProto:
    def vi(name: str) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 4])

    graph = helper.make_graph(nodes, "dag", [vi(n) for n in inputs], [vi(n) for n in outputs], [_weight("w", 0.5)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _assert_split_matches(model: onnx.ModelProto, cut: partition.Cut) -> None:
    split = partition.split(model, cut, model_id="dag")
    # Off: bit-exact, where values grown large by a long chain of Mul would amplify fused rounding.
    assert partition.verify_split(model, split, batch=2, optimize=False) <= TOLERANCE


# A random DAG: every tensor is float [N, 4]; nodes read one or two earlier tensors.
_UNARY = ("Relu", "Neg", "Sigmoid", "Tanh", "Abs")
_BINARY = ("Add", "Mul", "Sub", "Max")


def random_dag(rng: np.random.Generator, nodes: int, *, inputs: int = 2, window: int = 0) -> onnx.ModelProto:
    """Nodes read earlier tensors (within ``window`` of the newest, if set), the weight or a constant."""
    names = [f"in{i}" for i in range(inputs)]
    graph_nodes = [helper.make_node("Constant", [], ["k"], value=_weight("k", 1.5))]
    for index in range(nodes):
        pool = names[-window:] if window else names
        reads = [str(rng.choice(pool)) for _ in range(1 if rng.random() < 0.3 else 2)]
        if len(reads) == 2 and rng.random() < 0.2:
            reads[1] = str(rng.choice(["w", "k"]))
        op = str(rng.choice(_UNARY)) if len(reads) == 1 else str(rng.choice(_BINARY))
        graph_nodes.append(helper.make_node(op, reads, [f"t{index}"]))
        names.append(f"t{index}")
    read = {name for node in graph_nodes for name in node.input}
    outputs = [name for name in names[inputs:] if name not in read][-3:] or [names[-1]]
    return _model(graph_nodes, inputs=names[:inputs], outputs=outputs)


def brute_force_crossings(model: onnx.ModelProto) -> list[frozenset[str]]:
    """Crossing sets of every proper prefix, the slow and obvious way."""
    nodes = [node for node in model.graph.node if node.op_type != "Constant"]
    constants = {"w", "k"}
    outputs = {vi.name for vi in model.graph.output}
    inputs = [vi.name for vi in model.graph.input]
    found = []
    for position in range(1, len(nodes)):
        born = set(inputs) | {name for node in nodes[:position] for name in node.output}
        later = {name for node in nodes[position:] for name in node.input} - constants
        found.append(frozenset(name for name in born if name in later or name in outputs))
    return found


def _crossings(cuts: Sequence[partition.Cut]) -> list[frozenset[str]]:
    return [frozenset(t.name for t in cut.tensors) for cut in cuts]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), nodes=st.integers(1, 10))
def test_random_dags_split_correctly_at_every_cut(seed: int, nodes: int) -> None:
    model = random_dag(np.random.default_rng(seed), nodes)
    cuts = partition.enumerate_cuts(model)
    extremes = set(_crossings([cuts[0], cuts[-1]]))
    expected = [c for c in dict.fromkeys(brute_force_crossings(model)) if c not in extremes]
    assert _crossings(cuts[1:-1]) == expected
    for cut in cuts:
        _assert_split_matches(model, cut)


def _wide_dag(nodes: int) -> onnx.ModelProto:
    """Many parallel branches (reads from a window of recent tensors) with long skip connections."""
    model = random_dag(np.random.default_rng(7), nodes, inputs=4, window=40)
    rng = np.random.default_rng(8)
    for index in rng.choice(range(100, nodes), size=30, replace=False):
        node = model.graph.node[int(index) + 1]  # +1: the Constant node comes first
        node.input[0] = f"t{int(rng.integers(0, index - 60))}"
    return model


def test_enumerating_a_large_dag_is_fast_and_right() -> None:
    model = _wide_dag(400)
    start = time.perf_counter()
    cuts = partition.enumerate_cuts(model)
    elapsed = time.perf_counter() - start
    assert elapsed < 10  # a sanity bound; typical is ~10 ms (see the report for figures)
    extremes = set(_crossings([cuts[0], cuts[-1]]))
    expected = [c for c in dict.fromkeys(brute_force_crossings(model)) if c not in extremes]
    assert _crossings(cuts[1:-1]) == expected
    assert max(len(cut.tensors) for cut in cuts) > 10
    for cut in (cuts[len(cuts) // 3], cuts[-2]):
        _assert_split_matches(model, cut)

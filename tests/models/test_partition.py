"""Cut enumeration and splitting on tiny onnx.helper graphs, one pitfall each."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models import Manifest, partition, sha256_hex
from models._cuts import layout
from models._graph import analyse
from protocol.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

OPSET = [helper.make_opsetid("", 17)]
SHAPE: list[int | str | None] = ["N", 4]
TOLERANCE = 1e-4


def _vi(name: str, shape: Sequence[int | str | None] = SHAPE, dtype: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, list(shape))


def _weight(name: str, value: float = 0.5, shape: Sequence[int] = (4,)) -> onnx.TensorProto:
    return numpy_helper.from_array(np.full(shape, value, dtype=np.float32), name)


def _model(
    nodes: list[onnx.NodeProto],
    inputs: Sequence[str] = ("x",),
    outputs: Sequence[str] = ("y",),
    initializers: Sequence[onnx.TensorProto] = (),
) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [_vi(n) for n in inputs], [_vi(n) for n in outputs], list(initializers))
    return helper.make_model(graph, opset_imports=OPSET)


def chain() -> onnx.ModelProto:
    return _model(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Neg", ["a"], ["b"]),
            helper.make_node("Sigmoid", ["b"], ["y"]),
        ]
    )


def diamond() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Sigmoid", ["a"], ["b"]),
        helper.make_node("Tanh", ["a"], ["c"]),
        helper.make_node("Concat", ["b", "c"], ["cat"], axis=1),
        helper.make_node("ReduceSum", ["cat", "axes"], ["y"], keepdims=1),
    ]
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    model = _model(nodes, initializers=[axes])
    model.graph.output[0].CopyFrom(_vi("y", ["N", 1]))
    return model


def shared_initializer() -> onnx.ModelProto:
    """``w`` is read first and last; ``wt`` is a weight-only Identity of it, read in the middle."""
    nodes = [
        helper.make_node("Mul", ["x", "w"], ["a"]),
        helper.make_node("Identity", ["w"], ["wt"]),
        helper.make_node("Add", ["a", "wt"], ["b"]),
        helper.make_node("Relu", ["b"], ["c"]),
        helper.make_node("Sub", ["c", "w"], ["y"]),
    ]
    return _model(nodes, initializers=[_weight("w")])


def shared_constant() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Constant", [], ["k"], value=_weight("k", 2.0)),
        helper.make_node("Add", ["x", "k"], ["a"]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("Mul", ["b", "k"], ["y"]),
    ]
    return _model(nodes)


def late_input() -> onnx.ModelProto:
    """Graph input ``z`` is read only by the last node."""
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Tanh", ["a"], ["b"]),
        helper.make_node("Add", ["b", "z"], ["y"]),
    ]
    return _model(nodes, inputs=("x", "z"))


def extra_output() -> onnx.ModelProto:
    """``a`` is a graph output that a later node also reads."""
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Neg", ["a"], ["b"]),
        helper.make_node("Exp", ["b"], ["y"]),
    ]
    return _model(nodes, outputs=("y", "a"))


def if_outer_scope() -> onnx.ModelProto:
    """The If's branches read ``r`` (from an earlier node) and ``w`` (an initializer) from outside."""
    then_branch = helper.make_graph([helper.make_node("Add", ["r", "w"], ["then_out"])], "then", [], [_vi("then_out")])
    else_branch = helper.make_graph([helper.make_node("Neg", ["r"], ["else_out"])], "else", [], [_vi("else_out")])
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch),
    ]
    zero = numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")
    return _model(nodes, initializers=[_weight("w"), zero])


def overridable_weight() -> onnx.ModelProto:
    """``w`` is an initializer that is also a graph input (a default the caller may override)."""
    model = shared_initializer()
    model.graph.input.append(_vi("w", [4]))
    return model


def constant_output() -> onnx.ModelProto:
    """Graph output ``k`` is a constant: at the output cut it crosses, elsewhere the tail makes it."""
    nodes = [
        helper.make_node("Constant", [], ["k"], value=_weight("k", 2.0)),
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Neg", ["a"], ["y"]),
    ]
    model = _model(nodes)
    model.graph.output.append(_vi("k", [4]))
    return model


def loop_outer_scope() -> onnx.ModelProto:
    """A Loop body adds ``r`` (made by an earlier node) to its carried value three times."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "r"], ["v_out"])],
        "body",
        [_vi("i", [], TensorProto.INT64), _vi("cond_in", [], TensorProto.BOOL), _vi("v_in")],
        [_vi("cond_out", [], TensorProto.BOOL), _vi("v_out")],
    )
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Neg", ["x"], ["n"]),
        helper.make_node("Loop", ["trips", "true", "n"], ["y"], body=body),
    ]
    trips = numpy_helper.from_array(np.array(3, dtype=np.int64), "trips")
    true = numpy_helper.from_array(np.array(True), "true")  # noqa: FBT003 - a tensor value
    return _model(nodes, initializers=[trips, true])


def unsorted() -> onnx.ModelProto:
    model = diamond()
    nodes = list(reversed(model.graph.node))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


SMALL_MODELS = {
    "chain": chain,
    "diamond": diamond,
    "shared_initializer": shared_initializer,
    "shared_constant": shared_constant,
    "late_input": late_input,
    "extra_output": extra_output,
    "if_outer_scope": if_outer_scope,
    "unsorted": unsorted,
    "loop_outer_scope": loop_outer_scope,
    "overridable_weight": overridable_weight,
    "constant_output": constant_output,
}


def _assert_split_matches(model: onnx.ModelProto, cut: str | partition.Cut) -> partition.Split:
    split = partition.split(model, cut, model_id="m")
    for half in (split.head, split.tail):
        if half is not None:
            assert partition.dangling_inputs(half.graph) == []
    assert partition.verify_split(model, split, batch=2, optimize=False) <= TOLERANCE
    return split


def _ids(model: onnx.ModelProto) -> list[str]:
    return [cut.id for cut in partition.enumerate_cuts(model)]


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_every_cut_of_small_graphs_reproduces_the_full_model(name: str) -> None:
    model = SMALL_MODELS[name]()
    for cut in partition.enumerate_cuts(model):
        _assert_split_matches(model, cut)


def test_chain_has_one_single_tensor_cut_per_edge() -> None:
    cuts = partition.enumerate_cuts(chain())
    assert [(c.id, c.position, [t.name for t in c.tensors]) for c in cuts] == [
        ("input", 0, ["x"]),
        ("a", 1, ["a"]),
        ("b", 2, ["b"]),
        ("output", 3, ["y"]),
    ]
    assert all(c.single_tensor and c.bytes == 16 for c in cuts)
    assert cuts[1].to_json() == {
        "id": "a",
        "position": 1,
        "crossing": [{"name": "a", "dtype": "float32", "shape": ["N", 4]}],
        "bytes": 16,
        "single_tensor": True,
        "measured": False,
    }


def test_ids_that_could_be_mistaken_get_a_tensor_prefix() -> None:
    model = chain()
    for node in model.graph.node:
        node.input[0] = {"a": "output", "b": "prefix:1"}.get(node.input[0], node.input[0])
        node.output[0] = {"a": "output", "b": "prefix:1"}.get(node.output[0], node.output[0])
    assert _ids(model) == ["input", "tensor:output", "tensor:prefix:1", "output"]
    _assert_split_matches(model, "tensor:prefix:1")


def test_diamond_has_a_two_tensor_cut_between_its_branches() -> None:
    assert _ids(diamond()) == ["input", "a", "prefix:2", "prefix:3", "cat", "output"]
    cut = partition.enumerate_cuts(diamond())[2]
    assert [t.name for t in cut.tensors] == ["a", "b"]
    assert not cut.single_tensor
    assert cut.bytes == 32


def test_unsorted_graph_is_sorted_before_cutting() -> None:
    assert _ids(unsorted()) == _ids(diamond())


def test_weights_and_constants_never_cross_and_are_copied_to_both_sides() -> None:
    model = shared_initializer()
    assert _ids(model) == ["input", "a", "b", "c", "output"]  # the Identity on w has no position
    split = partition.split(model, "b", model_id="m")
    assert split.head is not None
    assert split.tail is not None
    assert [t.name for t in split.head.graph.initializer] == ["w"]
    assert [t.name for t in split.tail.graph.initializer] == ["w"]
    assert "Identity" in [n.op_type for n in split.head.graph.node]
    assert "Identity" not in [n.op_type for n in split.tail.graph.node]
    assert [vi.name for vi in split.tail.graph.input] == ["b"]
    constant = partition.split(shared_constant(), "b", model_id="m")
    for half in (constant.head, constant.tail):
        assert half is not None
        assert [n.op_type for n in half.graph.node].count("Constant") == 1


def test_initializer_listed_as_input_stays_an_input_of_each_half() -> None:
    cuts = partition.enumerate_cuts(overridable_weight())
    assert [[t.name for t in c.tensors] for c in cuts] == [["x"], ["a"], ["b"], ["c"], ["y"]]
    split = partition.split(overridable_weight(), "b", model_id="m")
    assert [s.name for s in split.manifest.inputs] == ["x"]
    assert split.head is not None
    assert split.tail is not None
    assert [vi.name for vi in split.head.graph.input] == ["x", "w"]
    assert [vi.name for vi in split.tail.graph.input] == ["b", "w"]


def test_constant_graph_output_crosses_only_at_the_output_cut() -> None:
    cuts = partition.enumerate_cuts(constant_output())
    assert [[t.name for t in c.tensors] for c in cuts] == [["x"], ["a"], ["y", "k"]]
    split = partition.split(constant_output(), "a", model_id="m")
    assert split.tail is not None
    assert [n.op_type for n in split.tail.graph.node] == ["Constant", "Neg"]


def test_graph_input_read_late_crosses_every_cut() -> None:
    cuts = partition.enumerate_cuts(late_input())
    # Crossing tensors are in birth order: graph inputs first.
    assert [[t.name for t in c.tensors] for c in cuts] == [["x", "z"], ["z", "a"], ["z", "b"], ["y"]]
    split = partition.split(late_input(), cuts[1], model_id="m")
    assert split.head is not None
    assert split.tail is not None
    assert [vi.name for vi in split.head.graph.input] == ["x", "z"]
    assert [vi.name for vi in split.head.graph.output] == ["z", "a"]
    assert [vi.name for vi in split.tail.graph.input] == ["z", "a"]


def test_graph_output_made_on_the_edge_crosses() -> None:
    cuts = partition.enumerate_cuts(extra_output())
    assert [[t.name for t in c.tensors] for c in cuts] == [["x"], ["a"], ["a", "b"], ["y", "a"]]
    split = partition.split(extra_output(), "a", model_id="m")
    assert split.tail is not None
    assert [vi.name for vi in split.tail.graph.output] == ["y", "a"]


def test_outer_scope_tensor_read_by_if_branches_crosses() -> None:
    cuts = {c.id: [t.name for t in c.tensors] for c in partition.enumerate_cuts(if_outer_scope())}
    assert cuts == {
        "input": ["x"],
        "prefix:1": ["x", "r"],
        "prefix:2": ["r", "s"],
        "prefix:3": ["r", "cond"],
        "output": ["y"],
    }
    split = _assert_split_matches(if_outer_scope(), "prefix:3")
    assert split.head is not None
    assert split.tail is not None
    assert [n.op_type for n in split.tail.graph.node] == ["If"]
    assert [vi.name for vi in split.tail.graph.input] == ["r", "cond"]
    assert [t.name for t in split.tail.graph.initializer] == ["w"]  # read only inside the branch
    assert "w" not in [t.name for t in split.head.graph.initializer]


def test_outer_scope_tensor_read_by_a_loop_body_crosses() -> None:
    cuts = partition.enumerate_cuts(loop_outer_scope())
    assert [[t.name for t in c.tensors] for c in cuts] == [["x"], ["x", "r"], ["r", "n"], ["y"]]


def test_halves_keep_opsets_functions_and_dynamic_batch() -> None:
    model = chain()
    model.opset_import.append(helper.make_opsetid("custom.domain", 1))
    model.functions.append(
        helper.make_function(
            "custom.domain", "Twice", ["t"], ["u"], [helper.make_node("Add", ["t", "t"], ["u"])], OPSET
        )
    )
    split = partition.split(model, "a", model_id="m")
    for half in (split.head, split.tail):
        assert half is not None
        assert [(o.domain, o.version) for o in half.opset_import] == [("", 17), ("custom.domain", 1)]
        assert [f.name for f in half.functions] == ["Twice"]
        assert half.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert split.manifest.crossing[0].shape == ("N", 4)


def test_unknown_cut_is_refused_with_valid_ids() -> None:
    with pytest.raises(ModelError, match=r"unknown cut 'nope'.*input.*output"):
        partition.split(chain(), "nope", model_id="m")


def test_cut_of_another_model_is_refused() -> None:
    foreign = partition.Cut(id="a", position=1, tensors=(), bytes=0, single_tensor=False)
    with pytest.raises(ModelError, match="does not match"):
        partition.split(chain(), foreign, model_id="m")


def test_cut_without_shape_information_is_omitted_and_refused_with_the_reason() -> None:
    model = chain()
    model.graph.value_info.extend([_vi("a", ["N", None]), _vi("b")])  # declared: no inference
    assert _ids(model) == ["input", "b", "output"]
    with pytest.raises(ModelError, match=r"cut 'a' cannot be used: .*unknown size on axis 1"):
        partition.split(model, "a", model_id="m")
    strings = [
        helper.make_node("Cast", ["x"], ["s"], to=TensorProto.STRING),
        helper.make_node("Cast", ["s"], ["y"], to=TensorProto.FLOAT),
    ]
    assert _ids(_model(strings)) == ["input", "output"]
    with pytest.raises(ModelError, match=r"cut 's' cannot be used: .*element type STRING"):
        partition.split(_model(strings), "s", model_id="m")


@pytest.mark.parametrize("onnx_type", [TensorProto.UINT32, TensorProto.UINT16, TensorProto.UINT64])
def test_a_cut_whose_tensor_the_wire_cannot_carry_is_never_offered(onnx_type: int) -> None:
    """ONNX has types the protocol does not: such a cut splits fine but could never be sent."""
    casts = [
        helper.make_node("Cast", ["x"], ["u"], to=onnx_type),
        helper.make_node("Cast", ["u"], ["y"], to=TensorProto.FLOAT),
    ]
    assert _ids(_model(casts)) == ["input", "output"]
    name = TensorProto.DataType.Name(onnx_type)
    with pytest.raises(ModelError, match=rf"cut 'u' cannot be used: .*element type {name}, which the wire cannot"):
        partition.split(_model(casts), "u", model_id="m")


def test_data_dependent_sizes_are_symbolic() -> None:
    nodes = [
        helper.make_node("NonZero", ["x"], ["nz"]),
        helper.make_node("Cast", ["nz"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["f"], ["y"], keepdims=0),
    ]
    model = _model(nodes)
    model.graph.output[0].CopyFrom(_vi("y", []))
    cuts = partition.enumerate_cuts(model)
    assert [c.id for c in cuts] == ["input", "nz", "f", "output"]
    assert cuts[1].tensors[0].dtype == "int64"
    assert isinstance(cuts[1].tensors[0].shape[1], str)  # onnx names it unk__0
    for cut in cuts:
        _assert_split_matches(model, cut)


def test_invalid_graphs_are_refused() -> None:
    with pytest.raises(ModelError, match="nothing in the graph defines"):
        partition.enumerate_cuts(_model([helper.make_node("Relu", ["ghost"], ["y"])]))
    twice = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["y"])]
    with pytest.raises(ModelError, match="defined twice"):
        partition.enumerate_cuts(_model(twice))
    cycle = [
        helper.make_node("Add", ["x", "b"], ["a"]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("Relu", ["a"], ["y"]),
    ]
    with pytest.raises(ModelError, match="cycle"):
        partition.enumerate_cuts(_model(cycle))


def test_checker_failure_is_a_model_error() -> None:
    model = chain()
    model.graph.node[0].op_type = "NoSuchOp"
    with pytest.raises(ModelError, match="ONNX checker"):
        partition.split(model, "a", model_id="m")


def test_dangling_inputs_finds_reads_of_undefined_names_at_any_depth() -> None:
    assert partition.dangling_inputs(if_outer_scope().graph) == []
    model = if_outer_scope()
    del model.graph.node[0]  # r's producer: only the If branches read r
    assert partition.dangling_inputs(model.graph) == ["r"]


def test_halves_are_deterministic() -> None:
    first = partition.split(if_outer_scope(), "prefix:2", model_id="m")
    reloaded = onnx.load_from_string(if_outer_scope().SerializeToString())
    second = partition.split(reloaded, "prefix:2", model_id="m")
    assert first.head is not None
    assert second.head is not None
    assert first.head.SerializeToString() == second.head.SerializeToString()
    assert first.manifest == second.manifest


def test_manifest_describes_the_split_and_survives_save_and_load(tmp_path: Path) -> None:
    model = late_input()
    split = partition.split(model, "prefix:1", model_id="late")
    manifest = split.manifest
    assert manifest.model_id == "late"
    assert manifest.model_sha256 == partition.model_sha256(model) == sha256_hex(model.SerializeToString())
    assert [s.name for s in manifest.inputs] == ["x", "z"]
    assert [s.name for s in manifest.crossing] == ["z", "a"]
    assert [s.name for s in manifest.outputs] == ["y"]
    written = partition.save_split(split, tmp_path / "out")
    assert [p.name for p in written] == ["head.onnx", "tail.onnx", "manifest.json"]
    assert Manifest.load(tmp_path / "out") == manifest
    assert sha256_hex((tmp_path / "out" / "head.onnx").read_bytes()) == manifest.head_sha256
    assert sha256_hex((tmp_path / "out" / "tail.onnx").read_bytes()) == manifest.tail_sha256


def test_extreme_cuts_have_one_half(tmp_path: Path) -> None:
    model = chain()
    at_input = partition.split(model, partition.CLOUD_ONLY, model_id="m")
    at_output = partition.split(model, partition.EDGE_ONLY, model_id="m")
    assert at_input.head is None
    assert at_input.manifest.head_sha256 is None
    assert at_output.tail is None
    assert at_output.manifest.tail_sha256 is None
    partition.save_split(at_input, tmp_path)
    partition.save_split(at_output, tmp_path)  # removes the stale tail.onnx
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.onnx", "manifest.json"]


def test_verify_split_runs_the_halves_at_any_batch() -> None:
    model = diamond()
    assert partition.verify_split(model, partition.split(model, "prefix:2", model_id="m"), batch=3) == 0.0


def test_max_abs_diff_treats_nan_and_shapes() -> None:
    nan = np.array([np.nan, 1.0])
    assert partition.max_abs_diff({"a": nan}, {"a": nan.copy()}) == 0.0
    assert partition.max_abs_diff({"a": nan}, {"a": np.array([0.0, 1.0])}) == float("inf")
    assert partition.max_abs_diff({"a": nan}, {"a": np.zeros(3)}) == float("inf")
    assert partition.max_abs_diff({"a": nan}, {}) == float("inf")


def test_load_model_reads_files_and_refuses_what_it_cannot(tmp_path: Path) -> None:
    path = tmp_path / "mine.onnx"
    path.write_bytes(chain().SerializeToString())
    model_id, model = partition.load_model(path)
    assert (model_id, model) == ("mine", chain())
    with pytest.raises(ModelError, match="does not exist"):
        partition.load_model(tmp_path / "missing.onnx")
    (tmp_path / "folder.onnx").mkdir()
    with pytest.raises(ModelError, match=r"model file .*folder\.onnx is a directory"):
        partition.load_model(tmp_path / "folder.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load"):
        partition.load_model(tmp_path / "bad.onnx")
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        partition.load_model("nope")


def test_load_model_builds_zoo_models() -> None:
    model_id, model = partition.load_model("tiny")
    assert model_id == "tiny"
    assert model.graph.input[0].name == "image"


def test_scan_lists_every_rejected_cut_by_id() -> None:
    model = chain()
    del model.graph.input[0].type.tensor_type.shape.dim[:]
    model.graph.input[0].type.tensor_type.ClearField("shape")
    result = layout(analyse(model))
    assert "input" in result.rejected
    assert "no shape information" in result.rejected["input"]
    with pytest.raises(ModelError, match="'x' has no shape information"):
        partition.enumerate_cuts(model)  # its bytes cannot be counted either


def test_public_api_is_sorted_and_complete() -> None:
    def isort_style(name: str) -> tuple[int, str]:  # ruff's RUF022 order: CONSTANTS, Classes, functions
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert partition.__all__ == sorted(partition.__all__, key=isort_style)
    assert all(hasattr(partition, name) for name in partition.__all__)
    public = {name for name, value in vars(partition).items() if not name.startswith("_") and callable(value)}
    assert public - {"annotations"} <= set(partition.__all__)

"""Models with dynamic sizes: shapes stated, implied by metadata, or refused; bytes counted at them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_agent import ModelHalves
from edgecut._cli import main
from edgecut._exit import ExitCode
from models import Manifest, Session, TensorSpec, parse_input_shape, partition, resolve_input_shapes
from protocol.errors import ModelError

if TYPE_CHECKING:
    from pathlib import Path


def dynamic_net() -> onnx.ModelProto:
    """Conv (stride 2) on ``x[N, 3, H, W]``, then the (row, column) of each positive channel mean."""
    weight = np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["conv"], strides=[2, 2], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["conv"], ["act"]),
            helper.make_node("ReduceMean", ["act"], ["mean"], axes=[2, 3], keepdims=0),
            helper.make_node("Greater", ["mean", "half"], ["high"]),
            helper.make_node("NonZero", ["high"], ["where"]),
            helper.make_node("Transpose", ["where"], ["found"]),
            helper.make_node("Cast", ["found"], ["y"], to=TensorProto.FLOAT),
        ],
        "dynamic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.array(0.5, np.float32), "half")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


SPEC = TensorSpec("x", "float32", ("N", 3, "H", "W"))


def test_a_shape_is_read_as_given_to_the_option() -> None:
    assert parse_input_shape("images=1x3x640x640") == ("images", (1, 3, 640, 640))
    assert parse_input_shape("sr=") == ("sr", ())
    for bad in ("images", "images=1x", "images=a", "=1"):
        with pytest.raises(ModelError, match="NAME=D1xD2"):
            parse_input_shape(bad)


def test_unknown_sizes_are_refused_naming_the_axes_and_the_option() -> None:
    with pytest.raises(ModelError) as info:
        resolve_input_shapes([SPEC])
    message = str(info.value)
    assert "input 'x'" in message
    assert "axes 2 ('H'), 3 ('W')" in message
    assert "--input-shape x=1x3xHxW" in message


def test_a_batch_axis_counts_one_and_stated_shapes_win() -> None:
    assert resolve_input_shapes([TensorSpec("x", "uint8", ("N", 32, 32, 3))]) == {"x": (1, 32, 32, 3)}
    assert resolve_input_shapes([SPEC], {"x": (2, 3, 64, 96)}) == {"x": (2, 3, 64, 96)}


@pytest.mark.parametrize(
    ("stated", "why"),
    [
        ({"x": (1, 4, 64, 64)}, "does not fit"),
        ({"x": (1, 3, 64)}, "does not fit"),
        ({"x": (1, 3, 0, 64)}, "does not fit"),
        ({"images": (1, 3, 64, 64)}, "'images', not an input of the model"),
    ],
)
def test_a_stated_shape_must_fit_the_input(stated: dict[str, tuple[int, ...]], why: str) -> None:
    with pytest.raises(ModelError, match=why):
        resolve_input_shapes([SPEC], stated)


def test_metadata_states_shapes_edgecut_s_key_or_ultralytics_imgsz() -> None:
    assert resolve_input_shapes([SPEC], metadata={"edgecut.input_shapes": '{"x": [1, 3, 48, 80]}'}) == {
        "x": (1, 3, 48, 80)
    }
    assert resolve_input_shapes([SPEC], metadata={"imgsz": "[640, 480]"}) == {"x": (1, 3, 640, 480)}
    with pytest.raises(ModelError, match="metadata states its input shapes in a form"):
        resolve_input_shapes([SPEC], metadata={"edgecut.input_shapes": "[1, 3]"})


def test_bytes_listed_are_the_bytes_the_tensors_take() -> None:
    model = dynamic_net()
    shapes = {"x": (1, 3, 96, 128)}
    cuts = partition.enumerate_cuts(model, shapes)
    x = np.random.default_rng(1).standard_normal(shapes["x"]).astype(np.float32)
    for cut in cuts:
        split = partition.split(model, cut, model_id="dynamic")
        crossing = Session(split.head.SerializeToString()).run({"x": x}) if split.head is not None else {"x": x}
        sent = sum(crossing[spec.name].nbytes for spec in cut.tensors)
        if cut.measured:  # the number of positives depends on the input: measured on another random one
            assert cut.id in {"where", "found", "output"}
        else:
            assert cut.bytes == sent, cut.id
    by_id = {cut.id: cut for cut in cuts}
    assert by_id["conv"].bytes == 8 * 48 * 64 * 4
    assert by_id["conv"].tensors[0].shape[:2] == ("N", 8)  # the split keeps the sizes symbolic: any size runs
    assert not by_id["mean"].measured
    assert by_id["found"].measured


def test_without_shapes_a_dynamic_model_is_refused_and_a_split_still_runs_any_size() -> None:
    model = dynamic_net()
    with pytest.raises(ModelError, match="--input-shape x=1x3xHxW"):
        partition.enumerate_cuts(model)
    split = partition.split(model, "conv", model_id="dynamic")  # structure needs no sizes
    for size in ((32, 32), (64, 96)):
        assert partition.verify_split(model, split, input_shapes={"x": (1, 3, *size)}) == 0.0


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["models", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_cli_names_the_fix_and_counts_at_stated_shapes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "dynamic.onnx"
    onnx.save(dynamic_net(), path)
    code, _, err = _run(capsys, "cuts", str(path))
    assert code == ExitCode.MODEL
    assert "--input-shape x=1x3xHxW" in err
    code, out, err = _run(capsys, "cuts", str(path), "--input-shape", "x=1x3x64x64", "--json")
    assert code == ExitCode.OK, err
    cuts = {cut["id"]: cut for cut in json.loads(out)}
    assert cuts["input"]["bytes"] == 3 * 64 * 64 * 4
    assert cuts["found"]["measured"]
    assert "at x=1x3x64x64" in _run(capsys, "cuts", str(path), "--input-shape", "x=1x3x64x64")[1]
    code, out, err = _run(
        capsys,
        "split",
        str(path),
        "--cut",
        "act",
        "--input-shape",
        "x=1x3x64x64",
        "--verify",
        "--json",
        "--out",
        str(tmp_path / "s"),
    )
    assert code == ExitCode.OK, err
    assert json.loads(out)["bytes"] == 8 * 32 * 32 * 4
    out = _run(capsys, "info", str(path), "--input-shape", "x=2x3x64x64", "--json")[1]
    assert json.loads(out)["input_shapes"] == {"x": [2, 3, 64, 64]}


def test_stated_shapes_travel_in_the_manifests_to_the_agent(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "dynamic.onnx"
    onnx.save(dynamic_net(), path)
    for option, directory in (("--cuts", "auto"), ("--cut", "act")):
        out = tmp_path / directory
        code, _, err = _run(
            capsys, "split", str(path), option, directory, "--input-shape", "x=1x3x64x96", "--out", str(out)
        )
        assert code == ExitCode.OK, err
        halves = ModelHalves.open(out, threads=1)  # no shapes given: the manifest's
        assert halves.input_shapes == {"x": (1, 3, 64, 96)}
        assert ModelHalves.open(out, threads=1, input_shapes={"x": (1, 3, 32, 32)}).input_shapes == {
            "x": (1, 3, 32, 32)
        }
    partition.save_split(partition.split(dynamic_net(), "act", model_id="dynamic"), tmp_path / "unstated")
    with pytest.raises(ModelError, match="--input-shape x=1x3xHxW"):
        ModelHalves.open(tmp_path / "unstated", threads=1)


def test_a_manifest_without_stated_shapes_says_nothing_of_them() -> None:
    split = partition.split(dynamic_net(), "act", model_id="dynamic")
    assert "input_shapes" not in split.manifest.to_json()
    stated = partition.split(dynamic_net(), "act", model_id="dynamic", input_shapes={"x": (2, 3, 8, 8)}).manifest
    assert stated.to_json()["input_shapes"] == {"x": [2, 3, 8, 8]}
    assert Manifest.from_json(stated.to_json()) == stated

"""``edgecut models prelude`` run in-process through the real entry point."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import onnx
import pytest
from onnx import TensorProto, helper

from edgecut._cli import main
from edgecut._exit import ExitCode
from models import sha256_hex
from tests.models._prelude_reference import convnet

if TYPE_CHECKING:
    from pathlib import Path

IMAGENET = ["--scale", "1/255", "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["models", "prelude", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _saved(tmp_path: Path, model: onnx.ModelProto) -> str:
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    return str(path)


def test_prelude_writes_a_model_that_takes_the_camera_image(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "out" / "composed.onnx"
    argv = [_saved(tmp_path, convnet()), "--image", "40x90", "--layout", "nchw", *IMAGENET, "--letterbox"]
    code, text, _ = _run(capsys, *argv, "--out", str(out), "--json")
    assert code == ExitCode.OK
    report = json.loads(text)
    data = out.read_bytes()
    assert report == {
        "path": str(out),
        "bytes": len(data),
        "sha256": sha256_hex(data),
        "input": {"name": "x", "dtype": "uint8", "shape": [1, 40, 90, 3]},
        "feeds": {"name": "x", "dtype": "float32", "shape": [1, 3, 32, 48]},
        "placement": {"height": 21, "width": 48, "top": 5, "bottom": 6, "left": 0, "right": 0},
    }
    image = onnx.load_model_from_string(data).graph.input[0]
    assert image.type.tensor_type.elem_type == TensorProto.UINT8


def test_prelude_says_what_it_wrote(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = _saved(tmp_path, convnet())
    out = tmp_path / "composed.onnx"
    code, text, _ = _run(capsys, model, "--image", "40x90", "--layout", "nchw", "--letterbox", "--out", str(out))
    assert code == ExitCode.OK
    assert f"wrote {out}" in text
    assert "input  x uint8[1,40,90,3]: the camera image" in text
    assert "feeds  x float32[1,3,32,48]: the image resized to 21x48, padded top 5, bottom 6, left 0, right 0" in text
    code, text, _ = _run(capsys, model, "--image", "40x90", "--layout", "nchw", "--out", str(out))
    assert "resized to 32x48\n" in text


def test_prelude_help_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "prelude", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--image", "--layout", "--scale", "--mean", "--std", "--letterbox", "--resize", "--model-size"):
        assert option in text


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--image", "480by640", "'480by640' is not a size HxW such as 480x640"),
        ("--image", "0x640", "'0x640' is not a size HxW"),
        ("--scale", "1/0", "'1/0' is not a number such as 0.5 or 1/255"),
        ("--mean", "0.5,0.5", "'0.5,0.5' is not three numbers R,G,B"),
        ("--std", "0.2,a,0.2", "'a' is not a number"),
    ],
)
def test_prelude_refuses_unreadable_options(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, option: str, value: str, message: str
) -> None:
    argv = ["models", "prelude", "m.onnx", "--image", "40x90", "--layout", "nchw", "--out", str(tmp_path / "o.onnx")]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, option, value])
    assert exit_info.value.code == ExitCode.USAGE
    assert message in capsys.readouterr().err


def test_prelude_refuses_a_zero_std_as_a_config_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = [_saved(tmp_path, convnet()), "--image", "40x90", "--layout", "nchw", "--std", "0,1,1"]
    code, _, err = _run(capsys, *argv, "--out", str(tmp_path / "o.onnx"))
    assert code == ExitCode.CONFIG
    assert "std must not be zero" in err


def test_prelude_names_the_option_a_model_needs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = _saved(tmp_path, convnet(["N", 3, "height", "width"]))
    out = str(tmp_path / "o.onnx")
    code, _, err = _run(capsys, model, "--image", "40x90", "--layout", "nchw", "--out", out)
    assert code == ExitCode.MODEL
    assert "its height and width are not fixed" in err
    assert "--model-size HxW" in err
    code, _, _ = _run(capsys, model, "--image", "40x90", "--layout", "nchw", "--model-size", "32x48", "--out", out)
    assert code == ExitCode.OK


def test_prelude_asks_which_input_of_several(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    shape = [1, 3, 32, 48]
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name in ("left", "right")]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node("Add", ["left", "right"], ["y"])], "g", inputs, [output])
    model = _saved(tmp_path, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    out = str(tmp_path / "o.onnx")
    code, _, err = _run(capsys, model, "--image", "40x90", "--layout", "nchw", "--out", out)
    assert code == ExitCode.MODEL
    assert "--input NAME" in err
    code, _, _ = _run(capsys, model, "--image", "40x90", "--layout", "nchw", "--input", "left", "--out", out)
    assert code == ExitCode.OK

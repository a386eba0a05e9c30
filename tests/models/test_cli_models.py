"""``edgecut models ...`` run in-process through the real entry point."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pytest

from edgecut._cli import main
from edgecut._exit import ExitCode
from models import Manifest, SegmentsManifest, sha256_hex

if TYPE_CHECKING:
    from pathlib import Path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["models", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_shows_every_zoo_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "list")
    assert code == ExitCode.OK
    for name in ("googlenet", "mobilenet_v2", "resnet18", "tiny"):
        assert name in out
    assert "uint8[N,224,224,3]" in out


def test_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "list", "--json")
    assert code == ExitCode.OK
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["tiny"]["input"] == {"name": "image", "dtype": "uint8", "shape": ["N", 32, 32, 3]}
    assert rows["tiny"]["description"]


def test_build_writes_the_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = _run(capsys, "build", "tiny", "--out", str(tmp_path), "--seed", "2", "--json")
    assert code == ExitCode.OK
    report = json.loads(out)
    data = (tmp_path / "tiny.onnx").read_bytes()
    assert report["path"] == str(tmp_path / "tiny.onnx")
    assert report["bytes"] == len(data)
    assert report["sha256"] == sha256_hex(data)
    code, out, _ = _run(capsys, "build", "tiny", "--out", str(tmp_path))
    assert code == ExitCode.OK
    assert "tiny.onnx" in out
    assert sha256_hex((tmp_path / "tiny.onnx").read_bytes()) in out


def test_cuts_table_shows_the_input_cut_for_reference(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "cuts", "tiny")
    assert code == ExitCode.OK
    assert "the input cut (raw input, for reference) sends 3.0 KiB" in out
    assert "prefix:8" in out
    assert "stem.out float32[N,16,16,16]" in out


def test_cuts_json_has_the_required_keys(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "cuts", "tiny", "--json")
    assert code == ExitCode.OK
    cuts = json.loads(out)
    assert cuts[0]["id"] == "input"
    assert cuts[0]["bytes"] == 32 * 32 * 3
    assert cuts[-1]["id"] == "output"
    for cut in cuts:
        assert cut.keys() == {"id", "position", "crossing", "bytes", "single_tensor", "measured", "candidate", "int8"}
        assert all(tensor.keys() == {"name", "dtype", "shape"} for tensor in cut["crossing"])
    code, out, _ = _run(capsys, "cuts", "tiny", "--json", "--single-only")
    singles = json.loads(out)
    assert singles == [cut for cut in cuts if cut["single_tensor"]]


def test_cuts_of_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    _run(capsys, "build", "tiny", "--out", str(tmp_path))
    code, out, _ = _run(capsys, "cuts", str(tmp_path / "tiny.onnx"), "--single-only")
    assert code == ExitCode.OK
    assert out.startswith("tiny: 31 cuts")
    assert "prefix:" not in out


def test_split_writes_the_halves_and_verifies(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = _run(capsys, "split", "tiny", "--cut", "prefix:8", "--out", str(tmp_path), "--verify")
    assert code == ExitCode.OK
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.onnx", "manifest.json", "tail.onnx"]
    assert Manifest.load(tmp_path).cut_id == "prefix:8"
    assert "verify:" in out
    assert "(ok)" in out


def test_split_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = _run(capsys, "split", "tiny", "--cut", "output", "--out", str(tmp_path), "--json", "--verify")
    assert code == ExitCode.OK
    report = json.loads(out)
    assert report["cut"] == "output"
    assert report["files"] == [str(tmp_path / "head.onnx"), str(tmp_path / "manifest.json")]
    assert report["max_abs_diff"] == 0.0


def test_split_failing_verification_exits_failed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models import partition  # noqa: PLC0415

    monkeypatch.setattr(partition, "verify_split", lambda *_, **__: 0.5)
    code, out, _ = _run(capsys, "split", "tiny", "--cut", "input", "--out", str(tmp_path), "--verify")
    assert code == ExitCode.FAILED
    assert "FAILED" in out


@pytest.mark.parametrize(
    ("cuts", "expected"),
    [
        ("auto", ["input", "layer4.0.add", "pool", "output"]),
        ("pool, layer4.0.add", ["input", "layer4.0.add", "pool", "output"]),
    ],
)
def test_split_at_several_cuts_writes_a_verified_chain(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, cuts: str, expected: list[str]
) -> None:
    code, out, _ = _run(capsys, "split", "resnet18", "--cuts", cuts, "--out", str(tmp_path), "--json", "--verify")
    assert code == ExitCode.OK
    report = json.loads(out)
    assert [cut["id"] for cut in report["cuts"]] == expected
    assert report["max_abs_diff"] <= 1e-4
    assert SegmentsManifest.load(tmp_path).cut_ids == tuple(expected)
    assert len(report["files"]) == len(expected)  # a segment between consecutive cuts, and segments.json


def test_split_with_all_cuts_reports_them(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = _run(capsys, "split", "tiny", "--cuts", "all", "--out", str(tmp_path))
    assert code == ExitCode.OK
    assert "a chain of" in out
    assert len(SegmentsManifest.load(tmp_path).segments) == len(list(tmp_path.glob("segment-*.onnx")))


def test_cuts_marks_the_candidates_for_auto(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "cuts", "resnet18", "--json")
    assert code == ExitCode.OK
    assert [cut["id"] for cut in json.loads(out) if cut["candidate"]] == ["input", "layer4.0.add", "pool", "output"]


def test_one_cut_or_several_but_not_both(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "split", "tiny", "--cut", "input", "--cuts", "auto", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_bad_cut_exits_with_the_model_code(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(capsys, "split", "tiny", "--cut", "nope", "--out", str(tmp_path))
    assert code == 3  # ExitCode.MODEL
    assert "unknown cut 'nope'" in err


@pytest.mark.parametrize("argv", [("cuts", "nope"), ("build", "nope", "--out", "x"), ("cuts", "missing.onnx")])
def test_unknown_model_exits_with_the_model_code(capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]) -> None:
    code, _, err = _run(capsys, *argv)
    assert code == ExitCode.MODEL
    assert "nope" in err or "missing.onnx" in err


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["list"], ["build"], ["cuts"], ["split"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["models", *argv, "--help"])
        assert exit_info.value.code == 0
        assert "usage: edgecut models" in capsys.readouterr().out


def test_accuracy_json_on_the_digits_test_set(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["accuracy", "digits", "--cut", "conv1.relu", "--codec", "raw", "--codec", "fp16", "--limit", "20"]
    code, out, _ = _run(capsys, *argv, "--json")
    assert code == ExitCode.OK
    report = json.loads(out)
    assert report["images"] == 20
    assert [(row["cut"], row["codec"]) for row in report["rows"]] == [("conv1.relu", "raw"), ("conv1.relu", "fp16")]
    assert report["rows"][1]["vs_raw"] < 0.6
    assert report["rows"][0]["top1"] is not None


def test_accuracy_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "accuracy", "digits", "--cut", "input", "--codec", "jpeg", "--limit", "5")
    assert code == ExitCode.OK
    assert "digits: 5 images (the digits test set, labelled)" in out
    assert "vs jpeg" in out
    assert "1.000" in out


def test_accuracy_on_image_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from PIL import Image  # noqa: PLC0415 - only this test reads images

    paths = []
    for index in range(2):
        path = tmp_path / f"photo-{index}.png"
        Image.fromarray(np.full((48, 40, 3), index * 100, dtype=np.uint8)).save(path)  # resized to 32x32
        paths.append(str(path))
    code, out, err = _run(capsys, "accuracy", "tiny", "--cut", "input", "--codec", "jpeg", "--images", *paths)
    assert (code, err) == (ExitCode.OK, "")
    assert "tiny: 2 images (2 files)" in out


def test_accuracy_on_an_array_that_does_not_fit_exits_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "wrong.npy"
    np.save(path, np.zeros((2, 2), np.float32))
    code, _, err = _run(capsys, "accuracy", "tiny", "--cut", "input", "--images", str(path))
    assert code == ExitCode.CONFIG
    assert "wrong.npy does not fit input 'image'" in err


def test_accuracy_of_an_unknown_cut_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "accuracy", "digits", "--cut", "nope", "--limit", "2")
    assert code == ExitCode.MODEL
    assert "nope" in err

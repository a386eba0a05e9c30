"""`edgecut models info/cuts/split --verify/profile` on models as users bring them: they work, or name the fix."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import onnx
import pytest

from edgecut._cli import main
from edgecut._exit import ExitCode
from tests.corpus import CORPUS, realistic_inputs

if TYPE_CHECKING:
    from pathlib import Path

STATED = {
    "detector": ("images=1x3x96x128", "--input-shape images=1x3xHEIGHTxWIDTH"),
    "dynamic_classifier": ("input=1x3x80x112", "--input-shape input=1x3xHEIGHTxWIDTH"),
    "recurrent": ("input=1x512", "--input-shape input=1xSAMPLES"),
    "float_input_model": (None, None),
}
"""Per corpus model: the shape to state, and the option its refusal names when none is stated."""
SIZES = {"detector": {"height": 96, "width": 128}, "dynamic_classifier": {"height": 80, "width": 112}}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["models", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("name", sorted(STATED))
def test_each_command_works_at_stated_shapes_or_names_the_option(
    name: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / f"{name}.onnx"
    onnx.save(CORPUS[name](), path)
    stated, fix = STATED[name]
    shape = ["--input-shape", stated] if stated else []
    if fix is not None:
        code, _, err = _run(capsys, "cuts", str(path))
        assert code == ExitCode.MODEL
        assert fix in err
    code, out, err = _run(capsys, "info", str(path), *shape, "--json")
    assert code == ExitCode.OK, err
    candidates = [cut["id"] for cut in json.loads(out)["candidates"]]
    code, out, err = _run(capsys, "cuts", str(path), *shape, "--json")
    assert code == ExitCode.OK, err
    sent = sum(array.nbytes for array in realistic_inputs(name, **SIZES.get(name, {})).values())
    assert json.loads(out)[0]["bytes"] == sent  # the input cut, counted at the stated size
    code, out, err = _run(
        capsys, "split", str(path), *shape, "--cuts", "auto", "--verify", "--out", str(tmp_path / "s")
    )
    assert code == ExitCode.OK, err + out
    code, out, err = _run(capsys, "profile", str(path), *shape, "--json")
    assert code == ExitCode.OK, err
    assert [cut["id"] for cut in json.loads(out)["cuts"]] == candidates

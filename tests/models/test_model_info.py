"""``edgecut models info``: what a user runs first on their own model, QDQ and external data included."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import onnx
import pytest

from edgecut._cli import main
from edgecut._exit import ExitCode
from models import zoo
from models.partition import describe, enumerate_cuts, int8_cuts, load_model_file
from tests._support import quantised_tiny

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="module")
def qdq(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quantised_tiny(tmp_path_factory.mktemp("qdq"))


def test_a_float_model_is_described(tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    onnx.save(zoo.build("tiny"), path)
    info = describe(path)
    assert info.quantisation == "none (float)"
    assert [spec.name for spec in info.inputs] == ["image"]
    assert [spec.name for spec in info.outputs] == ["logits"]
    assert info.external_files == ()
    assert info.file_bytes == path.stat().st_size
    assert info.parameters == sum(int(np.prod(t.dims)) for t in zoo.build("tiny").graph.initializer)
    assert info.candidates[0].id == "input"
    assert info.candidates[-1].id == "output"
    assert [cut.bytes for cut in info.smallest] == sorted(cut.bytes for cut in info.smallest)
    assert info.int8_cuts == ()


def test_a_qdq_model_shows_its_quantisation_and_int8_cuts(qdq: Path) -> None:
    info = describe(qdq)
    assert info.quantisation.startswith("QDQ (")
    assert info.int8_cuts
    model = load_model_file(qdq)
    cuts = {cut.id: cut for cut in enumerate_cuts(model)}
    for cut_id in info.int8_cuts:
        assert all(spec.dtype in {"uint8", "int8"} for spec in cuts[cut_id].tensors)
    assert int8_cuts(model, list(cuts.values())) == set(info.int8_cuts)


def test_external_data_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    onnx.save(zoo.build("tiny"), path, save_as_external_data=True, location="weights.bin", size_threshold=0)
    info = describe(path)
    assert info.external_files == ("weights.bin",)
    assert info.external_bytes == (tmp_path / "weights.bin").stat().st_size > 0


def test_the_command_prints_and_says_json(qdq: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "info", str(qdq)]) == ExitCode.OK
    out = capsys.readouterr().out
    for label in ("sha256", "quantisation  QDQ", "inputs        image uint8[N,32,32,3]", "int8 cuts"):
        assert label in out
    assert main(["models", "info", str(qdq), "--json"]) == ExitCode.OK
    data = json.loads(capsys.readouterr().out)
    assert data["int8_cuts"]
    assert data["outputs"][0]["name"] == "logits"
    assert main(["models", "cuts", str(qdq), "--json"]) == ExitCode.OK
    cuts = json.loads(capsys.readouterr().out)
    assert {cut["id"] for cut in cuts if cut["int8"]} == set(data["int8_cuts"])
    assert main(["models", "info", str(qdq.parent / "missing.onnx")]) == ExitCode.MODEL

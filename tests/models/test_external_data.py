"""Models with their weights in side files, kept where people keep them (the Hugging Face cache's links)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest

from edge_agent import EDGE_ONLY, EdgeAgent
from edgecut._cli import main
from edgecut._exit import ExitCode
from models import zoo
from models.partition import load_model_file, model_file_sha256
from protocol.errors import ModelError

MODEL = "tiny"


def _hub_cache(root: Path) -> Path:
    """The tiny model saved with external data, laid out as the Hugging Face cache does: links into blobs."""
    staging = root / "staging"
    staging.mkdir()
    onnx.save(
        zoo.build(MODEL),
        staging / f"{MODEL}.onnx",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=f"{MODEL}.onnx.data",
        size_threshold=0,
    )
    blobs, snapshot = root / "blobs", root / "snapshots" / "0123abc"
    blobs.mkdir()
    snapshot.mkdir(parents=True)
    for name in (f"{MODEL}.onnx", f"{MODEL}.onnx.data"):
        data = (staging / name).read_bytes()
        blob = blobs / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(Path("../..") / "blobs" / blob.name)
    return snapshot / f"{MODEL}.onnx"


def test_onnx_refuses_the_cache_layout_and_we_do_not(tmp_path: Path) -> None:
    linked = _hub_cache(tmp_path)
    with pytest.raises(Exception, match="symbolic link"):
        onnx.load(linked)  # why this loader exists
    model = load_model_file(linked)
    assert model.SerializeToString() == zoo.build(MODEL).SerializeToString()


def test_identity_does_not_depend_on_how_the_weights_are_stored(tmp_path: Path) -> None:
    single = tmp_path / "single.onnx"
    onnx.save(zoo.build(MODEL), single)
    linked = _hub_cache(tmp_path)
    assert model_file_sha256(single) == hashlib.sha256(single.read_bytes()).hexdigest()
    assert model_file_sha256(linked) == model_file_sha256(single)


def test_external_data_must_stay_beside_the_model_and_be_whole(tmp_path: Path) -> None:
    linked = _hub_cache(tmp_path)
    model = onnx.load(linked, load_external_data=False)
    tensor = next(t for t in model.graph.initializer if t.external_data)
    location = next(entry for entry in tensor.external_data if entry.key == "location")

    def load_with(change: str) -> None:
        location.value = change
        path = tmp_path / "changed.onnx"
        path.write_bytes(model.SerializeToString())
        (tmp_path / f"{MODEL}.onnx.data").write_bytes(b"")  # an empty side file beside it
        load_model_file(path)

    with pytest.raises(ModelError, match="outside the model's directory"):
        load_with("../escape.data")
    with pytest.raises(ModelError, match="outside the model's directory"):
        load_with("/etc/passwd")
    with pytest.raises(ModelError, match="cannot read the external data"):
        load_with("missing.data")
    with pytest.raises(ModelError, match="holds 0 of the"):
        load_with(f"{MODEL}.onnx.data")


def test_the_cut_listing_reads_the_cache_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    linked = _hub_cache(tmp_path)
    assert main(["models", "cuts", str(linked)]) == ExitCode.OK
    assert "stem.out" in capsys.readouterr().out


@pytest.mark.broker
async def test_a_model_with_linked_external_data_is_served_exactly(
    tmp_path: Path, broker_url: str, prefix: str, start_hub: object
) -> None:
    linked = _hub_cache(tmp_path)
    await start_hub(models_dir=linked.parent, use_zoo=False)  # type: ignore[operator]
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    async with EdgeAgent(
        broker_url, model=str(linked), cut="stem.out", prefix=prefix, threads=1, fallback=False
    ) as agent:
        expected = agent.model.halves(EDGE_ONLY).head.run({"image": image[np.newaxis]})["logits"]
        result = await agent.infer(image)
    assert result.hub_id is not None
    np.testing.assert_allclose(result.outputs["logits"], expected, atol=1e-5)

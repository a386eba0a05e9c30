"""Models with their weights in side files, kept where people keep them (the Hugging Face cache's links)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import pytest

from edge_agent import EDGE_ONLY, EdgeAgent
from edgecut._cli import main
from edgecut._exit import ExitCode
from models import zoo
from models.partition import load_model_file, model_file_sha256
from protocol.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Iterator

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


def _fields(message: bytes) -> Iterator[tuple[int, bytes | int]]:
    """The fields of one protobuf message, in the order they are written: (field number, value)."""
    offset = 0
    while offset < len(message):
        key, offset = _varint(message, offset)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, offset = _varint(message, offset)
            yield number, value
        elif wire_type == 2:
            length, offset = _varint(message, offset)
            yield number, message[offset : offset + length]
            offset += length
        else:
            size = {1: 8, 5: 4}[wire_type]
            yield number, message[offset : offset + size]
            offset += size


def _varint(data: bytes, offset: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[offset]
        value, shift, offset = value | (byte & 0x7F) << shift, shift + 7, offset + 1
        if byte < 0x80:
            return value, offset


def test_the_rewritten_tensor_records_list_their_fields_in_field_number_order(tmp_path: Path) -> None:
    """docs/protocol.md 8: dims (1, one key per dim), data_type (2), name (8), raw_data (9), nothing else here."""
    linked = _hub_cache(tmp_path)
    identity_bytes = load_model_file(linked).SerializeToString()
    assert hashlib.sha256(identity_bytes).hexdigest() == model_file_sha256(linked)
    # ModelProto.graph is field 7, GraphProto.initializer field 5
    (graph,) = [value for number, value in _fields(identity_bytes) if number == 7 and isinstance(value, bytes)]
    records = [value for number, value in _fields(graph) if number == 5 and isinstance(value, bytes)]
    stored = onnx.load_model_from_string(linked.read_bytes()).graph.initializer
    assert len(records) == len(stored) > 0
    side = (linked.parent / f"{MODEL}.onnx.data").read_bytes()
    for record, tensor in zip(records, stored, strict=True):
        fields = list(_fields(record))
        assert [number for number, _ in fields] == [1] * len(tensor.dims) + [2, 8, 9]
        where = {entry.key: entry.value for entry in tensor.external_data}
        start = int(where.get("offset", 0))
        assert fields[-1][1] == side[start : start + int(where["length"])]


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

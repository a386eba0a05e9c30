"""The zoo's transformers: built offline, deterministic, and split exactly wherever they are cut."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from models import Session, zoo
from models._zoo_transformers import Encoder, vit
from models.partition import enumerate_cuts, split, verify_split


def _tokens(batch: int, length: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, (batch, length), dtype=np.int64)


@pytest.mark.parametrize("name", ["vit_tiny", "bert_tiny"])
def test_the_same_seed_gives_the_same_bytes(name: str) -> None:
    assert zoo.build(name, seed=0).SerializeToString() == zoo.build(name, seed=0).SerializeToString()
    assert zoo.build(name, seed=1).SerializeToString() != zoo.build(name, seed=0).SerializeToString()
    onnx.checker.check_model(zoo.build(name), full_check=True)


def test_bert_takes_any_sequence_length_and_keeps_it_symbolic() -> None:
    model = zoo.build("bert_tiny")
    session = Session(model.SerializeToString(), threads=1)
    for length in (1, 7, 128):
        logits = session.run({"tokens": _tokens(2, length)})["logits"]
        assert logits.shape == (2, 2)
        assert np.isfinite(logits).all()
    middle = enumerate_cuts(model)[len(enumerate_cuts(model)) // 2]
    assert all(spec.shape[:2] == ("N", "S") for spec in middle.tensors if len(spec.shape) == 3)


def test_vit_logits_depend_on_the_image() -> None:
    session = Session(zoo.build("vit_tiny").SerializeToString(), threads=1)
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    logits = session.run({"image": images})["logits"]
    assert len(set(logits.argmax(axis=1).tolist())) >= 2
    assert 0.05 < float(logits.std()) < 100


@pytest.mark.parametrize("name", ["vit_tiny", "bert_tiny"])
def test_every_fifth_cut_splits_exactly(name: str) -> None:
    model = zoo.build(name)
    cuts = enumerate_cuts(model)
    for cut in cuts[1:-1:5]:
        assert verify_split(model, split(model, cut.id, model_id=name)) <= 1e-5, cut.id


def test_a_vit_of_other_dimensions_has_them_and_splits_exactly() -> None:
    model = vit(0, size=48, patch=16, classes=5, encoder=Encoder(width=48, heads=3, layers=3, mlp=96), name="vit_x")
    session = Session(model.SerializeToString(), threads=1)
    images = np.random.default_rng(0).integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)
    assert session.run({"image": images})["logits"].shape == (2, 5)
    cuts = {cut.id: cut for cut in enumerate_cuts(model)}
    assert [spec.shape for spec in cuts["block2.out"].tensors] == [("N", 9, 48)]  # 3x3 patches, 48 wide
    assert "block3.out" not in cuts
    assert verify_split(model, split(model, "block1.out", model_id="vit_x")) <= 1e-5


def test_vit_s16_has_the_size_users_deploy() -> None:
    model = zoo.vit_s16()
    parameters = sum(int(np.prod(weight.dims)) for weight in model.graph.initializer)
    assert 21e6 < parameters < 23e6  # DeiT-S / ViT-S/16: 22M
    (image,) = model.graph.input
    assert [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim] == ["N", 224, 224, 3]
    assert {p.key: p.value for p in model.metadata_props}["edgecut.zoo.name"] == "vit_s16"

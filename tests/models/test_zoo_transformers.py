"""The zoo's transformers: built offline, deterministic, and split exactly wherever they are cut."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from models import Session, zoo
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

"""The trained ``digits`` model: its data, its recorded accuracy, and what codecs cost it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from models import Session, digits, zoo
from models.accuracy import measure

if TYPE_CHECKING:
    import onnx

RECORDED_TOP1 = 353 / 360  # the zoo's description records the trained model's test top-1


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return zoo.build("digits")


def test_frames_are_camera_frames_of_the_digits() -> None:
    levels = np.zeros((2, 8, 8), np.uint8)
    levels[0, 3, 5] = 16
    levels[1, 0, 0] = 8
    frames = digits.frames(levels)
    assert frames.shape == (2, 32, 32, 3)
    assert frames.dtype == np.uint8
    assert (frames[0, 12:16, 20:24] == 255).all()
    assert frames[0].sum() == 255 * 16 * 3
    assert (frames[1, :4, :4] == 128).all()


def test_the_test_set_ships_with_its_labels() -> None:
    images, labels = digits.test_set()
    assert images.shape == (360, 32, 32, 3)
    assert sorted(set(labels.tolist())) == list(range(10))
    assert np.bincount(labels).min() >= 35  # stratified: every class about a tenth


def test_the_trained_model_scores_what_its_description_records(model: onnx.ModelProto) -> None:
    images, labels = digits.test_set()
    logits = Session(model.SerializeToString(), threads=1).run({"image": images})["logits"]
    assert (logits.argmax(axis=1) == labels).mean() >= RECORDED_TOP1
    assert "98.1% test top-1 (353 of 360)" in zoo.describe("digits")


def test_trained_weights_replace_the_seeded_ones(model: onnx.ModelProto) -> None:
    untrained = zoo.build("digits", trained=False)
    assert untrained.SerializeToString() != model.SerializeToString()
    assert zoo.build("digits", seed=5).SerializeToString() == model.SerializeToString()  # the seed no longer matters
    props = {prop.key: prop.value for prop in model.metadata_props}
    assert props["edgecut.zoo.weights"] == "digits.npz"


def test_accuracy_rows_say_what_each_codec_costs(model: onnx.ModelProto) -> None:
    images, labels = digits.test_set()
    rows = measure(
        model, ["input", "conv2.relu", "output"], ["raw", "int8+zstd", "jpeg"], images[:60], labels[:60], model_id="d"
    )
    by = {(row.cut, row.codec): row for row in rows}
    assert set(by) == {
        ("input", "raw"),
        ("input", "int8+zstd"),
        ("input", "jpeg"),
        ("conv2.relu", "raw"),
        ("conv2.relu", "int8+zstd"),
    }
    raw = by["conv2.relu", "raw"]
    assert (raw.vs_raw, raw.agreement, raw.max_logit_error, raw.top1_change) == (1.0, 1.0, 0.0, 0.0)
    assert by["input", "jpeg"].vs_jpeg == 1.0
    assert by["input", "int8+zstd"].vs_raw < 1.0  # the image is uint8: int8 leaves it, zstd packs it
    packed = by["conv2.relu", "int8+zstd"]
    assert packed.vs_raw < 0.25
    assert packed.top1 is not None
    assert packed.top1_change is not None
    assert abs(packed.top1_change) <= 2.0

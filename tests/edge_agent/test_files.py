"""Agent inputs from files (.npy, images) and the top-k readout."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from edge_agent._files import load_input, top_k
from models import TensorSpec
from protocol.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

SPEC = TensorSpec(name="image", dtype="uint8", shape=("N", 32, 32, 3))
WIDE = TensorSpec(name="image", dtype="uint8", shape=("N", 24, 40, 3))  # height 24, width 40


def _gradient(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256], -1).astype(np.uint8)


def test_npy_is_returned_as_saved(tmp_path: Path) -> None:
    array = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    path = tmp_path / "sample.npy"
    np.save(path, array)
    loaded = load_input(path, SPEC)
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, array)


def test_npy_suffix_is_case_insensitive_and_a_batch_axis_may_come_with_it(tmp_path: Path) -> None:
    array = np.ones((2, 32, 32, 3), dtype=np.uint8)  # a batch of two: N is the model's to bind
    path = tmp_path / "SAMPLE.NPY"
    with path.open("wb") as file:  # np.save(path) would append ".npy"
        np.save(file, array)
    np.testing.assert_array_equal(load_input(path, SPEC), array)


@pytest.mark.parametrize("array", [np.ones((2, 5), np.uint8), np.ones((32, 32, 3), np.float32)])
def test_an_npy_that_does_not_fit_the_input_is_a_config_error_naming_the_file(
    tmp_path: Path, array: np.ndarray
) -> None:
    path = tmp_path / "wrong.npy"
    np.save(path, array)
    expected = rf"wrong\.npy does not fit input 'image': it is {array.dtype}\[.*expected uint8\['N', 32, 32, 3\]"
    with pytest.raises(ConfigError, match=expected):
        load_input(path, SPEC)


def test_object_npy_is_refused_not_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "pickled.npy"
    np.save(path, np.array([{"evil": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ConfigError, match=r"cannot read .*pickled\.npy as a numpy array"):
        load_input(path, SPEC)


def test_broken_npy_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.npy"
    path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ConfigError, match="cannot read"):
        load_input(path, SPEC)


def test_missing_npy_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_input(tmp_path / "absent.npy", SPEC)


@pytest.mark.parametrize(("suffix", "fmt"), [(".png", "PNG"), (".jpg", "JPEG"), (".JPEG", "JPEG"), (".bmp", "BMP")])
def test_images_are_resized_to_the_input_height_and_width(tmp_path: Path, suffix: str, fmt: str) -> None:
    path = tmp_path / f"photo{suffix}"
    Image.fromarray(_gradient(100, 60)).save(path, format=fmt)
    loaded = load_input(path, WIDE)
    assert loaded.shape == (24, 40, 3)
    assert loaded.dtype == np.uint8


def test_png_resize_keeps_the_picture(tmp_path: Path) -> None:
    source = np.zeros((64, 64, 3), dtype=np.uint8)
    source[:, :32] = (255, 0, 0)  # left half red, right half blue
    source[:, 32:] = (0, 0, 255)
    path = tmp_path / "halves.png"
    Image.fromarray(source).save(path)
    loaded = load_input(path, SPEC)
    assert loaded.shape == (32, 32, 3)
    np.testing.assert_array_equal(loaded[:, :8], np.broadcast_to([255, 0, 0], (32, 8, 3)))
    np.testing.assert_array_equal(loaded[:, -8:], np.broadcast_to([0, 0, 255], (32, 8, 3)))


def test_image_at_the_right_size_is_read_exactly(tmp_path: Path) -> None:
    source = _gradient(32, 32)
    path = tmp_path / "exact.png"
    Image.fromarray(source).save(path)
    np.testing.assert_array_equal(load_input(path, SPEC), source)


def test_rgba_is_converted_to_rgb(tmp_path: Path) -> None:
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    rgba[..., :3] = (10, 200, 30)
    rgba[..., 3] = 255
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    loaded = load_input(path, SPEC)
    assert loaded.shape == (32, 32, 3)
    np.testing.assert_array_equal(loaded, np.broadcast_to([10, 200, 30], (32, 32, 3)))


def test_grayscale_is_converted_to_rgb(tmp_path: Path) -> None:
    gray = np.full((16, 48), 77, dtype=np.uint8)
    path = tmp_path / "gray.png"
    Image.fromarray(gray, mode="L").save(path)
    loaded = load_input(path, SPEC)
    assert loaded.shape == (32, 32, 3)
    np.testing.assert_array_equal(loaded, np.full((32, 32, 3), 77, dtype=np.uint8))


def test_palette_gif_is_converted_to_rgb(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    Image.fromarray(_gradient(32, 32)).convert("P").save(path)
    assert load_input(path, SPEC).shape == (32, 32, 3)


def test_corrupt_image_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ConfigError, match=r"cannot read image .*broken\.png"):
        load_input(path, SPEC)


@pytest.mark.parametrize("name", ["data.txt", "tensor.npz", "no_suffix", "photo.tiff"])
def test_unsupported_suffix_is_refused_with_the_accepted_kinds(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"whatever")
    with pytest.raises(ConfigError) as caught:
        load_input(path, SPEC)
    message = str(caught.value)
    assert name in message
    assert ".npy" in message
    assert ".png" in message
    assert ".jpg" in message


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (TensorSpec(name="x", dtype="float32", shape=("N", 32, 32, 3)), "float32"),
        (TensorSpec(name="x", dtype="uint8", shape=("N", 3, 32, 32)), "not an NHWC uint8 image"),
        (TensorSpec(name="x", dtype="uint8", shape=("N", 32, 32)), "not an NHWC uint8 image"),
        (TensorSpec(name="x", dtype="uint8", shape=("N", "H", "W", 3)), "dynamic image size"),
    ],
)
def test_image_for_a_non_image_input_is_refused(tmp_path: Path, spec: TensorSpec, fragment: str) -> None:
    path = tmp_path / "photo.png"
    Image.fromarray(_gradient(32, 32)).save(path)
    with pytest.raises(ConfigError, match=r"pass a \.npy array") as caught:
        load_input(path, spec)
    assert fragment in str(caught.value)
    assert "'x'" in str(caught.value)


def test_top_k_is_ordered_by_probability() -> None:
    logits = np.array([[0.5, 3.0, -1.0, 2.0, 3.0, 0.0, 1.0]], dtype=np.float32)
    best = top_k(logits, k=5)
    assert [cls for cls, _ in best] == [1, 4, 3, 6, 0]  # ties keep the lower class first
    probabilities = [p for _, p in best]
    assert probabilities == sorted(probabilities, reverse=True)
    assert probabilities[0] == probabilities[1]
    assert sum(probabilities) < 1.0
    assert all(0.0 < p <= 1.0 for p in probabilities)


def test_top_k_probabilities_are_a_softmax() -> None:
    logits = np.array([1.0, 2.0, 3.0])
    best = dict(top_k(logits, k=3))
    expected = np.exp(logits) / np.exp(logits).sum()
    assert best == pytest.approx({0: expected[0], 1: expected[1], 2: expected[2]})
    assert sum(best.values()) == pytest.approx(1.0)


def test_top_k_survives_huge_logits_and_short_inputs() -> None:
    best = top_k(np.array([1000.0, 999.0]), k=5)
    assert [cls for cls, _ in best] == [0, 1]
    assert all(np.isfinite(p) for _, p in best)
    assert sum(p for _, p in best) == pytest.approx(1.0)

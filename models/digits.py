"""The labelled data of the zoo's trained ``digits`` model: frames as a camera gives them, and the test set.

scikit-learn's handwritten digits are 8x8 grey levels 0-16; the model takes
what the rest of the zoo takes, a uint8 NHWC RGB frame, here 32x32. The 360
test images (a stratified fifth, ``random_state=0``, as
``scripts/train_digits.py`` split them) ship in ``models/trained/``, so
measuring accuracy needs neither scikit-learn nor ``onnx``.
"""

from __future__ import annotations

import io
from importlib import resources

import numpy as np

__all__ = ["UPSCALE", "frames", "test_set"]

UPSCALE = 4
"""Each 8x8 digit is shown at 32x32: each level becomes a 4x4 block."""
_LEVELS = 16


def frames(images: np.ndarray) -> np.ndarray:
    """8x8 digits (levels 0-16) as uint8 32x32 RGB frames, ``[N, 32, 32, 3]``."""
    levels = np.asarray(images, dtype=np.float32)
    grey = np.rint(levels * (255 / _LEVELS)).clip(0, 255).astype(np.uint8)
    big = grey.repeat(UPSCALE, axis=-2).repeat(UPSCALE, axis=-1)
    return np.ascontiguousarray(np.repeat(big[..., np.newaxis], 3, axis=-1))


def test_set() -> tuple[np.ndarray, np.ndarray]:
    """The 360 test frames (``[360, 32, 32, 3]`` uint8) and their labels (int64)."""
    data = resources.files("models").joinpath("trained", "digits-test.npz").read_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        return frames(arrays["images"]), arrays["labels"]

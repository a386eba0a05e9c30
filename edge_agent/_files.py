"""Inputs from files (images, ``.npy`` arrays) and top-k readouts, for the command line."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from protocol.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

    from models import TensorSpec

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
MAX_IMAGE_PIXELS = 50_000_000
"""The largest image read (width times height): a larger header is refused before decoding."""


def load_input(path: Path, spec: TensorSpec) -> np.ndarray:
    """Read ``path`` as one sample of the model input ``spec`` (no batch axis).

    ``.npy`` files are taken as they are (no pickle). Images are converted to
    RGB and resized to the input's height and width; the input must be a
    uint8 NHWC image tensor, as the zoo models take.

    Raises:
        ConfigError: The file cannot be read or does not fit the input.
    """
    if path.suffix.lower() == ".npy":
        try:
            array: np.ndarray = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            msg = f"cannot read {path} as a numpy array: {exc}"
            raise ConfigError(msg) from exc
        why = spec.mismatch(array[np.newaxis] if array.ndim == len(spec.shape) - 1 else array)
        if why is not None:
            msg = f"{path} does not fit input {spec.name!r}: it {why}"
            raise ConfigError(msg)
        return array
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _load_image(path, spec)
    msg = f"{path}: give an image ({', '.join(sorted(IMAGE_SUFFIXES))}) or a .npy array"
    raise ConfigError(msg)


def _load_image(path: Path, spec: TensorSpec) -> np.ndarray:
    try:
        with path.open("rb") as file:
            return _decoded(file, spec, f"image {path}")
    except OSError as exc:
        msg = f"cannot read image {path}: {exc.strerror or exc}"
        raise ConfigError(msg) from exc


def decode_image(data: bytes, spec: TensorSpec) -> np.ndarray:
    """An encoded image (PNG, JPEG, ...) as one sample of the model input ``spec``, as :func:`load_input` reads files.

    Raises:
        ConfigError: It is no image Pillow reads, is over :data:`MAX_IMAGE_PIXELS`,
            or the input is no NHWC uint8 image.
    """
    return _decoded(io.BytesIO(data), spec, "the image")


def resize_image(rgb: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """An RGB uint8 ``HxWx3`` image (a camera frame) as one sample of the model input ``spec``.

    Raises:
        ConfigError: The input is no NHWC uint8 image of a fixed size.
    """
    size = _image_size(spec)
    if (rgb.shape[1], rgb.shape[0]) == size:
        return rgb
    from PIL import Image  # noqa: PLC0415 - optional: edgecut[images]

    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR), dtype=np.uint8)


def _decoded(file: BinaryIO, spec: TensorSpec, what: str) -> np.ndarray:
    size = _image_size(spec)
    try:
        from PIL import Image  # noqa: PLC0415 - optional: edgecut[images]
    except ImportError as exc:
        msg = "reading images needs Pillow: pip install 'edgecut[images]'"
        raise ConfigError(msg) from exc
    try:
        with Image.open(file) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:  # the header's size, before decoding a pixel
                msg = f"{what} is {image.width}x{image.height}, over the {MAX_IMAGE_PIXELS:,} pixels taken"
                raise ConfigError(msg)
            rgb = image.convert("RGB").resize(size, Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
    except (OSError, Image.DecompressionBombError) as exc:
        msg = f"cannot read {what}: {exc}"
        raise ConfigError(msg) from exc


def _image_size(spec: TensorSpec) -> tuple[int, int]:
    """(width, height) of an NHWC uint8 image input."""
    shape = spec.shape
    if spec.dtype != "uint8" or len(shape) != 4 or shape[3] != 3:  # noqa: PLR2004 - NHWC, RGB
        msg = f"input {spec.name!r} ({spec.dtype}{list(shape)}) is not an NHWC uint8 image: pass a .npy array"
        raise ConfigError(msg)
    height, width = shape[1], shape[2]
    if not isinstance(height, int) or not isinstance(width, int):
        msg = f"input {spec.name!r} has a dynamic image size: pass a .npy array"
        raise ConfigError(msg)
    return width, height


def top_k(logits: np.ndarray, k: int = 5) -> list[tuple[int, float]]:
    """The ``k`` most likely classes of one sample's logits, with softmax probabilities."""
    flat = np.asarray(logits, dtype=np.float64).reshape(-1)
    probabilities = np.exp(flat - flat.max())
    probabilities /= probabilities.sum()
    best = np.argsort(-probabilities, kind="stable")[:k]
    return [(int(i), float(probabilities[i])) for i in best]

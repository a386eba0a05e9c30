"""Random valid inputs for a model, and camera-like images: what warm-ups, checks and measurements run on."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

    from models._manifest import TensorSpec


def random_feeds(
    specs: Iterable[TensorSpec],
    *,
    batch: int = 1,
    seed: int = 0,
    shapes: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, np.ndarray]:
    """A random valid input for each spec: of its shape in ``shapes``, else symbolic dimensions set to ``batch``.

    ``uint8`` tensors get integers 0..255 (pixels), other integers 0..9, booleans
    fair coin flips, floating point tensors standard normal values.
    """
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = tuple(shapes[spec.name]) if shapes and spec.name in shapes else spec.concrete(batch)
        dtype = np.dtype(spec.dtype)
        if dtype == np.uint8:
            feeds[spec.name] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        elif dtype.kind in "iu":
            feeds[spec.name] = rng.integers(0, 10, size=shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.random(shape) < 0.5  # noqa: PLR2004 - a fair coin
        else:
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def camera_images(count: int, shape: tuple[int, ...], seed: int = 0) -> Iterator[np.ndarray]:
    """Deterministic camera-like uint8 images of ``shape`` (height, width, channels): smooth gradients plus noise.

    Unlike :func:`random_feeds`' uniform noise they compress as a camera's
    frames do (a 224x224 JPEG at quality 90: about 20 KB), so what an image
    codec sends is measured on them.
    """
    rng = np.random.default_rng(seed)
    height, width, channels = shape
    y, x = np.mgrid[0:height, 0:width]
    for _ in range(count):
        fx, fy = rng.uniform(0.005, 0.05, 2).tolist()
        phase = rng.uniform(0, 6.3)
        base = 127 + 100 * np.sin(fx * x + fy * y + phase)
        tint = rng.uniform(0.6, 1.0, channels)
        noise = rng.normal(0, 12, (height, width, channels))
        yield np.clip(base[..., None] * tint + noise, 0, 255).astype(np.uint8)

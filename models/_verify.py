"""Run a split with ONNX Runtime and compare it with the full model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from models._manifest import CLOUD_ONLY, EDGE_ONLY
from models._runtime import Session
from models._segments import Chain

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    import onnx

    from models._manifest import TensorSpec
    from models._split import Segments, Split


def random_feeds(specs: Iterable[TensorSpec], *, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """A random valid input for each spec, symbolic dimensions set to ``batch``.

    ``uint8`` tensors get integers 0..255 (pixels), other integers 0..9, booleans
    fair coin flips, floating point tensors standard normal values.
    """
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = tuple(d if isinstance(d, int) else batch for d in spec.shape)
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


def run_model(
    model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], *, optimize: bool = True
) -> dict[str, np.ndarray]:
    """Run ``model`` on the ``feeds`` it reads; return its outputs."""
    session = Session(model.SerializeToString(), optimize=optimize)
    wanted = {spec.name for spec in session.inputs}
    return session.run({name: value for name, value in feeds.items() if name in wanted})


def run_split(split: Split, feeds: Mapping[str, np.ndarray], *, optimize: bool = True) -> dict[str, np.ndarray]:
    """Run ``split``'s tail on its head's result, as edge and cloud would.

    Args:
        split: The halves to run (either may be ``None``).
        feeds: The full model's inputs by name.
        optimize: Apply ORT's graph optimisations.

    Returns:
        The full model's outputs by name.
    """
    crossing = dict(feeds) if split.head is None else run_model(split.head, feeds, optimize=optimize)
    if split.tail is None:
        return {spec.name: crossing[spec.name] for spec in split.manifest.outputs}
    return run_model(split.tail, crossing, optimize=optimize)


def max_abs_diff(expected: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray]) -> float:
    """Largest absolute difference over every tensor of ``expected``.

    NaN matches NaN, and an infinity the same infinity. A missing tensor, a
    shape mismatch, or a NaN against a number gives ``inf``.
    """
    worst = 0.0
    for name, want in expected.items():
        got = actual.get(name)
        if got is None or got.shape != want.shape:
            return float("inf")
        worst = max(worst, _diff(want, got))
    return worst


def _diff(want: np.ndarray, got: np.ndarray) -> float:
    want, got = want.astype(np.float64), got.astype(np.float64)
    same = (want == got) | (np.isnan(want) & np.isnan(got))  # equal infinities too
    diff = np.where(same, 0.0, np.abs(want - got))
    if np.isnan(diff).any():
        return float("inf")
    return float(diff.max(initial=0.0))


def verify_split(
    model: onnx.ModelProto,
    split: Split,
    *,
    batch: int = 1,
    seed: int = 0,
    optimize: bool = True,
) -> float:
    """The max absolute difference of ``tail(head(x))`` from ``model(x)``, random ``x``.

    Args:
        model: The full model that was split.
        split: Its halves.
        batch: Size of every symbolic dimension of the random input.
        seed: Seed of the random input (see :func:`random_feeds`).
        optimize: Apply ORT's graph optimisations (results then differ by
            about 1e-6 rather than being bit-exact).
    """
    feeds = random_feeds(split.manifest.inputs, batch=batch, seed=seed)
    return max_abs_diff(
        run_model(model, feeds, optimize=optimize),
        run_split(split, feeds, optimize=optimize),
    )


def verify_segments(
    model: onnx.ModelProto,
    segments: Segments,
    *,
    batch: int = 1,
    seed: int = 0,
    optimize: bool = True,
) -> float:
    """The max absolute difference of ``tail(head(x))`` from ``model(x)`` at any cut of the chain, random ``x``.

    Args:
        model: The full model that was split.
        segments: Its chain of segments.
        batch: Size of every symbolic dimension of the random input.
        seed: Seed of the random input (see :func:`random_feeds`).
        optimize: Apply ORT's graph optimisations.
    """
    parts = [Session(part.SerializeToString(), optimize=optimize) for part in segments.models]
    chain = Chain(segments.manifest, parts)
    feeds = random_feeds(segments.manifest.inputs, batch=batch, seed=seed)
    expected = run_model(model, feeds, optimize=optimize)
    worst = 0.0
    for cut_id in segments.manifest.cut_ids:
        crossing, _ = chain.run(feeds, CLOUD_ONLY, cut_id)
        worst = max(worst, max_abs_diff(expected, chain.run(crossing, cut_id, EDGE_ONLY)[0]))
    return worst

"""Run a split with ONNX Runtime and compare it with the full model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from models._feeds import random_feeds
from models._input_shapes import batch_symbols, resolve_input_shapes
from models._manifest import CLOUD_ONLY, EDGE_ONLY
from models._runtime import Session
from models._segments import Chain
from models._shapes import input_specs

if TYPE_CHECKING:
    from collections.abc import Mapping

    import onnx

    from models._input_shapes import InputShapes
    from models._split import Segments, Split


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
    input_shapes: InputShapes | None = None,
) -> float:
    """The max absolute difference of ``tail(head(x))`` from ``model(x)``, random ``x``.

    Args:
        model: The full model that was split.
        split: Its halves.
        batch: Size of a batch axis the ``input_shapes`` do not state.
        seed: Seed of the random input (see :func:`random_feeds`).
        optimize: Apply ORT's graph optimisations (results then differ by
            about 1e-6 rather than being bit-exact).
        input_shapes: Shapes of the random input (see ``models.partition.input_shapes``).

    Raises:
        ModelError: An input's size is known from nowhere.
    """
    feeds = _feeds(model, batch, seed, input_shapes)
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
    input_shapes: InputShapes | None = None,
) -> float:
    """The max absolute difference of ``tail(head(x))`` from ``model(x)`` at any cut of the chain, random ``x``.

    Args:
        model: The full model that was split.
        segments: Its chain of segments.
        batch: Size of a batch axis the ``input_shapes`` do not state.
        seed: Seed of the random input (see :func:`random_feeds`).
        optimize: Apply ORT's graph optimisations.
        input_shapes: Shapes of the random input (see ``models.partition.input_shapes``).

    Raises:
        ModelError: An input's size is known from nowhere.
    """
    parts = [Session(part.SerializeToString(), optimize=optimize) for part in segments.models]
    chain = Chain(segments.manifest, parts)
    feeds = _feeds(model, batch, seed, input_shapes)
    expected = run_model(model, feeds, optimize=optimize)
    worst = 0.0
    for cut_id in segments.manifest.cut_ids:
        crossing, _ = chain.run(feeds, CLOUD_ONLY, cut_id)
        worst = max(worst, max_abs_diff(expected, chain.run(crossing, cut_id, EDGE_ONLY)[0]))
    return worst


def _feeds(model: onnx.ModelProto, batch: int, seed: int, stated: InputShapes | None) -> dict[str, np.ndarray]:
    """A random input for ``model`` at the resolved shapes, a batch axis not stated at ``batch``."""
    specs = input_specs(model)
    resolved = resolve_input_shapes(specs, stated, {prop.key: prop.value for prop in model.metadata_props})
    batches = batch_symbols(specs)
    shapes = {
        spec.name: resolved[spec.name]
        if spec.name in (stated or {})
        else tuple(batch if dim in batches else size for dim, size in zip(spec.shape, resolved[spec.name], strict=True))
        for spec in specs
    }
    return random_feeds(specs, shapes=shapes, seed=seed)

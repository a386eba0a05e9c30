"""The concrete shapes a model is counted and run at.

A model exported with dynamic axes (a detector's height and width, an audio
model's number of samples) says nothing about the sizes it will be run at,
and every byte count depends on them. They come, in order, from the user
(``--input-shape images=1x3x640x640``; ``input_shapes={"images": (1, 3, 640,
640)}`` in Python), from the model's own metadata where its exporter left
them (``edgecut.input_shapes``, a JSON object of input name to dims, or
ultralytics' ``imgsz``), and for a batch axis (a symbolic first axis of
an input) from the convention of counting one item. Any other unknown size
is refused, naming the axes and the option that fixes it: never a silent 1.

Needs no ``onnx``: an agent running prebuilt halves resolves shapes too.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, TypeAlias

from protocol.errors import ModelError, ShapesNotStatedError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from models._manifest import TensorSpec

InputShapes: TypeAlias = "Mapping[str, Sequence[int]]"
"""A concrete shape per model input name, e.g. ``{"images": (1, 3, 640, 640)}``."""

INPUT_SHAPES_KEY = "edgecut.input_shapes"
"""The metadata property that states a model's input shapes: a JSON object of name to dims."""

_SHAPE = re.compile(r"^(?P<name>[^=]+)=(?P<dims>\d+(?:x\d+)*)?$")


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """Read ``NAME=D1xD2x...`` (``NAME=`` for a scalar) as given to ``--input-shape``.

    Raises:
        ModelError: The text is not of that form.
    """
    found = _SHAPE.match(text.strip())
    if found is None:
        msg = f"input shape {text!r} is not NAME=D1xD2x... (for example images=1x3x640x640; NAME= for a scalar)"
        raise ModelError(msg)
    dims = found["dims"]
    return found["name"], tuple(int(d) for d in dims.split("x")) if dims else ()


def batch_symbols(inputs: Sequence[TensorSpec]) -> frozenset[str]:
    """The names of the model's batch axes: symbolic first axes of its inputs."""
    return frozenset(spec.shape[0] for spec in inputs if spec.shape and isinstance(spec.shape[0], str))


def bound_symbols(specs: Sequence[TensorSpec], shapes: Mapping[str, Sequence[int]]) -> dict[str, int]:
    """The value each symbolic size of ``specs`` takes in ``shapes``, by tensor name (those absent skipped)."""
    return {
        dim: size
        for spec in specs
        if spec.name in shapes
        for dim, size in zip(spec.shape, shapes[spec.name], strict=False)
        if isinstance(dim, str)
    }


def resolve_input_shapes(
    inputs: Sequence[TensorSpec], stated: InputShapes | None = None, metadata: Mapping[str, str] | None = None
) -> dict[str, tuple[int, ...]]:
    """The concrete shape of each of a model's ``inputs``, as the module docstring orders the sources.

    Args:
        inputs: The model's inputs as it declares them.
        stated: The user's shapes, by input name.
        metadata: The model's metadata properties (``metadata_props``).

    Raises:
        ModelError: A stated shape names no input or does not fit the
            input's rank or fixed sizes.
        ShapesNotStatedError: A size is known from nowhere (the message
            names every such axis and how to state it).
    """
    stated = dict(stated or {})
    unknown_names = sorted(set(stated) - {spec.name for spec in inputs})
    if unknown_names:
        names = ", ".join(spec.name for spec in inputs)
        msg = f"--input-shape names {', '.join(map(repr, unknown_names))}, not an input of the model (inputs: {names})"
        raise ModelError(msg)
    implied = _metadata_shapes(metadata or {}, inputs)
    batches = batch_symbols(inputs)
    shapes: dict[str, tuple[int, ...]] = {}
    missing: list[str] = []
    for spec in inputs:
        if spec.name in stated:
            shapes[spec.name] = _fitted(spec, tuple(stated[spec.name]))
            continue
        dims = implied.get(spec.name, spec.shape)
        unknown = [f"{axis} ({dim!r})" for axis, dim in enumerate(dims) if isinstance(dim, str) and dim not in batches]
        if unknown:
            axes = "axis" if len(unknown) == 1 else "axes"
            missing.append(f"input {spec.name!r} {spec.dtype}{list(spec.shape)} on {axes} {', '.join(unknown)}")
            continue
        shapes[spec.name] = tuple(dim if isinstance(dim, int) else 1 for dim in dims)
    if missing:
        example = " ".join(f"--input-shape {s.name}={_example(s, batches)}" for s in inputs if s.name not in shapes)
        msg = (
            f"the model does not say the size of {'; '.join(missing)}: state it, e.g. {example} "
            "(Python: input_shapes={name: shape})"
        )
        raise ShapesNotStatedError(msg, tuple(inputs))
    return shapes


def _fitted(spec: TensorSpec, shape: tuple[int, ...]) -> tuple[int, ...]:
    fits = len(shape) == len(spec.shape) and all(
        isinstance(want, str) or want == got for want, got in zip(spec.shape, shape, strict=True)
    )
    if not fits or any(dim < 1 for dim in shape):
        stated = "x".join(map(str, shape)) or "a scalar"
        msg = f"input {spec.name!r} is {spec.dtype}{list(spec.shape)}: a stated shape of {stated} does not fit it"
        raise ModelError(msg)
    return shape


def _example(spec: TensorSpec, batches: frozenset[str]) -> str:
    dims = [str(d) if isinstance(d, int) else "1" if d in batches else d.upper() for d in spec.shape]
    return "x".join(dims)


def _metadata_shapes(metadata: Mapping[str, str], inputs: Sequence[TensorSpec]) -> dict[str, tuple[int | str, ...]]:
    """Input shapes the exporter wrote down: ``edgecut.input_shapes``, or ultralytics' ``imgsz``."""
    try:
        if INPUT_SHAPES_KEY in metadata:
            stated = json.loads(metadata[INPUT_SHAPES_KEY])
            return {str(name): tuple(int(dim) for dim in dims) for name, dims in stated.items()}
        images = [spec for spec in inputs if len(spec.shape) == 4]  # noqa: PLR2004 - NCHW
        if "imgsz" in metadata and len(inputs) == 1 and len(images) == 1:
            height, width = (int(size) for size in json.loads(metadata["imgsz"]))
            return {images[0].name: (images[0].shape[0], images[0].shape[1], height, width)}
    except (ValueError, TypeError, AttributeError) as exc:
        msg = f"the model's metadata states its input shapes in a form edgecut cannot read: {exc}"
        raise ModelError(msg) from exc
    return {}

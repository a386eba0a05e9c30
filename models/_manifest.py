"""Tensor specs and split manifests: plain data, no ``onnx`` import.

A manifest is what lets an agent and a hub prove they hold matching halves of
one model: the full model's sha256, the cut, the tensors that cross it, and the
sha256 of each half. It is stored as ``manifest.json`` beside ``head.onnx`` and
``tail.onnx``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import numpy as np

from protocol.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

MANIFEST_FORMAT = 1
HEAD_FILE = "head.onnx"
TAIL_FILE = "tail.onnx"
MANIFEST_FILE = "manifest.json"

CLOUD_ONLY = "input"
"""The cut before the first node: the edge runs nothing, the model's inputs cross."""
EDGE_ONLY = "output"
"""The cut after the last node: the edge runs everything, nothing is sent."""


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Write ``data`` to ``path`` as indented JSON with a final newline; return ``path``."""
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def read_json_object(path: Path, what: str = "") -> dict[str, Any]:
    """The JSON object in ``path``; ``what`` names the file in errors ("manifest ").

    Raises:
        ModelError: The file cannot be read, is not JSON, or holds no object.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        msg = f"cannot read {what}{path}: {exc}"
        raise ModelError(msg) from exc
    if not isinstance(data, dict):
        msg = f"{path} is not a JSON object"
        raise ModelError(msg)
    return data


InputShapesRecord: TypeAlias = "dict[str, tuple[int, ...]]"
"""Input shapes as a manifest records them: dims by input name."""


def shapes_json(shapes: InputShapesRecord | None) -> dict[str, Any]:
    """``{"input_shapes": {...}}`` for a manifest's JSON, or nothing when no shapes were stated."""
    return {} if shapes is None else {"input_shapes": {name: list(dims) for name, dims in shapes.items()}}


def shapes_from_json(data: dict[str, Any]) -> InputShapesRecord | None:
    """The ``input_shapes`` of a manifest's JSON, if it has them."""
    shapes = data.get("input_shapes")
    return None if shapes is None else {str(name): tuple(int(d) for d in dims) for name, dims in shapes.items()}


def sha256_hex(data: bytes) -> str:
    """Return the hex sha256 of ``data`` (how models and halves are identified)."""
    return hashlib.sha256(data).hexdigest()


def file_sha256_hex(path: Path) -> str:
    """The hex sha256 of the file at ``path``'s bytes, read in pieces (the GIL released while it reads and hashes).

    Raises:
        OSError: The file cannot be read.
    """
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


class Shaped(Protocol):
    """What a tensor check reads: a numpy array, or a received tensor before decoding."""

    @property
    def dtype(self) -> np.dtype[Any]:
        """The element type."""
        ...

    @property
    def shape(self) -> tuple[int, ...]:
        """The dims, outermost first."""
        ...

    @property
    def ndim(self) -> int:
        """The number of dims."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class TensorSpec:
    """Name, element type and shape of a tensor.

    Attributes:
        name: The tensor's name in the graph.
        dtype: A numpy dtype name such as ``"float32"`` or ``"uint8"``.
        shape: One entry per axis: an ``int``, or a ``str`` naming a symbolic
            (dynamic) dimension such as the batch axis ``"N"``.
    """

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def concrete(self, batch: int = 1, symbols: Mapping[str, int] | None = None) -> tuple[int, ...]:
        """The shape with each symbolic dimension set to its value in ``symbols``, else to ``batch``."""
        known = symbols or {}
        return tuple(d if isinstance(d, int) else known.get(d, batch) for d in self.shape)

    def nbytes(self, batch: int = 1, symbols: Mapping[str, int] | None = None) -> int:
        """Size in bytes with each symbolic dimension set as :meth:`concrete` sets it."""
        return math.prod(self.concrete(batch, symbols)) * np.dtype(self.dtype).itemsize

    def mismatch(self, array: Shaped, symbols: dict[str, int] | None = None) -> str | None:
        """Why ``array`` does not fit this spec, or ``None`` when it does.

        Args:
            array: The tensor to check: an array, or a received tensor's
                declared dtype and shape (checked before it is decoded).
            symbols: Values of symbolic dimensions already seen (such as the
                batch axis ``"N"`` of another tensor of the same request);
                a symbol met here for the first time is added. ``None``:
                symbols take any value.

        Returns:
            For example ``"is float32[1, 32, 32, 3], expected uint8['N', 32, 32, 3]"``.
        """
        fits = array.dtype == np.dtype(self.dtype) and array.ndim == len(self.shape)
        if fits:
            bound = {} if symbols is None else symbols
            for want, got in zip(self.shape, array.shape, strict=True):
                expected = bound.setdefault(want, got) if isinstance(want, str) else want
                fits = fits and got == expected
        if fits:
            return None
        return f"is {array.dtype}{list(array.shape)}, expected {self.dtype}{list(self.shape)}"

    def to_json(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict."""
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TensorSpec:
        """Build a spec from :meth:`to_json` output."""
        return cls(name=str(data["name"]), dtype=str(data["dtype"]), shape=tuple(data["shape"]))


def tensors_mismatch(
    specs: Sequence[TensorSpec], tensors: Mapping[str, Shaped], symbols: dict[str, int] | None = None
) -> str | None:
    """Why ``tensors`` are not exactly the tensors ``specs`` describe, or ``None``.

    The names must be the same set; each tensor must fit its spec, and a
    symbolic dimension must have one value across all of them (and the value
    in ``symbols``, if given; new ones are added to it).
    """
    expected = [spec.name for spec in specs]
    if sorted(tensors) != sorted(expected):
        return f"takes tensors {sorted(expected)}, got {sorted(tensors)}"
    bound = {} if symbols is None else symbols
    for spec in specs:
        why = spec.mismatch(tensors[spec.name], bound)
        if why is not None:
            return f"tensor {spec.name!r} {why}"
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class Manifest:
    """What a split is: which model, which cut, which tensors cross.

    Attributes:
        model_id: Human name of the model (zoo name or file stem).
        model_sha256: sha256 of the full model's serialized bytes.
        cut_id: The cut's id as listed by ``edgecut models cuts``.
        inputs: The full model's inputs (what the head, or at the ``input``
            cut the tail, is fed).
        crossing: Tensors that travel from edge to cloud, in wire order.
        outputs: The full model's outputs (what the tail returns).
        head_sha256: sha256 of ``head.onnx``; ``None`` at the ``input`` cut,
            where the edge runs nothing.
        tail_sha256: sha256 of ``tail.onnx``; ``None`` at the ``output`` cut,
            where the cloud runs nothing.
        input_shapes: The input shapes the split was counted at, where they
            were stated (a model with dynamic sizes); an agent running these
            halves warms up at them unless told others. ``None``: not stated.
    """

    model_id: str
    model_sha256: str
    cut_id: str
    inputs: tuple[TensorSpec, ...]
    crossing: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    head_sha256: str | None
    tail_sha256: str | None
    input_shapes: InputShapesRecord | None = dataclasses.field(default=None, hash=False)

    @property
    def crossing_bytes(self) -> int:
        """Bytes that cross the cut with every symbolic size at 1: exact where only a batch axis is open.

        For a model with other dynamic sizes, ``models.partition.enumerate_cuts`` counts at stated shapes.
        """
        return sum(spec.nbytes() for spec in self.crossing)

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON-ready dict."""
        return {
            "format": MANIFEST_FORMAT,
            "model_id": self.model_id,
            "model_sha256": self.model_sha256,
            "cut_id": self.cut_id,
            "inputs": [s.to_json() for s in self.inputs],
            "crossing": [s.to_json() for s in self.crossing],
            "outputs": [s.to_json() for s in self.outputs],
            "head_sha256": self.head_sha256,
            "tail_sha256": self.tail_sha256,
        } | shapes_json(self.input_shapes)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        """Build a manifest from :meth:`to_json` output.

        Raises:
            ModelError: The data is not a manifest of a supported format.
        """
        try:
            if data["format"] != MANIFEST_FORMAT:
                msg = f"manifest format {data['format']!r} is not supported (expected {MANIFEST_FORMAT})"
                raise ModelError(msg)
            return cls(
                model_id=str(data["model_id"]),
                model_sha256=str(data["model_sha256"]),
                cut_id=str(data["cut_id"]),
                inputs=tuple(TensorSpec.from_json(s) for s in data["inputs"]),
                crossing=tuple(TensorSpec.from_json(s) for s in data["crossing"]),
                outputs=tuple(TensorSpec.from_json(s) for s in data["outputs"]),
                head_sha256=data["head_sha256"],
                tail_sha256=data["tail_sha256"],
                input_shapes=shapes_from_json(data),
            )
        except (KeyError, TypeError) as exc:
            msg = f"not a valid manifest: missing or malformed field {exc}"
            raise ModelError(msg) from exc

    def save(self, directory: Path) -> Path:
        """Write ``manifest.json`` into ``directory`` and return its path."""
        return write_json(directory / MANIFEST_FILE, self.to_json())

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        """Read ``manifest.json`` from a split directory.

        Raises:
            ModelError: The file is missing or not a valid manifest.
        """
        return cls.from_json(read_json_object(directory / MANIFEST_FILE, "manifest "))

"""A model as a chain of segments between chosen cuts: one copy of the weights, any of those cuts.

Cutting a model at cuts ``c0 = input < c1 < ... < ck = output`` (in the
order of :func:`models.partition.enumerate_cuts`) gives ``k`` segments;
segment ``i`` computes the tensors crossing ``c(i+1)`` from those crossing
``ci``. The head at cut ``cj`` is segments ``0..j-1``, its tail the rest. So
an agent holding the chain can switch between its cuts per request without
loading anything, and a hub can serve a tail at each of them, for the memory
of one model. Each boundary costs a little compute (ONNX Runtime cannot fuse
across it): ``bench/segments.py`` measures how much.

A segments directory holds ``segments.json`` (:class:`SegmentsManifest`) and
one ``.onnx`` file per segment; it needs only onnxruntime to run. This module
imports no ``onnx``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import onnxruntime as ort

from models._manifest import (
    CLOUD_ONLY,
    EDGE_ONLY,
    Manifest,
    TensorSpec,
    file_sha256_hex,
    read_json_object,
    sha256_hex,
    shapes_from_json,
    shapes_json,
    write_json,
)
from protocol.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import numpy as np

    from models._manifest import InputShapesRecord
    from models._runtime import Session

SEGMENTS_FILE = "segments.json"
SEGMENTS_FORMAT = 1

_L = TypeVar("_L")
"""What :func:`_checked` loads: a file's bytes, or only its path."""


class Runnable(Protocol):
    """What runs a piece of a model: a :class:`models.Session`, or a stretch of a :class:`Chain`."""

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """The tensors it reads."""
        ...

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        """The tensors it returns."""
        ...

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run on ``feeds`` (blocking); return the outputs by name."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class Boundary:
    """A cut the chain passes through, and the tensors crossing it."""

    id: str
    crossing: tuple[TensorSpec, ...]

    @property
    def bytes(self) -> int:
        """Bytes crossing with every symbolic size at 1 (see :attr:`Manifest.crossing_bytes`)."""
        return sum(spec.nbytes() for spec in self.crossing)


@dataclasses.dataclass(frozen=True, slots=True)
class SegmentFile:
    """One segment's file and its sha256."""

    file: str
    sha256: str


@dataclasses.dataclass(frozen=True, slots=True)
class SegmentsManifest:
    """Which model, which cuts, and the segment files between consecutive cuts.

    Attributes:
        model_id: Human name of the model.
        model_sha256: sha256 of the full model's serialized bytes.
        inputs: The model's inputs.
        outputs: The model's outputs.
        cuts: The chain's cuts in model order, ``input`` first and ``output`` last.
        segments: ``len(cuts) - 1`` files; segment ``i`` runs from ``cuts[i]`` to ``cuts[i + 1]``.
        input_shapes: The input shapes the chain was counted at, where they
            were stated (see :class:`Manifest`).
    """

    model_id: str
    model_sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    cuts: tuple[Boundary, ...]
    segments: tuple[SegmentFile, ...]
    input_shapes: InputShapesRecord | None = dataclasses.field(default=None, hash=False)

    def __post_init__(self) -> None:
        ids = [cut.id for cut in self.cuts]
        if len(ids) < 2 or ids[0] != CLOUD_ONLY or ids[-1] != EDGE_ONLY or len(set(ids)) != len(ids):  # noqa: PLR2004
            msg = f"a chain's cuts run from {CLOUD_ONLY!r} to {EDGE_ONLY!r}, each once; got {ids}"
            raise ModelError(msg)
        if len(self.segments) != len(self.cuts) - 1:
            msg = f"{len(self.cuts)} cuts need {len(self.cuts) - 1} segments, not {len(self.segments)}"
            raise ModelError(msg)

    @property
    def cut_ids(self) -> tuple[str, ...]:
        """The cuts' ids, in model order."""
        return tuple(cut.id for cut in self.cuts)

    def index(self, cut_id: str) -> int:
        """The position of ``cut_id`` in :attr:`cuts`.

        Raises:
            ModelError: The chain does not pass through that cut.
        """
        for index, cut in enumerate(self.cuts):
            if cut.id == cut_id:
                return index
        msg = f"{self.model_id} is segmented at {', '.join(self.cut_ids)}, not at {cut_id!r}"
        raise ModelError(msg)

    def manifest(self, cut_id: str) -> Manifest:
        """The split manifest of ``cut_id``; no single files hold its halves, so both sha256 are ``None``."""
        return Manifest(
            model_id=self.model_id,
            model_sha256=self.model_sha256,
            cut_id=cut_id,
            inputs=self.inputs,
            crossing=self.cuts[self.index(cut_id)].crossing,
            outputs=self.outputs,
            head_sha256=None,
            tail_sha256=None,
            input_shapes=self.input_shapes,
        )

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON-ready dict."""
        return {
            "format": SEGMENTS_FORMAT,
            "model_id": self.model_id,
            "model_sha256": self.model_sha256,
            "inputs": [spec.to_json() for spec in self.inputs],
            "outputs": [spec.to_json() for spec in self.outputs],
            "cuts": [{"id": cut.id, "crossing": [spec.to_json() for spec in cut.crossing]} for cut in self.cuts],
            "segments": [{"file": segment.file, "sha256": segment.sha256} for segment in self.segments],
        } | shapes_json(self.input_shapes)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SegmentsManifest:
        """Build a manifest from :meth:`to_json` output.

        Raises:
            ModelError: The data is not a segments manifest of a supported format.
        """
        try:
            if data["format"] != SEGMENTS_FORMAT:
                msg = f"segments format {data['format']!r} is not supported (expected {SEGMENTS_FORMAT})"
                raise ModelError(msg)
            return cls(
                model_id=str(data["model_id"]),
                model_sha256=str(data["model_sha256"]),
                inputs=tuple(TensorSpec.from_json(spec) for spec in data["inputs"]),
                outputs=tuple(TensorSpec.from_json(spec) for spec in data["outputs"]),
                cuts=tuple(
                    Boundary(id=str(cut["id"]), crossing=tuple(TensorSpec.from_json(s) for s in cut["crossing"]))
                    for cut in data["cuts"]
                ),
                segments=tuple(
                    SegmentFile(file=_plain_name(segment["file"]), sha256=str(segment["sha256"]))
                    for segment in data["segments"]
                ),
                input_shapes=shapes_from_json(data),
            )
        except (KeyError, TypeError) as exc:
            msg = f"not a valid segments manifest: missing or malformed field {exc}"
            raise ModelError(msg) from exc

    def save(self, directory: Path) -> Path:
        """Write ``segments.json`` into ``directory`` and return its path."""
        return write_json(directory / SEGMENTS_FILE, self.to_json())

    @classmethod
    def load(cls, directory: Path) -> SegmentsManifest:
        """Read ``segments.json`` from a segments directory.

        Raises:
            ModelError: The file is missing or not a valid manifest.
        """
        return cls.from_json(read_json_object(directory / SEGMENTS_FILE))

    def checked_files(self, directory: Path) -> list[Path]:
        """The segment files, each checked against its sha256 (read in pieces, not held in memory).

        Making sessions of the files rather than of their bytes keeps the
        GIL free while ONNX Runtime parses them (from bytes it holds it).

        Raises:
            ModelError: A file is missing or does not match the manifest.
        """
        return [
            _checked(directory / segment.file, segment.sha256, lambda path: path, file_sha256_hex)
            for segment in self.segments
        ]

    def read_segments(self, directory: Path) -> list[bytes]:
        """The segment files' bytes, each checked against its sha256.

        Raises:
            ModelError: A file is missing or does not match the manifest.
        """
        return [
            _checked(directory / segment.file, segment.sha256, Path.read_bytes, sha256_hex) for segment in self.segments
        ]


def _checked(path: Path, sha256: str, load: Callable[[Path], _L], digest: Callable[[_L], str]) -> _L:
    """``load(path)``, once ``digest`` of it matches the manifest's ``sha256``.

    Raises:
        ModelError: The file cannot be read, or does not match.
    """
    try:
        loaded = load(path)
        matches = digest(loaded) == sha256
    except OSError as exc:
        msg = f"cannot read segment {path}: {exc}"
        raise ModelError(msg) from exc
    if not matches:
        msg = f"{path} does not match the sha256 in {SEGMENTS_FILE}: the files are from different splits"
        raise ModelError(msg)
    return loaded


class Chain:
    """Runs any stretch of a segmented model.

    Each segment's outputs go to the next as ONNX Runtime's own values
    (:meth:`models.Session.run_values`), never copied into numpy arrays
    between segments.

    Args:
        manifest: The chain's cuts and segments.
        segments: One session per segment, in order (made from the segment files).
    """

    def __init__(self, manifest: SegmentsManifest, segments: Sequence[Session]) -> None:
        if len(segments) != len(manifest.segments):
            msg = f"{len(manifest.segments)} segments expected, {len(segments)} given"
            raise ValueError(msg)
        self.manifest = manifest
        self._segments = tuple(segments)

    @classmethod
    def load(cls, directory: Path, session: Callable[[bytes], Session]) -> Chain:
        """The chain in a segments directory, each segment made into a session by ``session(bytes)``.

        Raises:
            ModelError: The directory's manifest or files are missing or do not match.
        """
        manifest = SegmentsManifest.load(directory)
        return cls(manifest, [session(data) for data in manifest.read_segments(directory)])

    def run(self, feeds: Mapping[str, np.ndarray], start: str, end: str) -> tuple[dict[str, np.ndarray], list[float]]:
        """Run from cut ``start`` to cut ``end`` (blocking).

        Args:
            feeds: The tensors crossing ``start`` (the model's inputs at ``input``).
            start: Where to begin.
            end: Where to stop: a later cut, or ``start`` itself (nothing runs).

        Returns:
            The tensors crossing ``end`` (the model's outputs at ``output``),
            and the milliseconds each segment run took, in order.
        """
        first, last = self.manifest.index(start), self.manifest.index(end)
        if last < first:
            msg = f"cut {end!r} comes before {start!r}"
            raise ValueError(msg)
        tensors: dict[str, np.ndarray | ort.OrtValue] = dict(feeds)
        timings = []
        for segment in self._segments[first:last]:
            started = time.perf_counter()
            tensors.update(segment.run_values({spec.name: tensors[spec.name] for spec in segment.inputs}))
            timings.append((time.perf_counter() - started) * 1000)
        return {spec.name: _array(tensors[spec.name]) for spec in self.manifest.cuts[last].crossing}, timings

    def part(self, start: str, end: str) -> ChainPart:
        """The stretch from ``start`` to ``end`` as one :class:`Runnable`."""
        return ChainPart(self, start, end)


class ChainPart:
    """A stretch of a :class:`Chain`, run like a session (a head or a tail).

    Args:
        chain: The chain.
        start: The cut it begins at.
        end: The cut it ends at.
    """

    def __init__(self, chain: Chain, start: str, end: str) -> None:
        manifest = chain.manifest
        self.chain = chain
        self.start = start
        self.end = end
        self.inputs = manifest.cuts[manifest.index(start)].crossing
        self.outputs = manifest.cuts[manifest.index(end)].crossing

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the stretch on ``feeds``; return the tensors at its end."""
        return self.chain.run(feeds, self.start, self.end)[0]

    def run_timed(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[float]]:
        """Like :meth:`run`, with the milliseconds of each segment."""
        return self.chain.run(feeds, self.start, self.end)


def _array(value: np.ndarray | ort.OrtValue) -> np.ndarray:
    """``value`` as a numpy array (a segment's output is copied out of ONNX Runtime's memory once, here)."""
    return value.numpy() if isinstance(value, ort.OrtValue) else value


def _plain_name(value: object) -> str:
    """A segment file name: a plain name inside the directory, never a path."""
    name = str(value)
    if not name or "/" in name or "\\" in name or name in {".", ".."}:
        msg = f"segment file {name!r} is not a plain file name"
        raise ModelError(msg)
    return name


def run_timed(
    runnable: Runnable | None, feeds: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], float, list[float]]:
    """Run ``runnable``: its outputs, milliseconds, and each segment's milliseconds when it is a stretch of a chain.

    Raises:
        RuntimeError: ``runnable`` is ``None`` (callers check for the half first).
    """
    if runnable is None:
        msg = "no session to run"
        raise RuntimeError(msg)
    started = time.perf_counter()
    if isinstance(runnable, ChainPart):
        outputs, segment_ms = runnable.run_timed(feeds)
    else:
        outputs, segment_ms = runnable.run(feeds), []
    return outputs, (time.perf_counter() - started) * 1000, segment_ms

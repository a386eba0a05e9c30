"""The model halves an agent holds: from a split or segments directory, or split on the device.

A split directory (``head.onnx`` + ``manifest.json``, and ``tail.onnx`` when
the agent may fall back to running the tail itself) holds one cut and needs
only onnxruntime. A segments directory (``segments.json`` + segment files,
from ``edgecut models split --cuts``) holds a chain through several cuts: the
agent switches between them per request and holds every tail for a local
fallback, for the memory of one model, still with only onnxruntime. A full
model (a zoo name or an ``.onnx`` file) needs the ``onnx`` package: the agent
builds the chain through the model's candidate cuts itself
(:func:`models.partition.candidate_cuts`), and splits it at any other cut on
first use.

Every ONNX Runtime session the halves hold comes from one
:data:`SessionFactory`, by default :class:`models.Session`. Giving another is
how a caller changes how the device computes (a test counting sessions, an
emulated slower device) without the agent knowing.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from models import (
    CLOUD_ONLY,
    EDGE_ONLY,
    HEAD_FILE,
    MANIFEST_FILE,
    SEGMENTS_FILE,
    TAIL_FILE,
    Chain,
    InputShapes,
    Manifest,
    Runnable,
    SegmentsManifest,
    Session,
    TensorSpec,
    resolve_input_shapes,
    sha256_hex,
)
from protocol import RAW_CODEC
from protocol.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from models.partition import Split

SessionFactory: TypeAlias = Callable[[bytes, int | None], Session]
"""Creates a session from a serialized ONNX model and an intra-op thread count.

Called as ``factory(model, threads)`` for every head and tail an agent loads;
``threads`` is the agent's setting (``None``: ORT's default). It returns a
:class:`models.Session` or a subclass of it, which the agent runs from its
worker thread.
"""


def _default_session(model: bytes, threads: int | None) -> Session:
    return Session(model, threads=threads)


@dataclasses.dataclass(frozen=True, slots=True)
class Halves:
    """The sessions for one cut.

    Attributes:
        manifest: What the cut is and which tensors cross it.
        head: Runs on the edge; ``None`` at the ``input`` cut (cloud-only).
            A session, or a stretch of the agent's chain
            (:class:`models.ChainPart`, which also times each segment).
        tail: The cloud half, held for a local fallback; ``None`` when the
            agent has only the head, or at the ``output`` cut (edge-only).
    """

    manifest: Manifest
    head: Runnable | None
    tail: Runnable | None


@dataclasses.dataclass(frozen=True, slots=True)
class CutInfo:
    """A cut the agent can use: its id and the bytes it sends.

    From a full model, counted at its input shapes; from a split directory,
    with every symbolic size at 1.
    """

    id: str
    bytes: int
    single_tensor: bool


class ModelHalves:
    """Halves of one model by cut, loaded on first use and kept.

    Use :meth:`open`; loading is blocking (ONNX Runtime session creation,
    splitting), so async callers run :meth:`halves` in a worker thread.
    Sessions come from ``session_factory`` (default: :class:`models.Session`).
    """

    def __init__(
        self,
        *,
        model_id: str,
        model_sha256: str,
        inputs: tuple[TensorSpec, ...],
        outputs: tuple[TensorSpec, ...],
        cuts: tuple[CutInfo, ...],
        threads: int | None,
        candidates: tuple[CutInfo, ...] = (),
        split_at: Callable[[str], Split] | None = None,
        split_dir: Path | None = None,
        build_chain: Callable[[], tuple[SegmentsManifest, list[bytes]]] | None = None,
        session_factory: SessionFactory | None = None,
        input_shapes: Mapping[str, tuple[int, ...]] | None = None,
        model_bytes: int | None = None,
    ) -> None:
        self.model_id = model_id
        self.model_sha256 = model_sha256
        self.model_bytes = model_bytes
        """The full model's size serialized (its weights, mostly); ``None`` without a full model."""
        self.inputs = inputs
        self.outputs = outputs
        self.input_shapes = dict(input_shapes) if input_shapes is not None else resolve_input_shapes(inputs)
        """The shape of each input that warm-ups and measurements run on (``models.resolve_input_shapes``)."""
        self.cuts = cuts
        self.candidates = candidates
        """The cuts of the chain (``cut="auto"`` chooses between them); empty without one."""
        self._threads = threads
        self._split_at = split_at
        self._split_dir = split_dir
        self._build_chain = build_chain
        self._chain: Chain | None = None
        self._session_factory = session_factory or _default_session
        self._loaded: dict[tuple[str, bool], Halves] = {}  # by cut, and whether fused
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        model: str | Path,
        *,
        threads: int | None = None,
        session_factory: SessionFactory | None = None,
        input_shapes: InputShapes | None = None,
        codecs: Sequence[str] = (RAW_CODEC,),
    ) -> ModelHalves:
        """Open a split directory, an ``.onnx`` model file or a zoo model by name.

        Args:
            model: The split directory, ``.onnx`` file or zoo name.
            threads: ONNX Runtime intra-op threads (``None``: all cores).
            session_factory: Creates every session (heads and tails) from the
                model bytes and ``threads``; ``None``: :class:`models.Session`.
            input_shapes: The shape of each input with dynamic sizes, for a
                model that does not fix them: what cut bytes are counted
                and the warm-up runs at (a batch axis may be left out).
            codecs: The codecs requests may use: with a full model, which
                cuts are candidates (:func:`models.partition.candidate_cuts`).

        Raises:
            ModelError: Nothing usable at ``model``, ``onnx`` missing for a
                full model, or an input's size known from nowhere (the
                message names it).
        """
        path = Path(model)
        if (path / SEGMENTS_FILE).is_file():
            return cls._from_segments_dir(path, threads, session_factory, input_shapes)
        if (path / MANIFEST_FILE).is_file():
            return cls._from_split_dir(path, threads, session_factory, input_shapes)
        return cls._from_full_model(str(model), threads, session_factory, input_shapes, codecs)

    def feeds(self, inputs: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``inputs`` as the model's feeds by name, checked: one array for a single-input model, a batch axis added.

        Raises:
            ValueError: The inputs do not fit the model.
        """
        specs = self.inputs
        if isinstance(inputs, np.ndarray):
            if len(specs) != 1:
                msg = f"{self.model_id} takes {len(specs)} inputs; pass them by name"
                raise ValueError(msg)
            inputs = {specs[0].name: inputs}
        feeds = {}
        symbols: dict[str, int] = {}  # one batch size across all inputs
        for spec in specs:
            if spec.name not in inputs:
                msg = f"missing input {spec.name!r} ({spec.dtype}{list(spec.shape)})"
                raise ValueError(msg)
            array = np.asarray(inputs[spec.name])
            if array.ndim == len(spec.shape) - 1:
                array = array[np.newaxis]
            why = spec.mismatch(array, symbols)
            if why is not None:
                msg = f"input {spec.name!r} {why}"
                raise ValueError(msg)
            feeds[spec.name] = array
        return feeds

    @property
    def holds_full_model(self) -> bool:
        """True when any cut can be used and the tail is at hand for fallback."""
        return self._split_at is not None

    def cut(self, cut_id: str) -> CutInfo:
        """The cut named ``cut_id``.

        Raises:
            ModelError: This agent cannot run that cut.
        """
        for info in self.cuts:
            if info.id == cut_id:
                return info
        sample = ", ".join(info.id for info in self.cuts[:8])
        msg = f"{self.model_id} has no cut {cut_id!r} here (some that exist: {sample})"
        raise ModelError(msg)

    def spread_cuts(self, between: int = 3) -> list[str]:
        """Cut ids to compare, among those this model has: edge-only, ``between`` cuts spread evenly, cloud-only.

        The cuts between are single-tensor ones, fewer where the model has
        fewer; a split directory has only its one cut.
        """
        inner = [cut.id for cut in self.cuts if cut.single_tensor and cut.id not in {CLOUD_ONLY, EDGE_ONLY}]
        step = len(inner) / (between + 1)
        chosen = dict.fromkeys(inner[int(step * (i + 1))] for i in range(between)) if inner else {}
        held = {cut.id for cut in self.cuts}
        return [cut_id for cut_id in (EDGE_ONLY, *chosen, CLOUD_ONLY) if cut_id in held]

    def chain(self) -> Chain:
        """The chain through :attr:`candidates`, loaded or built on first use (blocking).

        Raises:
            ModelError: This model has no chain (a single-cut split directory).
        """
        with self._lock:
            return self._chain_locked()

    def _chain_locked(self) -> Chain:
        if self._chain is None:
            if self._build_chain is None:
                msg = f"{self.model_id} is split at one cut only: give a segments directory or a full model"
                raise ModelError(msg)
            manifest, segments = self._build_chain()
            self._chain = Chain(manifest, [self._session(data) for data in segments])
        return self._chain

    def loaded(self, cut_id: str, *, fused: bool = False) -> Halves | None:
        """The sessions for ``cut_id`` (``fused`` as :meth:`halves`) if loaded already, else ``None`` (never blocks)."""
        return self._loaded.get(self._key(cut_id, fused=fused))

    def halves(self, cut_id: str, *, fused: bool = False) -> Halves:
        """The sessions for ``cut_id``, created on first use (blocking).

        At a candidate cut, the head and tail are stretches of the chain
        (:meth:`chain`): every candidate's halves share one copy of the
        weights. ``fused`` asks for one session per half instead, split at
        the cut from the full model, with no boundary inside either for
        ONNX Runtime to stop fusing at: what a fixed cut runs, and auto's
        edge-only where the warm-up found the chain's boundaries cost
        (``edge_agent._adaptive``); beside the chain, a second copy of the
        weights. Only a full model is split anew: from a segments or split
        directory ``fused`` changes nothing.
        """
        self.cut(cut_id)
        key = self._key(cut_id, fused=fused)
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = self._load(cut_id, fused=key[1])
            return self._loaded[key]

    def release(self, cut_id: str, *, fused: bool = False) -> None:
        """Let go of ``cut_id``'s sessions (``fused`` as :meth:`halves`); the next use loads them again."""
        with self._lock:
            self._loaded.pop(self._key(cut_id, fused=fused), None)

    def _key(self, cut_id: str, *, fused: bool) -> tuple[str, bool]:
        """Where ``cut_id``'s halves are kept: fused only where they would otherwise be stretches of the chain."""
        return cut_id, fused and self._split_at is not None and self._in_chain(cut_id)

    def _in_chain(self, cut_id: str) -> bool:
        return any(info.id == cut_id for info in self.candidates)

    def _load(self, cut_id: str, *, fused: bool) -> Halves:
        if not fused and self._in_chain(cut_id):
            chain = self._chain_locked()
            return Halves(
                manifest=chain.manifest.manifest(cut_id),
                head=None if cut_id == CLOUD_ONLY else chain.part(CLOUD_ONLY, cut_id),
                tail=None if cut_id == EDGE_ONLY else chain.part(cut_id, EDGE_ONLY),
            )
        if self._split_at is None:
            return self._load_split_dir()
        split = self._split_at(cut_id)
        return Halves(
            manifest=split.manifest,
            head=self._session(split.head.SerializeToString()) if split.head is not None else None,
            tail=self._session(split.tail.SerializeToString()) if split.tail is not None else None,
        )

    def _load_split_dir(self) -> Halves:
        directory = self._split_dir
        if directory is None:  # open() always sets one of the two sources
            msg = "ModelHalves has no source"
            raise RuntimeError(msg)
        manifest = Manifest.load(directory)
        head = tail = None
        if manifest.head_sha256 is not None:
            head = self._session(_read_checked(directory / HEAD_FILE, manifest.head_sha256))
        if manifest.tail_sha256 is not None and (directory / TAIL_FILE).is_file():
            tail = self._session(_read_checked(directory / TAIL_FILE, manifest.tail_sha256))
        return Halves(manifest=manifest, head=head, tail=tail)

    def _session(self, model: bytes) -> Session:
        return self._session_factory(model, self._threads)

    @classmethod
    def _from_split_dir(
        cls, directory: Path, threads: int | None, session_factory: SessionFactory | None, shapes: InputShapes | None
    ) -> ModelHalves:
        manifest = Manifest.load(directory)
        if manifest.head_sha256 is not None and not (directory / HEAD_FILE).is_file():
            msg = f"{directory} has a manifest for cut {manifest.cut_id!r} but no {HEAD_FILE}"
            raise ModelError(msg)
        cut = CutInfo(id=manifest.cut_id, bytes=manifest.crossing_bytes, single_tensor=len(manifest.crossing) == 1)
        return cls(
            model_id=manifest.model_id,
            model_sha256=manifest.model_sha256,
            inputs=manifest.inputs,
            outputs=manifest.outputs,
            cuts=(cut,),
            threads=threads,
            split_dir=directory,
            session_factory=session_factory,
            input_shapes=resolve_input_shapes(manifest.inputs, shapes or manifest.input_shapes),
        )

    @classmethod
    def _from_segments_dir(
        cls, directory: Path, threads: int | None, session_factory: SessionFactory | None, shapes: InputShapes | None
    ) -> ModelHalves:
        manifest = SegmentsManifest.load(directory)
        cuts = tuple(_chain_cut(boundary.id, boundary.bytes, boundary.crossing) for boundary in manifest.cuts)
        return cls(
            model_id=manifest.model_id,
            model_sha256=manifest.model_sha256,
            inputs=manifest.inputs,
            outputs=manifest.outputs,
            cuts=cuts,
            candidates=cuts,
            threads=threads,
            build_chain=lambda: (manifest, manifest.read_segments(directory)),
            session_factory=session_factory,
            input_shapes=resolve_input_shapes(manifest.inputs, shapes or manifest.input_shapes),
        )

    @classmethod
    def _from_full_model(
        cls,
        name_or_path: str,
        threads: int | None,
        session_factory: SessionFactory | None,
        shapes: InputShapes | None,
        codecs: Sequence[str],
    ) -> ModelHalves:
        try:
            from models import partition  # noqa: PLC0415 - optional on the agent's path
        except ImportError as exc:
            msg = f"splitting {name_or_path!r} on the device needs the onnx package; or give a split directory"
            raise ModelError(msg) from exc
        model_id, model = partition.load_model(name_or_path)
        serialized = model.SerializeToString()
        all_cuts = partition.enumerate_cuts(model, shapes)
        cuts = tuple(_chain_cut(cut.id, cut.bytes, cut.tensors) for cut in all_cuts)
        candidates = {cut.id for cut in partition.candidate_cuts(all_cuts, codecs)}

        def build_chain() -> tuple[SegmentsManifest, list[bytes]]:
            segments = partition.split_segments(model, sorted(candidates), model_id=model_id)
            return segments.manifest, [part.SerializeToString() for part in segments.models]

        inputs = next(cut.tensors for cut in all_cuts if cut.id == CLOUD_ONLY)  # what crosses there: the inputs
        return cls(
            model_id=model_id,
            model_sha256=sha256_hex(serialized),
            model_bytes=len(serialized),
            inputs=inputs,
            outputs=all_cuts[-1].tensors,  # what crosses at output: the model's outputs
            cuts=cuts,
            candidates=tuple(cut for cut in cuts if cut.id in candidates),
            threads=threads,
            split_at=functools.partial(partition.split, model, model_id=model_id),
            build_chain=build_chain,
            session_factory=session_factory,
            input_shapes=partition.input_shapes(model, shapes),
        )


def shapes_of(
    inputs: np.ndarray | Mapping[str, np.ndarray], specs: Sequence[TensorSpec], *, carried: frozenset[str] = frozenset()
) -> dict[str, tuple[int, ...]]:
    """The shapes of a request's ``inputs`` by input name, a missing batch axis added as ``feeds`` adds it.

    Args:
        inputs: One array for the one input not ``carried``, or arrays by name.
        specs: The model's inputs.
        carried: Inputs the agent fills in itself (``carry_state``).

    Raises:
        ValueError: One array for a model with several inputs to give.
    """
    given = by_name(inputs, specs, carried=carried)
    shapes = {}
    for spec in specs:
        if spec.name in given:
            shape = tuple(np.shape(given[spec.name]))
            shapes[spec.name] = (1, *shape) if len(shape) == len(spec.shape) - 1 else shape
    return shapes


def by_name(
    inputs: np.ndarray | Mapping[str, np.ndarray], specs: Sequence[TensorSpec], *, carried: frozenset[str] = frozenset()
) -> Mapping[str, np.ndarray]:
    """``inputs`` by input name: one array is the one input not ``carried``.

    Raises:
        ValueError: One array for a model with several inputs to give.
    """
    if not isinstance(inputs, np.ndarray):
        return inputs
    free = [spec.name for spec in specs if spec.name not in carried]
    if len(free) != 1:
        msg = f"the model takes inputs {free}: pass them by name"
        raise ValueError(msg)
    return {free[0]: inputs}


def _chain_cut(cut_id: str, size: int, crossing: tuple[TensorSpec, ...]) -> CutInfo:
    return CutInfo(id=cut_id, bytes=size, single_tensor=len(crossing) == 1)


def _read_checked(path: Path, sha256: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        msg = f"cannot read {path}: {exc}"
        raise ModelError(msg) from exc
    if sha256_hex(data) != sha256:
        msg = f"{path} does not match the sha256 in its manifest: the halves are from different splits"
        raise ModelError(msg)
    return data

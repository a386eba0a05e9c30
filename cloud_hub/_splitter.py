"""Splitting full models for a hub in a process of its own, so that a load never holds the hub's GIL.

Building or reading a model, finding its cuts and cutting it into segments
is Python-heavy work in ``onnx``, much of it inside C++ calls that hold the
GIL for tens of milliseconds (shape inference, serialisation). Run on a
thread of the hub, it stalled the event loop and the workers of every other
request (from outside: valid requests 10-25x slower while an agent cycled
through cuts). Here it runs in a child process, one split at a time; the hub
gets the segments' bytes back and only makes sessions of the ones it does not
hold yet (ONNX Runtime releases the GIL for that).

The child is started on first use (``spawn``: a fork of a process with ONNX
Runtime and asyncio threads could deadlock), which adds about 0.7 s (mostly
importing ``onnx``) to a hub's first load, and is kept for later ones.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import threading
import time
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from models import EDGE_ONLY, sha256_hex
from protocol import ErrorCode

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence
    from pathlib import Path

    import onnx

    from models import SegmentsManifest


_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclasses.dataclass(frozen=True, slots=True)
class ModelSource:
    """Where a full model comes from: a file, or (``path`` ``None``) the zoo model of that name."""

    name: str
    path: Path | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Grown:
    """A model cut into segments through the cuts asked for, as a child process sends it back.

    Attributes:
        manifest: The chain's segments manifest.
        blobs: Each segment's model bytes, by its sha256.
        candidates: The model's candidate cuts (``partition.candidate_cuts``).
    """

    manifest: SegmentsManifest
    blobs: dict[str, bytes]
    candidates: frozenset[str]


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What a split came to: the chain, or why not (an error code and message), and the model's cuts."""

    grown: Grown | None
    cut_ids: frozenset[str]
    error: tuple[str, str] | None = None


class Splitter:
    """Splits full models in a child process, one at a time; each call blocks its (loading) thread."""

    def __init__(self) -> None:
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def grow(
        self, source: ModelSource, model_sha256: str, model_id: str, cut_id: str, *, also: Sequence[str] | None
    ) -> Outcome:
        """The model cut into segments through ``cut_id`` and ``also`` (``None``: its candidate cuts).

        The child checks that the model still has ``model_sha256`` and that
        ``cut_id`` is one of its cuts with a tail.
        """
        return self._call(_grow, source, model_sha256, model_id, cut_id, None if also is None else tuple(also))

    def fused_tail_sha256(self, source: ModelSource, model_sha256: str, model_id: str, cut_id: str) -> str | None:
        """The sha256 of the tail ``edgecut models split`` writes at ``cut_id`` (``None``: the model changed)."""
        return self._call(_fused_tail_sha256, source, model_sha256, model_id, cut_id)

    def zoo_sha256s(self, names: Sequence[str] | None, *, skip: Collection[str] = ()) -> dict[str, str]:
        """The sha256s of zoo models ``names`` (``None``: all) but those in ``skip``; unknown names left out."""
        return self._call(_zoo_sha256s, None if names is None else tuple(names), frozenset(skip))

    def file_sha256(self, path: Path) -> str:
        """A model file's identity (``models.partition.model_file_sha256``).

        Raises:
            ModelError: The file is not a model.
        """
        return self._call(_file_sha256, path)

    def close(self) -> None:
        """Stop the child (a split under way is abandoned)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _call(self, function: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_exit_with_parent,
                initargs=(os.getpid(),),
            )
        return self._pool.submit(function, *args, **kwargs).result()


# --- in the child ----------------------------------------------------------------------------


_PARENT_CHECK_S = 1.0


def _exit_with_parent(parent: int) -> None:
    """Exit once the hub is gone, however it went (a SIGKILL sends the child no word).

    A pool worker holds both ends of its own task queue, so it would never
    see the hub go, and wait for tasks forever.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="edgecut.splitter.parent", daemon=True).start()


def _model(source: ModelSource) -> onnx.ModelProto:
    from models import partition, zoo  # noqa: PLC0415 - the child's tooling

    return zoo.build(source.name) if source.path is None else partition.load_model_file(source.path)


def _grow(source: ModelSource, model_sha256: str, model_id: str, cut_id: str, also: tuple[str, ...] | None) -> Outcome:
    from models import partition  # noqa: PLC0415 - the child's tooling

    model = _model(source)
    if sha256_hex(model.SerializeToString()) != model_sha256:  # the file changed since it was hashed
        return Outcome(None, frozenset(), (ErrorCode.UNKNOWN_MODEL, f"{source.name} changed since it was indexed"))
    cuts = partition.enumerate_cuts(model)
    cut_ids = frozenset(cut.id for cut in cuts)
    if cut_id not in cut_ids:
        msg = f"{model_id!r} has no usable cut {cut_id!r} (see `edgecut models cuts {model_id}`)"
        return Outcome(None, cut_ids, (ErrorCode.UNKNOWN_CUT, msg))
    if cut_id == EDGE_ONLY:
        msg = f"cut {cut_id!r} runs the whole model on the edge: there is no tail to serve"
        return Outcome(None, cut_ids, (ErrorCode.UNKNOWN_CUT, msg))
    candidates = frozenset(cut.id for cut in partition.candidate_cuts(cuts))
    wanted = sorted({*(candidates if also is None else also), *candidates, cut_id})
    segments = partition.split_segments(model, wanted, model_id=model_id, check=False)
    blobs = {
        file.sha256: part.SerializeToString()
        for file, part in zip(segments.manifest.segments, segments.models, strict=True)
    }
    return Outcome(Grown(segments.manifest, blobs, candidates), cut_ids)


def _zoo_sha256s(names: tuple[str, ...] | None, skip: frozenset[str]) -> dict[str, str]:
    from models import zoo  # noqa: PLC0415 - the child's tooling

    wanted = [name for name in zoo.MODEL_NAMES if (names is None or name in names) and name not in skip]
    return {name: sha256_hex(zoo.build(name).SerializeToString()) for name in wanted}


def _file_sha256(path: Path) -> str:
    """A model file's identity: its bytes, or with weights in side files, the model with them inline.

    Without ``onnx`` the hub cannot split a full model anyway: its bytes are all that matter then.
    """
    try:
        from models.partition import model_file_sha256  # noqa: PLC0415 - needs onnx
    except ImportError:
        return sha256_hex(path.read_bytes())
    return model_file_sha256(path)


def _fused_tail_sha256(source: ModelSource, model_sha256: str, model_id: str, cut_id: str) -> str | None:
    from models import partition  # noqa: PLC0415 - the child's tooling

    model = _model(source)
    if sha256_hex(model.SerializeToString()) != model_sha256:
        return None
    return partition.split(model, cut_id, model_id=model_id).manifest.tail_sha256

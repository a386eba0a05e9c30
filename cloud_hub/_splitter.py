"""Splitting full models for a hub in a process of its own, so that a load never holds the hub's GIL.

Building or reading a model, finding its cuts and cutting it into segments
is Python-heavy work in ``onnx``, much of it inside C++ calls that hold the
GIL for tens of milliseconds (shape inference, serialisation). Run on a
thread of the hub, it stalled the event loop and the workers of every other
request (from outside: valid requests 10-25x slower while an agent cycled
through cuts). Here it runs in a child process (``python -m
cloud_hub._split_worker``), one call at a time. The child writes the segments
into a directory of the hub's, each as a small graph file with its weights in
a file of external data beside it, and answers with their paths; the hub makes
sessions of the ones it does not hold yet and deletes the files. Handing the
segments over as bytes held the hub's GIL for as long as the weights took to
copy and parse (reading them off the pipe, then ONNX Runtime's ``InferenceSession``
constructor, which parses model bytes without releasing it): about 0.6 s for
320 MB on a busy 2-core machine, when the hub answers nothing. From a file,
ONNX Runtime parses only the graph with the GIL held and reads the weights
itself (``bench/pings_during_load.py``).

The child is a plain subprocess, not a ``multiprocessing`` one: it does not
import the hub's ``__main__`` again (a script that runs a hub needs no
``if __name__ == "__main__"`` guard), and it reads its calls from a pipe that
only the hub holds, so it exits as soon as the hub is gone, however it went
(a SIGKILL included). It is started on first use, which adds about 0.7 s
(mostly importing ``onnx``) to a hub's first load, and kept for later ones;
if it dies (a model that crashes ``onnx``), the call fails and the next one
starts a new child. Calls and answers are JSON, framed by their length:
nothing that crosses the pipe can run code on either side.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from models import EDGE_ONLY, SegmentsManifest, sha256_hex
from protocol import ErrorCode
from protocol.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

    import onnx


_LENGTH = struct.Struct(">Q")
_STOP_TIMEOUT_S = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class ModelSource:
    """Where a full model comes from: a file, or (``path`` ``None``) the zoo model of that name."""

    name: str
    path: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """The source as the child reads it."""
        return {"name": self.name, "path": None if self.path is None else str(self.path)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelSource:
        """A source from :meth:`to_json` output."""
        return cls(data["name"], None if data["path"] is None else Path(data["path"]))


@dataclasses.dataclass(frozen=True, slots=True)
class Grown:
    """A model cut into segments through the cuts asked for, as the child sends it back.

    Attributes:
        manifest: The chain's segments manifest.
        files: Each segment's model file, by its sha256 (the sha256 of the
            segment serialised whole, as the manifest states it); its weights
            are in a file of external data beside it. The hub's to delete
            (:meth:`Splitter.discard`) once it has made its sessions.
        candidates: The model's candidate cuts (``partition.candidate_cuts``).
    """

    manifest: SegmentsManifest
    files: dict[str, Path]
    candidates: frozenset[str]

    def to_json(self) -> dict[str, Any]:
        """The chain as the child sends it."""
        return {
            "manifest": self.manifest.to_json(),
            "files": {sha: str(path) for sha, path in self.files.items()},
            "candidates": sorted(self.candidates),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Grown:
        """A chain from :meth:`to_json` output."""
        files = {sha: Path(path) for sha, path in data["files"].items()}
        return cls(SegmentsManifest.from_json(data["manifest"]), files, frozenset(data["candidates"]))


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What a split came to: the chain, or why not (an error code and message), and the model's cuts."""

    grown: Grown | None
    cut_ids: frozenset[str]
    error: tuple[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        """The outcome as the child sends it."""
        return {
            "grown": None if self.grown is None else self.grown.to_json(),
            "cut_ids": sorted(self.cut_ids),
            "error": None if self.error is None else list(self.error),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        """An outcome from :meth:`to_json` output."""
        grown = None if data["grown"] is None else Grown.from_json(data["grown"])
        error = None if data["error"] is None else (str(data["error"][0]), str(data["error"][1]))
        return cls(grown, frozenset(data["cut_ids"]), error)


class Splitter:
    """Splits full models in a child process, one call at a time; each call blocks its (loading) thread."""

    def __init__(self) -> None:
        self._child: subprocess.Popen[bytes] | None = None
        self._closed = False  # by close(): no child starts after it, not even for a call under way
        self._lock = threading.Lock()
        self._workdir: Path | None = None  # where the child writes segments; made on the first grow

    def grow(
        self, source: ModelSource, model_sha256: str, model_id: str, cut_id: str, *, also: Sequence[str] | None
    ) -> Outcome:
        """The model cut into segments through ``cut_id`` and ``also`` (``None``: its candidate cuts).

        The child checks that the model still has ``model_sha256`` and that
        ``cut_id`` is one of its cuts with a tail.

        Raises:
            ModelError: The child failed (it died, or the model could not be read).
        """
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="edgecut-segments-"))
        answer = self._call(
            "grow",
            source=source.to_json(),
            model_sha256=model_sha256,
            model_id=model_id,
            cut_id=cut_id,
            also=None if also is None else list(also),
            workdir=str(self._workdir),
        )
        return Outcome.from_json(answer)

    def discard(self, grown: Grown) -> None:
        """Delete the files of ``grown``: sessions made of them no longer need them."""
        for path in grown.files.values():
            for file in (path, _data_file(path)):
                with contextlib.suppress(OSError):  # gone already, or held open where that forbids deleting
                    file.unlink()

    def fused_tail_sha256(self, source: ModelSource, model_sha256: str, model_id: str, cut_id: str) -> str | None:
        """The sha256 of the tail ``edgecut models split`` writes at ``cut_id`` (``None``: the model changed).

        Raises:
            ModelError: The child failed.
        """
        result: str | None = self._call(
            "fused_tail_sha256", source=source.to_json(), model_sha256=model_sha256, model_id=model_id, cut_id=cut_id
        )
        return result

    def zoo_sha256s(self, names: Sequence[str] | None, *, skip: Collection[str] = ()) -> dict[str, str]:
        """The sha256s of zoo models ``names`` (``None``: all) but those in ``skip``; unknown names left out.

        Raises:
            ModelError: The child failed.
        """
        result: dict[str, str] = self._call(
            "zoo_sha256s", names=None if names is None else list(names), skip=sorted(skip)
        )
        return result

    def file_sha256(self, path: Path) -> str:
        """A model file's identity (``models.partition.model_file_sha256``).

        Raises:
            ModelError: The file is not a model, or the child failed.
        """
        result: str = self._call("file_sha256", path=str(path))
        return result

    def close(self) -> None:
        """Stop the child (a call under way fails) and delete the directory it wrote segments into.

        Calls made after it fail with :class:`ModelError`.
        """
        self._closed = True
        self._stop_child()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def _stop_child(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        if child.stdin is not None:
            with contextlib.suppress(OSError):  # a child that died leaves a broken pipe
                child.stdin.close()  # the child exits at the end of its input
        try:
            child.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(_STOP_TIMEOUT_S)
        if child.stdout is not None:
            child.stdout.close()

    def _call(self, name: str, **args: object) -> Any:  # noqa: ANN401 - each public method types its own result
        with self._lock:
            child = self._started()
            try:
                _send(child.stdin, {"call": name, "args": args})
                answer = _receive(child.stdout)
            except (OSError, EOFError, ValueError) as exc:  # ValueError: not JSON, the child broke its output
                self._stop_child()
                msg = f"the process that splits models ended during {name} (exit code {child.poll()}): {exc}"
                raise ModelError(msg) from exc
        if "error" in answer:
            raise ModelError(answer["error"])
        return answer["value"]

    def _started(self) -> subprocess.Popen[bytes]:
        if self._child is not None and self._child.poll() is not None:
            self._stop_child()  # it died since the last call: its pipes go with it
        if self._child is None:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "cloud_hub._split_worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
        if self._closed:  # before it started (a load's thread outliving its hub), or while: either way, no child
            self._stop_child()
            msg = "the hub is stopping: it splits no more models"
            raise ModelError(msg)
        return self._child


def _send(stream: IO[bytes] | None, message: dict[str, Any]) -> None:
    if stream is None:
        raise EOFError
    data = json.dumps(message).encode()
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes] | None) -> dict[str, Any]:
    if stream is None:
        raise EOFError
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        raise EOFError
    (length,) = _LENGTH.unpack(header)
    data = stream.read(length)
    if len(data) < length:
        raise EOFError
    message: dict[str, Any] = json.loads(data)
    return message


# --- in the child ----------------------------------------------------------------------------


def _model(source: ModelSource) -> onnx.ModelProto:
    from models import partition, zoo  # noqa: PLC0415 - the child's tooling

    return zoo.build(source.name) if source.path is None else partition.load_model_file(source.path)


def _grow_call(
    *, source: dict[str, Any], model_sha256: str, model_id: str, cut_id: str, also: list[str] | None, workdir: str
) -> dict[str, Any]:
    outcome = _grow(ModelSource.from_json(source), model_sha256, model_id, cut_id, also, Path(workdir))
    return outcome.to_json()


def _grow(  # noqa: PLR0917 - a call's arguments, read
    source: ModelSource, model_sha256: str, model_id: str, cut_id: str, also: list[str] | None, workdir: Path
) -> Outcome:
    import onnx  # noqa: PLC0415 - the child's tooling

    from models import partition  # noqa: PLC0415

    model = _model(source)
    if sha256_hex(model.SerializeToString()) != model_sha256:  # the file changed since it was hashed
        return Outcome(None, frozenset(), (ErrorCode.UNKNOWN_MODEL, f"{source.name} changed since it was indexed"))
    cut_ids = frozenset(place.id for place in partition.enumerate_places(model))
    if cut_id not in cut_ids:
        msg = f"{model_id!r} has no usable cut {cut_id!r} (see `edgecut models cuts {model_id}`)"
        return Outcome(None, cut_ids, (ErrorCode.UNKNOWN_CUT, msg))
    if cut_id == EDGE_ONLY:
        msg = f"cut {cut_id!r} runs the whole model on the edge: there is no tail to serve"
        return Outcome(None, cut_ids, (ErrorCode.UNKNOWN_CUT, msg))
    candidates = _candidates(model)
    wanted = sorted({*(candidates if also is None else also), *candidates, cut_id})
    segments = partition.split_segments(model, wanted, model_id=model_id, check=False)
    files = {}
    for file, part in zip(segments.manifest.segments, segments.models, strict=True):
        path = workdir / f"{file.sha256}.onnx"
        onnx.save_model(
            part, path, save_as_external_data=True, all_tensors_to_one_file=True, location=_data_file(path).name
        )
        files[file.sha256] = path
    return Outcome(Grown(segments.manifest, files, candidates), cut_ids)


def _data_file(path: Path) -> Path:
    """The file of external data beside the segment file ``path``."""
    return path.with_suffix(".data")


def _candidates(model: onnx.ModelProto) -> frozenset[str]:
    """The cuts ``cut="auto"`` chooses between; none for a model whose sizes only its agents know."""
    from models import partition  # noqa: PLC0415 - the child's tooling

    try:
        return frozenset(cut.id for cut in partition.candidate_cuts(partition.enumerate_cuts(model)))
    except ModelError:  # dynamic sizes no metadata states: the agents' requests name their cuts
        return frozenset()


def _zoo_sha256s(*, names: list[str] | None, skip: list[str]) -> dict[str, str]:
    from models import zoo  # noqa: PLC0415 - the child's tooling

    wanted = [name for name in zoo.MODEL_NAMES if (names is None or name in names) and name not in skip]
    return {name: sha256_hex(zoo.build(name).SerializeToString()) for name in wanted}


def _file_sha256(*, path: str) -> str:
    """A model file's identity: its bytes, or with weights in side files, the model with them inline.

    Without ``onnx`` the hub cannot split a full model anyway: its bytes are all that matter then.
    """
    try:
        from models.partition import model_file_sha256  # noqa: PLC0415 - needs onnx
    except ImportError:
        return sha256_hex(Path(path).read_bytes())
    return model_file_sha256(Path(path))


def _fused_tail_sha256(*, source: dict[str, Any], model_sha256: str, model_id: str, cut_id: str) -> str | None:
    from models import partition  # noqa: PLC0415 - the child's tooling

    model = _model(ModelSource.from_json(source))
    if sha256_hex(model.SerializeToString()) != model_sha256:
        return None
    return partition.split(model, cut_id, model_id=model_id).manifest.tail_sha256


_CALLS: dict[str, Callable[..., object]] = {
    "grow": _grow_call,
    "zoo_sha256s": _zoo_sha256s,
    "file_sha256": _file_sha256,
    "fused_tail_sha256": _fused_tail_sha256,
}


def serve(calls: IO[bytes], answers: IO[bytes]) -> None:
    """Answer calls until the hub closes the pipe (or is gone)."""
    while True:
        try:
            call = _receive(calls)
        except EOFError:
            return
        try:
            answer = {"value": _CALLS[call["call"]](**call["args"])}
        except Exception as exc:  # noqa: BLE001 - every failure is the hub's to report
            answer = {"error": f"{type(exc).__name__}: {exc}" if not isinstance(exc, ModelError) else str(exc)}
        _send(answers, answer)

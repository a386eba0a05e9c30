"""Where a hub finds the tail for (model sha256, cut), loaded once and cached.

Lookup order: a split directory (``manifest.json`` + ``tail.onnx``) under the
models directory whose manifest names that model hash and cut; else a full
``.onnx`` model under it with that hash, split on demand; else a zoo model of
that name whose hash matches. Loading runs in a worker thread; sessions live
in a bounded least-recently-used cache.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from models import MANIFEST_FILE, TAIL_FILE, Manifest, Session, sha256_hex
from protocol import ErrorCode
from protocol.errors import ModelError

if TYPE_CHECKING:
    from concurrent.futures import Executor
    from pathlib import Path

    import onnx

logger = logging.getLogger("edgecut.hub")

_HALF_FILES = frozenset({"head.onnx", TAIL_FILE})


class TailUnavailableError(ModelError):
    """No tail can be had for a request; ``code`` says why, for the error reply."""

    def __init__(self, message: str, *, code: ErrorCode) -> None:
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True, slots=True)
class Tail:
    """A loaded tail: its manifest and a ready ONNX Runtime session."""

    manifest: Manifest
    session: Session


class TailStore:
    """Finds, loads and caches tail sessions.

    Args:
        models_dir: Searched recursively for split directories and ``.onnx`` models.
        use_zoo: Build zoo models by name when nothing on disk matches.
        max_sessions: Tails kept loaded at once.
        threads: ONNX Runtime intra-op threads per session.
        executor: Where loading (hashing, splitting, session creation) runs.
    """

    def __init__(
        self,
        *,
        models_dir: Path | None,
        use_zoo: bool,
        max_sessions: int,
        threads: int | None,
        executor: Executor,
    ) -> None:
        self._models_dir = models_dir
        self._use_zoo = use_zoo
        self._max_sessions = max_sessions
        self._threads = threads
        self._executor = executor
        self._tails: OrderedDict[tuple[str, str], Tail] = OrderedDict()
        self._loading: dict[tuple[str, str], asyncio.Future[Tail]] = {}
        self._full_models: dict[str, Path] = {}
        self._hashed: set[Path] = set()
        self._zoo_models: dict[str, tuple[onnx.ModelProto, str]] = {}
        self._disk_lock = threading.Lock()  # loads of different keys run in parallel threads

    def __len__(self) -> int:
        return len(self._tails)

    async def get(self, model_id: str, model_sha256: str, cut_id: str) -> Tail:
        """The tail of ``model_sha256`` at ``cut_id``, loading it on first use.

        Raises:
            TailUnavailableError: Unknown model or cut, or halves that do not match.
        """
        key = (model_sha256, cut_id)
        tail = self._tails.get(key)
        if tail is not None:
            self._tails.move_to_end(key)
            return tail
        pending = self._loading.get(key)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = loop.run_in_executor(self._executor, self._load, model_id, model_sha256, cut_id)
            self._loading[key] = pending
            pending.add_done_callback(lambda fut: self._loaded(key, fut))
        return await asyncio.shield(pending)

    def _loaded(self, key: tuple[str, str], future: asyncio.Future[Tail]) -> None:
        del self._loading[key]
        if future.cancelled() or future.exception() is not None:
            return
        self._tails[key] = future.result()
        while len(self._tails) > self._max_sessions:
            evicted, _ = self._tails.popitem(last=False)
            logger.info("unloaded tail %s (cache holds %d)", evicted, self._max_sessions)

    def _load(self, model_id: str, model_sha256: str, cut_id: str) -> Tail:
        split_dir = self._find_split_dir(model_sha256, cut_id)
        if split_dir is not None:
            manifest = Manifest.load(split_dir)
            tail_bytes = (split_dir / TAIL_FILE).read_bytes()
            if sha256_hex(tail_bytes) != manifest.tail_sha256:
                msg = f"{split_dir / TAIL_FILE} does not match the sha256 in its manifest"
                raise TailUnavailableError(msg, code=ErrorCode.MODEL_MISMATCH)
        else:
            manifest, tail_bytes = self._split(self._full_model(model_id, model_sha256), model_id, cut_id)
        logger.info("loaded tail of %s at cut %s", model_id, cut_id)
        return Tail(manifest=manifest, session=Session(tail_bytes, threads=self._threads))

    def _find_split_dir(self, model_sha256: str, cut_id: str) -> Path | None:
        if self._models_dir is None:
            return None
        for path in sorted(self._models_dir.rglob(MANIFEST_FILE)):
            try:
                manifest = Manifest.load(path.parent)
            except ModelError:
                continue
            if (manifest.model_sha256, manifest.cut_id) == (model_sha256, cut_id) and manifest.tail_sha256:
                return path.parent
        return None

    def _full_model(self, model_id: str, model_sha256: str) -> onnx.ModelProto:
        import onnx  # noqa: PLC0415 - the hub's tooling side; agents never get here

        with self._disk_lock:
            path = self._full_model_path(model_sha256)
            if path is not None:
                return onnx.load_model(path)
            return self._zoo_model(model_id, model_sha256)

    def _full_model_path(self, model_sha256: str) -> Path | None:
        if model_sha256 not in self._full_models and self._models_dir is not None:
            for path in sorted(self._models_dir.rglob("*.onnx")):
                if path.name not in _HALF_FILES and path not in self._hashed:
                    self._hashed.add(path)
                    self._full_models[sha256_hex(path.read_bytes())] = path
        return self._full_models.get(model_sha256)

    def _zoo_model(self, model_id: str, model_sha256: str) -> onnx.ModelProto:
        from models import zoo  # noqa: PLC0415 - needs onnx

        if not self._use_zoo or model_id not in zoo.MODEL_NAMES:
            msg = f"no model {model_id!r} with sha256 {model_sha256[:12]}... on this hub"
            raise TailUnavailableError(msg, code=ErrorCode.UNKNOWN_MODEL)
        if model_id not in self._zoo_models:
            model = zoo.build(model_id)
            self._zoo_models[model_id] = (model, sha256_hex(model.SerializeToString()))
        model, sha256 = self._zoo_models[model_id]
        if sha256 != model_sha256:
            msg = f"zoo model {model_id!r} on this hub has another sha256 than the agent's (different seed or version)"
            raise TailUnavailableError(msg, code=ErrorCode.MODEL_MISMATCH)
        return model

    @staticmethod
    def _split(model: onnx.ModelProto, model_id: str, cut_id: str) -> tuple[Manifest, bytes]:
        from models import partition  # noqa: PLC0415 - needs onnx

        try:
            split = partition.split(model, cut_id, model_id=model_id)
        except ModelError as exc:
            raise TailUnavailableError(str(exc), code=ErrorCode.UNKNOWN_CUT) from exc
        if split.tail is None:
            msg = f"cut {cut_id!r} runs the whole model on the edge: there is no tail to serve"
            raise TailUnavailableError(msg, code=ErrorCode.UNKNOWN_CUT)
        return split.manifest, split.tail.SerializeToString()

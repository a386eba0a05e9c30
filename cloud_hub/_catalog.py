"""The models a hub can serve, identified by the sha256 of the full model.

A request's ``model_sha256`` is authoritative; its ``model`` name is only a
hint that spares a search and makes error messages readable. The catalog
indexes three sources:

- split directories under the models directory, by (model sha256, cut), from
  their manifests, and segments directories (``segments.json``) by model
  sha256, with the cuts their chains pass through;
- full ``.onnx`` models under it, by the sha256 of their bytes, each file
  hashed once (again only when its size or modification time changes);
- the zoo (when enabled), by name, and by sha256 once a request names a hash
  nothing else has: then every zoo model is built once and hashed.

The directory is rescanned on a miss, at most once per ``rescan_after_s``, so
models added while the hub runs are found, and a flood of unknown hashes costs
one scan per interval. Methods block (file I/O, hashing, building); the store
calls them from a worker thread.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import TYPE_CHECKING

from cloud_hub._splitter import ModelSource, Splitter
from models import EDGE_ONLY, MANIFEST_FILE, SEGMENTS_FILE, Manifest, SegmentsManifest
from protocol.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from pathlib import Path


logger = logging.getLogger("edgecut.hub")

_HALF_FILES = frozenset({"head.onnx", "tail.onnx"})


@dataclasses.dataclass(frozen=True, slots=True)
class _FileStamp:
    size: int
    mtime_ns: int


class ModelCatalog:
    """Finds models and splits by sha256.

    Args:
        models_dir: Searched recursively; ``None`` for none.
        use_zoo: Also know the zoo's models.
        rescan_after_s: Least time between two scans of ``models_dir``.
        splitter: Where models are built and hashed (a child process).
    """

    def __init__(self, *, models_dir: Path | None, use_zoo: bool, rescan_after_s: float, splitter: Splitter) -> None:
        self._splitter = splitter
        self._models_dir = models_dir
        self._use_zoo = use_zoo
        self._rescan_after_s = rescan_after_s
        self._lock = threading.Lock()
        self._scanned_at: float | None = None
        self._splits: dict[tuple[str, str], Path] = {}
        self._segments: dict[str, tuple[Path, frozenset[str]]] = {}  # model sha256 -> directory, its cuts
        self._split_names: dict[str, str] = {}  # model sha256 -> model_id, from manifests
        self._stamps: dict[Path, tuple[_FileStamp, str]] = {}
        self._files: dict[str, ModelSource] = {}
        self._zoo: dict[str, ModelSource] = {}
        self._zoo_indexed = False

    def mark_stale(self) -> None:
        """Scan the models directory again at the next look-up, however recent the last scan (a version was added).

        Takes no lock: a scan under way either began before (and this forces
        another) or after the change (and sees it).
        """
        self._scanned_at = None

    def split_dir(self, model_sha256: str, cut_id: str) -> Path | None:
        """The split directory holding the tail of ``model_sha256`` at ``cut_id``, if any."""
        with self._lock:
            self._scan(force=False)
            found = self._splits.get((model_sha256, cut_id))
            if found is None and self._scan(force=True):
                found = self._splits.get((model_sha256, cut_id))
            return found

    def segments_dir(self, model_sha256: str, cut_id: str) -> Path | None:
        """The segments directory of ``model_sha256`` whose chain has a tail at ``cut_id``, if any."""
        with self._lock:
            self._scan(force=False)
            found = self._segments.get(model_sha256)
            if (found is None or cut_id not in found[1]) and self._scan(force=True):
                found = self._segments.get(model_sha256)
            return found[0] if found is not None and cut_id in found[1] and cut_id != EDGE_ONLY else None

    def split_cuts(self, model_sha256: str) -> list[str]:
        """The cuts of ``model_sha256`` that split and segments directories hold tails for."""
        with self._lock:
            cuts = {cut for sha, cut in self._splits if sha == model_sha256}
            cuts |= set(self._segments.get(model_sha256, (None, frozenset()))[1]) - {EDGE_ONLY}
            return sorted(cuts)

    def source(self, model_sha256: str, name_hint: str) -> ModelSource | None:
        """Where the full model with this sha256 comes from; ``None`` if no source has it whole."""
        with self._lock:
            return self._locate(model_sha256, name_hint)

    def names_for(self, name: str) -> list[str]:
        """The sha256s of the models this catalog knows by ``name`` (for error messages and preloading)."""
        with self._lock:
            self._scan(force=False)
            self._index_zoo(name)
            known = [sha for sha, found in (self._files | self._zoo).items() if found.name == name]
            known += [sha for sha, model_id in self._split_names.items() if model_id == name]
            return sorted(set(known))

    def _locate(self, model_sha256: str, name_hint: str) -> ModelSource | None:
        self._scan(force=False)
        found = self._files.get(model_sha256) or self._zoo.get(model_sha256)
        if found is None and self._index_zoo(name_hint):
            found = self._zoo.get(model_sha256)
        if found is None and self._scan(force=True):
            found = self._files.get(model_sha256)
        if found is None and self._index_zoo(None):
            found = self._zoo.get(model_sha256)
        return found

    def _scan(self, *, force: bool) -> bool:
        """Index the directory: on first use, or when ``force`` and the last scan is old enough."""
        now = time.monotonic()
        fresh = self._scanned_at is not None and (not force or now - self._scanned_at < self._rescan_after_s)
        if fresh or self._models_dir is None:
            return False
        self._scanned_at = now
        for path in sorted(self._models_dir.rglob(MANIFEST_FILE)):
            try:
                manifest = Manifest.load(path.parent)
            except ModelError as exc:
                logger.warning("skipped %s: %s", path, exc)
                continue
            if manifest.tail_sha256 is not None:
                self._splits[(manifest.model_sha256, manifest.cut_id)] = path.parent
                self._split_names[manifest.model_sha256] = manifest.model_id
        for path in sorted(self._models_dir.rglob(SEGMENTS_FILE)):
            try:
                chain = SegmentsManifest.load(path.parent)
            except ModelError as exc:
                logger.warning("skipped %s: %s", path, exc)
                continue
            self._segments[chain.model_sha256] = (path.parent, frozenset(chain.cut_ids))
            self._split_names[chain.model_sha256] = chain.model_id
        for path in sorted(self._models_dir.rglob("*.onnx")):
            if path.name not in _HALF_FILES and not (path.parent / SEGMENTS_FILE).is_file():
                self._index_file(path)
        return True

    def _index_file(self, path: Path) -> None:
        try:
            stat = path.stat()
            stamp = _FileStamp(size=stat.st_size, mtime_ns=stat.st_mtime_ns)
            known = self._stamps.get(path)
            if known is not None and known[0] == stamp:
                return
            sha = self._splitter.file_sha256(path)
        except (OSError, ModelError) as exc:
            logger.warning("skipped %s: %s", path, exc)
            return
        self._stamps[path] = (stamp, sha)
        self._files[sha] = ModelSource(name=path.stem, path=path)

    def _index_zoo(self, name: str | None) -> bool:
        """Build and hash zoo model ``name`` (all of them for ``None``) once; True if anything new was hashed."""
        if not self._use_zoo or self._zoo_indexed:
            return False
        hashed = {found.name for found in self._zoo.values()}
        if name in hashed:
            return False
        fresh = self._splitter.zoo_sha256s(None if name is None else [name], skip=hashed)
        for zoo_name, sha in fresh.items():
            self._zoo[sha] = ModelSource(name=zoo_name)
        self._zoo_indexed = name is None
        return bool(fresh)


def parse_preload(spec: str) -> tuple[str, str]:
    """Split ``MODEL:CUT`` at its first colon (cut ids may hold colons, model names may not).

    Raises:
        ConfigError: ``spec`` is not ``MODEL:CUT``.
    """
    name, colon, cut = spec.partition(":")
    if not (name and colon and cut):
        msg = f"preload {spec!r} must be MODEL:CUT, e.g. resnet18:layer3.1.out"
        raise ConfigError(msg)
    return name, cut


def preload_key(catalog: ModelCatalog, spec: str) -> tuple[str, str, str]:
    """Resolve ``MODEL:CUT`` (a model name the catalog knows) to ``(name, sha256, cut)``.

    Raises:
        ConfigError: ``spec`` is not ``MODEL:CUT``.
        ModelError: The name is unknown or ambiguous.
    """
    name, cut = parse_preload(spec)
    shas = catalog.names_for(name)
    if len(shas) != 1:
        problem = "no model of that name" if not shas else f"{len(shas)} models of that name"
        msg = f"preload {spec!r}: this hub has {problem} (zoo names, manifest model ids and file stems count)"
        raise ModelError(msg)
    return name, shas[0], cut

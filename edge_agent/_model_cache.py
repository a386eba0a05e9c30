"""Fetched models on disk: complete versions, partial ones that resume, bounded in bytes with LRU eviction.

Layout under the cache's root::

    NAME/VERSION/              a complete version: its files, every one checked
    NAME/VERSION/.offer        the offer it was fetched by (msgpack, one version)
    NAME/VERSION.part/         a version being fetched: FILE.part (blocks at their offsets),
                               FILE.blocks (the bitmap of those on disk), FILE once checked
    NAME/.bad.json             versions refused or rolled back here, with why: {VERSION: WHY}

A version directory appears under its own name only once every file matched
its sha256 (one rename), so a complete-looking version is always whole.
Versions are used most recently first by their directory's modification
time, which :meth:`ModelCache.use` sets.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent._transfer import Bitmap
from models import file_sha256_hex
from protocol import ModelOffer, block_count, check_delivery_name, decode_offer, encode_offer
from protocol.errors import ConfigError, ProtocolError

if TYPE_CHECKING:
    from protocol import OfferedFile, OfferedVersion

logger = logging.getLogger("edgecut.agent")

DEFAULT_CACHE_BYTES = 2 * 1024**3
"""A cache's bound unless given: 2 GiB."""
_OFFER_FILE = ".offer"
_BAD_FILE = ".bad.json"
_PARTIAL = ".part"
_BITMAP = ".blocks"


class PartialVersion:
    """A version being fetched: its partial files and their bitmaps, kept on disk so that a fetch resumes.

    Its methods block (file I/O): call them off the event loop.
    """

    def __init__(self, directory: Path, model: str, offered: OfferedVersion) -> None:
        self.directory = directory
        self.model = model
        self.offered = offered

    def open(self) -> dict[str, Bitmap]:
        """Make the directory (wiping one left by another version of the same id); each file's blocks on disk."""
        offer_path = self.directory / _OFFER_FILE
        if self.directory.is_dir() and _read_offer(offer_path) != self.offered:
            logger.warning("%s holds another version's blocks: started again", self.directory)
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        offer_path.write_bytes(_offer_bytes(self.model, self.offered))
        return {file.name: self._bitmap(file) for file in self.offered.files}

    def _bitmap(self, file: OfferedFile) -> Bitmap:
        blocks = block_count(file.size, self.offered.block_size)
        if (self.directory / file.name).is_file():  # checked already
            bitmap = Bitmap(blocks)
            for index in range(blocks):
                bitmap.add(index)
            return bitmap
        saved = self.directory / (file.name + _BITMAP)
        part = self.directory / (file.name + _PARTIAL)
        if not part.is_file() or part.stat().st_size != file.size:
            with part.open("wb") as out:
                out.truncate(file.size)
            saved.unlink(missing_ok=True)
        return Bitmap(blocks, saved.read_bytes() if saved.is_file() else b"")

    def write(self, file: str, offset: int, data: bytes, bitmap: Bitmap) -> None:
        """Put a checked block in place, then save the bitmap that counts it (in that order: a crash loses it only)."""
        with (self.directory / (file + _PARTIAL)).open("r+b") as out:
            out.seek(offset)
            out.write(data)
        saved = self.directory / (file + _BITMAP)
        temporary = saved.with_name(saved.name + ".new")
        temporary.write_bytes(bitmap.to_bytes())
        temporary.replace(saved)

    def verify(self, file: OfferedFile) -> bool:
        """Check a file with every block against its sha256: in place when it matches, else its blocks are dropped."""
        part = self.directory / (file.name + _PARTIAL)
        if not part.exists() and (self.directory / file.name).is_file():
            return True  # checked before
        if file_sha256_hex(part) != file.sha256:
            (self.directory / (file.name + _BITMAP)).unlink(missing_ok=True)
            return False
        part.replace(self.directory / file.name)
        (self.directory / (file.name + _BITMAP)).unlink(missing_ok=True)
        return True


class ModelCache:
    """Fetched model versions under ``root``, at most ``max_bytes`` together.

    Room for a new version is made by evicting whole versions, least
    recently used first, never a pinned one (:meth:`pin`: the versions in
    use) nor the one being fetched. Its methods block (file I/O).

    Args:
        root: The cache's directory (created when needed).
        max_bytes: Bound on the bytes of the model files held, partial versions'
            counted at their full size (the bookkeeping, a few hundred bytes
            per version, is not counted).

    Raises:
        ConfigError: ``max_bytes`` is less than 1.
    """

    def __init__(self, root: Path, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if max_bytes < 1:
            msg = f"a model cache needs at least 1 byte, not {max_bytes}"
            raise ConfigError(msg)
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._pinned: set[tuple[str, str]] = set()

    def path(self, model: str, version: str) -> Path | None:
        """The directory of ``model`` at ``version`` if the cache holds it complete.

        Raises:
            ValueError: ``model`` or ``version`` is not a name a node could offer (``..``, ``a/b``, ...).
        """
        directory = self.root / check_delivery_name(model, "model") / check_delivery_name(version, "version")
        return directory if (directory / _OFFER_FILE).is_file() else None

    def offered(self, model: str, version: str) -> OfferedVersion | None:
        """What the complete version was fetched as (files, sizes, sha256s), if the cache holds it."""
        directory = self.path(model, version)
        return None if directory is None else _read_offer(directory / _OFFER_FILE)

    def versions(self, model: str) -> list[str]:
        """The complete versions of ``model`` held, most recently used first."""
        held = [(directory.stat().st_mtime_ns, directory.name) for directory in self._complete(model)]
        return [name for _, name in sorted(held, reverse=True)]

    def use(self, model: str, version: str) -> None:
        """Note a use of a version: the last to be evicted."""
        directory = self.path(model, version)
        if directory is not None:
            os.utime(directory)

    def bad(self, model: str) -> dict[str, str]:
        """The versions of ``model`` refused or rolled back on this device, each with why (kept across restarts)."""
        path = self.root / check_delivery_name(model, "model") / _BAD_FILE
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(version): str(why) for version, why in found.items()} if isinstance(found, dict) else {}

    def mark_bad(self, model: str, version: str, why: str) -> None:
        """Remember ``version`` of ``model`` as bad, and why (written whole: a crash leaves the old list)."""
        directory = self.root / check_delivery_name(model, "model")
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / f"{_BAD_FILE}.{uuid.uuid4().hex[:8]}"
        partial.write_text(json.dumps(self.bad(model) | {check_delivery_name(version, "version"): why}))
        partial.replace(directory / _BAD_FILE)

    def pin(self, model: str, version: str) -> None:
        """Never evict this version (it is in use) until :meth:`unpin`."""
        self._pinned.add((model, version))

    def unpin(self, model: str, version: str) -> None:
        """Let this version be evicted again."""
        self._pinned.discard((model, version))

    def partial(self, model: str, offered: OfferedVersion) -> PartialVersion:
        """The on-disk state of a fetch of ``offered``, with room made for it.

        Raises:
            ConfigError: The version is larger than the cache, or what is
                pinned leaves no room for it.
        """
        self._make_room(offered.size, keep=(check_delivery_name(model, "model"), offered.version))
        return PartialVersion(self.root / model / (offered.version + _PARTIAL), model, offered)

    def complete(self, partial: PartialVersion) -> Path:
        """Move a version whose every file matched into place; its directory."""
        target = self.root / partial.model / partial.offered.version
        if target.exists():  # another process finished it first
            shutil.rmtree(partial.directory)
        else:
            partial.directory.replace(target)
        os.utime(target)
        return target

    def size(self) -> int:
        """Bytes of the model files held, partial versions included."""
        return sum(_bytes_in(directory) for directory in self._all())

    def _make_room(self, nbytes: int, keep: tuple[str, str]) -> None:
        if nbytes > self.max_bytes:
            msg = f"{keep[0]} {keep[1]} takes {nbytes:,} bytes, more than the cache's {self.max_bytes:,}"
            raise ConfigError(msg)
        entries = []
        for directory in self._all():
            key = (directory.parent.name, directory.name.removesuffix(_PARTIAL))
            if key != keep:
                entries.append((directory.stat().st_mtime_ns, directory, _bytes_in(directory), key))
        held = sum(size for _, _, size, _ in entries)
        for _, directory, size, key in sorted(entries, key=lambda entry: entry[0]):
            if held + nbytes <= self.max_bytes:
                return
            if key in self._pinned:
                continue
            logger.info("model cache: evicted %s %s (%d bytes)", *key, size)
            shutil.rmtree(directory, ignore_errors=True)
            held -= size
        if held + nbytes > self.max_bytes:
            msg = f"no room for {keep[0]} {keep[1]} ({nbytes:,} bytes): pinned versions fill the cache"
            raise ConfigError(msg)

    def _complete(self, model: str) -> list[Path]:
        base = self.root / model
        if not base.is_dir():
            return []
        return [
            entry
            for entry in base.iterdir()
            if entry.is_dir() and (entry / _OFFER_FILE).is_file() and not entry.name.endswith(_PARTIAL)
        ]

    def _all(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [
            version
            for model in self.root.iterdir()
            if model.is_dir()
            for version in model.iterdir()
            if version.is_dir()
        ]


def _bytes_in(directory: Path) -> int:
    """Bytes of the model files in a version's directory (partial ones at their full size); not the bookkeeping."""
    return sum(
        entry.stat().st_size
        for entry in directory.iterdir()
        if entry.is_file() and entry.name != _OFFER_FILE and _BITMAP not in entry.name
    )


def _offer_bytes(model: str, offered: OfferedVersion) -> bytes:
    return encode_offer(ModelOffer(node_id="cache", model=model, versions=(offered,)))


def _read_offer(path: Path) -> OfferedVersion | None:
    with contextlib.suppress(OSError, ProtocolError):
        return decode_offer(path.read_bytes()).versions[0]
    return None

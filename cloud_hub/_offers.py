"""What a node delivers: the segments and split directories under its models directory, as offers.

Each directory is one version of its model (section 9.1 of docs/protocol.md:
named by the first 12 hex digits of its ``model_sha256``), made of its
manifest and the model files it lists, each hashed here: what is offered is
what is on disk. Full ``.onnx`` files and zoo models are not delivered: an
agent runs a segments or split directory without the ``onnx`` package, and a
model is delivered in that form (``edgecut models split``).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from cloud_hub._publish import read_canary
from models import HEAD_FILE, MANIFEST_FILE, SEGMENTS_FILE, TAIL_FILE, Manifest, SegmentsManifest, file_sha256_hex
from protocol import (
    MAX_OFFERED_VERSIONS,
    ModelKind,
    ModelOffer,
    OfferedFile,
    OfferedVersion,
    check_delivery_name,
    version_of,
)
from protocol.errors import ModelError

if TYPE_CHECKING:
    from pathlib import Path

logger = logging.getLogger("edgecut.hub")


@dataclasses.dataclass(frozen=True, slots=True)
class Held:
    """One version a node delivers, and the directory its files are read from."""

    directory: Path
    offered: OfferedVersion


class FileHashes:
    """The sha256 of files, each hashed again only when its size or modification time changes.

    A node scanning its directory again (a version published while it runs)
    pays for the new files only. Blocks (hashing): use it off the event loop.
    """

    def __init__(self) -> None:
        self._known: dict[Path, tuple[tuple[int, int], str]] = {}

    def sha256(self, path: Path) -> str:
        """The hex sha256 of ``path``'s bytes.

        Raises:
            OSError: The file cannot be read.
        """
        stat = path.stat()
        stamp = (stat.st_size, stat.st_mtime_ns)
        known = self._known.get(path)
        if known is None or known[0] != stamp:
            known = (stamp, file_sha256_hex(path))
            self._known[path] = known
        return known[1]


@dataclasses.dataclass(frozen=True, slots=True)
class Catalog:
    """The offers of a node, by model name, and the directories behind their versions."""

    offers: dict[str, ModelOffer]
    held: dict[tuple[str, str], Held]

    def find(self, model: str, version: str) -> Held | None:
        """The directory and offer of ``model`` at ``version``, if delivered here."""
        return self.held.get((model, version))


def scan_offers(models_dir: Path, node_id: str, block_size: int, hashes: FileHashes | None = None) -> Catalog:
    """Every segments and split directory under ``models_dir``, hashed, as offers of ``node_id``.

    Blocks (reads and hashes every file): call it off the event loop. A
    directory that cannot be read, or whose model's name cannot be a topic
    level, is skipped with a warning. A version is one directory: of a
    segments directory and split directories of the same model, the segments
    directory is offered (it holds every cut); of several of one kind, the
    first in path order. The newest versions (by their manifest's
    modification time) come first, at most 16 per model. ``hashes`` spares
    hashing again the files an earlier scan hashed.
    """
    hashes = hashes or FileHashes()
    found: list[tuple[int, str, Held]] = []
    seen: set[tuple[str, str]] = set()
    candidates = [(path, "segments") for path in sorted(models_dir.rglob(SEGMENTS_FILE))]
    candidates += [(path, "split") for path in sorted(models_dir.rglob(MANIFEST_FILE))]
    for manifest_path, kind in candidates:
        try:
            model, held = _held(manifest_path, kind, block_size, hashes)  # type: ignore[arg-type]
        except (ModelError, OSError, ValueError) as exc:
            logger.warning("not delivering %s: %s", manifest_path.parent, exc)
            continue
        if (model, held.offered.version) in seen:
            continue
        seen.add((model, held.offered.version))
        found.append((manifest_path.stat().st_mtime_ns, model, held))
    versions: dict[str, list[Held]] = {}
    for _, model, held in sorted(found, key=lambda entry: entry[0], reverse=True):
        versions.setdefault(model, []).append(held)
    offers = {
        model: ModelOffer(node_id, model, tuple(held.offered for held in helds[:MAX_OFFERED_VERSIONS]))
        for model, helds in versions.items()
    }
    return Catalog(
        offers=offers,
        held={(model, h.offered.version): h for model, helds in versions.items() for h in helds[:MAX_OFFERED_VERSIONS]},
    )


def _held(manifest_path: Path, kind: ModelKind, block_size: int, hashes: FileHashes) -> tuple[str, Held]:
    directory = manifest_path.parent
    if kind == "segments":
        chain = SegmentsManifest.load(directory)
        model, sha = chain.model_id, chain.model_sha256
        names = [SEGMENTS_FILE, *(segment.file for segment in chain.segments)]
    else:
        manifest = Manifest.load(directory)
        model, sha = manifest.model_id, manifest.model_sha256
        names = [MANIFEST_FILE, *(name for name in (HEAD_FILE, TAIL_FILE) if (directory / name).is_file())]
    check_delivery_name(model, "model")  # a topic level and a directory name at the agent
    files = tuple(
        OfferedFile(name, (directory / name).stat().st_size, hashes.sha256(directory / name)) for name in names
    )
    offered = OfferedVersion(
        version=version_of(sha),
        model_sha256=sha,
        kind=kind,
        block_size=block_size,
        files=files,
        canary=read_canary(directory),
    )
    return model, Held(directory, offered)

"""Model delivery's messages: a node's offer of a model's versions, an agent's fetch, and one block of a file.

A node (a hub, or a registry process) offers the model directories it holds,
retained; an agent fetches a version's files block by block and checks every
block and every file against the sha256 the messages carry
(``docs/protocol.md``, section 9).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Final, Literal

MAX_BLOCK_BYTES: Final = 1024 * 1024
"""Largest ``block_size`` an offer may state."""

MIN_BLOCK_BYTES: Final = 1024
"""Smallest ``block_size`` an offer may state."""

DEFAULT_BLOCK_BYTES: Final = 128 * 1024
"""The block size a Python node offers unless configured otherwise (AWS IoT's MQTT file delivery's largest)."""

BLOCK_ENVELOPE_BYTES: Final = 1024
"""Most bytes a block message takes besides its data: a node keeps ``block_size`` this far below its packet limit."""

MAX_FETCH_BLOCKS: Final = 64
"""Most block indices one fetch may list."""

MAX_OFFERED_VERSIONS: Final = 16
"""Most versions one offer may list."""

MAX_FILES: Final = 256
"""Most files one version may hold."""

MAX_FILE_BYTES: Final = 2**40
"""Largest file a version may hold."""

MAX_FILE_NAME_LENGTH: Final = 255
"""Longest file name, in characters."""

ModelKind = Literal["segments", "split"]
"""What a delivered directory is: a chain of segments, or one split (``docs/protocol.md``, section 8)."""


VERSION_DIGITS: Final = 12
"""The Python implementation names a model's version by this many leading hex digits of its sha256."""


def version_of(model_sha256: str) -> str:
    """The version the Python implementation names a model by: the first 12 hex digits of its sha256.

    Every node holding the same bytes offers them under the same version, and
    an agent names the version it runs without asking anyone.
    """
    return model_sha256[:VERSION_DIGITS]


def canary_position(agent_id: str, version: str) -> float:
    """Where an agent stands in a version's staged roll-out, in [0, 1): it takes a canary of share ``c`` below ``c``.

    The first 8 bytes of the sha256 of ``agent_id``, a newline and
    ``version``, as a fraction of 2^64: the same for every run and every
    agent's view, so no one coordinates who is in the canary, a share that
    grows keeps the agents it had, and each version picks its own agents.
    """
    digest = hashlib.sha256(f"{agent_id}\n{version}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def block_count(size: int, block_size: int) -> int:
    """How many blocks a file of ``size`` bytes has: ``ceil(size / block_size)``, none when empty."""
    return -(-size // block_size)


@dataclasses.dataclass(frozen=True, slots=True)
class OfferedFile:
    """One file of a delivered version.

    Attributes:
        name: A plain file name inside the model's directory.
        size: Its size in bytes.
        sha256: The sha256 of its bytes (lowercase hex).
    """

    name: str
    size: int
    sha256: str


@dataclasses.dataclass(frozen=True, slots=True)
class OfferedVersion:
    """One version of a model a node delivers: its identity and files.

    Attributes:
        version: The version's id (a valid topic level).
        model_sha256: The model's identity.
        kind: ``"segments"`` or ``"split"``.
        block_size: Bytes per block of every file.
        files: The directory's files.
        canary: A staged roll-out: the share of agents (above 0, below 1)
            that take this version, those whose :func:`canary_position` is
            below it; ``None``: every agent.
    """

    version: str
    model_sha256: str
    kind: ModelKind
    block_size: int
    files: tuple[OfferedFile, ...]
    canary: float | None = None

    def admits(self, agent_id: str) -> bool:
        """Whether agent ``agent_id`` takes this version (it is in the canary, or there is none)."""
        return self.canary is None or canary_position(agent_id, self.version) < self.canary

    @property
    def size(self) -> int:
        """Bytes of all its files together."""
        return sum(file.size for file in self.files)

    def file(self, name: str) -> OfferedFile | None:
        """The file called ``name``, if the version has one."""
        return next((file for file in self.files if file.name == name), None)

    def block_range(self, file: OfferedFile, index: int) -> tuple[int, int]:
        """Offset and length of block ``index`` of ``file``.

        Raises:
            ValueError: ``file`` has no block ``index``.
        """
        if not 0 <= index < block_count(file.size, self.block_size):
            msg = f"{file.name} has {block_count(file.size, self.block_size)} blocks: no block {index}"
            raise ValueError(msg)
        offset = index * self.block_size
        return offset, min(self.block_size, file.size - offset)


@dataclasses.dataclass(frozen=True, slots=True)
class ModelOffer:
    """A node's retained announcement of the versions of one model it delivers.

    Attributes:
        node_id: The delivering node (a valid topic level).
        model: The model's name (a valid topic level).
        versions: Newest first.
    """

    node_id: str
    model: str
    versions: tuple[OfferedVersion, ...]

    def version(self, version: str | None, *, agent_id: str | None = None) -> OfferedVersion | None:
        """Version ``version``, or for ``None`` the newest (that admits ``agent_id``, if given); ``None`` if none.

        Args:
            version: The version wanted; ``None``: the newest.
            agent_id: Who asks: the newest version skips those in a canary it is not in.
        """
        if version is None:
            admitted = (v for v in self.versions if agent_id is None or v.admits(agent_id))
            return next(admitted, None)
        return next((offered for offered in self.versions if offered.version == version), None)


@dataclasses.dataclass(frozen=True, slots=True)
class FetchRequest:
    """An agent asks a node for blocks of one file of one version.

    Attributes:
        request_id: Unique per agent; the blocks carry it.
        model: The model, as offered.
        version: The version, as offered.
        file: The file's name, as offered.
        blocks: The block indices wanted.
    """

    request_id: str
    model: str
    version: str
    file: str
    blocks: tuple[int, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Block:
    """One block of a file, a node's answer to a fetch.

    Attributes:
        request_id: The fetch's id.
        node_id: The node answering.
        model: The model.
        version: The version.
        file: The file's name.
        index: The block's index.
        offset: Its first byte's offset in the file.
        sha256: The sha256 of ``data``.
        data: The block's bytes.
    """

    request_id: str
    node_id: str
    model: str
    version: str
    file: str
    index: int
    offset: int
    sha256: str
    data: bytes

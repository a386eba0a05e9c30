"""A model version's transfer, without I/O: which blocks to ask for next, and what arrived.

:class:`Transfer` is told what happens (a block arrived, a fetch was refused,
the connection was lost, a file's hash was checked) and answers with the
fetches to send; it never touches a socket, a file or a clock. The driver,
:func:`edge_agent.fetch_model`, carries them out on MQTT and disk. Each
file's received blocks are a :class:`Bitmap`, which the driver keeps on disk
beside the partial file so that a transfer resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from typing import TYPE_CHECKING

from protocol import MAX_FETCH_BLOCKS, Block, FetchRequest, OfferedFile, OfferedVersion, block_count

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping


class Bitmap:
    """One bit per block: set once the block is on disk and checked.

    Args:
        size: The number of blocks.
        data: A saved bitmap (:meth:`to_bytes`); one of another size is ignored.
    """

    __slots__ = ("_bits", "size")

    def __init__(self, size: int, data: bytes = b"") -> None:
        self.size = size
        length = -(-size // 8)
        self._bits = bytearray(data) if len(data) == length else bytearray(length)
        if size % 8 and self._bits:  # bits past the last block stay clear
            self._bits[-1] &= (1 << (size % 8)) - 1

    def __contains__(self, index: int) -> bool:
        return 0 <= index < self.size and bool(self._bits[index >> 3] & (1 << (index & 7)))

    def add(self, index: int) -> None:
        """Mark block ``index`` received."""
        if not 0 <= index < self.size:
            msg = f"block {index} out of range 0..{self.size - 1}"
            raise IndexError(msg)
        self._bits[index >> 3] |= 1 << (index & 7)

    def clear(self) -> None:
        """Mark every block missing."""
        self._bits[:] = bytes(len(self._bits))

    def count(self) -> int:
        """Blocks received."""
        return sum(byte.bit_count() for byte in self._bits)

    def missing(self) -> Iterator[int]:
        """The blocks not received, in order."""
        return (index for index in range(self.size) if index not in self)

    @property
    def full(self) -> bool:
        """Every block received."""
        return self.count() == self.size

    def to_bytes(self) -> bytes:
        """The bitmap as bytes, block ``i`` in bit ``i % 8`` of byte ``i // 8``."""
        return bytes(self._bits)


@dataclasses.dataclass(slots=True)
class _Asked:
    file: str
    blocks: set[int]


class Transfer:
    """Which blocks of a version to fetch next, within a window, and what arrived.

    Args:
        offered: The version fetched.
        model: Its model's name.
        received: Each file's bitmap of the blocks already on disk (a resumed
            transfer); files not listed start with none.
        blocks_per_fetch: Most blocks one fetch asks for.
        fetches_in_flight: Most fetches asked and not fully answered.
        id_prefix: Starts every fetch id (unique per agent: give a random one).
    """

    def __init__(
        self,
        offered: OfferedVersion,
        model: str,
        received: Mapping[str, Bitmap] | None = None,
        *,
        blocks_per_fetch: int = 16,
        fetches_in_flight: int = 2,
        id_prefix: str = "fetch",
    ) -> None:
        if not 1 <= blocks_per_fetch <= MAX_FETCH_BLOCKS or fetches_in_flight < 1:
            msg = f"blocks_per_fetch must be from 1 to {MAX_FETCH_BLOCKS}, fetches_in_flight at least 1"
            raise ValueError(msg)
        self.offered = offered
        self.model = model
        self._blocks_per_fetch = blocks_per_fetch
        self._fetches_in_flight = fetches_in_flight
        given = received or {}
        self.received = {
            file.name: given.get(file.name) or Bitmap(block_count(file.size, offered.block_size))
            for file in offered.files
        }
        self._asked: dict[str, _Asked] = {}
        self._ids = (f"{id_prefix}-{n}" for n in itertools.count(1))

    @property
    def done(self) -> bool:
        """Every block of every file received (their hashes are the driver's to check)."""
        return all(bitmap.full for bitmap in self.received.values())

    @property
    def received_bytes(self) -> int:
        """Bytes of the blocks received so far."""
        return sum(self._bytes_of(file) for file in self.offered.files)

    def next_fetches(self) -> list[FetchRequest]:
        """The fetches to send now: as many as the window has room for, of blocks neither received nor asked."""
        fetches: list[FetchRequest] = []
        wanted = self._wanted()
        while len(self._asked) < self._fetches_in_flight:
            batch = next(wanted, None)
            if batch is None:
                break
            file, blocks = batch
            fetch = FetchRequest(next(self._ids), self.model, self.offered.version, file, tuple(blocks))
            self._asked[fetch.request_id] = _Asked(file, set(blocks))
            fetches.append(fetch)
        return fetches

    def check(self, block: Block) -> str | None:
        """Why ``block`` cannot be taken (its fetch, place, size or hash is wrong); ``None`` when it can."""
        asked = self._asked.get(block.request_id)
        file = self.offered.file(block.file)
        if asked is None or file is None or asked.file != block.file or block.version != self.offered.version:
            return f"block {block.index} of {block.file} answers no fetch in flight ({block.request_id})"
        if block.index not in asked.blocks:
            return f"block {block.index} of {block.file} was not asked for in {block.request_id}"
        offset, length = self.offered.block_range(file, block.index)
        if (block.offset, len(block.data)) != (offset, length):
            got = f"{len(block.data)} bytes at {block.offset}"
            return f"block {block.index} of {block.file} is {got}, not {length} at {offset}"
        if hashlib.sha256(block.data).hexdigest() != block.sha256:
            return f"block {block.index} of {block.file} does not match its sha256"
        return None

    def take(self, block: Block) -> bool:
        """Note a block :meth:`check` passed, now on disk; True when its file has every block."""
        self._settle(block.request_id, block.index)
        bitmap = self.received[block.file]
        bitmap.add(block.index)
        return bitmap.full

    def reject(self, block: Block) -> None:
        """Drop a block :meth:`check` failed: it is asked for again."""
        asked = self._asked.get(block.request_id)
        if asked is not None and asked.file == block.file:
            self._settle(block.request_id, block.index)

    def refused(self, request_id: str) -> None:
        """The node refused fetch ``request_id``: its blocks are asked for again."""
        self._asked.pop(request_id, None)

    def lost(self) -> None:
        """Blocks asked for may never come (a lost connection, a stall): ask for them again."""
        self._asked.clear()

    def corrupt(self, file: str) -> None:
        """File ``file`` had every block but not its sha256: fetch it all again."""
        self.received[file].clear()

    def _settle(self, request_id: str, index: int) -> None:
        asked = self._asked[request_id]
        asked.blocks.discard(index)
        if not asked.blocks:
            del self._asked[request_id]

    def _wanted(self) -> Iterator[tuple[str, list[int]]]:
        asked = {(entry.file, index) for entry in self._asked.values() for index in entry.blocks}
        for file in self.offered.files:
            missing = (i for i in self.received[file.name].missing() if (file.name, i) not in asked)
            while batch := list(itertools.islice(missing, self._blocks_per_fetch)):
                yield file.name, batch

    def _bytes_of(self, file: OfferedFile) -> int:
        bitmap = self.received[file.name]
        if bitmap.full:
            return file.size
        last = bitmap.size - 1
        return bitmap.count() * self.offered.block_size - (
            (bitmap.size * self.offered.block_size - file.size) if last in bitmap else 0
        )

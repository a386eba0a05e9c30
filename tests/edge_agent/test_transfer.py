"""The transfer logic without I/O: the block bitmap, the window, and what happens to lost and bad blocks."""

from __future__ import annotations

import hashlib

import pytest

from edge_agent._transfer import Bitmap, Transfer
from protocol import Block, OfferedFile, OfferedVersion

BLOCK = 1024


def offered(*sizes: int) -> OfferedVersion:
    files = tuple(
        OfferedFile(f"f{i}", size, hashlib.sha256(content(i, size)).hexdigest()) for i, size in enumerate(sizes)
    )
    return OfferedVersion("v1", "0" * 64, "segments", BLOCK, files)


def content(file_index: int, size: int) -> bytes:
    return bytes((file_index * 7 + n) % 251 for n in range(size))


def block_of(version: OfferedVersion, request_id: str, file: str, index: int, *, corrupt: bool = False) -> Block:
    file_index = int(file[1:])
    entry = version.file(file)
    assert entry is not None
    offset, length = version.block_range(entry, index)
    data = content(file_index, entry.size)[offset : offset + length]
    sha = hashlib.sha256(data).hexdigest()
    if corrupt:
        data = bytes([data[0] ^ 1]) + data[1:]
    return Block(request_id, "hub", "m", version.version, file, index, offset, sha, data)


def test_bitmap_round_trips_and_ignores_a_saved_one_of_another_size() -> None:
    bitmap = Bitmap(11)
    for index in (0, 3, 10):
        bitmap.add(index)
    restored = Bitmap(11, bitmap.to_bytes())
    assert [i for i in range(11) if i in restored] == [0, 3, 10]
    assert list(restored.missing()) == [1, 2, 4, 5, 6, 7, 8, 9]
    assert restored.count() == 3
    assert not restored.full
    assert Bitmap(17, bitmap.to_bytes()).count() == 0
    with pytest.raises(IndexError):
        bitmap.add(11)
    assert Bitmap(0).full  # an empty file has no blocks


def test_the_window_asks_for_each_missing_block_once_across_files() -> None:
    version = offered(3 * BLOCK + 5, 100)
    transfer = Transfer(version, "m", blocks_per_fetch=2, fetches_in_flight=2)
    first = transfer.next_fetches()
    assert [(f.file, f.blocks) for f in first] == [("f0", (0, 1)), ("f0", (2, 3))]
    assert transfer.next_fetches() == []  # the window is full
    for index in (0, 1):
        assert transfer.check(block_of(version, first[0].request_id, "f0", index)) is None
        transfer.take(block_of(version, first[0].request_id, "f0", index))
    assert [(f.file, f.blocks) for f in transfer.next_fetches()] == [("f1", (0,))]


def test_a_resumed_transfer_asks_only_for_what_is_missing() -> None:
    version = offered(4 * BLOCK)
    saved = Bitmap(4)
    saved.add(0)
    saved.add(2)
    transfer = Transfer(version, "m", {"f0": saved}, blocks_per_fetch=8)
    assert transfer.received_bytes == 2 * BLOCK
    assert [f.blocks for f in transfer.next_fetches()] == [(1, 3)]


def test_lost_blocks_are_asked_for_again_and_a_late_duplicate_is_refused() -> None:
    version = offered(2 * BLOCK)
    transfer = Transfer(version, "m", blocks_per_fetch=2, fetches_in_flight=1)
    (fetch,) = transfer.next_fetches()
    transfer.take(block_of(version, fetch.request_id, "f0", 0))
    transfer.lost()
    (again,) = transfer.next_fetches()
    assert again.blocks == (1,)
    assert transfer.check(block_of(version, fetch.request_id, "f0", 1)) is not None  # the old fetch is over
    assert transfer.check(block_of(version, again.request_id, "f0", 0)) is not None  # not asked for
    assert transfer.take(block_of(version, again.request_id, "f0", 1))  # the file is whole
    assert transfer.done


def test_a_corrupt_block_is_refused_and_asked_for_again() -> None:
    version = offered(2 * BLOCK)
    transfer = Transfer(version, "m", blocks_per_fetch=2, fetches_in_flight=1)
    (fetch,) = transfer.next_fetches()
    bad = block_of(version, fetch.request_id, "f0", 1, corrupt=True)
    assert "sha256" in (transfer.check(bad) or "")
    transfer.reject(bad)
    transfer.take(block_of(version, fetch.request_id, "f0", 0))
    (again,) = transfer.next_fetches()
    assert again.blocks == (1,)


def test_a_block_of_the_wrong_size_or_place_is_refused() -> None:
    version = offered(2 * BLOCK)
    transfer = Transfer(version, "m", blocks_per_fetch=2)
    (fetch,) = transfer.next_fetches()
    good = block_of(version, fetch.request_id, "f0", 1)
    moved = Block(good.request_id, "hub", "m", "v1", "f0", 1, 0, good.sha256, good.data)
    assert "not" in (transfer.check(moved) or "")
    short = good.data[:10]
    cut = Block(good.request_id, "hub", "m", "v1", "f0", 1, BLOCK, hashlib.sha256(short).hexdigest(), short)
    assert transfer.check(cut) is not None


def test_a_corrupt_file_is_fetched_again_whole_and_a_refused_fetch_is_asked_again() -> None:
    version = offered(2 * BLOCK)
    transfer = Transfer(version, "m", blocks_per_fetch=2, fetches_in_flight=1)
    (fetch,) = transfer.next_fetches()
    transfer.refused(fetch.request_id)
    (fetch,) = transfer.next_fetches()
    for index in (0, 1):
        transfer.take(block_of(version, fetch.request_id, "f0", index))
    assert transfer.done
    transfer.corrupt("f0")
    assert not transfer.done
    assert [f.blocks for f in transfer.next_fetches()] == [(0, 1)]


def test_a_window_past_what_a_fetch_may_list_is_refused() -> None:
    with pytest.raises(ValueError, match="blocks_per_fetch"):
        Transfer(offered(BLOCK), "m", blocks_per_fetch=65)

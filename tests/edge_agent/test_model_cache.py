"""The model cache on disk: partial versions that resume, checked files, and eviction within its bound."""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

import pytest

from edge_agent import ModelCache
from protocol import OfferedFile, OfferedVersion
from protocol.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

BLOCK = 1024


def version_of(name: str, data: bytes) -> OfferedVersion:
    file = OfferedFile("model.onnx", len(data), hashlib.sha256(data).hexdigest())
    return OfferedVersion(name, hashlib.sha256(name.encode()).hexdigest(), "segments", BLOCK, (file,))


def put(cache: ModelCache, model: str, offered: OfferedVersion, data: bytes) -> Path:
    """Fetch ``data`` into the cache as the driver does: every block, then the check, then the move."""
    partial = cache.partial(model, offered)
    bitmaps = partial.open()
    bitmap = bitmaps["model.onnx"]
    for index in range(bitmap.size):
        bitmap.add(index)
        partial.write("model.onnx", index * BLOCK, data[index * BLOCK : (index + 1) * BLOCK], bitmap)
    assert partial.verify(offered.files[0])
    return cache.complete(partial)


def test_a_version_is_in_place_only_once_its_file_matched(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path)
    data = os.urandom(3 * BLOCK + 7)
    offered = version_of("v1", data)
    partial = cache.partial("m", offered)
    bitmap = partial.open()["model.onnx"]
    for index in range(bitmap.size):
        bitmap.add(index)
        partial.write("model.onnx", index * BLOCK, bytes(BLOCK)[: min(BLOCK, len(data) - index * BLOCK)], bitmap)
    assert not partial.verify(offered.files[0])  # zeros: the wrong bytes
    assert cache.path("m", "v1") is None
    assert partial.open()["model.onnx"].count() == 0  # its blocks are dropped
    path = put(cache, "m", offered, data)
    assert cache.path("m", "v1") == path
    assert (path / "model.onnx").read_bytes() == data
    assert cache.offered("m", "v1") == offered


def test_blocks_on_disk_survive_a_restart(tmp_path: Path) -> None:
    data = os.urandom(4 * BLOCK)
    offered = version_of("v1", data)
    partial = ModelCache(tmp_path).partial("m", offered)
    bitmap = partial.open()["model.onnx"]
    bitmap.add(2)
    partial.write("model.onnx", 2 * BLOCK, data[2 * BLOCK : 3 * BLOCK], bitmap)
    resumed = ModelCache(tmp_path).partial("m", offered).open()["model.onnx"]
    assert [index for index in range(4) if index in resumed] == [2]
    other = version_of("v1", os.urandom(4 * BLOCK))  # another version under the same id: start again
    assert ModelCache(tmp_path).partial("m", other).open()["model.onnx"].count() == 0


def test_the_least_recently_used_version_is_evicted_and_a_pinned_one_never(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path, max_bytes=2 * 4 * BLOCK)  # two versions, not three
    versions = {name: os.urandom(4 * BLOCK) for name in ("v1", "v2", "v3")}
    put(cache, "m", version_of("v1", versions["v1"]), versions["v1"])
    put(cache, "m", version_of("v2", versions["v2"]), versions["v2"])
    os.utime(tmp_path / "m" / "v2", ns=(1, 1))  # v2 is the older use now
    cache.use("m", "v1")
    put(cache, "m", version_of("v3", versions["v3"]), versions["v3"])
    assert sorted(cache.versions("m")) == ["v1", "v3"]
    assert cache.size() <= cache.max_bytes
    cache.pin("m", "v1")
    cache.pin("m", "v3")
    with pytest.raises(ConfigError, match="pinned"):
        cache.partial("m", version_of("v2", versions["v2"]))
    cache.unpin("m", "v1")
    put(cache, "m", version_of("v2", versions["v2"]), versions["v2"])
    assert sorted(cache.versions("m")) == ["v2", "v3"]


def test_a_version_larger_than_the_cache_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="more than the cache"):
        ModelCache(tmp_path, max_bytes=BLOCK).partial("m", version_of("v1", bytes(2 * BLOCK)))


def test_bad_versions_are_kept_across_restarts_and_are_no_version(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path)
    assert cache.bad("m") == {}
    cache.mark_bad("m", "v2", "rolled back: unknown_model")
    cache.mark_bad("m", "v3", "a file failed its sha256")
    again = ModelCache(tmp_path)  # a restart
    assert again.bad("m") == {"v2": "rolled back: unknown_model", "v3": "a file failed its sha256"}
    assert again.versions("m") == []
    (tmp_path / "m" / ".bad.json").write_text("not json")
    assert again.bad("m") == {}  # unreadable: forgotten, not fatal

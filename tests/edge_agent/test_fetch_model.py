"""Model delivery end to end: a real broker, a real hub delivering a segments directory, real ONNX Runtime."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import TYPE_CHECKING

import pytest

import cloud_hub._delivery
from cloud_hub import Hub, HubConfig
from edge_agent import EdgeAgent, FetchProgress, FetchSettings, fetch_model
from models import SegmentsManifest, file_sha256_hex
from protocol import Topics, decode_status
from protocol.errors import ModelError
from tests._support import (
    TINY,
    assert_matches_full_model,
    parked,
    random_images,
    save_tiny_segments,
    tiny_request,
    until,
    watching,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from cloud_hub import LocalBroker

pytestmark = pytest.mark.broker

BLOCK = 4096
SETTINGS = FetchSettings(blocks_per_fetch=4, fetches_in_flight=2, stall_s=10.0)
"""A stall long enough that a busy host's pause never asks for blocks again, which the exact counts would show."""
WINDOW = 4 * 2


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory holding the tiny model as a segments directory (~180 KB: ~45 blocks of 4 KiB)."""
    root = tmp_path_factory.mktemp("models")
    save_tiny_segments(root)
    return root


def blocks_of(directory: Path) -> int:
    return sum(-(-path.stat().st_size // BLOCK) for path in directory.iterdir())


@contextlib.asynccontextmanager
async def delivering_hub(broker: str, prefix: str, models_dir: Path) -> AsyncIterator[Hub]:
    hub = Hub(
        HubConfig(broker=broker, prefix=prefix, models_dir=models_dir, use_zoo=False, threads=1, block_size=BLOCK)
    )
    task = asyncio.create_task(hub.serve())
    await asyncio.wait_for(hub.ready.wait(), 30)
    try:
        yield hub
    finally:
        hub.request_shutdown()
        await task


async def test_an_agent_with_an_empty_cache_fetches_checks_and_runs_the_model(
    broker_url: str, prefix: str, models_dir: Path, tmp_path: Path
) -> None:
    seen: list[FetchProgress] = []
    async with delivering_hub(broker_url, prefix, models_dir) as hub:
        path = await fetch_model(
            broker_url, TINY, cache=tmp_path / "cache", prefix=prefix, settings=SETTINGS, on_progress=seen.append
        )
        delivery = hub.delivery
        assert delivery is not None
        total = blocks_of(models_dir / "tiny-segments")
        # The hub counts a block once the broker acknowledged it, which may come after the agent has it.
        await until(lambda: delivery.blocks_sent >= total, "the last block's acknowledgement")
        assert delivery.blocks_sent == total
        chain = SegmentsManifest.load(path)
        assert [file_sha256_hex(path / segment.file) for segment in chain.segments] == [
            segment.sha256 for segment in chain.segments
        ]
        assert seen[-1].received_bytes == seen[-1].total_bytes
        assert seen[-1].resumed_bytes == 0
        assert path.name == chain.model_sha256[:12]  # the version
        image = random_images(1)[0]
        topics = Topics(prefix)
        async with watching(broker_url, topics.agent_status("cam-01")) as watcher:
            async with EdgeAgent(broker_url, model=path, prefix=prefix, threads=1, agent_id="cam-01") as agent:
                assert_matches_full_model(await agent.infer(image), image)
                online = decode_status((await watcher.next()).payload)
            offline = decode_status((await watcher.next()).payload)
        assert (online.role, online.state, dict(online.models)) == ("agent", "online", {TINY: path.name})
        assert (offline.state, dict(offline.models)) == ("offline", {TINY: path.name})
        again = await fetch_model(broker_url, TINY, cache=tmp_path / "cache", prefix=prefix, settings=SETTINGS)
        assert again == path
        assert delivery.blocks_sent == total  # the cache had it


async def test_an_unknown_model_or_version_is_refused(
    broker_url: str, prefix: str, models_dir: Path, tmp_path: Path
) -> None:
    quick = FetchSettings(offer_s=0.5)
    async with delivering_hub(broker_url, prefix, models_dir):
        with pytest.raises(ModelError, match="no node offers"):
            await fetch_model(broker_url, "resnet18", cache=tmp_path, prefix=prefix, settings=quick)
        with pytest.raises(ModelError, match="version nope"):
            await fetch_model(broker_url, TINY, version="nope", cache=tmp_path, prefix=prefix, settings=quick)


class _StoppedError(Exception):
    """Raised from the progress callback: the fetching process stops there, as a crash would."""


def _after(blocks: int, action: Callable[[], None]) -> Callable[[FetchProgress], None]:
    """A progress callback that runs ``action`` when the ``blocks``-th block is written."""
    written = 0

    def count(_: FetchProgress) -> None:
        nonlocal written
        written += 1
        if written == blocks:
            action()

    return count


def _stop() -> None:
    raise _StoppedError


async def _fetch_and_stop(broker: str, prefix: str, cache: Path, blocks: int) -> None:
    with pytest.raises(_StoppedError):
        await fetch_model(
            broker, TINY, cache=cache, prefix=prefix, settings=SETTINGS, on_progress=_after(blocks, _stop)
        )


async def test_a_fetch_stopped_halfway_resumes_without_fetching_the_blocks_on_disk_again(
    broker_url: str, prefix: str, models_dir: Path, tmp_path: Path
) -> None:
    total = blocks_of(models_dir / "tiny-segments")
    async with delivering_hub(broker_url, prefix, models_dir) as hub:
        assert hub.delivery is not None
        await _fetch_and_stop(broker_url, prefix, tmp_path, total // 2)
        seen: list[FetchProgress] = []
        path = await fetch_model(
            broker_url, TINY, cache=tmp_path, prefix=prefix, settings=SETTINGS, on_progress=seen.append
        )
        assert seen[0].resumed_bytes > 0
        assert total <= hub.delivery.blocks_sent <= total + WINDOW  # at most the window in flight was lost
    chain = SegmentsManifest.load(path)
    assert all(file_sha256_hex(path / s.file) == s.sha256 for s in chain.segments)


def damage(path: Path) -> None:
    """Flip the first byte of a file: a block counted as received, damaged on disk."""
    with path.open("r+b") as file:
        first = file.read(1)
        file.seek(0)
        file.write(bytes([first[0] ^ 0xFF]))


async def test_a_corrupt_file_on_disk_is_refused_and_fetched_again(
    broker_url: str, prefix: str, models_dir: Path, tmp_path: Path
) -> None:
    async with delivering_hub(broker_url, prefix, models_dir):
        await _fetch_and_stop(broker_url, prefix, tmp_path, 12)
        damage(next(iter(tmp_path.rglob("segment-01.onnx.part"))))  # noqa: ASYNC240 - a test's own small file
        path = await fetch_model(broker_url, TINY, cache=tmp_path, prefix=prefix, settings=SETTINGS)
    chain = SegmentsManifest.load(path)
    assert all(file_sha256_hex(path / s.file) == s.sha256 for s in chain.segments)


async def test_a_broker_restart_mid_transfer_costs_only_the_blocks_in_flight(
    own_broker: LocalBroker, prefix: str, models_dir: Path, tmp_path: Path
) -> None:
    total = blocks_of(models_dir / "tiny-segments")

    restarted: list[asyncio.Task[object]] = []

    def restart() -> None:  # on the event loop, between two blocks
        own_broker.kill()
        restarted.append(asyncio.create_task(asyncio.to_thread(own_broker.start)))

    async with delivering_hub(own_broker.url, prefix, models_dir) as hub:
        assert hub.delivery is not None
        path = await fetch_model(
            own_broker.url,
            TINY,
            cache=tmp_path,
            prefix=prefix,
            settings=dataclasses.replace(SETTINGS, stall_s=2.0),  # what the restart lost is asked for again soon
            on_progress=_after(total // 2, restart),
        )
        assert restarted
        await restarted[0]
        # A block whose acknowledgement the restart lost counts as unsent, though it may have arrived.
        assert hub.delivery.blocks_sent <= total + WINDOW
    chain = SegmentsManifest.load(path)
    assert all(file_sha256_hex(path / s.file) == s.sha256 for s in chain.segments)


async def test_a_fetch_never_waits_behind_inference(
    broker_url: str, prefix: str, models_dir: Path, tmp_path: Path
) -> None:
    async with delivering_hub(broker_url, prefix, models_dir) as hub, parked(hub):
        async with watching(broker_url) as watcher:  # requests queued behind the parked worker
            for n in range(4):
                request = tiny_request(request_id=f"r{n}", agent_id="busy")
                await watcher.send(Topics(prefix).request("busy"), request)
            await until(lambda: hub.queue_depth == 4, "the requests to queue")
        path = await fetch_model(broker_url, TINY, cache=tmp_path, prefix=prefix, settings=SETTINGS)
        assert hub.queue_depth == 4  # nothing ran: the worker is still parked
    chain = SegmentsManifest.load(path)
    assert all(file_sha256_hex(path / s.file) == s.sha256 for s in chain.segments)


async def test_a_block_damaged_on_the_way_is_refused_and_fetched_again(
    broker_url: str, prefix: str, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node sends every block damaged the first time (its sha256 that of the good bytes), good the second."""
    total = blocks_of(models_dir / "tiny-segments")
    served: set[tuple[str, int]] = set()
    read_block = cloud_hub._delivery._read_block

    def damaged_once(path: Path, offset: int, length: int) -> tuple[bytes, str]:
        data, sha256 = read_block(path, offset, length)
        if (path.name, offset) in served:
            return data, sha256
        served.add((path.name, offset))
        return bytes([data[0] ^ 0xFF]) + data[1:], sha256

    monkeypatch.setattr(cloud_hub._delivery, "_read_block", damaged_once)
    async with delivering_hub(broker_url, prefix, models_dir) as hub:
        path = await fetch_model(broker_url, TINY, cache=tmp_path, prefix=prefix, settings=SETTINGS)
        delivery = hub.delivery
        assert delivery is not None
        # Each block twice: damaged, then good (the last count may lag the fetch's end, as above).
        await until(lambda: delivery.blocks_sent >= 2 * total, "the last block's acknowledgement")
        assert delivery.blocks_sent == 2 * total
    chain = SegmentsManifest.load(path)
    assert all(file_sha256_hex(path / s.file) == s.sha256 for s in chain.segments)


async def test_a_file_the_node_holds_damaged_is_fetched_max_mismatches_times_then_refused(
    broker_url: str, prefix: str, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    directory = save_tiny_segments(models)
    damaged = max(directory.glob("*.onnx"), key=lambda path: path.stat().st_size)
    async with delivering_hub(broker_url, prefix, models) as hub:  # offered as hashed: intact
        assert hub.delivery is not None
        data = bytearray(damaged.read_bytes())
        data[len(data) // 2] ^= 0xFF  # then the node's disk changed one byte
        damaged.write_bytes(bytes(data))
        with pytest.raises(ModelError, match=f"{damaged.name} of {TINY} .* did not match its sha256 3 times"):
            await fetch_model(broker_url, TINY, cache=tmp_path / "cache", prefix=prefix, settings=SETTINGS)
        assert hub.delivery.blocks_sent >= 3 * -(-damaged.stat().st_size // BLOCK)

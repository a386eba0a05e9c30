"""A node's side of model delivery on a real broker: its offers, its blocks, and what it refuses."""

from __future__ import annotations

import hashlib
import shutil
from typing import TYPE_CHECKING

import pytest

from cloud_hub import HubConfig, ModelDelivery
from cloud_hub._offers import FileHashes, scan_offers
from edge_agent import FetchSettings, fetch_model
from models import SegmentsManifest, file_sha256_hex, partition
from protocol import (
    BLOCK_ENVELOPE_BYTES,
    Block,
    ErrorCode,
    FetchRequest,
    InferenceReply,
    Topics,
    decode_block,
    decode_offer,
    encode_fetch,
    version_of,
)
from protocol.errors import ConfigError
from tests._support import save_tiny_version, watching

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.broker

BLOCK = 4096


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    model_id, model = partition.load_model("tiny")
    cuts = partition.candidate_cuts(partition.enumerate_cuts(model))
    partition.save_segments(partition.split_segments(model, cuts, model_id=model_id), root / "chain")
    partition.save_split(partition.split(model, "stem.out", model_id=model_id), root / "split")
    (root / "broken").mkdir()
    (root / "broken" / "segments.json").write_text("{}")
    return root


async def test_a_node_offers_each_directory_and_answers_fetches_on_the_agents_own_topic(
    broker_url: str, prefix: str, models_dir: Path
) -> None:
    topics = Topics(prefix)
    async with (
        ModelDelivery(broker_url, node_id="node", models_dir=models_dir, prefix=prefix, block_size=BLOCK) as node,
        watching(broker_url, topics.all_offers("tiny"), topics.blocks("cam-01")) as watcher,
    ):
        offer = decode_offer((await watcher.next()).payload)  # retained: there before we subscribed
        assert offer.node_id == "node"
        (chain,) = offer.versions  # one version: the segments directory wins over a split of the same model,
        assert chain.kind == "segments"  # and the broken directory is skipped
        assert chain.version == version_of(chain.model_sha256)
        assert node.catalog.find("tiny", chain.version) is not None
        file = chain.files[1]
        wanted = (2, 0, 1)
        fetch = FetchRequest("f1", "tiny", chain.version, file.name, wanted)
        await watcher.publish(topics.fetch("node", "cam-01"), encode_fetch(fetch))
        data = (models_dir / "chain" / file.name).read_bytes()
        for index in wanted:  # in the order asked
            block = decode_block((await watcher.next()).payload)
            assert isinstance(block, Block)
            assert (block.request_id, block.index, block.offset) == ("f1", index, index * BLOCK)
            assert block.data == data[index * BLOCK : (index + 1) * BLOCK]
            assert block.sha256 == hashlib.sha256(block.data).hexdigest()


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"version": "nope"}, ErrorCode.UNKNOWN_MODEL),
        ({"file": "other.onnx"}, ErrorCode.UNKNOWN_MODEL),
        ({"blocks": (10_000,)}, ErrorCode.BAD_REQUEST),
    ],
)
async def test_a_fetch_the_node_cannot_serve_gets_one_refusal(
    broker_url: str, prefix: str, models_dir: Path, change: dict[str, object], code: str
) -> None:
    topics = Topics(prefix)
    async with (
        ModelDelivery(broker_url, node_id="node", models_dir=models_dir, prefix=prefix, block_size=BLOCK) as node,
        watching(broker_url, topics.blocks("cam-01")) as watcher,
    ):
        await node.connection.wait_connected(10)  # subscribed: its async with does not wait for the broker
        chain = next(v for v in node.catalog.offers["tiny"].versions if v.kind == "segments")
        fields: dict[str, object] = {"version": chain.version, "file": chain.files[0].name, "blocks": (0,)} | change
        fetch = FetchRequest("f1", "tiny", **fields)  # type: ignore[arg-type]
        await watcher.publish(topics.fetch("node", "cam-01"), encode_fetch(fetch))
        await watcher.publish(topics.fetch("node", "cam-01"), b"\xc1 not msgpack")
        refusal = decode_block((await watcher.next()).payload)
        garbage = decode_block((await watcher.next()).payload)
    assert isinstance(refusal, InferenceReply)
    assert refusal.error is not None
    assert (refusal.request_id, refusal.hub_id, refusal.error.code) == ("f1", "node", code)
    assert isinstance(garbage, InferenceReply)
    assert garbage.error is not None
    assert garbage.error.code == ErrorCode.BAD_REQUEST
    assert node.refused[code] >= 1
    assert node.blocks_sent == 0


def test_a_block_must_fit_a_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not fit"):
        ModelDelivery(
            "mqtt://127.0.0.1:1", node_id="n", models_dir=tmp_path, block_size=1 << 20, max_message_bytes=1 << 20
        )


def test_a_split_directory_is_offered_whole(tmp_path: Path) -> None:
    model_id, model = partition.load_model("tiny")
    partition.save_split(partition.split(model, "stem.out", model_id=model_id), tmp_path / "split")
    catalog = scan_offers(tmp_path, "node", BLOCK)
    (offered,) = catalog.offers["tiny"].versions
    assert offered.kind == "split"
    assert [file.name for file in offered.files] == ["manifest.json", "head.onnx", "tail.onnx"]
    assert all(file.sha256 == file_sha256_hex(tmp_path / "split" / file.name) for file in offered.files)


async def test_fetches_past_the_per_agent_bound_are_refused_and_asked_again(
    broker_url: str, prefix: str, models_dir: Path, tmp_path: Path
) -> None:
    async with ModelDelivery(
        broker_url, node_id="node", models_dir=models_dir, prefix=prefix, block_size=1024, max_fetches_per_agent=1
    ) as node:
        # Two fetches at once: the first is served through 16 acknowledged publishes, the second arrives meanwhile.
        settings = FetchSettings(blocks_per_fetch=16, fetches_in_flight=2)
        path = await fetch_model(broker_url, "tiny", cache=tmp_path, prefix=prefix, settings=settings)
        assert node.refused[ErrorCode.OVERLOADED] >= 1
    chain = SegmentsManifest.load(path)
    assert all(file_sha256_hex(path / segment.file) == segment.sha256 for segment in chain.segments)


async def test_a_rescan_offers_a_version_added_while_running_and_clears_a_model_removed(
    broker_url: str, prefix: str, models_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "models"
    root.mkdir()
    shutil.copytree(models_dir / "chain", root / "chain")
    topics = Topics(prefix)
    async with (
        ModelDelivery(broker_url, node_id="node", models_dir=root, prefix=prefix, rescan_s=None) as node,
        watching(broker_url, topics.all_offers("tiny")) as watcher,
    ):
        (first,) = decode_offer((await watcher.next()).payload).versions
        assert await node.rescan() == []  # nothing changed: nothing published
        shutil.copytree(models_dir / "split", root / "split")  # the same model: no new version
        assert await node.rescan() == []
        version, _ = save_tiny_version(root, "v2", scale=0.5)
        assert await node.rescan() == ["tiny"]
        offer = decode_offer((await watcher.next()).payload)
        assert [v.version for v in offer.versions] == [version, first.version]  # the newest first
        assert offer.versions[1] == first
        for directory in ("chain", "split", "v2"):
            shutil.rmtree(root / directory)
        assert await node.rescan() == ["tiny"]
        cleared = await watcher.next()
        assert (cleared.payload, node.catalog.offers) == (b"", {})


def test_a_rescan_hashes_only_the_files_it_has_not_seen(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hashes = FileHashes()
    first = scan_offers(models_dir, "node", BLOCK, hashes)
    hashed: list[Path] = []
    monkeypatch.setattr("cloud_hub._offers.file_sha256_hex", lambda path: hashed.append(path) or "0" * 64)
    assert scan_offers(models_dir, "node", BLOCK, hashes) == first
    assert hashed == []


def test_the_default_block_fits_a_small_message_limit_and_a_block_given_must() -> None:
    assert HubConfig().delivery_block_size == 128 * 1024
    small = HubConfig(max_message_bytes=64 * 1024)  # no block_size said: the blocks shrink to fit
    assert small.delivery_block_size == 64 * 1024 - BLOCK_ENVELOPE_BYTES
    with pytest.raises(ConfigError, match=r"fit max_message_bytes \(65536\)"):
        HubConfig(max_message_bytes=64 * 1024, block_size=64 * 1024)
    assert HubConfig(max_message_bytes=64 * 1024, block_size=64 * 1024, deliver_models=False).block_size == 65536

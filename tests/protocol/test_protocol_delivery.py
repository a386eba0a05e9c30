"""Model delivery's messages: what encoders refuse and decoders reject (the golden vectors cover the bytes)."""

from __future__ import annotations

import hashlib

import msgpack
import pytest

from protocol import (
    MAX_FETCH_BLOCKS,
    Block,
    ErrorCode,
    FetchRequest,
    InferenceReply,
    ModelOffer,
    OfferedFile,
    OfferedVersion,
    Topics,
    block_count,
    canary_position,
    decode_block,
    decode_fetch,
    decode_offer,
    encode_block,
    encode_fetch,
    encode_offer,
    encode_reply,
)
from protocol.errors import ProtocolError

SHA = hashlib.sha256(b"x").hexdigest()


def version(**changes: object) -> OfferedVersion:
    fields: dict[str, object] = {
        "version": "v1",
        "model_sha256": SHA,
        "kind": "segments",
        "block_size": 1024,
        "files": (OfferedFile("segments.json", 10, SHA),),
    } | changes
    return OfferedVersion(**fields)  # type: ignore[arg-type]


def fetch(**changes: object) -> FetchRequest:
    fields: dict[str, object] = {
        "request_id": "f1",
        "model": "m",
        "version": "v1",
        "file": "segments.json",
        "blocks": (0,),
    } | changes
    return FetchRequest(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["..", ".", "a/b", "a\\b", "", "x" * 256, "a\0b"])
def test_a_file_name_that_could_leave_the_directory_is_refused(name: str) -> None:
    with pytest.raises((ValueError, TypeError)):
        encode_fetch(fetch(file=name))
    wire = msgpack.packb({"v": 1, "t": "fetch", "id": "f1", "model": "m", "version": "v1", "file": name, "blocks": [0]})
    with pytest.raises(ProtocolError) as raised:
        decode_fetch(wire)
    assert raised.value.code == ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("name", ["..", ".", "a/b", "a+b", "$sys"])
def test_a_model_or_version_that_is_no_directory_or_topic_level_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"model|version"):
        encode_offer(ModelOffer("hub", name, (version(),)))
    with pytest.raises(ValueError, match="version"):
        encode_offer(ModelOffer("hub", "m", (version(version=name),)))
    offer = msgpack.unpackb(encode_offer(ModelOffer("hub", "m", (version(),))))
    offer["versions"][0]["version"] = name
    with pytest.raises(ProtocolError):
        decode_offer(msgpack.packb(offer))


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"kind": "full"}, "kind"),
        ({"block_size": 512}, "block_size"),
        ({"block_size": 2 * 1024 * 1024}, "block_size"),
        ({"files": ()}, "files"),
        ({"model_sha256": "ABC"}, "model_sha256"),
        ({"canary": 0.0}, "canary"),
        ({"canary": 1.0}, "canary"),
        ({"canary": True}, "canary"),
    ],
)
def test_an_offer_out_of_bounds_is_refused(change: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        encode_offer(ModelOffer("hub", "m", (version(**change),)))


def test_a_fetch_lists_one_to_64_blocks() -> None:
    assert decode_fetch(encode_fetch(fetch(blocks=tuple(range(MAX_FETCH_BLOCKS))))).blocks == tuple(range(64))
    for blocks in ((), tuple(range(MAX_FETCH_BLOCKS + 1)), (-1,)):
        with pytest.raises(ValueError, match="blocks"):
            encode_fetch(fetch(blocks=blocks))


def test_the_blocks_topic_carries_blocks_and_refusals_only() -> None:
    block = Block("f1", "hub", "m", "v1", "segments.json", 0, 0, SHA, b"x")
    assert decode_block(encode_block(block)) == block
    refusal = InferenceReply.failure("f1", "hub", ErrorCode.OVERLOADED, "later")
    decoded = decode_block(encode_reply(refusal))
    assert isinstance(decoded, InferenceReply)
    assert decoded.error is not None
    assert decoded.error.code == ErrorCode.OVERLOADED
    with pytest.raises(ProtocolError, match="'block' or 'resp'"):
        decode_block(encode_fetch(fetch()))


def test_blocks_and_ranges() -> None:
    offered = version(files=(OfferedFile("a", 2049, SHA), OfferedFile("empty", 0, SHA)))
    assert block_count(2049, 1024) == 3
    assert block_count(0, 1024) == 0
    assert offered.block_range(offered.files[0], 2) == (2048, 1)
    with pytest.raises(ValueError, match="no block 3"):
        offered.block_range(offered.files[0], 3)
    assert offered.size == 2049


def test_topics_name_the_node_and_the_agent() -> None:
    topics = Topics("p")
    assert topics.fetch("hub-a", "cam-01") == "p/v1/fetch/hub-a/cam-01"
    assert topics.agent_of_fetch("hub-a", "p/v1/fetch/hub-a/cam-01") == "cam-01"
    with pytest.raises(ValueError, match="fetch"):
        topics.agent_of_fetch("hub-b", "p/v1/fetch/hub-a/cam-01")
    assert topics.node_of_offer("tiny", topics.offer("hub-a", "tiny")) == "hub-a"
    with pytest.raises(ValueError, match="offer"):
        topics.node_of_offer("tiny", topics.offer("hub-a", "other"))
    assert topics.blocks("cam-01") == "p/v1/blocks/cam-01"
    assert topics.agent_status("cam-01") == "p/v1/agents/cam-01"


AGENTS = [f"cam-{n:02d}" for n in range(20)]


def test_a_canary_takes_the_agents_whose_position_is_below_its_share_the_same_for_everyone() -> None:
    offer = ModelOffer("hub", "m", (version(version="v2", canary=0.5), version(version="v1")))
    positions = {agent: canary_position(agent, "v2") for agent in AGENTS}
    assert all(0 <= position < 1 for position in positions.values())
    taken = {agent for agent in AGENTS if offer.version(None, agent_id=agent).version == "v2"}  # type: ignore[union-attr]
    assert taken == {agent for agent, position in positions.items() if position < 0.5}
    assert 5 <= len(taken) <= 15  # about half of 20: the hash spreads them
    assert offer.version(None) == offer.versions[0]  # asked by no one: the newest


def test_a_canary_that_grows_keeps_its_agents_and_each_version_draws_its_own() -> None:
    def canary(share: float, name: str = "v2") -> set[str]:
        return {agent for agent in AGENTS if version(version=name, canary=share).admits(agent)}

    assert canary(0.1) <= canary(0.5) <= canary(0.9) <= set(AGENTS)
    assert len(canary(0.1)) <= 5
    assert canary(0.5) != canary(0.5, "v3")
    share_of_1000 = sum(version(version="v2", canary=0.1).admits(f"cam-{n}") for n in range(1000)) / 1000
    assert 0.07 <= share_of_1000 <= 0.13


def test_an_agent_outside_every_canary_takes_the_newest_full_version_or_none() -> None:
    outside = next(agent for agent in AGENTS if canary_position(agent, "v3") >= 0.2)
    offer = ModelOffer("hub", "m", (version(version="v3", canary=0.2), version(version="v2")))
    assert offer.version(None, agent_id=outside) == offer.versions[1]
    only_canary = ModelOffer("hub", "m", (version(version="v3", canary=0.2),))
    assert only_canary.version(None, agent_id=outside) is None
    assert only_canary.version("v3", agent_id=outside) == only_canary.versions[0]  # asked by name: taken


def test_a_canary_share_travels_and_an_offer_without_one_is_read_as_every_agent() -> None:
    offer = ModelOffer("hub", "m", (version(version="v2", canary=0.25), version()))
    assert decode_offer(encode_offer(offer)) == offer
    wire = msgpack.unpackb(encode_offer(offer))
    assert wire["versions"][0]["canary"] == 0.25
    assert "canary" not in wire["versions"][1]  # absent: the offers of before read the same

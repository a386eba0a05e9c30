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

"""Golden vectors: the wire bytes are frozen, and docs/protocol.md shows exactly them.

If a test here fails after a deliberate change of the wire format, regenerate
the files and the docs example with ``python tests/protocol/make_golden.py``
and review the diff (a change that is not purely additive also bumps
``PROTOCOL_VERSION``). Never regenerate to make an accidental change pass.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from protocol import (
    Block,
    FetchRequest,
    InferenceReply,
    InferenceRequest,
    ModelOffer,
    NodeStatus,
    decode_block,
    decode_fetch,
    decode_offer,
    decode_reply,
    decode_request,
    decode_status,
)

if TYPE_CHECKING:
    from types import ModuleType


def load_make_golden() -> ModuleType:
    # pytest runs with --import-mode=importlib: a test cannot import its neighbours.
    spec = importlib.util.spec_from_file_location("make_golden", Path(__file__).with_name("make_golden.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_golden = load_make_golden()
golden_path = make_golden.golden_path
MESSAGES = make_golden.golden_messages()


def decode(name: str, data: bytes) -> object:
    expected = MESSAGES[name]
    if isinstance(expected, InferenceRequest):
        return decode_request(data)
    if isinstance(expected, InferenceReply):
        return decode_reply(data)
    if isinstance(expected, ModelOffer):
        return decode_offer(data)
    if isinstance(expected, FetchRequest):
        return decode_fetch(data)
    if isinstance(expected, Block):
        return decode_block(data)
    assert isinstance(expected, NodeStatus)
    return decode_status(data)


def test_there_is_a_golden_file_per_message_type() -> None:
    assert set(MESSAGES) == {
        "request",
        "reply_ok",
        "reply_error",
        "status",
        "agent_status",
        "offer",
        "offer_canary",
        "fetch",
        "block",
    }
    assert sorted(path.stem for path in golden_path("x").parent.glob("*.msgpack")) == sorted(MESSAGES)


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_encoding_gives_the_golden_bytes(name: str) -> None:
    assert make_golden.encode(MESSAGES[name]) == golden_path(name).read_bytes()


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_decoding_the_golden_bytes_gives_the_message(name: str) -> None:
    assert decode(name, golden_path(name).read_bytes()) == MESSAGES[name]


@pytest.mark.parametrize("name", make_golden.DOC_EXAMPLES)
def test_the_docs_example_is_the_golden_bytes(name: str) -> None:
    docs = make_golden.DOCS.read_text(encoding="utf-8")
    match = make_golden.doc_block_pattern(name).search(docs)
    assert match is not None, f"docs/protocol.md lacks the golden:{name} block"
    block = match.group(0)
    dump = block.split("```text\n", 1)[1].split("\n```", 1)[0]
    assert make_golden.parse_hex_dump(dump) == golden_path(name).read_bytes()
    assert block == make_golden.doc_block(name, golden_path(name).read_bytes())

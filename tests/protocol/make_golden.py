"""The golden wire vectors: known messages, their files, and the docs example.

The golden files in ``tests/protocol/golden/`` freeze the wire format: the
tests check that encoding each message below gives exactly the file's bytes and
that decoding the file gives the message back. Regenerate them only for a
deliberate change of the wire format (which, unless purely additive, also
bumps ``PROTOCOL_VERSION``), then review the diff of the files and of
``docs/protocol.md``, whose worked example this script rewrites too::

    python tests/protocol/make_golden.py
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import msgpack
import numpy as np

from protocol import (
    ErrorCode,
    InferenceReply,
    InferenceRequest,
    NodeStatus,
    encode_reply,
    encode_request,
    encode_status,
)

HERE = Path(__file__).resolve().parent
GOLDEN_DIR = HERE / "golden"
DOCS = HERE.parents[1] / "docs" / "protocol.md"
DOC_EXAMPLES = ("request", "reply_ok", "reply_error", "status")

MODEL_SHA256 = hashlib.sha256(b"edgecut example model").hexdigest()

Message = InferenceRequest | InferenceReply | NodeStatus


def golden_messages() -> dict[str, Message]:
    """The messages frozen as golden vectors, by file stem."""
    return {
        "request": InferenceRequest(
            request_id="req-0001",
            agent_id="cam-01",
            model_id="tiny-cnn",
            model_sha256=MODEL_SHA256,
            cut_id="relu1",
            tensors={"act": np.array([[[1.5, -2.0], [0.25, 3.0]]], dtype=np.float32)},
            sent_at=1700000000.25,
            deadline_ms=250.0,
        ),
        "reply_ok": InferenceReply(
            request_id="req-0001",
            hub_id="hub-a",
            outputs={"logits": np.array([[0.5, -1.0, 2.0]], dtype=np.float32)},
            error=None,
            queue_ms=1.5,
            compute_ms=3.25,
            queue_depth=2,
        ),
        "reply_error": InferenceReply.failure(
            "req-0002",
            "hub-a",
            ErrorCode.DEADLINE_EXCEEDED,
            "waited 260 ms in the hub queue, past the 250 ms deadline",
            queue_depth=7,
            queue_ms=260.0,
        ),
        "status": NodeStatus(
            node_id="hub-a",
            role="hub",
            state="online",
            sent_at=1700000000.0,
            queue_depth=0,
            version="0.1.0",
        ),
    }


def encode(message: Message) -> bytes:
    """Encode any of the three message types."""
    if isinstance(message, InferenceRequest):
        return encode_request(message)
    if isinstance(message, InferenceReply):
        return encode_reply(message)
    return encode_status(message)


def golden_path(name: str) -> Path:
    """The golden file of message ``name``."""
    return GOLDEN_DIR / f"{name}.msgpack"


def hex_dump(data: bytes) -> str:
    """``hexdump -C`` style: offset, 16 bytes in two groups of 8, ASCII."""
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        left = " ".join(f"{byte:02x}" for byte in chunk[:8])
        right = " ".join(f"{byte:02x}" for byte in chunk[8:])
        text = "".join(chr(byte) if 0x20 <= byte < 0x7F else "." for byte in chunk)
        lines.append(f"{offset:08x}  {left:<23}  {right:<23}  |{text}|")
    return "\n".join(lines)


def parse_hex_dump(dump: str) -> bytes:
    """The bytes of a :func:`hex_dump` (offsets and ASCII column ignored)."""
    hex_digits = "".join("".join(line.split("|", 1)[0].split()[1:]) for line in dump.splitlines())
    return bytes.fromhex(hex_digits)


def json_view(data: bytes) -> str:
    """The msgpack value as indented JSON; arrays on one line, ``bin`` as ``<bin N: hex>``."""
    return _json(msgpack.unpackb(data), "")


def _json(value: object, indent: str) -> str:
    if isinstance(value, dict) and value:
        inner = indent + "  "
        items = [f"{inner}{json.dumps(key)}: {_json(item, inner)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list):
        return "[" + ", ".join(_json(item, indent) for item in value) + "]"
    if isinstance(value, bytes):
        return json.dumps(f"<bin {len(value)}: {value.hex()}>")
    return json.dumps(value)


def doc_block(name: str, data: bytes) -> str:
    """The generated docs section for message ``name``, markers included."""
    return (
        f"<!-- golden:{name}:begin -->\n"
        f"```json\n{json_view(data)}\n```\n\n"
        f"{len(data)} bytes:\n\n"
        f"```text\n{hex_dump(data)}\n```\n"
        f"<!-- golden:{name}:end -->"
    )


def doc_block_pattern(name: str) -> re.Pattern[str]:
    """Matches the docs section of message ``name``, markers included."""
    return re.compile(rf"<!-- golden:{name}:begin -->.*?<!-- golden:{name}:end -->", re.DOTALL)


def write_all() -> None:
    """Rewrite the golden files and the worked example of the docs."""
    GOLDEN_DIR.mkdir(exist_ok=True)
    docs = DOCS.read_text(encoding="utf-8")
    for name, message in golden_messages().items():
        data = encode(message)
        golden_path(name).write_bytes(data)
        if name in DOC_EXAMPLES:
            docs, count = doc_block_pattern(name).subn(lambda _match, d=data, n=name: doc_block(n, d), docs)
            if count != 1:
                sys.exit(f"{DOCS}: expected one golden:{name} block, found {count}")
    DOCS.write_text(docs, encoding="utf-8")


if __name__ == "__main__":
    write_all()

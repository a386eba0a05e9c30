"""The golden wire vectors: known messages and codec vectors, their files, and the docs that show them.

The golden files in ``tests/protocol/golden/`` freeze the wire format: the
tests check that encoding each message below gives exactly the file's bytes and
that decoding the file gives the message back. The codec vectors in
``golden/codecs/`` are one JSON file each (the format is in
:func:`codec_vector_json`): the tests check that the deterministic codecs
encode their input to exactly the file's bytes, and that every file decodes
to its stated array within its stated tolerance. Regenerate them only for a
deliberate change of the wire format (which, unless purely additive, also
bumps ``PROTOCOL_VERSION``), then review the diff of the files and of
``docs/protocol.md``, whose worked example and codec table this script
rewrites too::

    python tests/protocol/make_golden.py
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any, NamedTuple

import msgpack
import numpy as np
import numpy.typing as npt

from protocol import (
    Block,
    ErrorCode,
    FetchRequest,
    InferenceReply,
    InferenceRequest,
    ModelOffer,
    NodeStatus,
    OfferedFile,
    OfferedVersion,
    decode_tensor,
    encode_block,
    encode_fetch,
    encode_offer,
    encode_reply,
    encode_request,
    encode_status,
    encode_tensor,
)

HERE = Path(__file__).resolve().parent
GOLDEN_DIR = HERE / "golden"
CODEC_DIR = GOLDEN_DIR / "codecs"
DOCS = HERE.parents[1] / "docs" / "protocol.md"
DOC_EXAMPLES = (
    "request",
    "reply_ok",
    "reply_error",
    "status",
    "agent_status",
    "offer",
    "offer_canary",
    "fetch",
    "block",
)

MODEL_SHA256 = hashlib.sha256(b"edgecut example model").hexdigest()
NEW_MODEL_SHA256 = hashlib.sha256(b"edgecut example model, retrained").hexdigest()

Message = InferenceRequest | InferenceReply | NodeStatus | ModelOffer | FetchRequest | Block
BLOCK_DATA = bytes(range(16))
"""The last block of the file in the delivery vectors: 16 bytes, after a first block of 1024."""


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
            batch_size=1,
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
        "agent_status": NodeStatus(
            node_id="cam-01",
            role="agent",
            state="online",
            sent_at=1700000000.0,
            version="0.1.0",
            models={"tiny-cnn": MODEL_SHA256[:12]},
        ),
        "offer": ModelOffer(
            node_id="hub-a",
            model="tiny-cnn",
            versions=(
                OfferedVersion(
                    version=MODEL_SHA256[:12],
                    model_sha256=MODEL_SHA256,
                    kind="segments",
                    block_size=1024,
                    files=(
                        OfferedFile("segments.json", 300, hashlib.sha256(b"segments.json").hexdigest()),
                        OfferedFile("segment-01.onnx", 1040, hashlib.sha256(b"segment-01.onnx").hexdigest()),
                    ),
                ),
            ),
        ),
        "offer_canary": ModelOffer(
            node_id="hub-a",
            model="tiny-cnn",
            versions=(
                OfferedVersion(
                    version=NEW_MODEL_SHA256[:12],
                    model_sha256=NEW_MODEL_SHA256,
                    kind="segments",
                    block_size=1024,
                    files=(OfferedFile("segments.json", 300, hashlib.sha256(b"new segments.json").hexdigest()),),
                    canary=0.125,
                ),
                OfferedVersion(
                    version=MODEL_SHA256[:12],
                    model_sha256=MODEL_SHA256,
                    kind="segments",
                    block_size=1024,
                    files=(OfferedFile("segments.json", 300, hashlib.sha256(b"segments.json").hexdigest()),),
                ),
            ),
        ),
        "fetch": FetchRequest(
            request_id="fetch-0001",
            model="tiny-cnn",
            version=MODEL_SHA256[:12],
            file="segment-01.onnx",
            blocks=(0, 1),
        ),
        "block": Block(
            request_id="fetch-0001",
            node_id="hub-a",
            model="tiny-cnn",
            version=MODEL_SHA256[:12],
            file="segment-01.onnx",
            index=1,
            offset=1024,
            sha256=hashlib.sha256(BLOCK_DATA).hexdigest(),
            data=BLOCK_DATA,
        ),
    }


def encode(message: Message) -> bytes:
    """Encode a message of any type."""
    if isinstance(message, InferenceRequest):
        return encode_request(message)
    if isinstance(message, InferenceReply):
        return encode_reply(message)
    if isinstance(message, ModelOffer):
        return encode_offer(message)
    if isinstance(message, FetchRequest):
        return encode_fetch(message)
    if isinstance(message, Block):
        return encode_block(message)
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


# --- codec vectors -------------------------------------------------------------

DETERMINISTIC_CODECS = frozenset({"raw", "fp16", "int8", "int8-channel"})
"""The codecs whose encoding docs/protocol.md fixes byte for byte; frames and image files may differ."""
SHOWN_BYTES = 64  # longer data is shown in the docs by its size
_UNFIXED = {"zstd": "frame", "lz4": "frame", "jpeg": "file", "png": "file"}  # what an encoder may choose


class Tensor(NamedTuple):
    """An input of the codec vectors: a letter, what it holds in words, and the array."""

    letter: str
    about: str
    array: npt.NDArray[Any]


class CodecVector(NamedTuple):
    """One tensor through one codec; ``tolerance`` is what a decoder may differ by, per element."""

    codec: str
    tensor: Tensor
    tolerance: int = 0

    @property
    def name(self) -> str:
        """The vector's file stem, ``<codec>-<tensor letter>``."""
        return f"{self.codec}-{self.tensor.letter}"


def _tensors() -> dict[str, Tensor]:
    rows, cols = np.mgrid[0:4, 0:4]
    grey = rows * 30 + cols * 15
    tensors = [
        Tensor(
            "A",
            "float32 `[2, 4]`: `[[-1, 0, 0.5, 2], [0.25, 0, 100000, -3]]`",
            np.array([[-1.0, 0.0, 0.5, 2.0], [0.25, 0.0, 100000.0, -3.0]], np.float32),
        ),
        Tensor(
            "B",
            "float32 `[1, 2, 16]`: channel 0 holds 0, 0.125, ..., 1.875, channel 1 holds -20, -17.5, ..., 17.5",
            np.concatenate([np.arange(16) * 0.125, np.arange(-8, 8) * 2.5]).astype(np.float32).reshape(1, 2, 16),
        ),
        Tensor(
            "C",
            "uint8 `[1, 4, 4, 3]`, an image: pixel (r, c) is `(30r + 15c, 30r + 15c + 50, 30r + 15c + 100)`",
            np.stack([grey, grey + 50, grey + 100], axis=-1).astype(np.uint8)[np.newaxis],
        ),
        Tensor(
            "D",
            "float32 `[10]`: `[0, 0.5, 1.5, 2.5, 3.5, 254.5, 255, NaN, +inf, -inf]`",
            np.array([0, 0.5, 1.5, 2.5, 3.5, 254.5, 255, np.nan, np.inf, -np.inf], np.float32),
        ),
        Tensor("E", "float32 `[4]`: zeros", np.zeros(4, np.float32)),
        Tensor(
            "F",
            "float64 `[5]`: `[1 + 2^-11 + 2^-40, 2^-25, 3·2^-26, -10^6, 65519]`",
            np.array([1 + 2**-11 + 2**-40, 2**-25, 3 * 2**-26, -1e6, 65519.0]),
        ),
    ]
    return {tensor.letter: tensor for tensor in tensors}


def codec_vectors() -> list[CodecVector]:
    """The codec vectors, in the order of the docs' table."""
    a, b, c, d, e, f = _tensors().values()
    return [
        CodecVector("fp16", a),
        CodecVector("fp16", f),
        CodecVector("int8", a),
        CodecVector("int8", d),
        CodecVector("int8", e),
        CodecVector("int8", c),
        CodecVector("int8-channel", b),
        CodecVector("int8-channel", a),
        CodecVector("zstd", a),
        CodecVector("lz4", a),
        CodecVector("int8+zstd", a),
        CodecVector("int8+zstd", c),
        CodecVector("fp16+lz4", c),
        CodecVector("png", c),
        CodecVector("jpeg", c, tolerance=4),
    ]


def codec_vector_path(name: str) -> Path:
    """The file of codec vector ``name``."""
    return CODEC_DIR / f"{name}.json"


def array_json(array: npt.NDArray[Any]) -> dict[str, object]:
    """An array as ``{"dtype", "shape", "data"}``, ``data`` its raw bytes (little-endian, C order) in hex."""
    raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return {"dtype": array.dtype.name, "shape": list(array.shape), "data": raw.tobytes().hex()}


def json_array(value: dict[str, Any]) -> npt.NDArray[Any]:
    """The array of an :func:`array_json` value."""
    dtype = np.dtype(value["dtype"]).newbyteorder("<")
    return np.frombuffer(bytes.fromhex(value["data"]), dtype).reshape(value["shape"])


def readable(tensor_map: dict[str, Any]) -> dict[str, Any]:
    """A tensor map with its ``bin`` values (``data``, and params such as ``scale``) in hex."""
    return {
        key: readable(value) if isinstance(value, dict) else value.hex() if isinstance(value, bytes) else value
        for key, value in tensor_map.items()
    }


def codec_vector_json(vector: CodecVector) -> dict[str, object]:
    """The file of one codec vector.

    Keys: ``codec``; ``input``, the tensor encoded (``tensor``: its letter,
    ``about``, and :func:`array_json`'s fields); ``deterministic``, whether an
    encoder must write ``wire`` byte for byte; ``wire``, the tensor map as
    msgpack, in hex; ``tensor``, the same map readable (bin values in hex);
    ``decoded``, what decoding ``wire`` gives (:func:`array_json`); and
    ``tolerance``, how far a decoder's result may be from ``decoded`` per
    element (0: equal; NaN equals NaN).
    """
    payload = encode_tensor(vector.tensor.array, vector.codec)
    wire = msgpack.packb({**payload, "data": bytes(payload["data"])})
    decoded = (
        vector.tensor.array
        if vector.tolerance
        else decode_tensor(msgpack.unpackb(wire), name=vector.name, codec=vector.codec)
    )
    return {
        "codec": vector.codec,
        "input": {"tensor": vector.tensor.letter, "about": vector.tensor.about, **array_json(vector.tensor.array)},
        "deterministic": vector.codec in DETERMINISTIC_CODECS,
        "wire": wire.hex(),
        "tensor": readable(msgpack.unpackb(wire)),
        "decoded": array_json(decoded),
        "tolerance": vector.tolerance,
    }


def read_codec_vector(name: str) -> dict[str, Any]:
    """The file of codec vector ``name``, parsed."""
    data: dict[str, Any] = json.loads(codec_vector_path(name).read_text(encoding="utf-8"))
    return data


def codec_doc_block(files: dict[str, dict[str, Any]]) -> str:
    """The docs' codec vector section, markers included, from the codec vector files by name."""
    inputs = {file["input"]["tensor"]: file["input"]["about"] for file in files.values()}
    lines = [f"- Tensor {letter}: {about}." for letter, about in sorted(inputs.items())]
    lines += ["", "| Vector | `data` (hex) | `params` (`bin` in hex) | Encoding | Decoding |", "|---|---|---|---|---|"]
    for name, file in files.items():
        data = bytes.fromhex(file["tensor"]["data"])
        shown = f"`{data.hex()}`" if len(data) <= SHOWN_BYTES else f"{len(data)} bytes"
        params = ", ".join(f"`{key}`: `{value}`" for key, value in file["tensor"].get("params", {}).items()) or "none"
        encoding = "byte-exact" if file["deterministic"] else f"any valid {_UNFIXED[file['codec'].rpartition('+')[2]]}"
        decoding = f"within {file['tolerance']} of {file['input']['tensor']}" if file["tolerance"] else "exact"
        lines.append(f"| `{name}` | {shown} | {params} | {encoding} | {decoding} |")
    body = "\n".join(lines)
    return f"<!-- golden:codecs:begin -->\n{body}\n<!-- golden:codecs:end -->"


def write_codec_vectors() -> dict[str, dict[str, Any]]:
    """Rewrite the codec vector files; return them by name."""
    CODEC_DIR.mkdir(exist_ok=True)
    files = {}
    for vector in codec_vectors():
        files[vector.name] = codec_vector_json(vector)
        codec_vector_path(vector.name).write_text(
            json.dumps(files[vector.name], indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    return files


def _replace_block(docs: str, name: str, block: str) -> str:
    docs, count = doc_block_pattern(name).subn(lambda _match: block, docs)
    if count != 1:
        sys.exit(f"{DOCS}: expected one golden:{name} block, found {count}")
    return docs


def write_all() -> None:
    """Rewrite the golden files and the worked example and codec table of the docs."""
    GOLDEN_DIR.mkdir(exist_ok=True)
    docs = DOCS.read_text(encoding="utf-8")
    for name, message in golden_messages().items():
        data = encode(message)
        golden_path(name).write_bytes(data)
        if name in DOC_EXAMPLES:
            docs = _replace_block(docs, name, doc_block(name, data))
    docs = _replace_block(docs, "codecs", codec_doc_block(write_codec_vectors()))
    DOCS.write_text(docs, encoding="utf-8")


if __name__ == "__main__":
    write_all()

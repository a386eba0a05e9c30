"""Model delivery's messages on the wire: encoding them, and reading them with every field checked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, NotRequired, TypedDict

from protocol._checks import (
    Fields,
    check_bin,
    check_count,
    check_id,
    check_sha256,
    check_str,
    check_topic_id,
    type_name,
)
from protocol._decode import open_message, reply_of
from protocol._delivery import (
    MAX_BLOCK_BYTES,
    MAX_FETCH_BLOCKS,
    MAX_FILE_BYTES,
    MAX_FILE_NAME_LENGTH,
    MAX_FILES,
    MAX_OFFERED_VERSIONS,
    MIN_BLOCK_BYTES,
    Block,
    FetchRequest,
    ModelKind,
    ModelOffer,
    OfferedFile,
    OfferedVersion,
)
from protocol._limits import DEFAULT_MAX_MESSAGE_BYTES, PROTOCOL_VERSION
from protocol._msgpack import pack

if TYPE_CHECKING:
    from collections.abc import Callable

    from protocol._messages import InferenceReply

_KINDS: Final = ("segments", "split")
_NOT_FILE_NAMES: Final = frozenset({".", ".."})


class _FileWire(TypedDict):
    name: str
    size: int
    sha256: str


class _VersionWire(TypedDict):
    version: str
    model_sha256: str
    kind: str
    block_size: int
    files: list[_FileWire]
    canary: NotRequired[float]


class _OfferWire(TypedDict):
    v: int
    t: str
    node: str
    model: str
    versions: list[_VersionWire]


class _FetchWire(TypedDict):
    v: int
    t: str
    id: str
    model: str
    version: str
    file: str
    blocks: list[int]


class _BlockWire(TypedDict):
    v: int
    t: str
    id: str
    node: str
    model: str
    version: str
    file: str
    index: int
    offset: int
    sha256: str
    data: bytes


def check_file_name(value: object, name: str) -> str:
    """A plain file name: 1 to 255 characters, no slash, backslash or NUL, not ``.`` or ``..``."""
    text = check_id(value, name, max_length=MAX_FILE_NAME_LENGTH)
    if any(char in text for char in "/\\\0") or text in _NOT_FILE_NAMES:
        msg = f"{name} must be a plain file name, not {text!r}"
        raise ValueError(msg)
    return text


def check_delivery_name(value: object, name: str) -> str:
    """A delivered model's name or version: one topic level that is also a plain file name (a cache directory).

    Raises:
        TypeError: Not a string.
        ValueError: Empty, too long, ``.`` or ``..``, starting with ``$``, or holding a slash, a backslash,
            ``+``, ``#`` or NUL.
    """
    return check_file_name(check_topic_id(value, name), name)


def check_block_size(value: object, name: str) -> int:
    """A block size from 1 KiB to 1 MiB."""
    size = check_count(value, name)
    if not MIN_BLOCK_BYTES <= size <= MAX_BLOCK_BYTES:
        msg = f"{name} must be from {MIN_BLOCK_BYTES} to {MAX_BLOCK_BYTES} bytes, not {size}"
        raise ValueError(msg)
    return size


def check_canary(value: object, name: str) -> float:
    """A canary's share of agents: a number above 0 and below 1.

    Raises:
        ValueError: It is not.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        msg = f"{name} must be a number above 0 and below 1, not {value!r}"
        raise ValueError(msg)
    return float(value)


def _check_kind(value: object, name: str) -> ModelKind:
    text = check_str(value, name)
    if text == "segments":
        return "segments"
    if text == "split":
        return "split"
    msg = f"{name} must be one of {_KINDS}, not {text!r}"
    raise ValueError(msg)


def _check_file_size(value: object, name: str) -> int:
    size = check_count(value, name)
    if size > MAX_FILE_BYTES:
        msg = f"{name} must be at most {MAX_FILE_BYTES} bytes, not {size}"
        raise ValueError(msg)
    return size


def _check_list(value: object, name: str, least: int, most: int) -> list[object]:
    if not isinstance(value, list | tuple):
        msg = f"{name} must be an array, not {type_name(value)}"
        raise TypeError(msg)
    if not least <= len(value) <= most:
        msg = f"{name} must hold {least} to {most} items, not {len(value)}"
        raise ValueError(msg)
    return list(value)


def encode_offer(offer: ModelOffer) -> bytes:
    """Encode a model offer for the wire.

    Raises:
        TypeError: A field has the wrong type.
        ValueError: A field is invalid.
    """
    versions = _check_list(offer.versions, "versions", 1, MAX_OFFERED_VERSIONS)
    wire: _OfferWire = {
        "v": PROTOCOL_VERSION,
        "t": "offer",
        "node": check_topic_id(offer.node_id, "node_id"),
        "model": check_delivery_name(offer.model, "model"),
        "versions": [_version_wire(version, f"versions[{i}]") for i, version in enumerate(versions)],
    }
    return pack(wire)


def _version_wire(version: object, name: str) -> _VersionWire:
    if not isinstance(version, OfferedVersion):
        msg = f"{name} must be an OfferedVersion, not {type_name(version)}"
        raise TypeError(msg)
    files = _check_list(version.files, f"{name}.files", 1, MAX_FILES)
    wire: _VersionWire = {
        "version": check_delivery_name(version.version, f"{name}.version"),
        "model_sha256": check_sha256(version.model_sha256, f"{name}.model_sha256"),
        "kind": _check_kind(version.kind, f"{name}.kind"),
        "block_size": check_block_size(version.block_size, f"{name}.block_size"),
        "files": [_file_wire(file, f"{name}.files[{i}]") for i, file in enumerate(files)],
    }
    if version.canary is not None:  # absent for every agent: older receivers read the same offer
        wire["canary"] = check_canary(version.canary, f"{name}.canary")
    return wire


def _file_wire(file: object, name: str) -> _FileWire:
    if not isinstance(file, OfferedFile):
        msg = f"{name} must be an OfferedFile, not {type_name(file)}"
        raise TypeError(msg)
    return {
        "name": check_file_name(file.name, f"{name}.name"),
        "size": _check_file_size(file.size, f"{name}.size"),
        "sha256": check_sha256(file.sha256, f"{name}.sha256"),
    }


def encode_fetch(fetch: FetchRequest) -> bytes:
    """Encode a fetch for the wire.

    Raises:
        TypeError: A field has the wrong type.
        ValueError: A field is invalid, or there are no or too many blocks.
    """
    wire: _FetchWire = {
        "v": PROTOCOL_VERSION,
        "t": "fetch",
        "id": check_id(fetch.request_id, "request_id"),
        "model": check_delivery_name(fetch.model, "model"),
        "version": check_delivery_name(fetch.version, "version"),
        "file": check_file_name(fetch.file, "file"),
        "blocks": _check_blocks(fetch.blocks, "blocks"),
    }
    return pack(wire)


def _check_blocks(value: object, name: str) -> list[int]:
    items = _check_list(value, name, 1, MAX_FETCH_BLOCKS)
    return [check_count(item, f"{name}[{i}]") for i, item in enumerate(items)]


def encode_block(block: Block, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> bytes:
    """Encode a block for the wire.

    Raises:
        TypeError: A field has the wrong type.
        ValueError: A field is invalid, or the message would exceed ``max_bytes``.
    """
    wire: _BlockWire = {
        "v": PROTOCOL_VERSION,
        "t": "block",
        "id": check_id(block.request_id, "request_id"),
        "node": check_topic_id(block.node_id, "node_id"),
        "model": check_delivery_name(block.model, "model"),
        "version": check_delivery_name(block.version, "version"),
        "file": check_file_name(block.file, "file"),
        "index": check_count(block.index, "index"),
        "offset": check_count(block.offset, "offset"),
        "sha256": check_sha256(block.sha256, "sha256"),
        "data": check_bin(block.data, "data"),
    }
    data = pack(wire)
    if len(data) > max_bytes:
        msg = f"the encoded block is {len(data)} bytes, more than max_bytes={max_bytes}"
        raise ValueError(msg)
    return data


def decode_offer(data: bytes | bytearray | memoryview, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> ModelOffer:
    """Decode and check a model offer.

    Raises:
        ProtocolError: Anything is wrong.
    """
    fields, _ = open_message(data, ("offer",), max_bytes)
    return ModelOffer(
        node_id=fields.get("node", check_topic_id),
        model=fields.get("model", check_delivery_name),
        versions=tuple(fields.get("versions", _items(_read_version, MAX_OFFERED_VERSIONS))),
    )


def _items(read: Callable[[Fields], Any], most: int) -> Callable[[object, str], list[Any]]:
    def check(value: object, name: str) -> list[Any]:
        return [read(Fields(item, f"{name}[{i}]")) for i, item in enumerate(_check_list(value, name, 1, most))]

    return check


def _read_version(fields: Fields) -> OfferedVersion:
    return OfferedVersion(
        version=fields.get("version", check_delivery_name),
        model_sha256=fields.get("model_sha256", check_sha256),
        kind=fields.get("kind", _check_kind),
        block_size=fields.get("block_size", check_block_size),
        files=tuple(fields.get("files", _items(_read_file, MAX_FILES))),
        canary=fields.get_optional("canary", check_canary),
    )


def _read_file(fields: Fields) -> OfferedFile:
    return OfferedFile(
        name=fields.get("name", check_file_name),
        size=fields.get("size", _check_file_size),
        sha256=fields.get("sha256", check_sha256),
    )


def decode_fetch(data: bytes | bytearray | memoryview, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> FetchRequest:
    """Decode and check a fetch.

    Raises:
        ProtocolError: Anything is wrong; ``code`` says what to reply.
    """
    fields, _ = open_message(data, ("fetch",), max_bytes)
    return FetchRequest(
        request_id=fields.get("id", check_id),
        model=fields.get("model", check_delivery_name),
        version=fields.get("version", check_delivery_name),
        file=fields.get("file", check_file_name),
        blocks=tuple(fields.get("blocks", _check_blocks)),
    )


def decode_block(
    data: bytes | bytearray | memoryview, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> Block | InferenceReply:
    """Read what arrives on an agent's blocks topic: a block, or a node's failed reply to a fetch.

    A block's ``sha256`` is read, not checked against its data: the receiver
    checks it (and the offset and length) against the offer it fetches from.

    Raises:
        ProtocolError: Anything is wrong.
    """
    fields, kind = open_message(data, ("block", "resp"), max_bytes)
    if kind == "resp":
        return reply_of(fields)
    return Block(
        request_id=fields.get("id", check_id),
        node_id=fields.get("node", check_topic_id),
        model=fields.get("model", check_delivery_name),
        version=fields.get("version", check_delivery_name),
        file=fields.get("file", check_file_name),
        index=fields.get("index", check_count),
        offset=fields.get("offset", check_count),
        sha256=fields.get("sha256", check_sha256),
        data=fields.get("data", check_bin),
    )

"""The one typed wrapper around msgpack: ``Any`` stops here.

:func:`pack` writes large binary values (tensor data) by reference and joins
the pieces once, so tensor bytes are copied a single time, straight into the
result. :func:`unpack` turns every way msgpack can fail into
:class:`~protocol.errors.ProtocolError` and bounds what a hostile message can
make it allocate.
"""

from __future__ import annotations

import re
import struct
from typing import TypeVar

import msgpack

from protocol._codes import ErrorCode
from protocol._limits import MAX_CONTAINER_ITEMS, MAX_CONTAINERS
from protocol.errors import ProtocolError

# Binary values at least this large are not copied into the packer's buffer
# (which would then be copied again into the result) but joined in by reference.
_BY_REFERENCE_BYTES = 16 * 1024
_BIN16 = struct.Struct(">BH")
_BIN32 = struct.Struct(">BI")
_MAX_BIN16 = 0xFFFF
_MAX_BIN32 = 0xFFFFFFFF

_T = TypeVar("_T")

_UNPACK_ERRORS = (
    msgpack.UnpackException,  # OutOfData, BufferFull
    ValueError,  # ExtraData, FormatError, StackError, UnicodeDecodeError, limits
    TypeError,  # not a buffer
    OverflowError,
    RecursionError,
)


def pack(obj: object) -> bytes:
    """Serialize ``obj`` (maps, lists, str, bytes, numbers, bool, None) to msgpack.

    The output is byte-identical to ``msgpack.packb(obj)``. Large ``bytes`` and
    C-contiguous ``memoryview`` values inside maps are copied once, into the
    result, instead of twice.

    Args:
        obj: The value to serialize; map keys should be ``str``.

    Returns:
        The msgpack bytes.
    """
    packer = msgpack.Packer(autoreset=False)
    parts: list[bytes | memoryview] = []
    _pack_into(obj, packer, parts)
    tail: bytes = packer.bytes()
    if not parts:
        return tail
    parts.append(tail)
    return b"".join(parts)


def _pack_into(obj: object, packer: msgpack.Packer, parts: list[bytes | memoryview]) -> None:
    if isinstance(obj, dict):
        packer.pack_map_header(len(obj))
        for key, value in obj.items():
            packer.pack(key)
            if isinstance(value, dict | bytes | memoryview):
                _pack_into(value, packer, parts)
            else:  # the common case, inlined: this loop is the encoder's hot path
                packer.pack(value)
    elif isinstance(obj, bytes | memoryview) and _by_reference(obj):
        size = _nbytes(obj)
        header = _BIN16.pack(0xC5, size) if size <= _MAX_BIN16 else _BIN32.pack(0xC6, size)
        parts.extend((packer.bytes(), header, obj))
        packer.reset()
    else:
        packer.pack(obj)


def _by_reference(data: bytes | memoryview) -> bool:
    contiguous = isinstance(data, bytes) or data.c_contiguous
    return contiguous and _BY_REFERENCE_BYTES <= _nbytes(data) <= _MAX_BIN32


def _nbytes(data: bytes | bytearray | memoryview) -> int:
    return data.nbytes if isinstance(data, memoryview) else len(data)


def unpack(data: bytes | bytearray | memoryview, *, max_bytes: int) -> object:
    """Deserialize one msgpack value, refusing anything unsafe or malformed.

    Extension types (timestamps included) are refused, map keys must be
    ``str`` or ``bytes``, and a message may hold at most
    :data:`~protocol.MAX_CONTAINERS` maps and arrays, with at most
    :data:`~protocol.MAX_CONTAINER_ITEMS` items in them all.

    Args:
        data: Exactly one msgpack value; trailing bytes are an error.
        max_bytes: Largest accepted ``data``, checked before unpacking.

    Returns:
        The value, built from ``dict``, ``list``, ``str``, ``bytes``, ``int``,
        ``float``, ``bool`` and ``None``.

    Raises:
        ProtocolError: ``data`` is too large (code ``too_large``) or not one
            valid msgpack value (code ``bad_request``).
    """
    size = _nbytes(data)
    if size > max_bytes:
        msg = f"message is {size} bytes, more than the limit of {max_bytes}"
        raise ProtocolError(msg, code=ErrorCode.TOO_LARGE)
    budget = _ContainerBudget(MAX_CONTAINERS, MAX_CONTAINER_ITEMS)
    most_items = min(size, MAX_CONTAINER_ITEMS)  # refused before a container is built
    try:
        value: object = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_reject_ext,
            object_hook=budget.take,
            list_hook=budget.take,
            max_str_len=size,
            max_bin_len=size,
            max_array_len=most_items,
            max_map_len=most_items,
            max_ext_len=0,  # also refuses the timestamp type, which skips ext_hook
        )
    except _UNPACK_ERRORS as exc:
        too_long = isinstance(exc, ValueError) and _TOO_LONG.search(str(exc))  # msgpack's words for over max
        if too_long and most_items < size:  # else longer than its bytes could hold: malformed, not large
            msg = f"message holds a map or array of more than {most_items} items"
            raise ProtocolError(msg, code=ErrorCode.TOO_LARGE) from exc
        msg = f"not a valid msgpack message: {_describe(exc)}"
        raise ProtocolError(msg, code=ErrorCode.BAD_REQUEST) from exc
    return value


_TOO_LONG = re.compile(r"exceeds max_(map|array)_len")
"""How msgpack says a map or array is longer than the unpacker allows."""


def _describe(exc: BaseException) -> str:
    """What went wrong, in words: several msgpack errors have an empty message."""
    if isinstance(exc, msgpack.ExtraData):
        return f"{len(exc.extra)} bytes follow the first value (a message is exactly one value)"
    if isinstance(exc, msgpack.StackError | RecursionError):
        return "nested too deeply"
    if isinstance(exc, msgpack.FormatError):
        return "a byte that starts no msgpack type (0xc1, or a reserved format)"
    if isinstance(exc, UnicodeDecodeError):
        return f"a str is not valid UTF-8 ({exc.reason})"
    return str(exc) or type(exc).__name__


def _reject_ext(code: int, _data: bytes) -> object:
    msg = f"msgpack extension type {code} is not allowed"
    raise ProtocolError(msg, code=ErrorCode.BAD_REQUEST)


class _ContainerBudget:
    """Counts maps and arrays, and the items in them, as msgpack builds them.

    Without a bound, 16 MiB of empty maps would become a gigabyte of dicts,
    and one map of millions of short keys would take seconds to build. No
    one container may hold more than :data:`MAX_CONTAINER_ITEMS` (msgpack
    refuses it before building it), and once all of them together hold
    more, the next one ends the decoding.
    """

    __slots__ = ("_items_left", "_left")

    def __init__(self, limit: int, items: int) -> None:
        self._left = limit
        self._items_left = items

    def take(self, container: _T) -> _T:
        self._left -= 1
        if self._left < 0:
            msg = f"message holds more than {MAX_CONTAINERS} maps and arrays"
            raise ProtocolError(msg, code=ErrorCode.TOO_LARGE)
        self._items_left -= len(container)  # type: ignore[arg-type]
        if self._items_left < 0:
            msg = f"message holds more than {MAX_CONTAINER_ITEMS} items in its maps and arrays"
            raise ProtocolError(msg, code=ErrorCode.TOO_LARGE)
        return container

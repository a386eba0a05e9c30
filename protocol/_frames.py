"""zstd and LZ4 frames: compress, and decompress exactly one frame without producing more than a bound.

Under a compressing codec a tensor's ``data`` is one frame and nothing
else: a zstd frame (RFC 8878, magic ``28 b5 2f fd``) or an LZ4 frame (LZ4
Frame Format 1.6, magic ``04 22 4d 18``). Anything else is refused as
``bad_request``: another magic number (skippable frames included), a damaged
or truncated frame, and bytes after the frame. A frame that would produce
more than the caller's bound is found out before more is produced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from protocol._codec_errors import malformed, optional_module
from protocol._codes import ErrorCode
from protocol.errors import ProtocolError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import ModuleType

FRAMES: Final = ("zstd", "lz4")
"""The compressions, by codec name."""

_ZSTD_LEVEL: Final = 3
_ZSTD_MAGIC: Final = bytes.fromhex("28b52ffd")
_LZ4_MAGIC: Final = bytes.fromhex("04224d18")


def compress(frame: str, data: bytes | memoryview) -> bytes:
    """``data`` as one frame of ``frame`` (``"zstd"``, level 3, or ``"lz4"``, the library's defaults)."""
    return _COMPRESS[frame](data)


def decompress(frame: str, data: bytes, limit: int) -> bytes | None:
    """The content of the one frame ``data`` holds, or ``None`` if it is more than ``limit`` bytes.

    Raises:
        ProtocolError: ``bad_request`` if ``data`` is not exactly one whole
            frame; ``unsupported_codec`` if this side lacks the library;
            ``too_large`` if this process cannot hold what the frame says
            it holds (the libraries allocate that before reading a byte).
    """
    try:
        return _DECOMPRESS[frame](data, limit)
    except MemoryError as exc:
        msg = f"a {frame} frame's content, up to {limit:,} bytes, does not fit in this process's memory"
        raise ProtocolError(msg, code=ErrorCode.TOO_LARGE) from exc


def _zstd_compress(data: bytes | memoryview) -> bytes:
    zstandard = optional_module("zstandard", "zstandard")
    return bytes(zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(data))


def _zstd_decompress(data: bytes, limit: int) -> bytes | None:
    zstandard = optional_module("zstandard", "zstandard")
    if not data.startswith(_ZSTD_MAGIC):
        msg = f"not a zstd frame: it starts {data[:4].hex(' ') or 'empty'}, not {_ZSTD_MAGIC.hex(' ')}"
        raise malformed(msg)
    try:
        declared = zstandard.frame_content_size(data)  # -1 where the header does not say
        if declared > limit:
            return None
        if declared > 0:  # one call into a buffer of the declared size, which refuses bytes after the frame
            return bytes(zstandard.ZstdDecompressor().decompress(data, allow_extra_data=False))
        return _zstd_unsized(zstandard, data, limit)
    except zstandard.ZstdError as exc:
        msg = f"not one whole zstd frame: {exc}"
        raise malformed(msg) from exc


def _zstd_unsized(zstandard: ModuleType, data: bytes, limit: int) -> bytes | None:
    """A frame whose header declares no size, or 0: read within the bound, then check where the frame ends.

    python-zstandard checks for bytes after a frame only where the header
    sized its output, so a second pass over the frame (at most ``limit``
    bytes, as the first found) tells where it ends.
    """
    decompressor = zstandard.ZstdDecompressor()
    with decompressor.stream_reader(data) as reader:
        out = bytes(reader.read(limit + 1))
    if len(out) > limit:
        return None
    ending = decompressor.decompressobj()
    ending.decompress(data)
    if not ending.eof or ending.unused_data:
        msg = "not one whole zstd frame: it is truncated, or bytes follow it"
        raise malformed(msg)
    return out


def _lz4_compress(data: bytes | memoryview) -> bytes:
    frame = optional_module("lz4.frame", "lz4")
    return bytes(frame.compress(data))


def _lz4_decompress(data: bytes, limit: int) -> bytes | None:
    frame = optional_module("lz4.frame", "lz4")
    if not data.startswith(_LZ4_MAGIC):
        msg = f"not an lz4 frame: it starts {data[:4].hex(' ') or 'empty'}, not {_LZ4_MAGIC.hex(' ')}"
        raise malformed(msg)
    decompressor = frame.LZ4FrameDecompressor()
    try:
        out = bytes(decompressor.decompress(data, max_length=limit + 1))
    except RuntimeError as exc:
        msg = f"not one whole lz4 frame: {exc}"
        raise malformed(msg) from exc
    if len(out) > limit:
        return None
    if not decompressor.eof or decompressor.unused_data:
        msg = "not one whole lz4 frame: it is truncated, or bytes follow it"
        raise malformed(msg)
    return out


_COMPRESS: Final[Mapping[str, Callable[[bytes | memoryview], bytes]]] = {"zstd": _zstd_compress, "lz4": _lz4_compress}
_DECOMPRESS: Final[Mapping[str, Callable[[bytes, int], bytes | None]]] = {
    "zstd": _zstd_decompress,
    "lz4": _lz4_decompress,
}

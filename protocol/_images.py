"""uint8 images as JPEG or PNG files, one file per image: ``[H, W, C]`` or ``[N, H, W, C]``, C 1 or 3."""

from __future__ import annotations

import io
import math
import re
import zlib
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from protocol._codec_errors import malformed, optional_module
from protocol._tensors import RawCodec

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import ModuleType

    from PIL.ImageFile import ImageFile

_RAW: Final = RawCodec()
_IMAGE_CHANNELS: Final = (1, 3)
_IMAGE_RANKS: Final = (3, 4)
_JPEG_QUALITY: Final = 90
_PNG_BIT_DEPTH_AT: Final = 24  # after the signature (8 bytes), IHDR's length and type (8), width and height (8)
_PNG_INTERLACE_AT: Final = 28  # IHDR's bit depth, colour type, compression and filter methods come before it
_ADAM7: Final = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
"""Adam7's passes: first column, first row, and the steps between columns and rows."""
# A JPEG's start-of-scan marker (entropy-coded data stuffs each 0xFF with 0x00, so only a marker or an
# application segment's bytes can hold it), and the most scans a JPEG may have: a progressive one from libjpeg
# has about ten, and each further scan costs a pass over the whole image for a few dozen bytes.
_JPEG_START_OF_SCAN: Final = b"\xff\xda"
_MAX_JPEG_SCANS: Final = 32
# A JPEG's end-of-image and restart markers (RST0-7, in turn between a scan's restart intervals), and bytes
# with no 0xFF (no marker) that are far from the zero bits libjpeg makes up for a scan that meets a marker early.
_JPEG_END_OF_IMAGE: Final = b"\xff\xd9"
_JPEG_RESTART: Final = re.compile(rb"\xff([\xd0-\xd7])")
_JPEG_FILLER: Final = b"\x5a\xa5\x3c\xc3" * 4
_JPEG_BLOCK: Final = 8
_UPSAMPLING_REACH: Final = 2
"""Pixels from an MCU's top and left edges whose colour chroma upsampling may blend with the MCUs before it."""
_BIT_DEPTH: Final = 8


class ImageCodec:
    """uint8 images (``[N, H, W, C]`` or ``[H, W, C]``, C 1 or 3) as JPEG or PNG files; other tensors raw.

    ``data`` is the files one after another; ``params.sizes`` lists their
    lengths. The decoder reads each header and checks its size and mode (8
    bits per sample, grayscale for C 1, RGB for C 3) against the declared
    shape before decoding a pixel.

    Args:
        image_format: ``"jpeg"`` (lossy) or ``"png"`` (lossless).
        quality: JPEG quality (1-95).
    """

    def __init__(self, image_format: str, *, quality: int = _JPEG_QUALITY) -> None:
        self.name = image_format
        self._format = image_format.upper()
        self._quality = quality

    @staticmethod
    def applies(dtype: np.dtype[Any], shape: tuple[int, ...]) -> bool:
        """True for a uint8 tensor shaped like one image or a batch of them."""
        return dtype == np.uint8 and len(shape) in _IMAGE_RANKS and shape[-1] in _IMAGE_CHANNELS and 0 not in shape

    def encode(self, array: npt.NDArray[Any]) -> tuple[bytes | memoryview, dict[str, object]]:
        """One file per image, and their sizes, if ``array`` is a uint8 image (batch); else raw."""
        if not self.applies(array.dtype, array.shape):
            return _RAW.encode(array)
        image_module = optional_module("PIL.Image", "pillow")
        files = []
        for image in array.reshape(-1, *array.shape[-3:]):
            out = io.BytesIO()
            pixels = image[..., 0] if image.shape[-1] == 1 else image
            options = {"quality": self._quality} if self._format == "JPEG" else {}
            image_module.fromarray(np.ascontiguousarray(pixels)).save(out, format=self._format, **options)
            files.append(out.getvalue())
        return b"".join(files), {"sizes": [len(file) for file in files]}

    def decode(
        self, data: bytes, dtype: np.dtype[Any], shape: tuple[int, ...], params: Mapping[str, object]
    ) -> npt.NDArray[Any]:
        """The images decoded, each checked against the declared shape first; other tensors as ``raw``."""
        if not self.applies(dtype, shape):
            return _RAW.decode(data, dtype, shape, params)
        image_module = optional_module("PIL.Image", "pillow")
        height, width, channels = shape[-3:]
        count = math.prod(shape[:-3])
        sizes = params.get("sizes")
        if (
            not isinstance(sizes, list)
            or len(sizes) != count
            or not all(isinstance(size, int) and not isinstance(size, bool) and size > 0 for size in sizes)
            or sum(sizes) != len(data)
        ):
            msg = f"params.sizes must list {count} positive file sizes adding up to the {len(data)} data bytes"
            raise malformed(msg)
        out = np.empty(shape, dtype=np.uint8).reshape(count, height, width, channels)
        mode = "L" if channels == 1 else "RGB"
        offset = 0
        for index, size in enumerate(sizes):
            out[index] = _read_image(image_module, data[offset : offset + size], self._format, (width, height), mode)
            offset += size
        return out.reshape(shape)

    def max_data_bytes(self, dtype: np.dtype[Any], shape: tuple[int, ...]) -> int:
        """An image file is not compressed further: the raw size bounds nothing useful here."""
        return math.prod(shape) * dtype.itemsize


def _read_image(
    image_module: ModuleType, file: bytes, image_format: str, size: tuple[int, int], mode: str
) -> npt.NDArray[np.uint8]:
    image = _open(image_module, file, image_format)
    with image:
        if image.size != size or image.mode != mode:
            msg = f"an image is {image.mode} {image.size[0]}x{image.size[1]}, not {mode} {size[0]}x{size[1]}"
            raise malformed(msg)
        if image_format == "PNG":
            _check_png(file, size, 1 if mode == "L" else 3)
        scans = file.count(_JPEG_START_OF_SCAN) if image_format == "JPEG" else 0
        if scans > _MAX_JPEG_SCANS:
            msg = f"a JPEG has {scans} scans, more than {_MAX_JPEG_SCANS}"
            raise malformed(msg)
        pixels = _pixels(image, image_format)
        mcu = _baseline_mcu(image, scans) if image_format == "JPEG" else None
    if image_format == "JPEG" and not _last_mcu_has_detail(pixels, mcu):
        _check_jpeg_scan_is_whole(image_module, file, pixels)
    return pixels.reshape(size[1], size[0], -1)


def _open(image_module: ModuleType, file: bytes, image_format: str) -> ImageFile:
    """``file`` opened as an ``image_format`` image (its header read, no pixel yet)."""
    try:
        image: ImageFile = image_module.open(io.BytesIO(file), formats=[image_format])
    except Exception as exc:
        msg = f"an image does not decode as {image_format}: {exc}"
        raise malformed(msg) from exc
    return image


def _pixels(image: ImageFile, image_format: str) -> npt.NDArray[np.uint8]:
    """An opened image's pixels, decoded."""
    try:
        return np.asarray(image)
    except Exception as exc:
        msg = f"an image does not decode as {image_format}: {exc}"
        raise malformed(msg) from exc


def _baseline_mcu(image: ImageFile, scans: int) -> tuple[int, int] | None:
    """The MCU's height and width in pixels of a sequential JPEG of one scan (of ``scans``); ``None`` for any other."""
    components = getattr(image, "layer", None)  # Pillow's (id, h, v, table) per component, from the frame header
    if image.info.get("progressive") or scans != 1 or not components:
        return None
    if len(components) == 1:
        return _JPEG_BLOCK, _JPEG_BLOCK  # one component: a block is an MCU, whatever its sampling
    return _JPEG_BLOCK * max(v for _, _, v, _ in components), _JPEG_BLOCK * max(h for _, h, _, _ in components)


def _last_mcu_has_detail(pixels: npt.NDArray[np.uint8], mcu: tuple[int, int] | None) -> bool:
    """True where a one-scan sequential JPEG's last MCU is not one flat colour: its scan reached it.

    libjpeg decodes the MCU whose data a cut scan runs out in from made-up
    zero bits, and every MCU after it as zero coefficients: mid-grey, flat.
    A last MCU (bottom right, in part beyond the image where its size is
    not a multiple of the MCU's) with any detail, away from its top and
    left edges, where chroma upsampling blends it with the MCUs before it,
    was decoded from data: a camera frame's sensor noise makes that the
    usual case, and the second decode of :func:`_check_jpeg_scan_is_whole`
    is spared. A flat last MCU (a black letterbox corner, or a cut) gets
    it. Not caught either way: a cut inside the last MCU's own data (at
    most its pixels, 16x16 in the usual 4:2:0, the image's bottom-right
    corner).
    """
    if mcu is None:
        return False
    height, width = pixels.shape[:2]
    top = (height - 1) // mcu[0] * mcu[0] + _UPSAMPLING_REACH
    left = (width - 1) // mcu[1] * mcu[1] + _UPSAMPLING_REACH
    corner = pixels[top:, left:]
    return corner.size > 0 and not (corner == corner[0, 0]).all()


def _check_jpeg_scan_is_whole(image_module: ModuleType, file: bytes, pixels: npt.NDArray[np.uint8]) -> None:
    """Refuse a JPEG whose last scan's entropy-coded data stops before the image does.

    libjpeg decodes the blocks such a scan lacks as zeros (mid-grey) once it
    meets a marker, with no more than a warning that Pillow drops; Pillow
    adds the marker (EOI) to a cut file itself wherever some code in the
    process set ``ImageFile.LOAD_TRUNCATED_IMAGES``. Bytes and a restart
    marker between a whole scan and EOI are skipped, so the file decodes to
    the same pixels with them put there; a short scan reads the filler as
    image data instead, and one cut where a restart interval ends starts the
    next interval at the restart marker. Progressive scans left out whole are
    not seen: the decoder shows their image coarser, not grey.
    """
    with _open(image_module, _with_filler_before_end(file), "JPEG") as probe:
        filled = _pixels(probe, "JPEG")
    if not np.array_equal(filled, pixels):
        msg = "a JPEG's entropy-coded data stops short of its image (cut off): a decoder would fill the rest in grey"
        raise malformed(msg)


def _with_filler_before_end(file: bytes) -> bytes:
    """``file`` with filler, the next restart marker and filler again before its EOI (added if it lacks one)."""
    body = file.removesuffix(_JPEG_END_OF_IMAGE)
    last_scan = body.rfind(_JPEG_START_OF_SCAN)
    restarts = _JPEG_RESTART.findall(body, max(last_scan, 0))
    following = 0xD0 + (restarts[-1][0] - 0xD0 + 1) % 8 if restarts else 0xD0
    return body + _JPEG_FILLER + bytes((0xFF, following)) + _JPEG_FILLER + _JPEG_END_OF_IMAGE


def _check_png(file: bytes, size: tuple[int, int], channels: int) -> None:
    """Refuse a PNG of other than 8 bits per sample, or whose one IHDR and pixel data do not hold every row.

    Pillow widens 2 and 4 bits to L, fills the rows a short (but well
    ended) zlib stream leaves out with zeros, and reads the bit depth of a
    second IHDR: pixels the file never sent would pass for the image.
    """
    if file[_PNG_BIT_DEPTH_AT] != _BIT_DEPTH:
        msg = f"a PNG has {file[_PNG_BIT_DEPTH_AT]} bits per sample, not {_BIT_DEPTH}"
        raise malformed(msg)
    headers, data, at = 0, [], 8  # after the signature: chunks of length, type, data, CRC
    while at + 8 <= len(file):
        length = int.from_bytes(file[at : at + 4], "big")
        kind = file[at + 4 : at + 8]
        headers += kind == b"IHDR"
        if kind == b"IDAT":
            data.append(file[at + 8 : at + 8 + length])
        at += 12 + length
    interlaced = len(file) > _PNG_INTERLACE_AT and file[_PNG_INTERLACE_AT] == 1
    expected = _png_data_bytes(size, channels, interlaced=interlaced)
    inflate = zlib.decompressobj()
    try:
        got = len(inflate.decompress(b"".join(data), expected + 1))
    except zlib.error as exc:
        msg = f"a PNG's pixel data does not inflate: {exc}"
        raise malformed(msg) from exc
    if headers != 1 or got != expected or not inflate.eof:
        msg = f"a PNG holds {got} bytes of rows where its {size[0]}x{size[1]} image takes {expected} (IHDR x{headers})"
        raise malformed(msg)


def _png_data_bytes(size: tuple[int, int], channels: int, *, interlaced: bool) -> int:
    """The inflated pixel data of an 8-bit PNG of ``size``: each row a filter byte and its samples, per pass."""
    width, height = size
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    total = 0
    for x0, y0, dx, dy in passes:
        columns, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if columns > 0 and rows > 0:
            total += rows * (1 + columns * channels)
    return total

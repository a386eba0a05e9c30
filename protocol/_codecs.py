"""Codecs that send fewer bytes than ``raw``: fp16 and int8 for activations, and zstd and lz4 for any tensor.

A codec names how every tensor of a message is encoded, but fp16 and int8
apply only to float tensors and send the rest raw, so one name serves a cut
that carries, say, a float activation and an int64 index:

- ``fp16``: float32 and float64 tensors as IEEE half floats (values beyond
  +-65504 saturate); lossy.
- ``int8``, ``int8-channel``: float32 and float64 tensors quantised affinely
  to int8, as ONNX's QuantizeLinear does: ``q = clip(round(x / scale) +
  zero_point, -128, 127)``, one scale and zero point per tensor, or per
  channel (axis 1, where channels hold 16 values or more); lossy, 4x fewer bytes.
- ``zstd``, ``lz4``, and ``<codec>+zstd``, ``<codec>+lz4``: every tensor's
  data bytes compressed, one frame per tensor: those of ``raw``, or of the
  codec before the ``+`` (which sends the tensors it does not apply to raw);
  lossless.

The image codecs, ``jpeg`` and ``png``, live in ``_images``. Decoders bound
what they allocate by the declared dtype and shape, and the compression and
image libraries are optional (``pip install 'edgecut[codecs]'``): a side
without one answers ``unsupported_codec`` naming the package.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from protocol._codec_errors import malformed
from protocol._frames import FRAMES as _FRAMES
from protocol._frames import compress, decompress
from protocol._images import ImageCodec
from protocol._tensors import RawCodec, register_codec

if TYPE_CHECKING:
    from collections.abc import Mapping

_RAW: Final = RawCodec()
_FP16_MAX: Final = float(np.finfo(np.float16).max)
_INT8: Final = (-128, 127)
_CHANNEL_AXIS: Final = 1
_MIN_CHANNEL_ELEMENTS: Final = 16
_MIN_SCALE: Final = np.finfo(np.float32).tiny  # 2**-126: below it, a step would lose float32 precision


def _is_float(dtype: np.dtype[Any]) -> bool:
    return dtype.kind == "f" and dtype.itemsize > 2  # noqa: PLR2004 - float16 is already half


def _applies_to_floats(dtype: np.dtype[Any], shape: tuple[int, ...]) -> bool:  # noqa: ARG001 - the codecs' form
    """True for float32 and float64 tensors (the ``applies`` of the codecs that narrow floats)."""
    return _is_float(dtype)


class _Sized(Protocol):
    """A codec that knows the most ``data`` bytes a tensor can take (what a decompressor may produce)."""

    @property
    def name(self) -> str: ...

    def encode(self, array: npt.NDArray[Any]) -> tuple[bytes | memoryview, dict[str, object]]: ...

    def decode(
        self, data: bytes, dtype: np.dtype[Any], shape: tuple[int, ...], params: Mapping[str, object]
    ) -> npt.NDArray[Any]: ...

    def max_data_bytes(self, dtype: np.dtype[Any], shape: tuple[int, ...]) -> int: ...


class Fp16Codec:
    """Float tensors as little-endian half floats (saturating at +-65504); other tensors raw."""

    name = "fp16"
    exact_size = True

    applies = staticmethod(_applies_to_floats)

    def encode(self, array: npt.NDArray[Any]) -> tuple[bytes | memoryview, dict[str, object]]:
        """Half floats of ``array`` if it is float32 or float64, else its raw bytes."""
        if not _is_float(array.dtype):
            return _RAW.encode(array)
        half = np.clip(array, -_FP16_MAX, _FP16_MAX).astype("<f2", order="C")
        return half.reshape(-1).view(np.uint8).data, {}

    def decode(
        self, data: bytes, dtype: np.dtype[Any], shape: tuple[int, ...], params: Mapping[str, object]
    ) -> npt.NDArray[Any]:
        """The float tensor widened back from half floats; other tensors as ``raw``."""
        if not _is_float(dtype):
            return _RAW.decode(data, dtype, shape, params)
        half = _RAW.decode(data, np.dtype("<f2"), shape, params)
        return half.astype(dtype)

    def max_data_bytes(self, dtype: np.dtype[Any], shape: tuple[int, ...]) -> int:
        """Two bytes per element of a float tensor, the raw size of others."""
        return math.prod(shape) * (2 if _is_float(dtype) else dtype.itemsize)


class Int8Codec:
    """Float tensors quantised to int8 with a scale and zero point per tensor or per channel; others raw.

    The encoder rounds the tensor to float32, takes the range of its finite
    values widened to include 0, ``scale = (max - min) / 255`` (computed in
    float64, rounded once to float32; 1 where that is below float32's
    smallest normal number, as for an all-zero tensor) and ``zero_point =
    -128 - round(min / scale)``, so that ``min`` becomes -128 and 0 is exact
    (activations after a ReLU are mostly zeros). Each element then becomes
    ``clip(round(x / scale) + zero_point, -128, 127)`` as ONNX's
    QuantizeLinear computes it (float32 division, ties to even): NaN becomes
    ``zero_point``, +inf 127 and -inf -128.

    ``params``: ``scale`` (little-endian float32, as bytes) and
    ``zero_point`` (int8, as bytes), one each per tensor, or with ``axis``
    one per index of that axis (per channel only where each channel holds at
    least 16 values: a scale per handful of values costs more than it
    saves). Either codec decodes both forms.

    Args:
        per_channel: One scale per index of axis 1 (tensors of rank 2 and
            more whose channels hold at least 16 values).
    """

    def __init__(self, *, per_channel: bool = False) -> None:
        self._per_channel = per_channel
        self.name = "int8-channel" if per_channel else "int8"

    exact_size = True
    applies = staticmethod(_applies_to_floats)

    def encode(self, array: npt.NDArray[Any]) -> tuple[bytes | memoryview, dict[str, object]]:
        """Quantised bytes and the params to undo it, if ``array`` is float32 or float64; else raw."""
        if not _is_float(array.dtype):
            return _RAW.encode(array)
        with np.errstate(over="ignore"):  # float64 beyond float32's range: +-inf, which saturate
            values = np.asarray(array, dtype=np.float32)
        values = np.where(np.isnan(values), np.float32(0.0), values)
        axis = self._axis(values.shape)
        rows = np.moveaxis(values, axis, 0) if axis is not None else values[np.newaxis]  # one row per scale
        flat = rows.reshape(rows.shape[0], -1)
        scale, zero_point = _affine(flat)
        quantised = np.clip(np.rint(flat / scale[:, None]) + zero_point[:, None], *_INT8).astype(np.int8)
        quantised = quantised.reshape(rows.shape)
        if axis is not None:
            quantised = np.moveaxis(quantised, 0, axis)
        params: dict[str, object] = {
            "scale": scale.astype("<f4").tobytes(),
            "zero_point": zero_point.astype(np.int8).tobytes(),
        }
        if axis is not None:
            params["axis"] = axis
        return np.ascontiguousarray(quantised).reshape(-1).view(np.uint8).data, params

    def _axis(self, shape: tuple[int, ...]) -> int | None:
        """Axis 1 for ``int8-channel`` when each of its channels holds at least 16 values, else per tensor."""
        if not self._per_channel or len(shape) <= _CHANNEL_AXIS or shape[_CHANNEL_AXIS] == 0:
            return None
        per_channel = math.prod(shape) // shape[_CHANNEL_AXIS]
        return _CHANNEL_AXIS if per_channel >= _MIN_CHANNEL_ELEMENTS else None

    def decode(
        self, data: bytes, dtype: np.dtype[Any], shape: tuple[int, ...], params: Mapping[str, object]
    ) -> npt.NDArray[Any]:
        """``(q - zero_point) * scale`` in float32, then ``dtype``; other tensors as ``raw``."""
        if not _is_float(dtype):
            return _RAW.decode(data, dtype, shape, params)
        quantised = _RAW.decode(data, np.dtype(np.int8), shape, {})
        axis = params.get("axis")
        if axis is not None and (not isinstance(axis, int) or isinstance(axis, bool) or not 0 <= axis < len(shape)):
            msg = f"params.axis must be an axis of the shape {list(shape)} (0 to {len(shape) - 1}), not {axis!r}"
            raise malformed(msg)
        count = 1 if axis is None else shape[axis]
        scale = _scales(params.get("scale"), "params.scale", count)
        zero_point = _zero_points(params.get("zero_point"), "params.zero_point", count)
        if axis is not None:
            broadcast = [1] * len(shape)
            broadcast[axis] = count
            scale, zero_point = scale.reshape(broadcast), zero_point.reshape(broadcast)
        with np.errstate(over="ignore"):  # a product beyond float32's range is +-inf, as IEEE 754 has it
            return ((quantised.astype(np.float32) - zero_point) * scale).astype(dtype)

    def max_data_bytes(self, dtype: np.dtype[Any], shape: tuple[int, ...]) -> int:
        """One byte per element of a float tensor, the raw size of others."""
        return math.prod(shape) * (1 if _is_float(dtype) else dtype.itemsize)


def _affine(rows: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Each row's scale and zero point: its finite range, widened to include 0, in 255 steps."""
    finite = np.where(np.isfinite(rows), rows, np.float32(0.0))
    low = np.minimum(finite.min(axis=1, initial=0.0), np.float32(0.0))
    high = np.maximum(finite.max(axis=1, initial=0.0), np.float32(0.0))
    scale = ((high.astype(np.float64) - low) / 255.0).astype(np.float32)  # float64: no overflow, one rounding
    scale[scale < _MIN_SCALE] = 1.0
    zero_point = np.clip(_INT8[0] - np.rint(low / scale), *_INT8)  # low quantises to exactly -128
    return scale, zero_point


def _scales(value: object, name: str, count: int) -> npt.NDArray[np.float32]:
    if not isinstance(value, bytes) or len(value) != 4 * count:
        msg = f"{name} must be {4 * count} bytes: {count} little-endian float32"
        raise malformed(msg)
    array = np.frombuffer(value, "<f4")
    if not (np.isfinite(array).all() and (array > 0).all()):
        msg = f"{name} must be finite and positive"
        raise malformed(msg)
    return array.astype(np.float32)


def _zero_points(value: object, name: str, count: int) -> npt.NDArray[np.float32]:
    if not isinstance(value, bytes) or len(value) != count:
        msg = f"{name} must be {count} bytes: {count} int8"
        raise malformed(msg)
    return np.frombuffer(value, np.int8).astype(np.float32)


class CompressedCodec:
    """Another codec's data bytes compressed losslessly (zstd or lz4), one frame per tensor.

    Args:
        inner: The codec whose bytes are compressed (``raw`` gives the bare name ``zstd`` / ``lz4``).
        compression: ``"zstd"`` or ``"lz4"``.
    """

    def __init__(self, inner: _Sized, compression: str) -> None:
        self._inner = inner
        self._compression = compression
        self.name = compression if inner.name == "raw" else f"{inner.name}+{compression}"

    def encode(self, array: npt.NDArray[Any]) -> tuple[bytes | memoryview, dict[str, object]]:
        """The inner codec's bytes, compressed; its params unchanged."""
        data, params = self._inner.encode(array)
        return compress(self._compression, data), params

    def decode(
        self, data: bytes, dtype: np.dtype[Any], shape: tuple[int, ...], params: Mapping[str, object]
    ) -> npt.NDArray[Any]:
        """Decompress (never past what the shape allows the inner codec), then decode as the inner codec."""
        limit = self._inner.max_data_bytes(dtype, shape)
        inner = decompress(self._compression, data, limit)
        if inner is None:
            msg = f"decompresses to more than the {limit} bytes {dtype.name} {list(shape)} allows"
            raise malformed(msg)
        return self._inner.decode(inner, dtype, shape, params)

    def effective(self, dtype: np.dtype[Any], shape: tuple[int, ...]) -> str:
        """This codec's name where the inner codec applies to the tensor, else the compression's alone."""
        applies = getattr(self._inner, "applies", None)
        return self.name if applies is None or applies(dtype, shape) else self._compression

    def max_data_bytes(self, dtype: np.dtype[Any], shape: tuple[int, ...]) -> int:
        """The inner codec's size: what compression saves depends on the data."""
        return self._inner.max_data_bytes(dtype, shape)


class _RawSized(RawCodec):
    def max_data_bytes(self, dtype: np.dtype[Any], shape: tuple[int, ...]) -> int:
        return math.prod(shape) * dtype.itemsize


def _register() -> None:
    lossy: list[_Sized] = [Fp16Codec(), Int8Codec(), Int8Codec(per_channel=True)]
    for codec in lossy:
        register_codec(codec)
    for image_format in ("jpeg", "png"):
        register_codec(ImageCodec(image_format))
    for compression in _FRAMES:
        for inner in [_RawSized(), *lossy]:
            register_codec(CompressedCodec(inner, compression))


_register()

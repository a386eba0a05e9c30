"""Tensors on the wire: allowed dtypes, the codec registry, encode and decode."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Final, NotRequired, Protocol, TypedDict

import numpy as np
import numpy.typing as npt

from protocol._checks import Fields, check_bin, check_id, check_str, type_name
from protocol._codes import ErrorCode
from protocol._dtypes import ALLOWED_DTYPES
from protocol._limits import MAX_ELEMENTS, MAX_RANK
from protocol.errors import ProtocolError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

RAW_CODEC: Final = "raw"
"""The codec of protocol v1: plain little-endian bytes in C order."""


# The little-endian dtype of each allowed name; wire strings are looked up here
# and never handed to np.dtype(), which parses far more than names.
_WIRE_DTYPES: Final[Mapping[str, np.dtype[Any]]] = {name: np.dtype(name).newbyteorder("<") for name in ALLOWED_DTYPES}
# Allowed dtypes by ``dtype.str`` ("<f4", ">f4", "|b1", ...), both byte orders,
# because ``dtype.name`` runs Python code and costs microseconds.
_NAMES_BY_STR: Final[Mapping[str, str]] = {
    np.dtype(name).newbyteorder(order).str: name for name in ALLOWED_DTYPES for order in ("<", ">")
}


class TensorPayload(TypedDict):
    """One tensor as a msgpack map.

    Attributes:
        dtype: One of :data:`ALLOWED_DTYPES`.
        shape: The dims, outermost first; ``[]`` for a scalar.
        data: The encoded elements (for ``raw``: little-endian, C order).
        params: Codec parameters; absent when the codec needs none.
    """

    dtype: str
    shape: list[int]
    data: bytes | memoryview
    params: NotRequired[dict[str, object]]


class Codec(Protocol):
    """How tensor elements become the ``data`` bytes and back.

    ``encode`` receives an array already checked for dtype and shape. ``decode``
    receives checked dtype (little-endian) and shape and must return an array of
    exactly that dtype and shape, or raise ``ProtocolError`` when ``data`` or
    ``params`` are invalid; it must bound what it allocates by ``shape``.
    """

    @property
    def name(self) -> str:
        """The codec's name on the wire."""
        ...

    def encode(self, array: npt.NDArray[Any]) -> tuple[bytes | memoryview, dict[str, object]]:
        """Return the ``data`` bytes and the ``params`` map (may be empty)."""
        ...

    def decode(
        self,
        data: bytes,
        dtype: np.dtype[Any],
        shape: tuple[int, ...],
        params: Mapping[str, object],
    ) -> npt.NDArray[Any]:
        """Rebuild the array from its ``data`` bytes and ``params``."""
        ...


class RawCodec:
    """Elements as little-endian bytes in C order: zero-copy both ways when it can be.

    Encoding a C-contiguous little-endian array shares its memory; other
    arrays are copied once into that layout. Decoding returns a read-only
    array over the received bytes.
    """

    name = RAW_CODEC
    exact_size = True
    """What it sends is known from dtype and shape alone (:func:`data_bytes_exact`)."""

    def encode(self, array: npt.NDArray[Any]) -> tuple[bytes | memoryview, dict[str, object]]:
        """Return ``array``'s bytes: a view, or a copy unless C-ordered little-endian."""
        wire_dtype = _WIRE_DTYPES[_NAMES_BY_STR[array.dtype.str]]
        data = np.ascontiguousarray(array, dtype=wire_dtype).reshape(-1).view(np.uint8)
        if wire_dtype.kind == "b" and data.size and data.max() > 1:
            data = np.not_equal(data, 0).view(np.uint8)  # bools made from other bytes: send 0 or 1
        return data.data, {}

    def decode(
        self,
        data: bytes,
        dtype: np.dtype[Any],
        shape: tuple[int, ...],
        params: Mapping[str, object],  # noqa: ARG002 - unknown params are ignored
    ) -> npt.NDArray[Any]:
        """Return a read-only array over ``data``; its length must fit exactly."""
        expected = math.prod(shape) * dtype.itemsize
        if len(data) != expected:
            msg = f"has {len(data)} bytes; {dtype.name} {list(shape)} needs {expected}"
            raise ProtocolError(msg, code=ErrorCode.BAD_REQUEST)
        if dtype.kind == "b" and data.translate(None, b"\x00\x01"):
            msg = "bool elements must be the bytes 0 or 1"
            raise ProtocolError(msg, code=ErrorCode.BAD_REQUEST)
        return np.frombuffer(data, dtype=dtype).reshape(shape)


_CODECS: dict[str, Codec] = {RAW_CODEC: RawCodec()}


def register_codec(codec: Codec) -> None:
    """Make ``codec`` available to :func:`encode_tensor` and :func:`decode_tensor`.

    Args:
        codec: The codec; its name must be a valid id not yet registered.

    Raises:
        ValueError: The name is invalid or taken.
    """
    name = check_id(codec.name, "codec name")
    if name in _CODECS:
        msg = f"a codec named {name!r} is already registered"
        raise ValueError(msg)
    _CODECS[name] = codec


def codec_names() -> tuple[str, ...]:
    """The names of every registered codec, sorted."""
    return tuple(sorted(_CODECS))


def data_bytes_estimate(codec: str, dtype: str, shape: Sequence[int]) -> int:
    """What one tensor's ``data`` takes under ``codec``, known before anything is encoded.

    Exact for ``raw``, ``fp16`` and ``int8``; the raw size (an upper bound)
    for images; for compressed codecs, the size before compression, since
    what compression saves depends on the data (an agent measures it on a
    real input; :func:`data_bytes_exact` tells which codecs need that).

    Raises:
        ValueError: Unknown codec or dtype.
    """
    impl = get_codec(codec)
    wire_dtype, dims = _WIRE_DTYPES[_check_dtype_name(dtype, "dtype")], tuple(shape)
    estimate = getattr(impl, "max_data_bytes", None)
    return int(estimate(wire_dtype, dims)) if estimate is not None else math.prod(dims) * wire_dtype.itemsize


def data_bytes_exact(codec: str) -> bool:
    """Whether :func:`data_bytes_estimate` is exactly what ``codec`` sends, whatever the values.

    True for ``raw``, ``fp16`` and the ``int8`` codecs (a codec class says so
    with ``exact_size = True``); false for the compressors and the image
    codecs, whose size the data decides, and for codecs that do not say.

    Raises:
        ValueError: Unknown codec.
    """
    return bool(getattr(get_codec(codec), "exact_size", False))


def codec_applies(codec: str, dtype: str, shape: Sequence[int]) -> bool:
    """Whether ``codec`` encodes a tensor of this dtype and shape otherwise than ``raw`` does.

    Lossless compression applies to every tensor; fp16 and int8 to float
    tensors; the image codecs to uint8 images.

    Raises:
        ValueError: Unknown codec or dtype.
    """
    impl = get_codec(codec)
    wire_dtype = _WIRE_DTYPES[_check_dtype_name(dtype, "dtype")]
    applies = getattr(impl, "applies", None)
    return codec != RAW_CODEC and (applies is None or bool(applies(wire_dtype, tuple(shape))))


def effective_codec(codec: str, dtype: str, shape: Sequence[int]) -> str:
    """What a tensor of this dtype and shape is really sent as in a message whose codec is ``codec``.

    The codec itself where it applies; ``raw`` where it does not (``jpeg``
    on a float tensor, ``int8`` on a uint8 one); and for ``X+zstd`` /
    ``X+lz4`` where X does not apply, the compression alone (``zstd`` /
    ``lz4``): the name of a codec that would send the tensor with the same
    ``data`` and ``params`` (docs/protocol.md, section 3.2.1).

    Raises:
        ValueError: Unknown codec or dtype.
    """
    impl = get_codec(codec)
    wire_dtype = _WIRE_DTYPES[_check_dtype_name(dtype, "dtype")]
    effective = getattr(impl, "effective", None)
    if effective is not None:
        return str(effective(wire_dtype, tuple(shape)))
    return codec if codec_applies(codec, dtype, shape) else RAW_CODEC


def get_codec(name: str) -> Codec:
    """The registered codec called ``name``.

    Raises:
        ValueError: No codec has this name.
    """
    codec = _CODECS.get(name)
    if codec is None:
        msg = f"unknown codec {name!r}; registered: {', '.join(sorted(_CODECS))}"
        raise ValueError(msg)
    return codec


def encode_tensor(array: npt.NDArray[Any], codec: str = RAW_CODEC) -> TensorPayload:
    """Encode ``array`` as a tensor map.

    With the ``raw`` codec, ``data`` is a ``memoryview`` sharing ``array``'s
    memory when ``array`` is C-contiguous and little-endian: pack the payload
    before mutating the array.

    Args:
        array: The tensor; its dtype must be one of :data:`ALLOWED_DTYPES`.
        codec: Name of a registered codec.

    Returns:
        The payload, ready to put in a message.

    Raises:
        TypeError: ``array`` is not a numpy array.
        ValueError: Unknown codec, dtype not allowed, or shape over the limits.
    """
    impl = get_codec(codec)
    if not isinstance(array, np.ndarray):
        msg = f"a tensor must be a numpy array, not {type_name(array)}"
        raise TypeError(msg)
    dtype_name = _NAMES_BY_STR.get(array.dtype.str)
    if dtype_name is None:
        msg = f"dtype {array.dtype} is not allowed; use one of {', '.join(ALLOWED_DTYPES)}"
        raise ValueError(msg)
    shape = list(array.shape)
    _check_shape(shape, "shape")
    data, params = impl.encode(array)
    payload: TensorPayload = {
        "dtype": dtype_name,
        "shape": shape,
        "data": data,
    }
    if params:
        payload["params"] = params
    return payload


def decode_tensor(payload: object, *, name: str, codec: str) -> npt.NDArray[Any]:
    """Decode one received tensor map, checking every field before allocating.

    The same as ``read_tensor(payload, name=name, codec=codec).decode()``.

    Args:
        payload: The unpacked tensor map.
        name: The tensor's name, for error messages.
        codec: The codec named by the enclosing message.

    Returns:
        The array, little-endian, C order; read-only for the ``raw`` codec
        (a view over the received bytes).

    Raises:
        ProtocolError: Unknown codec (code ``unsupported_codec``) or an invalid
            payload (code ``bad_request``).
    """
    return read_tensor(payload, name=name, codec=codec).decode()


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class EncodedTensor:
    """A received tensor before decoding: what it declares itself to be, and its bytes.

    Its fields are checked (an allowed dtype, a shape within the protocol's
    limits), but nothing is allocated for its elements: a receiver checks the
    declared ``dtype`` and ``shape`` against what it expects, and ``nbytes``
    against its own limits, before it calls :meth:`decode`. It has the
    ``dtype``, ``shape`` and ``ndim`` of the array it decodes to.

    Attributes:
        name: The tensor's name in its message.
        dtype: The declared dtype (little-endian).
        shape: The declared shape.
        codec: How ``data`` encodes the elements.
        data: The encoded elements, as received.
        params: The codec's parameters (empty when it has none).
    """

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    codec: str
    data: bytes
    params: Mapping[str, object]

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes the decoded array takes: what decoding it allocates."""
        return math.prod(self.shape) * self.dtype.itemsize

    def decode(self) -> npt.NDArray[Any]:
        """The array, little-endian, C order; read-only for the ``raw`` codec (a view over ``data``).

        Raises:
            ProtocolError: ``data`` or ``params`` are invalid for the codec (code ``bad_request``).
        """
        where = f"tensor {self.name!r}"
        try:
            array = _CODECS[self.codec].decode(self.data, self.dtype, self.shape, dict(self.params))
        except ProtocolError as exc:
            msg = f"{where}: {exc}"
            raise ProtocolError(msg, code=exc.code) from exc
        if array.dtype != self.dtype or array.shape != self.shape:
            msg = f"{where}: codec {self.codec!r} returned {array.dtype} {array.shape}"
            raise ProtocolError(msg, code=ErrorCode.BAD_REQUEST)
        return array


def read_tensor(payload: object, *, name: str, codec: str) -> EncodedTensor:
    """Check one received tensor map's fields, without decoding its elements.

    Args:
        payload: The unpacked tensor map.
        name: The tensor's name, for error messages.
        codec: The codec named by the enclosing message.

    Raises:
        ProtocolError: Unknown codec (code ``unsupported_codec``) or an invalid
            field (code ``bad_request``).
    """
    if codec not in _CODECS:
        msg = f"unsupported codec {codec!r}"
        raise ProtocolError(msg, code=ErrorCode.UNSUPPORTED_CODEC)
    fields = Fields(payload, f"tensor {name!r}")
    return EncodedTensor(
        name=name,
        dtype=_WIRE_DTYPES[fields.get("dtype", _check_dtype_name)],
        shape=fields.get("shape", _check_shape),
        codec=codec,
        data=fields.get("data", check_bin),
        params=fields.get_optional("params", _check_params) or {},
    )


def _check_dtype_name(value: object, name: str) -> str:
    """One of :data:`ALLOWED_DTYPES`."""
    text = check_str(value, name)
    if text not in _WIRE_DTYPES:
        msg = f"{name} {text!r} is not allowed; use one of {', '.join(ALLOWED_DTYPES)}"
        raise ValueError(msg)
    return text


def _check_shape(value: object, name: str) -> tuple[int, ...]:
    """Up to MAX_RANK ints >= 0; their product, 0 as 1, at most MAX_ELEMENTS."""
    if not isinstance(value, list):
        msg = f"{name} must be an array, not {type_name(value)}"
        raise TypeError(msg)
    if len(value) > MAX_RANK:
        msg = f"{name} has {len(value)} dims, more than {MAX_RANK}"
        raise ValueError(msg)
    bound = 1
    for dim in value:
        if type(dim) is not int or dim < 0:
            msg = f"{name} must hold integers >= 0, not {dim!r}"
            raise ValueError(msg)
        bound *= max(dim, 1)  # exact Python ints: no overflow
        if bound > MAX_ELEMENTS:
            msg = f"{name} {value} is too big (more than {MAX_ELEMENTS} elements)"
            raise ValueError(msg)
    return tuple(value)


def tensors_equal(left: Mapping[str, npt.NDArray[Any]], right: Mapping[str, npt.NDArray[Any]]) -> bool:
    """Whether two tensor maps are equal.

    Equal means: the same names in the same order, and for each name the same
    dtype name (byte order aside), shape and values, NaN equal to NaN.
    """
    if list(left) != list(right):
        return False
    return all(_arrays_equal(left[key], right[key]) for key in left)


def _arrays_equal(left: npt.NDArray[Any], right: npt.NDArray[Any]) -> bool:
    if left.dtype.name != right.dtype.name or left.shape != right.shape:
        return False
    return bool(np.array_equal(left, right, equal_nan=left.dtype.kind == "f"))


def _check_params(value: object, name: str) -> dict[str, object]:
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        msg = f"{name} must be a map with string keys, not {type_name(value)}"
        raise TypeError(msg)
    return value

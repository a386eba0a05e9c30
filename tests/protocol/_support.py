"""Helpers the codec tests share: a tensor through a codec and back, a payload decoded, a refusal's message."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from protocol import ErrorCode, ProtocolError, decode_tensor, encode_tensor


def round_trip(array: npt.NDArray[Any], codec: str) -> tuple[npt.NDArray[Any], int]:
    """``array`` encoded with ``codec`` and decoded again, and the size of its ``data``."""
    payload = encode_tensor(array, codec)
    data = bytes(payload["data"])
    return decode_tensor({**payload, "data": data}, name="t", codec=codec), len(data)


def decode(codec: str, data: bytes, dtype: str, shape: list[int], params: dict[str, object]) -> npt.NDArray[Any]:
    """The tensor these fields decode to."""
    payload = {"dtype": dtype, "shape": shape, "data": data, "params": params}
    return decode_tensor(payload, name="t", codec=codec)


def bad_request(codec: str, data: bytes, dtype: str, shape: list[int], params: dict[str, object]) -> str:
    """The message of the ``bad_request`` these fields must raise."""
    with pytest.raises(ProtocolError) as caught:
        decode(codec, data, dtype, shape, params)
    assert caught.value.code == ErrorCode.BAD_REQUEST
    return str(caught.value)


def scales(params: dict[str, object], ndim: int) -> npt.NDArray[np.float32]:
    """The int8 ``scale`` of ``params``, shaped to broadcast against the tensor."""
    scale = np.frombuffer(params["scale"], "<f4")  # type: ignore[arg-type]
    axis = params.get("axis")
    return scale.reshape([-1 if index == axis else 1 for index in range(ndim)]) if axis is not None else scale

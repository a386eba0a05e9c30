"""The codec registry: raw built in, room for more."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pytest

from protocol import (
    RAW_CODEC,
    Codec,
    ErrorCode,
    InferenceRequest,
    ProtocolError,
    RawCodec,
    _tensors,
    decode_request,
    decode_tensor,
    encode_request,
    encode_tensor,
    get_codec,
    register_codec,
)

if TYPE_CHECKING:
    from collections.abc import Mapping


class XorCodec:
    """A toy codec with params, standing in for fp16/int8/zstd."""

    name = "test-xor"

    def encode(self, array: npt.NDArray[Any]) -> tuple[bytes, dict[str, object]]:
        raw, _ = RawCodec().encode(array)
        return bytes(b ^ 0x5A for b in bytes(raw)), {"key": 0x5A}

    def decode(
        self, data: bytes, dtype: np.dtype[Any], shape: tuple[int, ...], params: Mapping[str, object]
    ) -> npt.NDArray[Any]:
        key = params.get("key")
        if not isinstance(key, int):
            msg = "params.key must be an int"
            raise ProtocolError(msg, code=ErrorCode.BAD_REQUEST)
        return RawCodec().decode(bytes(b ^ key for b in data), dtype, shape, {})


class LyingCodec(XorCodec):
    name = "test-liar"

    def decode(self, *_args: object) -> npt.NDArray[Any]:  # type: ignore[override]
        return np.zeros(3, np.float64)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_tensors, "_CODECS", dict(_tensors._CODECS))


def test_raw_is_the_default_and_unknown_names_are_refused() -> None:
    assert RAW_CODEC == "raw"
    assert isinstance(get_codec("raw"), RawCodec)
    with pytest.raises(ValueError, match="unknown codec 'brotli'; registered: fp16, "):
        get_codec("brotli")


@pytest.mark.usefixtures("registry")
def test_a_registered_codec_is_used_on_both_sides() -> None:
    codec: Codec = XorCodec()
    register_codec(codec)
    array = np.arange(6, dtype=np.int16).reshape(2, 3)
    payload = encode_tensor(array, codec="test-xor")
    assert payload["params"] == {"key": 0x5A}
    request = InferenceRequest("r", "a", "m", "0" * 64, "c", {"x": array}, 1.0, 5.0, codec="test-xor")
    decoded = decode_request(encode_request(request))
    assert decoded == request
    assert decoded.codec == "test-xor"


@pytest.mark.usefixtures("registry")
def test_codec_errors_carry_the_tensor_name() -> None:
    register_codec(XorCodec())
    payload = dict(encode_tensor(np.zeros(2, np.uint8), codec="test-xor"), params={"key": "x"})
    with pytest.raises(ProtocolError, match=r"tensor 'w'.*params\.key") as info:
        decode_tensor(payload, name="w", codec="test-xor")
    assert info.value.code == ErrorCode.BAD_REQUEST


@pytest.mark.usefixtures("registry")
def test_a_codec_returning_the_wrong_array_is_caught() -> None:
    register_codec(LyingCodec())
    with pytest.raises(ProtocolError, match="returned"):
        decode_tensor({"dtype": "float32", "shape": [2], "data": b""}, name="x", codec="test-liar")


@pytest.mark.usefixtures("registry")
def test_register_rejects_duplicates_and_bad_names() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_codec(RawCodec())
    bad = XorCodec()
    bad.name = ""
    with pytest.raises(ValueError, match="empty"):
        register_codec(bad)


def test_bool_arrays_holding_other_bytes_are_sent_as_0_and_1() -> None:
    weird = np.frombuffer(b"\x00\x02\xff\x01", dtype=bool)
    payload = encode_tensor(weird)
    assert bytes(payload["data"]) == b"\x00\x01\x01\x01"


def test_raw_ignores_unknown_params() -> None:
    payload = {"dtype": "uint8", "shape": [2], "data": b"\x01\x02", "params": {"future": True}}
    np.testing.assert_array_equal(decode_tensor(payload, name="x", codec="raw"), [1, 2])

"""zstd and LZ4 data is exactly one whole frame, never decompressed past what the shape allows (protocol 3.2.1)."""

from __future__ import annotations

import lz4.frame
import numpy as np
import pytest
import zstandard

from protocol import encode_tensor
from tests.protocol._support import bad_request, decode

VALUES = np.arange(8, dtype=np.float32)
SKIPPABLE = bytes.fromhex("502a4d18") + (3).to_bytes(4, "little") + b"abc"  # a skippable frame, either format

COMPRESS = {
    "zstd": zstandard.ZstdCompressor().compress,
    "lz4": lz4.frame.compress,
}


def _frame(codec: str, data: bytes = VALUES.tobytes()) -> bytes:
    return COMPRESS[codec](data)


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_one_frame_decodes(codec: str) -> None:
    assert decode(codec, _frame(codec), "float32", [8], {}).tolist() == VALUES.tolist()


def _spoilt(codec: str, how: str) -> bytes:
    frame = _frame(codec)
    spoilt = {
        "bytes after": frame + b"junk",
        "truncated": frame[:-1],
        "skippable first": SKIPPABLE + frame,
        "empty": b"",
        "garbage": b"\x00not a frame at all",
    }
    return spoilt[how]


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
@pytest.mark.parametrize(
    ("how", "words"),
    [
        ("bytes after", "not one whole"),
        ("truncated", "not one whole"),
        ("skippable first", "not a"),
        ("empty", "empty"),
        ("garbage", "not a"),
    ],
)
def test_anything_but_one_whole_frame_is_a_bad_request(codec: str, how: str, words: str) -> None:
    assert words in bad_request(codec, _spoilt(codec, how), "float32", [8], {})


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_a_second_frame_is_a_bad_request(codec: str) -> None:
    assert "not one whole" in bad_request(codec, _frame(codec) + _frame(codec, b""), "float32", [8], {})


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_an_empty_frame_with_bytes_after_it_is_a_bad_request(codec: str) -> None:
    assert decode(codec, _frame(codec, b""), "float32", [0], {}).size == 0
    assert "not one whole" in bad_request(codec, _frame(codec, b"") + b"junk", "float32", [0], {})


def test_a_zstd_frame_that_does_not_declare_its_size_decodes_and_is_checked_too() -> None:
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(VALUES.tobytes())
    assert zstandard.frame_content_size(frame) == -1
    assert decode("zstd", frame, "float32", [8], {}).tolist() == VALUES.tolist()
    assert "not one whole" in bad_request("zstd", frame + b"junk", "float32", [8], {})
    assert "not one whole" in bad_request("zstd", frame[:-1], "float32", [8], {})


@pytest.mark.parametrize("codec", ["zstd", "lz4", "int8+zstd", "fp16+lz4"])
def test_a_frame_that_would_decompress_past_the_shape_is_refused(codec: str) -> None:
    bomb = encode_tensor(np.zeros(1_000_000, np.float32), codec)  # 4 MB of zeros in a few hundred bytes
    message = bad_request(codec, bytes(bomb["data"]), "float32", [4], bomb.get("params", {}))
    assert "decompresses to more than" in message


def test_a_zstd_bomb_that_hides_its_size_is_refused_too() -> None:
    bomb = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(4_000_000))
    assert "decompresses to more than" in bad_request("zstd", bomb, "float32", [4], {})


def test_a_frame_of_too_few_bytes_is_a_bad_request() -> None:
    assert "needs 32" in bad_request("zstd", _frame("zstd", bytes(16)), "float32", [8], {})

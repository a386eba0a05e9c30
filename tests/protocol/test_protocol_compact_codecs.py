"""The codecs that send fewer bytes: the registry, lossless round trips, images, compression, whole requests."""

from __future__ import annotations

import dataclasses
import importlib
import io
import re
import subprocess
import sys
import zlib
from typing import TYPE_CHECKING, Any

import lz4.frame
import msgpack
import numpy as np
import numpy.typing as npt
import pytest
import zstandard
from PIL import Image, ImageFile

from protocol import (
    ErrorCode,
    InferenceRequest,
    ProtocolError,
    codec_names,
    data_bytes_estimate,
    decode_request,
    decode_tensor,
    effective_codec,
    encode_request,
    encode_tensor,
)
from protocol import _images as images
from tests.protocol._support import bad_request, decode, round_trip

if TYPE_CHECKING:
    from collections.abc import Callable

LOSSLESS = ("raw", "zstd", "lz4", "png")
COMPOUND = [f"{inner}+{frame}" for inner in ("fp16", "int8", "int8-channel") for frame in ("zstd", "lz4")]
DECOMPRESS = {"zstd": zstandard.decompress, "lz4": lz4.frame.decompress}


def test_the_registry_holds_every_codec_and_its_compressed_forms() -> None:
    lossy = ("fp16", "int8", "int8-channel")
    expected = {"raw", "zstd", "lz4", "jpeg", "png", *lossy, *(f"{c}+{z}" for c in lossy for z in ("zstd", "lz4"))}
    assert set(codec_names()) == expected


@pytest.mark.parametrize("codec", LOSSLESS)
@pytest.mark.parametrize(
    "array",
    [
        np.maximum(np.random.default_rng(0).normal(size=(1, 8, 5, 5)), 0).astype(np.float32),
        np.random.default_rng(1).integers(0, 256, (2, 9, 7, 3), dtype=np.uint8),
        np.random.default_rng(2).integers(0, 256, (9, 7, 1), dtype=np.uint8),
        np.arange(6, dtype=np.int64).reshape(2, 3),
        np.array([True, False, True]),
        np.zeros((0, 3), np.float64),
    ],
    ids=["relu", "images", "gray", "int64", "bool", "empty"],
)
def test_lossless_codecs_give_back_every_bit(codec: str, array: npt.NDArray[Any]) -> None:
    decoded, _ = round_trip(array, codec)
    assert decoded.dtype == array.dtype
    assert np.array_equal(decoded, array)


def test_lossy_codecs_send_other_dtypes_raw() -> None:
    indices = np.arange(6, dtype=np.int64)
    for codec in ("fp16", "int8", "int8-channel", "jpeg"):
        decoded, size = round_trip(indices, codec)
        assert np.array_equal(decoded, indices)
        assert size == indices.nbytes


def test_jpeg_sends_a_smooth_image_in_a_fraction_of_its_bytes() -> None:
    rows, cols = np.mgrid[0:224, 0:224]
    image = np.stack([rows, cols, (rows + cols) // 2], axis=-1).astype(np.uint8)[np.newaxis]
    decoded, size = round_trip(image, "jpeg")
    assert size < image.nbytes / 10
    assert np.abs(decoded.astype(int) - image).mean() < 2.0


def test_compression_shrinks_sparse_activations() -> None:
    relu = np.maximum(np.random.default_rng(3).normal(size=(1, 64, 28, 28)), 0).astype(np.float32)
    sizes = {codec: round_trip(relu, codec)[1] for codec in ("raw", "zstd", "lz4", "int8", "int8+zstd")}
    assert sizes["zstd"] < 0.6 * sizes["raw"]
    assert sizes["lz4"] < 0.8 * sizes["raw"]
    assert sizes["int8+zstd"] < 0.7 * sizes["int8"]


def test_an_image_is_checked_against_the_shape_before_it_is_decoded() -> None:
    image = np.zeros((1, 16, 16, 3), np.uint8)
    payload = encode_tensor(image, "png")
    data = bytes(payload["data"])
    assert "not RGB 32x16" in bad_request("png", data, "uint8", [1, 16, 32, 3], payload["params"])
    assert "not L 16x16" in bad_request("png", data, "uint8", [1, 16, 16, 1], payload["params"])
    assert "params.sizes" in bad_request("png", data, "uint8", [1, 16, 16, 3], {"sizes": [len(data) - 1]})
    assert "params.sizes" in bad_request("png", data, "uint8", [2, 16, 16, 3], payload["params"])
    assert "does not decode as PNG" in bad_request("png", b"x" * 10, "uint8", [1, 16, 16, 3], {"sizes": [10]})
    assert "does not decode as JPEG" in bad_request("jpeg", data, "uint8", [1, 16, 16, 3], payload["params"])


def test_a_png_must_have_8_bits_per_sample() -> None:
    out = io.BytesIO()
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16) // 17 * 17, "L").save(out, "PNG", bits=4)
    file = out.getvalue()
    assert "4 bits per sample, not 8" in bad_request("png", file, "uint8", [16, 16, 1], {"sizes": [len(file)]})


def _png(width: int, height: int, rows: bytes, *, headers: int = 1) -> bytes:
    """An 8-bit RGB PNG of ``width`` x ``height`` whose pixel data is ``rows`` (each a filter byte and samples)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = chunk(b"IHDR", width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0]))
    return b"\x89PNG\r\n\x1a\n" + header * headers + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_a_png_must_hold_every_row_it_declares_under_one_header() -> None:
    row = b"\x00" + b"\xc8" * 3 * 64
    whole = _png(64, 48, row * 48)
    assert (decode("png", whole, "uint8", [48, 64, 3], {"sizes": [len(whole)]}) == 200).all()
    short = _png(64, 48, row)  # one row of 48: Pillow would fill the others with zeros
    assert "holds 193 bytes of rows" in bad_request("png", short, "uint8", [48, 64, 3], {"sizes": [len(short)]})
    twice = _png(64, 48, row * 48, headers=2)
    assert "IHDR x2" in bad_request("png", twice, "uint8", [48, 64, 3], {"sizes": [len(twice)]})


def _with_scans_repeated(file: bytes, times: int) -> bytes:
    """A progressive JPEG with its last scan (marker to end of its data) repeated ``times`` more before EOI."""
    last = file.rindex(b"\xff\xda")
    return file[:-2] + file[last:-2] * times + file[-2:]


def test_a_jpeg_of_many_scans_is_refused_before_its_pixels_are_decoded() -> None:
    out = io.BytesIO()  # each repeated scan costs a pass over the whole image for a few dozen bytes
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(out, "JPEG", progressive=True, quality=90)
    file = out.getvalue()
    assert 1 < file.count(b"\xff\xda") <= 32  # what libjpeg writes passes
    assert decode("jpeg", file, "uint8", [64, 64, 3], {"sizes": [len(file)]}).shape == (64, 64, 3)
    many = _with_scans_repeated(file, 40)
    assert "scans, more than 32" in bad_request("jpeg", many, "uint8", [64, 64, 3], {"sizes": [len(many)]})


def _jpeg(**options: int | bool) -> bytes:
    """A 64x96 RGB JPEG of a gradient, saved by Pillow with ``options``."""
    rows, cols = np.mgrid[0:64, 0:96]
    out = io.BytesIO()
    Image.fromarray(np.stack([rows * 4, cols * 2, rows + cols], axis=-1).astype(np.uint8)).save(out, "JPEG", **options)
    return out.getvalue()


def _mid_scan(file: bytes) -> int:
    """Halfway through the data of a JPEG's last scan."""
    return (file.rindex(b"\xff\xda") + len(file)) // 2


@pytest.mark.parametrize(
    ("options", "cut_at"),
    [({}, _mid_scan), ({"restart_marker_blocks": 4}, lambda file: file.index(b"\xff\xd3"))],
    ids=["mid-scan", "where-a-restart-interval-ends"],
)
def test_a_jpeg_cut_short_is_refused_not_filled_in_grey(
    options: dict[str, int], cut_at: Callable[[bytes], int]
) -> None:
    file = _jpeg(**options)
    assert decode("jpeg", file, "uint8", [64, 96, 3], {"sizes": [len(file)]}).std() > 10  # the whole file decodes
    short = file[: cut_at(file)] + b"\xff\xd9"  # EOI again: libjpeg fills the blocks it lacks with grey
    assert "stops short of its image" in bad_request("jpeg", short, "uint8", [64, 96, 3], {"sizes": [len(short)]})


def test_a_cut_jpeg_is_refused_where_pillow_is_told_to_load_truncated_images(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # process-wide: any library may have set it
    file = _jpeg()
    short = file[: _mid_scan(file)]
    assert "stops short of its image" in bad_request("jpeg", short, "uint8", [64, 96, 3], {"sizes": [len(short)]})
    assert decode("jpeg", file, "uint8", [64, 96, 3], {"sizes": [len(file)]}).shape == (64, 96, 3)


def _noisy_jpeg(shape: tuple[int, ...], **options: int) -> bytes:
    """A JPEG of ``shape`` (H, W, 3; or H, W: grayscale) of noise, as a camera's sensor adds to every frame."""
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)).save(out, "JPEG", **options)
    return out.getvalue()


SAMPLINGS = [((64, 96, 3), {"subsampling": 2}), ((64, 96, 3), {"subsampling": 1}), ((64, 96, 3), {"subsampling": 0})]
SAMPLINGS += [((64, 96), {}), ((61, 90, 3), {"subsampling": 2})]  # grayscale; a size no MCU divides
SAMPLING_IDS = ["4:2:0", "4:2:2", "4:4:4", "grayscale", "odd-size"]


@pytest.mark.parametrize(("shape", "options"), SAMPLINGS, ids=SAMPLING_IDS)
def test_a_whole_jpeg_whose_last_block_has_detail_is_decoded_once(
    shape: tuple[int, ...], options: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    probes: list[bytes] = []
    with_filler = images._with_filler_before_end
    monkeypatch.setattr(images, "_with_filler_before_end", lambda file: probes.append(file) or with_filler(file))
    file = _noisy_jpeg(shape, **options)
    declared = [*shape[:2], 3 if len(shape) == 3 else 1]  # RGB, or grayscale
    assert decode("jpeg", file, "uint8", declared, {"sizes": [len(file)]}).shape == tuple(declared)
    assert probes == []  # its last MCU has detail: the scan reached it, no second decode
    out = io.BytesIO()
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(out, "JPEG")  # a flat last MCU: the second decode looks
    assert decode("jpeg", out.getvalue(), "uint8", [64, 96, 3], {"sizes": [len(out.getvalue())]}).max() == 0
    assert len(probes) == 1


@pytest.mark.parametrize(("shape", "options"), SAMPLINGS, ids=SAMPLING_IDS)
def test_a_jpeg_cut_before_its_last_mcu_is_refused(shape: tuple[int, ...], options: dict[str, int]) -> None:
    file = _noisy_jpeg(shape, restart_marker_blocks=1, **options)  # a restart marker after every MCU
    *_, last_but_one, _ = (match.start() for match in re.finditer(rb"\xff[\xd0-\xd7]", file))
    short = file[:last_but_one] + b"\xff\xd9"  # every MCU but the last two: the last one grey
    declared = [*shape[:2], 3 if len(shape) == 3 else 1]  # RGB, or grayscale
    assert "stops short of its image" in bad_request("jpeg", short, "uint8", declared, {"sizes": [len(short)]})


def test_a_frame_this_process_cannot_hold_is_too_large_not_a_memory_error() -> None:
    # lz4 allocates what the declared shape says before it reads a byte: 16 GiB here, in a child
    # process whose address space is bounded to 3 GiB.
    code = """
import resource
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, resource.RLIM_INFINITY))
import lz4.frame
from protocol import ProtocolError
from protocol._tensors import read_tensor
frame = lz4.frame.compress(bytes(16))
try:
    read_tensor({"dtype": "float64", "shape": [2**31 - 1], "data": frame}, name="x", codec="lz4").decode()
except ProtocolError as exc:
    print(exc.code, exc)
"""
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("too_large ")
    assert "does not fit in this process's memory" in done.stdout


def test_a_side_without_the_library_says_which_package_it_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = importlib.import_module

    def without_zstandard(name: str, package: str | None = None) -> object:
        if name == "zstandard":
            raise ImportError(name)
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", without_zstandard)
    frame = zstandard.ZstdCompressor().compress(bytes(16))
    with pytest.raises(ProtocolError) as caught:
        decode("zstd", frame, "float32", [4], {})
    assert caught.value.code == ErrorCode.UNSUPPORTED_CODEC
    assert "zstandard" in str(caught.value)
    assert "edgecut[codecs]" in str(caught.value)


def test_a_request_crosses_the_wire_in_int8_with_zstd() -> None:
    activation = np.maximum(np.random.default_rng(4).normal(size=(1, 16, 7, 7)), 0).astype(np.float32)
    request = InferenceRequest(
        request_id="r1",
        agent_id="a1",
        model_id="m",
        model_sha256="0" * 64,
        cut_id="layer",
        tensors={"x": activation, "index": np.arange(3, dtype=np.int64)},
        sent_at=0.0,
        deadline_ms=1000.0,
        codec="int8-channel+zstd",
    )
    raw = encode_request(dataclasses.replace(request, codec="raw"))
    packed = encode_request(request)
    assert len(packed) < len(raw) / 3
    decoded = decode_request(packed)
    assert decoded.codec == "int8-channel+zstd"
    assert np.array_equal(decoded.tensors["index"], np.arange(3))
    assert np.abs(decoded.tensors["x"] - activation).max() < activation.max() / 254


@pytest.mark.parametrize("codec", COMPOUND)
def test_a_compound_codec_compresses_every_tensor_and_narrows_only_the_floats(codec: str) -> None:
    inner, frame = codec.split("+")
    rows, cols = np.mgrid[0:8, 0:8]
    image = np.stack([rows * 30, cols * 30, rows + cols], axis=-1).astype(np.uint8)[np.newaxis]
    activation = np.maximum(np.random.default_rng(5).normal(size=(1, 16, 4, 4)), 0).astype(np.float32)
    request = InferenceRequest(
        request_id="r1",
        agent_id="a1",
        model_id="m",
        model_sha256="0" * 64,
        cut_id="input",
        tensors={"image": image, "act": activation},
        sent_at=0.0,
        deadline_ms=1000.0,
        codec=codec,
    )
    packed = encode_request(request)
    sent = msgpack.unpackb(packed)["tensors"]
    assert "params" not in sent["image"]
    assert DECOMPRESS[frame](sent["image"]["data"]) == image.tobytes()  # raw bytes, compressed
    narrowed = encode_tensor(activation, inner)
    assert DECOMPRESS[frame](sent["act"]["data"]) == bytes(narrowed["data"])  # X's bytes, compressed
    assert sent["act"].get("params") == narrowed.get("params")  # fp16 has none
    decoded = decode_request(packed)
    assert decoded.tensors["image"].dtype == np.uint8
    assert np.array_equal(decoded.tensors["image"], image)
    expected = decode_tensor({**narrowed, "data": bytes(narrowed["data"])}, name="act", codec=inner)
    assert np.array_equal(decoded.tensors["act"], expected)


def test_data_bytes_are_estimated_before_anything_is_encoded() -> None:
    shape = (1, 8, 5, 5)
    assert data_bytes_estimate("raw", "float32", shape) == 800
    assert data_bytes_estimate("fp16", "float32", shape) == 400
    assert data_bytes_estimate("int8-channel+zstd", "float32", shape) == 200  # before compression
    assert data_bytes_estimate("int8", "int64", (3,)) == 24  # sent raw
    assert data_bytes_estimate("jpeg", "uint8", (1, 4, 4, 3)) == 48  # at most raw
    with pytest.raises(ValueError, match="unknown codec"):
        data_bytes_estimate("brotli", "float32", shape)
    with pytest.raises(ValueError, match="not allowed"):
        data_bytes_estimate("raw", "complex64", shape)


@pytest.mark.parametrize("codec", codec_names())
def test_the_effective_codec_of_a_tensor_sends_it_exactly_as_the_messages_codec_does(codec: str) -> None:
    rng = np.random.default_rng(0)
    tensors = {
        "activation": rng.normal(size=(1, 8, 5, 5)).astype(np.float32),
        "image": rng.integers(0, 256, (1, 8, 8, 3), dtype=np.uint8),
        "index": np.arange(6, dtype=np.int64),
    }
    for name, array in tensors.items():
        effective = effective_codec(codec, array.dtype.name, array.shape)
        sent, alone = encode_tensor(array, codec), encode_tensor(array, effective)
        assert bytes(sent["data"]) == bytes(alone["data"]), name
        assert sent.get("params") == alone.get("params"), name


def test_the_effective_codec_names_what_a_tensor_is_really_sent_as() -> None:
    image, activation = ("uint8", (1, 8, 8, 3)), ("float32", (1, 16))
    assert effective_codec("jpeg", *image) == "jpeg"
    assert effective_codec("jpeg", *activation) == "raw"
    assert effective_codec("int8", *image) == "raw"
    assert effective_codec("int8+zstd", *image) == "zstd"
    assert effective_codec("int8+zstd", *activation) == "int8+zstd"
    assert effective_codec("lz4", *activation) == "lz4"
    assert effective_codec("raw", *image) == "raw"

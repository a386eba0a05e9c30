"""Codec golden vectors: the deterministic codecs encode to the files' bytes, every file decodes as stated.

If a test here fails after a deliberate change of a codec, regenerate the
files and the docs table with ``python tests/protocol/make_golden.py`` and
review the diff. Never regenerate to make an accidental change pass.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np
import pytest

from protocol import decode_tensor, encode_tensor

if TYPE_CHECKING:
    from types import ModuleType


def load_make_golden() -> ModuleType:
    # pytest runs with --import-mode=importlib: a test cannot import its neighbours.
    spec = importlib.util.spec_from_file_location("make_golden", Path(__file__).with_name("make_golden.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_golden = load_make_golden()
VECTORS = {vector.name: vector for vector in make_golden.codec_vectors()}
FILES = {name: make_golden.read_codec_vector(name) for name in VECTORS}
DETERMINISTIC = sorted(name for name, file in FILES.items() if file["deterministic"])


def _wire(payload: dict[str, Any]) -> bytes:
    return bytes(msgpack.packb({**payload, "data": bytes(payload["data"])}))


def test_there_is_a_file_per_vector_and_every_codec_has_one() -> None:
    assert sorted(path.stem for path in make_golden.CODEC_DIR.glob("*.json")) == sorted(VECTORS)
    base_codecs = {name.partition("+")[0] for name in make_golden.DETERMINISTIC_CODECS} - {"raw"}
    assert base_codecs | {"zstd", "lz4", "jpeg", "png"} <= {file["codec"] for file in FILES.values()}


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_each_file_holds_its_vector(name: str) -> None:
    file, vector = FILES[name], VECTORS[name]
    assert file["codec"] == vector.codec
    assert file["input"] == make_golden.codec_vector_json(vector)["input"]
    assert file["deterministic"] == (vector.codec in make_golden.DETERMINISTIC_CODECS)
    assert file["tolerance"] == vector.tolerance
    assert file["tensor"] == make_golden.readable(msgpack.unpackb(bytes.fromhex(file["wire"])))


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_codecs_encode_the_input_to_the_golden_bytes(name: str) -> None:
    file = FILES[name]
    payload = encode_tensor(make_golden.json_array(file["input"]), file["codec"])
    assert _wire(payload).hex() == file["wire"]
    assert file == make_golden.codec_vector_json(VECTORS[name])


@pytest.mark.parametrize("name", sorted(set(VECTORS) - set(DETERMINISTIC)))
def test_other_codecs_encode_the_input_to_what_decodes_as_stated(name: str) -> None:
    file = FILES[name]
    payload = encode_tensor(make_golden.json_array(file["input"]), file["codec"])
    _assert_decodes_as_stated(_wire(payload), file)


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_every_file_decodes_to_the_stated_array_within_its_tolerance(name: str) -> None:
    file = FILES[name]
    _assert_decodes_as_stated(bytes.fromhex(file["wire"]), file)


def _assert_decodes_as_stated(wire: bytes, file: dict[str, Any]) -> None:
    decoded = decode_tensor(msgpack.unpackb(wire), name="t", codec=file["codec"])
    stated = make_golden.json_array(file["decoded"])
    assert decoded.dtype == stated.dtype
    assert decoded.shape == stated.shape
    if file["tolerance"]:
        assert np.abs(decoded.astype(np.float64) - stated).max() <= file["tolerance"]
    else:
        assert np.array_equal(decoded, stated, equal_nan=stated.dtype.kind == "f")


@pytest.mark.parametrize("name", [name for name in sorted(VECTORS) if "+" in name])
def test_a_compound_frame_holds_what_its_base_codec_writes(name: str) -> None:
    file = FILES[name]
    base, frame = file["codec"].split("+")
    expected = encode_tensor(make_golden.json_array(file["input"]), base)
    data = bytes.fromhex(file["tensor"]["data"])
    content = decode_tensor(
        {"dtype": "uint8", "shape": [len(bytes(expected["data"]))], "data": data}, name="t", codec=frame
    )
    assert content.tobytes() == bytes(expected["data"])
    assert make_golden.readable(dict(expected.get("params", {}))) == file["tensor"].get("params", {})


def test_the_docs_table_is_the_files() -> None:
    docs = make_golden.DOCS.read_text(encoding="utf-8")
    match = make_golden.doc_block_pattern("codecs").search(docs)
    assert match is not None, "docs/protocol.md lacks the golden:codecs block"
    assert match.group(0) == make_golden.codec_doc_block(FILES)
    for file in FILES.values():
        data = file["tensor"]["data"]
        assert len(data) > 2 * make_golden.SHOWN_BYTES or f"`{data}`" in match.group(0)

"""The child process that splits models for a hub, on its own."""

from __future__ import annotations

import io
import json
import pickle
import struct
from typing import TYPE_CHECKING

import onnx
import pytest

from cloud_hub._splitter import ModelSource, Outcome, Splitter, serve
from models import zoo
from models.partition import model_file_sha256
from protocol import ErrorCode
from protocol.errors import ModelError
from tests._support import tiny_model

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def splitter() -> Iterator[Splitter]:
    splitter = Splitter()
    yield splitter
    splitter.close()


def test_the_child_hashes_and_splits_what_the_hub_asks(splitter: Splitter) -> None:
    sha = tiny_model().model_sha256
    assert splitter.zoo_sha256s(["tiny", "no-such-model"]) == {"tiny": sha}
    outcome = splitter.grow(ModelSource("tiny"), sha, "tiny", "input", also=None)
    assert outcome.error is None
    assert outcome.grown is not None
    assert "input" in outcome.grown.manifest.cut_ids
    assert outcome.grown.candidates <= set(outcome.grown.manifest.cut_ids)
    assert set(outcome.grown.files) == {segment.sha256 for segment in outcome.grown.manifest.segments}
    assert all(path.is_file() and path.with_suffix(".data").is_file() for path in outcome.grown.files.values())
    splitter.discard(outcome.grown)  # once the hub made its sessions
    assert not any(path.exists() or path.with_suffix(".data").exists() for path in outcome.grown.files.values())


def test_closing_deletes_what_the_child_wrote(splitter: Splitter) -> None:
    outcome = splitter.grow(ModelSource("tiny"), tiny_model().model_sha256, "tiny", "input", also=None)
    assert outcome.grown is not None
    directory = next(iter(outcome.grown.files.values())).parent
    splitter.close()
    assert not directory.exists()


def test_an_unknown_cut_is_an_outcome_with_the_models_cuts(splitter: Splitter) -> None:
    outcome = splitter.grow(ModelSource("tiny"), tiny_model().model_sha256, "tiny", "nope", also=None)
    assert outcome.grown is None
    assert outcome.error is not None
    assert outcome.error[0] == ErrorCode.UNKNOWN_CUT
    assert "input" in outcome.cut_ids


def test_a_failure_in_the_child_is_a_model_error_and_the_child_serves_on(splitter: Splitter, tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError):
        splitter.file_sha256(junk)
    assert splitter.zoo_sha256s(["tiny"])  # the same child, still answering


def test_a_child_that_died_is_replaced_on_the_next_call(splitter: Splitter) -> None:
    assert splitter.zoo_sha256s(["tiny"])
    child = splitter._child
    assert child is not None
    child.kill()
    child.wait(10)
    assert splitter.zoo_sha256s(["tiny"]) == {"tiny": tiny_model().model_sha256}
    assert splitter._child is not child
    assert zoo.MODEL_NAMES  # the zoo the child builds is the hub's


def test_a_child_that_died_leaves_the_segments_directory_to_the_next(splitter: Splitter) -> None:
    first = splitter.grow(ModelSource("tiny"), tiny_model().model_sha256, "tiny", "input", also=None)
    assert splitter._child is not None
    splitter._child.kill()
    splitter._child.wait(10)
    again = splitter.grow(ModelSource("tiny"), tiny_model().model_sha256, "tiny", "input", also=None)
    assert first.grown is not None
    assert again.grown is not None
    assert all(path.is_file() for path in again.grown.files.values())


def test_a_closed_splitter_starts_no_child_for_a_call_that_comes_late() -> None:
    splitter = Splitter()
    splitter.close()  # the hub stopped while one of its loads' threads was still on its way here
    with pytest.raises(ModelError, match="stopping"):
        splitter.zoo_sha256s(["tiny"])
    assert splitter._child is None


def _framed(message: dict[str, object]) -> bytes:
    data = json.dumps(message).encode()
    return struct.pack(">Q", len(data)) + data


def _answers(stream: io.BytesIO) -> list[dict[str, object]]:
    stream.seek(0)
    answers = []
    while header := stream.read(8):
        (length,) = struct.unpack(">Q", header)
        answers.append(json.loads(stream.read(length)))
    return answers


def test_calls_and_answers_are_json_and_the_child_reads_no_pickle(tmp_path: Path) -> None:
    grown = Splitter()
    try:
        outcome = grown.grow(ModelSource("tiny"), tiny_model().model_sha256, "tiny", "input", also=None)
    finally:
        grown.close()
    assert Outcome.from_json(json.loads(json.dumps(outcome.to_json()))) == outcome  # what the child sends, read back
    model = tmp_path / "tiny.onnx"
    onnx.save(zoo.build("tiny"), model)
    calls = io.BytesIO(
        _framed({"call": "file_sha256", "args": {"path": str(model)}})
        + _framed({"call": "zoo_sha256s", "args": {"names": ["tiny"], "skip": []}})
    )
    answers = io.BytesIO()
    serve(calls, answers)
    sha = tiny_model().model_sha256
    assert _answers(answers) == [{"value": model_file_sha256(model)}, {"value": {"tiny": sha}}]
    pickled = pickle.dumps(("file_sha256", (model,)))  # what the child once read
    with pytest.raises(UnicodeDecodeError):  # not JSON: the child stops, the hub's next call starts another
        serve(io.BytesIO(struct.pack(">Q", len(pickled)) + pickled), io.BytesIO())

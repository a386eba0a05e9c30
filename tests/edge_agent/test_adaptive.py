"""cut="auto" without a broker: the candidates, the warm-up and head times kept across restarts."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import pytest

from edge_agent import EDGE_ONLY, AgentCore, InferenceResult, ModelHalves, Planner, Timings
from edge_agent._adaptive import HeadTimes, auto_core

if TYPE_CHECKING:
    from pathlib import Path

MODEL = "tiny"


def _core(state_dir: Path | None = None) -> AgentCore:
    halves = ModelHalves.open(MODEL, threads=1)
    saved = None if state_dir is None else HeadTimes(state_dir, halves.model_sha256)
    return auto_core(halves, 0.0, saved=saved)


def _planner(core: AgentCore) -> Planner:
    assert core.planner is not None
    return core.planner


def test_the_warm_up_gives_every_candidate_a_head_time() -> None:
    heads = _core().head_times()
    assert list(heads) == ["input", "pool", "output"]
    assert heads["input"] == [0.0]  # cloud-only runs nothing here
    assert 0 < heads["pool"][-1] <= heads["output"][-1]


def test_head_times_are_kept_for_the_next_start(tmp_path: Path) -> None:
    sha = ModelHalves.open(MODEL).model_sha256
    HeadTimes(tmp_path, sha).save(_core(tmp_path))
    (saved,) = tmp_path.glob("planner-*.json")
    state = json.loads(saved.read_text())
    assert state["model_sha256"] == sha
    state["heads"]["output"] = [1234.0, 1234.0]  # as if this device had been slow last time
    saved.write_text(json.dumps(state))
    restored = _core(tmp_path).head_times()["output"]
    assert restored[:2] == [1234.0, 1234.0]  # then the warm-up's own
    assert len(restored) == 5


@pytest.mark.parametrize("content", ["{ not json", '{"format": 1, "heads": {"output": ["slow"]}}', "[]"])
def test_an_unreadable_state_file_is_ignored_with_a_warning(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    saved = HeadTimes(tmp_path, ModelHalves.open(MODEL).model_sha256)
    saved.save(_core(tmp_path))
    saved.path.write_text(content)
    with caplog.at_level(logging.WARNING, logger="edgecut.agent"):
        core = _core(tmp_path)
    assert set(core.head_times()) == {"input", "pool", "output"}  # the warm-up still ran
    assert core.head_times()["output"] != ["slow"]
    assert "ignored the planner state" in caplog.text


def test_a_request_refreshes_the_heads_of_every_cut_its_head_passed() -> None:
    core = _core()
    request = core.request(100.0)
    result = InferenceResult(outputs={}, cut_id=EDGE_ONLY, timings=Timings(edge_ms=50.0, total_ms=51.0))
    core.finished(request, result, 100.0, segment_ms=[7.0, 43.0])
    heads = core.head_times()
    assert heads["pool"][-1] == 7.0
    assert heads["output"][-1] == 50.0


def test_candidates_start_from_what_their_tensors_take_under_the_codec() -> None:
    halves = ModelHalves.open(MODEL, threads=1)
    raw = {c.id: c.bytes for c in _planner(auto_core(halves, 0.0)).candidates}
    int8 = {c.id: c.bytes for c in _planner(auto_core(halves, 0.0, codecs=("int8+zstd",))).candidates}
    assert int8["input"] == raw["input"]  # the image is uint8: int8 leaves it as it is
    inner = [cut for cut in raw if cut not in {"input", "output"}]
    assert inner
    for cut in inner:  # float activations: a byte per value before compression
        assert int8[cut] == raw[cut] // 4


def test_an_allow_list_makes_a_candidate_of_each_codec_that_changes_what_a_cut_sends() -> None:
    halves = ModelHalves.open(MODEL, threads=1)
    planner = _planner(auto_core(halves, 0.0, codecs=("raw", "fp16", "jpeg")))
    by_cut: dict[str, set[str]] = {}
    for candidate in planner.candidates:
        by_cut.setdefault(candidate.id, set()).add(candidate.codec)
    assert by_cut.pop("input") == {"raw", "jpeg"}  # a uint8 image: fp16 would send it as it is
    assert by_cut.pop("output") == {"raw"}  # nothing is sent
    assert by_cut
    assert all(codecs == {"raw", "fp16"} for codecs in by_cut.values())  # float activations: no image here
    labels = [candidate.label for candidate in planner.candidates]
    assert len(labels) == len(set(labels))
    assert "input@jpeg" in labels

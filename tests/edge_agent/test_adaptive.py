"""cut="auto" without a broker: the warm-up, what requests teach, and head times kept across restarts."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import pytest

from edge_agent import EDGE_ONLY, InferenceResult, ModelHalves, Timings
from edge_agent._adaptive import AdaptiveCut
from edge_agent._planner import Observation
from protocol import NodeStatus

if TYPE_CHECKING:
    from pathlib import Path

MODEL = "tiny"


def _adaptive(state_dir: Path | None = None) -> AdaptiveCut:
    return AdaptiveCut.start(ModelHalves.open(MODEL, threads=1), state_dir=state_dir)


def test_the_warm_up_gives_every_candidate_a_head_time() -> None:
    adaptive = _adaptive()
    heads = adaptive.planner.export()
    assert list(heads) == ["input", "pool", "output"]
    assert heads["input"] == [0.0]  # cloud-only runs nothing here
    assert 0 < heads["pool"][-1] <= heads["output"][-1]


def test_head_times_are_kept_for_the_next_start(tmp_path: Path) -> None:
    first = _adaptive(tmp_path)
    first.save()
    (saved,) = tmp_path.glob("planner-*.json")
    state = json.loads(saved.read_text())
    assert state["model_sha256"] == ModelHalves.open(MODEL).model_sha256
    state["heads"]["output"] = [1234.0, 1234.0]  # as if this device had been slow last time
    saved.write_text(json.dumps(state))
    restored = _adaptive(tmp_path).planner.export()["output"]
    assert restored[:2] == [1234.0, 1234.0]  # then the warm-up's own
    assert len(restored) == 5


@pytest.mark.parametrize("content", ["{ not json", '{"format": 1, "heads": {"output": ["slow"]}}', "[]"])
def test_an_unreadable_state_file_is_ignored_with_a_warning(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    _adaptive(tmp_path).save()
    (saved,) = tmp_path.glob("planner-*.json")
    saved.write_text(content)
    with caplog.at_level(logging.WARNING, logger="edgecut.agent"):
        adaptive = _adaptive(tmp_path)
    assert set(adaptive.planner.export()) == {"input", "pool", "output"}  # the warm-up still ran
    if content != '{"format": 1, "heads": {"output": ["slow"]}}':
        assert "ignored the planner state" in caplog.text


def test_a_request_refreshes_the_heads_of_every_cut_its_head_passed() -> None:
    adaptive = _adaptive()
    result = InferenceResult(outputs={}, cut_id=EDGE_ONLY, timings=Timings(edge_ms=50.0, total_ms=51.0))
    adaptive.learn(result, [7.0, 43.0], now_s=100.0)
    heads = adaptive.planner.export()
    assert heads["pool"][-1] == 7.0
    assert heads["output"][-1] == 50.0


def test_only_online_hub_statuses_teach_the_planner() -> None:
    adaptive = _adaptive()
    planner = adaptive.planner
    planner.observe_probe(0, 5.0, 0.0)
    planner.observe_probe(100_000, 85.0, 0.0)  # 10 Mbit/s
    planner.observe(Observation(cut_id="input", bytes_sent=3_200, edge_ms=0.0, network_ms=6.0, hub_compute_ms=2.0), 0.0)
    before = planner.predict_ms("input", 0.0)
    sha = ModelHalves.open(MODEL, threads=1).model_sha256
    for status in (
        NodeStatus("h", "hub", "offline", 0.0, queue_wait_ms=900.0),
        NodeStatus("a", "agent", "online", 0.0, queue_wait_ms=900.0),
    ):
        adaptive.on_hub_status(status, 0.0)
    assert planner.predict_ms("input", 0.0) == before
    for _ in range(2):
        adaptive.on_hub_status(NodeStatus("h", "hub", "online", 0.0, queue_wait_ms=900.0, tail_ms={sha: {}}), 0.0)
    assert planner.predict_ms("input", 0.0) == pytest.approx(before + 900.0)  # the median of 0, 900 and 900


def test_candidates_start_from_what_their_tensors_take_under_the_codec() -> None:
    halves = ModelHalves.open(MODEL, threads=1)
    raw = {c.id: c.bytes for c in AdaptiveCut.start(halves).planner.candidates}
    int8 = {c.id: c.bytes for c in AdaptiveCut.start(halves, codecs=("int8+zstd",)).planner.candidates}
    assert int8["input"] == raw["input"]  # the image is uint8: int8 leaves it as it is
    inner = [cut for cut in raw if cut not in {"input", "output"}]
    assert inner
    for cut in inner:  # float activations: a byte per value before compression
        assert int8[cut] == raw[cut] // 4


def test_an_allow_list_makes_a_candidate_of_each_codec_that_changes_what_a_cut_sends() -> None:
    halves = ModelHalves.open(MODEL, threads=1)
    planner = AdaptiveCut.start(halves, codecs=("raw", "fp16", "jpeg")).planner
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

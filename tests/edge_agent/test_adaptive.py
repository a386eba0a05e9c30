"""cut="auto" without a broker: the candidates, the warm-up and head times kept across restarts."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from edge_agent import EDGE_ONLY, AgentCore, EdgeAgent, InferenceResult, ModelHalves, Planner, Timings
from edge_agent._adaptive import SMALL_MODEL_BYTES, HeadTimes, auto_core, keeps_fused
from models import ChainPart, Session

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    import onnxruntime as ort

MODEL = "tiny"


def _core(state_dir: Path | None = None, halves: ModelHalves | None = None, **options: Any) -> AgentCore:  # noqa: ANN401
    halves = halves or ModelHalves.open(MODEL, threads=1)
    return auto_core(halves, 0.0, saved=None if state_dir is None else _saved(state_dir, halves), **options)


def _saved(state_dir: Path, halves: ModelHalves) -> HeadTimes:
    return HeadTimes(state_dir, halves.model_sha256, halves.input_shapes)


def _save(state_dir: Path, *, edge_only_fused: bool = False) -> Path:
    """A state file as an agent's first run leaves it; its path."""
    halves = ModelHalves.open(MODEL, threads=1)
    saved = _saved(state_dir, halves)
    saved.save(_core(), edge_only_fused=edge_only_fused)
    return saved.path


def _planner(core: AgentCore) -> Planner:
    assert core.planner is not None
    return core.planner


def test_the_warm_up_gives_every_candidate_a_head_time() -> None:
    heads = _core().head_times()
    assert list(heads) == ["input", "pool", "output"]
    assert heads["input"] == [0.0]  # cloud-only runs nothing here
    assert heads["pool"][-1] > 0
    assert heads["output"][-1] > 0  # the chain's, or a fused session's where that runs faster (below)


class _BoundaryCost(Session):
    """A session whose runs take ``delay_s`` longer: a segment of the chain, or with ``fused`` the whole model."""

    def __init__(self, model: bytes, threads: int | None, *, delay_s: float, fused: bool) -> None:
        super().__init__(model, threads=threads)
        whole = [spec.name for spec in self.inputs] == ["image"] and [spec.name for spec in self.outputs] == ["logits"]
        self._delay_s = delay_s if whole == fused else 0.0
        self.runs = 0

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.runs += 1
        time.sleep(self._delay_s)
        return super().run(feeds)

    def run_values(self, feeds: Mapping[str, np.ndarray | ort.OrtValue]) -> dict[str, ort.OrtValue]:
        self.runs += 1
        time.sleep(self._delay_s)
        return super().run_values(feeds)


def _recording(made: list[_BoundaryCost], *, delay_s: float) -> Callable[[bytes, int | None], Session]:
    """A session factory that keeps every session it makes in ``made``, each segment ``delay_s`` slower."""

    def factory(model: bytes, threads: int | None) -> Session:
        made.append(_BoundaryCost(model, threads, delay_s=delay_s, fused=False))
        return made[-1]

    return factory


@pytest.mark.parametrize("fused_is_slow", [False, True])
def test_edge_only_runs_as_one_session_only_where_the_chain_costs_more(*, fused_is_slow: bool) -> None:
    delay_s = 0.05  # 50 ms: far beyond the tiny model's own fraction of a millisecond, and a busy host's hiccups

    def factory(model: bytes, threads: int | None) -> Session:
        return _BoundaryCost(model, threads, delay_s=delay_s, fused=fused_is_slow)

    halves = ModelHalves.open(MODEL, threads=1, session_factory=factory)
    heads = auto_core(halves, 0.0).head_times()
    fused = halves.loaded(EDGE_ONLY, fused=True)
    if fused_is_slow:  # every chain segment fast, the whole model in one session slow: let go
        assert fused is None
        assert heads["output"][-1] > heads["pool"][-1]  # the chain's time, through pool
    else:  # each of the chain's two segments slow: edge-only runs fused, and is timed so
        assert fused is not None
        assert not isinstance(fused.head, ChainPart)
        assert heads["output"][-1] < heads["pool"][-1]  # one slow segment takes longer than the fused whole


@pytest.mark.parametrize(
    ("chained_ms", "whole_ms", "model_bytes", "kept"),
    [
        ([104, 130, 150], [100, 101, 140], SMALL_MODEL_BYTES + 1, False),  # large: 4% not worth a second copy
        ([106, 130, 150], [100, 101, 140], SMALL_MODEL_BYTES + 1, True),
        ([106, 130, 150], [100, 101, 140], None, True),  # of unknown size: as a large one
        ([100, 100, 100], [100, 100, 100], None, False),
        ([100, 100, 100], [100, 100, 100], SMALL_MODEL_BYTES, True),  # small: a copy is cheap, kept where no cost seen
        ([190, 300, 280], [200, 290, 270], 57_000, True),  # ... and where runs spread more than the chain costs
        ([0.3, 0.4, 0.3], [10.3, 10.4, 10.2], 57_000, False),  # ... not where every fused run was slower
    ],
)
def test_a_fused_session_is_kept_where_the_chain_costs_or_a_copy_of_the_model_is_cheap(
    chained_ms: list[float], whole_ms: list[float], model_bytes: int | None, *, kept: bool
) -> None:
    assert keeps_fused(chained_ms, whole_ms, model_bytes) is kept


def test_a_full_model_knows_its_size() -> None:
    halves = ModelHalves.open(MODEL, threads=1)
    assert halves.model_bytes is not None
    assert 0 < halves.model_bytes < SMALL_MODEL_BYTES


def test_head_times_kept_from_the_last_run_stand_in_for_the_warm_up(tmp_path: Path) -> None:
    path = _save(tmp_path)
    state = json.loads(path.read_text())
    assert state["model_sha256"] == ModelHalves.open(MODEL).model_sha256
    assert state["input_shapes"] == {"image": [1, 32, 32, 3]}
    state["heads"]["output"] = [1234.0, 1234.0]  # as if this device had been slow last time
    path.write_text(json.dumps(state))
    made: list[_BoundaryCost] = []
    core = _core(tmp_path, ModelHalves.open(MODEL, threads=1, session_factory=_recording(made, delay_s=0.0)))
    assert core.head_times()["output"] == [1234.0, 1234.0]  # no warm-up run added its own
    assert [session.runs for session in made] == [1, 1]  # the chain's two segments, once: sizing what crosses


def test_a_restart_runs_the_fused_session_it_kept_once_before_the_first_request(tmp_path: Path) -> None:
    saved = json.loads(_save(tmp_path, edge_only_fused=True).read_text())["heads"]
    made: list[_BoundaryCost] = []
    halves = ModelHalves.open(MODEL, threads=1, session_factory=_recording(made, delay_s=0.0))
    assert _core(tmp_path, halves).head_times() == saved
    fused = halves.loaded(EDGE_ONLY, fused=True)
    assert fused is not None
    assert [session.runs for session in made] == [1, 1, 1]  # the chain's segments and the fused session, once each
    assert made[-1] is fused.head


@pytest.mark.parametrize(
    ("change", "restored"),
    [
        ({"edge_only_fused": None}, 2),  # saved by a version that kept no verdict: restored, then warmed up
        ({"input_shapes": {"image": [1, 64, 64, 3]}}, 0),  # saved at other sizes: not restored, warmed up
    ],
)
def test_head_times_the_restart_cannot_rely_on_alone_get_a_warm_up(
    tmp_path: Path, change: dict[str, Any], restored: int
) -> None:
    path = _save(tmp_path)
    state = json.loads(path.read_text())
    state["heads"]["output"] = [1234.0, 1234.0]
    path.write_text(json.dumps({key: value for key, value in (state | change).items() if value is not None}))
    heads = _core(tmp_path).head_times()["output"]
    assert heads[:restored] == [1234.0] * restored
    assert len(heads) == restored + 3  # the warm-up's own


def test_a_candidate_the_last_run_did_not_have_gets_a_warm_up(tmp_path: Path) -> None:
    saved = json.loads(_save(tmp_path).read_text())["heads"]  # raw only
    heads = _core(tmp_path, codecs=("raw", "int8")).head_times()
    assert "pool@int8" not in saved
    assert len(heads["pool@int8"]) == 3  # the warm-up measured the new codec's cut
    assert len(heads["output"]) > len(saved["output"])  # and the others, after their saved times


@pytest.mark.parametrize("content", ["{ not json", '{"format": 1, "heads": {"output": ["slow"]}}', "[]"])
def test_an_unreadable_state_file_is_ignored_with_a_warning(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    _save(tmp_path).write_text(content)
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


@pytest.mark.broker
async def test_an_auto_agent_runs_edge_only_on_the_fused_session_it_kept(broker_url: str, prefix: str) -> None:
    made: list[_BoundaryCost] = []
    factory = _recording(made, delay_s=0.01)
    image = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    async with EdgeAgent(broker_url, model=MODEL, cut="auto", prefix=prefix, session_factory=factory) as agent:
        fused = agent.model.loaded(EDGE_ONLY, fused=True)
        assert fused is not None
        before = [session.runs for session in made]
        result = await agent.infer(image, cut=EDGE_ONLY)
    assert result.cut_id == EDGE_ONLY
    ran = [session for session, runs in zip(made, before, strict=True) if session.runs > runs]
    assert ran == [fused.head]  # the fused session, not the chain's segments

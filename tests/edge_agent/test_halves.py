"""ModelHalves from split directories: what a device may hold, halves that do not belong together, session factories."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import numpy as np
import pytest

from edge_agent import CLOUD_ONLY, EDGE_ONLY, EdgeAgent, ModelHalves
from models import ChainPart, Session, partition
from protocol.errors import ModelError

if TYPE_CHECKING:
    from pathlib import Path

MODEL = "tiny"
CUT = "stem.out"
OTHER_CUT = "block.out"


def _split_dir(directory: Path, cut: str = CUT) -> Path:
    model_id, model = partition.load_model(MODEL)
    partition.save_split(partition.split(model, cut, model_id=model_id), directory)
    return directory


def _image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)


def test_a_split_directory_offers_its_one_cut(tmp_path: Path) -> None:
    halves = ModelHalves.open(_split_dir(tmp_path), threads=1)
    assert halves.model_id == MODEL
    assert not halves.holds_full_model
    assert [cut.id for cut in halves.cuts] == [CUT]
    assert halves.candidates == ()  # one cut: nothing to choose between
    assert halves.spread_cuts() == [CUT]
    with pytest.raises(ModelError, match="split at one cut only"):
        halves.chain()
    assert halves.inputs[0].name == "image"
    with pytest.raises(ModelError, match=rf"{MODEL} has no cut '{CLOUD_ONLY}' here \(some that exist: {CUT}\)"):
        halves.halves(CLOUD_ONLY)


def test_split_directory_halves_reproduce_the_full_model(tmp_path: Path) -> None:
    halves = ModelHalves.open(_split_dir(tmp_path), threads=1).halves(CUT)
    full = ModelHalves.open(MODEL, threads=1)
    assert full.holds_full_model
    reference = full.halves(EDGE_ONLY).head
    assert halves.head is not None
    assert halves.tail is not None
    assert reference is not None
    image = _image()
    crossing = halves.head.run({"image": image})
    logits = halves.tail.run({spec.name: crossing[spec.name] for spec in halves.manifest.crossing})["logits"]
    np.testing.assert_allclose(logits, reference.run({"image": image})["logits"], atol=1e-4, rtol=0)


def test_a_head_only_device_has_no_tail(tmp_path: Path) -> None:
    directory = _split_dir(tmp_path)
    (directory / "tail.onnx").unlink()
    halves = ModelHalves.open(directory, threads=1).halves(CUT)
    assert halves.head is not None
    assert halves.tail is None


def test_a_manifest_without_its_head_is_refused_at_open(tmp_path: Path) -> None:
    directory = _split_dir(tmp_path)
    (directory / "head.onnx").unlink()
    with pytest.raises(ModelError, match=f"has a manifest for cut '{CUT}' but no head.onnx"):
        ModelHalves.open(directory)


@pytest.mark.parametrize("half", ["head.onnx", "tail.onnx"])
def test_halves_from_another_split_are_refused(tmp_path: Path, half: str) -> None:
    directory = _split_dir(tmp_path / "mine")
    other = _split_dir(tmp_path / "other", OTHER_CUT)
    shutil.copyfile(other / half, directory / half)
    halves = ModelHalves.open(directory, threads=1)
    with pytest.raises(ModelError, match=rf"{half} does not match the sha256 in its manifest"):
        halves.halves(CUT)


def test_halves_that_are_not_files_count_as_missing(tmp_path: Path) -> None:
    directory = _split_dir(tmp_path)
    (directory / "tail.onnx").unlink()
    (directory / "tail.onnx").mkdir()
    assert ModelHalves.open(directory, threads=1).halves(CUT).tail is None
    (directory / "head.onnx").unlink()
    (directory / "head.onnx").mkdir()
    with pytest.raises(ModelError, match=r"but no head\.onnx"):
        ModelHalves.open(directory, threads=1)


def test_a_broken_manifest_is_a_model_error(tmp_path: Path) -> None:
    directory = _split_dir(tmp_path)
    (directory / "manifest.json").write_text("{ not json")
    with pytest.raises(ModelError):
        ModelHalves.open(directory)


def test_an_unknown_model_name_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="no-such-model"):
        ModelHalves.open("no-such-model")


class CountingFactory:
    """A session factory that keeps every session it made and the threads it was asked for."""

    def __init__(self) -> None:
        self.made: list[Session] = []
        self.threads: list[int | None] = []

    def __call__(self, model: bytes, threads: int | None) -> Session:
        session = Session(model, threads=threads)
        self.made.append(session)
        self.threads.append(threads)
        return session


def test_a_full_model_takes_every_session_from_the_factory() -> None:
    factory = CountingFactory()
    model = ModelHalves.open(MODEL, threads=1, session_factory=factory)
    assert [cut.id for cut in model.candidates] == [CLOUD_ONLY, "pool", EDGE_ONLY]
    assert factory.made == []  # nothing loads before a cut is used
    halves = model.halves(CUT)  # not a candidate: split at that cut
    assert factory.made == [halves.head, halves.tail]
    model.halves(CUT)  # loaded already: no new session
    edge_only = model.halves(EDGE_ONLY)  # a candidate: the chain loads, one session per segment
    assert isinstance(edge_only.head, ChainPart)
    assert edge_only.tail is None
    assert len(factory.made) == 2 + len(model.candidates) - 1
    model.halves("pool")  # the same chain: no new session
    assert len(factory.made) == 2 + len(model.candidates) - 1
    assert set(factory.threads) == {1}


def test_fused_halves_are_one_session_each_from_a_full_model_and_the_chain_from_segments(tmp_path: Path) -> None:
    model_id, model = partition.load_model(MODEL)
    reference = partition.run_model(model, {"image": _image()})["logits"]
    factory = CountingFactory()
    full = ModelHalves.open(MODEL, threads=1, session_factory=factory)
    fused = full.halves("pool", fused=True)  # a candidate, split at it: no chain loads
    assert factory.made == [fused.head, fused.tail]
    assert full.loaded("pool") is None
    assert full.loaded("pool", fused=True) is fused
    assert fused.head is not None
    assert fused.tail is not None
    np.testing.assert_allclose(fused.tail.run(fused.head.run({"image": _image()}))["logits"], reference, atol=1e-4)
    chained = full.halves("pool")
    assert isinstance(chained.head, ChainPart)
    full.release("pool", fused=True)
    assert full.loaded("pool", fused=True) is None
    assert full.loaded("pool") is chained
    partition.save_segments(partition.split_segments(model, ["pool"], model_id=model_id), tmp_path)
    segments = ModelHalves.open(tmp_path, threads=1)
    assert segments.halves("pool", fused=True) is segments.halves("pool")  # nothing to split anew: the chain


def test_a_segments_directory_switches_between_its_cuts_without_onnx_tools(tmp_path: Path) -> None:
    model_id, model = partition.load_model(MODEL)
    partition.save_segments(partition.split_segments(model, [CUT, "pool"], model_id=model_id), tmp_path)
    factory = CountingFactory()
    halves = ModelHalves.open(tmp_path, threads=1, session_factory=factory)
    assert [cut.id for cut in halves.candidates] == [CLOUD_ONLY, CUT, "pool", EDGE_ONLY]
    assert halves.cuts == halves.candidates
    assert not halves.holds_full_model  # no other cut can be split here
    image = _image()
    reference = partition.run_model(model, {"image": image})["logits"]
    for cut in (CLOUD_ONLY, CUT, "pool"):
        split = halves.halves(cut)
        assert split.tail is not None  # every tail is at hand for a fallback
        crossing = split.head.run({"image": image}) if split.head is not None else {"image": image}
        np.testing.assert_allclose(split.tail.run(crossing)["logits"], reference, atol=1e-4, rtol=0)
    assert len(factory.made) == 3  # one session per segment, whatever the cut


def test_a_split_directory_takes_its_head_and_tail_from_the_factory(tmp_path: Path) -> None:
    factory = CountingFactory()
    halves = ModelHalves.open(_split_dir(tmp_path), session_factory=factory).halves(CUT)
    assert factory.made == [halves.head, halves.tail]
    assert factory.threads == [None, None]


@pytest.mark.broker
async def test_the_agent_opens_its_model_with_the_factory(broker_url: str, prefix: str) -> None:
    factory = CountingFactory()
    async with EdgeAgent(broker_url, model=MODEL, cut=CUT, prefix=prefix, threads=1, session_factory=factory) as agent:
        halves = agent.model.loaded(CUT)
        assert halves is not None
        assert factory.made == [halves.head, halves.tail]
        result = await agent.infer(_image(), cut=EDGE_ONLY)
        assert isinstance(agent.model.halves(EDGE_ONLY).head, ChainPart)  # a candidate the caller asked for: the chain
    assert result.cut_id == EDGE_ONLY
    assert len(factory.made) == 2 + len(agent.model.candidates) - 1  # and the chain's segments


@pytest.mark.broker
async def test_a_fixed_candidate_cut_runs_on_one_session_per_half(broker_url: str, prefix: str) -> None:
    factory = CountingFactory()
    async with EdgeAgent(broker_url, model=MODEL, cut=EDGE_ONLY, prefix=prefix, session_factory=factory) as agent:
        result = await agent.infer(_image())
        fused = agent.model.loaded(EDGE_ONLY, fused=True)
        assert fused is not None
        assert factory.made == [fused.head]  # the whole model, no chain of segments
        assert agent.model.loaded(EDGE_ONLY) is None
    assert result.cut_id == EDGE_ONLY


def test_cuts_to_compare_run_from_the_device_to_the_hub_spread_over_the_model() -> None:
    halves = ModelHalves.open(MODEL, threads=1)
    single = [cut.id for cut in halves.cuts if cut.single_tensor and cut.id not in {EDGE_ONLY, CLOUD_ONLY}]
    assert len(single) >= 4  # enough for three between
    cuts = halves.spread_cuts()
    assert (cuts[0], cuts[-1], len(cuts)) == (EDGE_ONLY, CLOUD_ONLY, 5)
    assert [single.index(cut_id) for cut_id in cuts[1:-1]] == sorted({single.index(cut_id) for cut_id in cuts[1:-1]})
    assert halves.spread_cuts(between=len(single) * 2)[1:-1] == single  # no cut twice
    assert halves.spread_cuts(between=0) == [EDGE_ONLY, CLOUD_ONLY]

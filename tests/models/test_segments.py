"""Chains of segments: candidate cuts, splitting, the directory format, and running any stretch."""

from __future__ import annotations

import itertools
import json
from typing import TYPE_CHECKING

import numpy as np
import pytest

from models import SEGMENTS_FILE, Chain, SegmentsManifest, Session, partition
from protocol.errors import ModelError
from tests.models.test_partition_dags import random_dag

if TYPE_CHECKING:
    from pathlib import Path

    import onnx

TOLERANCE = 1e-4


def _chain(segments: partition.Segments) -> Chain:
    return Chain(segments.manifest, [Session(model.SerializeToString()) for model in segments.models])


def _every_stretch_matches(model: onnx.ModelProto, segments: partition.Segments, batch: int = 1) -> None:
    """Head to each cut, then tail from it, gives the full model's outputs; heads give the cut's tensors."""
    chain = _chain(segments)
    feeds = partition.random_feeds(segments.manifest.inputs, batch=batch)
    expected = partition.run_model(model, feeds)
    for cut_id in segments.manifest.cut_ids:
        crossing, _ = chain.run(feeds, "input", cut_id)
        assert sorted(crossing) == sorted(
            spec.name for spec in segments.manifest.cuts[chain.manifest.index(cut_id)].crossing
        )
        outputs, timings = chain.run(crossing, cut_id, "output")
        assert len(timings) == len(segments.models) - chain.manifest.index(cut_id)
        assert partition.max_abs_diff(expected, outputs) <= TOLERANCE, cut_id


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "googlenet"])
def test_the_candidates_of_the_zoo_models_chain_back_to_the_full_model(name: str) -> None:
    model_id, model = partition.load_model(name)
    cuts = partition.enumerate_cuts(model)
    candidates = partition.candidate_cuts(cuts)
    assert (candidates[0].id, candidates[-1].id) == ("input", "output")
    assert 3 <= len(candidates) <= 8  # a handful, not dozens
    inner = [cut.bytes for cut in candidates[1:-1]]
    assert inner == sorted(inner, reverse=True)
    assert all(size < cuts[0].bytes for size in inner)
    _every_stretch_matches(model, partition.split_segments(model, candidates, model_id=model_id))


@pytest.mark.parametrize(
    ("name", "gained"), [("vit_tiny", {"patches"}), ("resnet18", {"layer2.0.add", "layer3.0.add"})]
)
def test_int8_makes_float_cuts_smaller_than_the_image_candidates(name: str, gained: set[str]) -> None:
    cuts = partition.enumerate_cuts(partition.load_model(name)[1])
    raw = {cut.id for cut in partition.candidate_cuts(cuts)}
    with_int8 = {cut.id for cut in partition.candidate_cuts(cuts, ["raw", "int8"])}
    assert with_int8 - raw == gained  # a quarter of their float bytes: less than the uint8 image
    assert raw <= with_int8
    assert {cut.id for cut in partition.candidate_cuts(cuts, ["jpeg"])} == raw  # the image's JPEG size is not known


def test_every_cut_of_a_random_dag_can_be_in_one_chain() -> None:
    model = random_dag(np.random.default_rng(3), 30, window=4)
    cuts = _computing(partition.enumerate_cuts(model))
    assert any(not cut.single_tensor for cut in cuts)  # multi-tensor cuts, and tensors passing segments by
    segments = partition.split_segments(model, cuts, model_id="dag", check=True)
    assert segments.manifest.cut_ids == tuple(cut.id for cut in cuts)
    _every_stretch_matches(model, segments, batch=2)


def _computing(cuts: list[partition.Cut]) -> list[partition.Cut]:
    """The cuts each of which needs something computed after the one before (a dead node adds a cut that does not)."""
    kept = [cuts[0]]
    for cut in cuts[1:]:
        if not {spec.name for spec in cut.tensors} <= {spec.name for spec in kept[-1].tensors}:
            kept.append(cut)
    return kept


def test_a_cut_after_only_dead_nodes_cannot_follow_the_cut_before() -> None:
    model = random_dag(np.random.default_rng(3), 30, window=4)
    cuts = partition.enumerate_cuts(model)
    dead = next(
        (a, b)
        for a, b in itertools.pairwise(cuts)
        if {spec.name for spec in b.tensors} <= {spec.name for spec in a.tensors}
    )
    with pytest.raises(ModelError, match="nothing is computed between"):
        partition.split_segments(model, dead, model_id="dag")


def test_cuts_are_taken_in_model_order_with_the_extremes_added() -> None:
    model_id, model = partition.load_model("tiny")
    ids = [cut.id for cut in partition.enumerate_cuts(model)]
    segments = partition.split_segments(model, [ids[3], ids[1]], model_id=model_id)
    assert segments.manifest.cut_ids == ("input", ids[1], ids[3], "output")
    again = partition.split_segments(model, [ids[1], ids[3]], model_id=model_id)
    assert [m.SerializeToString() for m in again.models] == [m.SerializeToString() for m in segments.models]
    with pytest.raises(ModelError, match="unknown cut 'nope'"):
        partition.split_segments(model, ["nope"], model_id=model_id)


def test_segment_i_runs_from_cuts_i_to_cuts_i_plus_1_counted_from_0() -> None:
    """docs/protocol.md 8.1: segments[i] reads what crosses cuts[i] and computes what crosses cuts[i + 1]."""
    model_id, model = partition.load_model("tiny")
    ids = [cut.id for cut in partition.enumerate_cuts(model)]
    segments = partition.split_segments(model, [ids[1], ids[3]], model_id=model_id)
    cuts = segments.manifest.cuts
    assert (cuts[0].id, cuts[-1].id) == ("input", "output")
    for index, (segment, entry) in enumerate(zip(segments.models, segments.manifest.segments, strict=True)):
        given = {spec.name for spec in cuts[index].crossing}
        wanted = {spec.name for spec in cuts[index + 1].crossing}
        assert {value.name for value in segment.graph.input} <= given
        assert {value.name for value in segment.graph.output} == wanted - given
        assert entry.file == f"segment-{index + 1:02d}.onnx"


def test_a_segments_directory_round_trips_and_checks_its_files(tmp_path: Path) -> None:
    model_id, model = partition.load_model("tiny")
    ids = [cut.id for cut in partition.enumerate_cuts(model)]
    segments = partition.split_segments(model, [ids[2]], model_id=model_id)
    (tmp_path / "segment-09.onnx").write_bytes(b"stale")
    written = partition.save_segments(segments, tmp_path)
    assert sorted(path.name for path in written) == ["segment-01.onnx", "segment-02.onnx", SEGMENTS_FILE]
    assert not (tmp_path / "segment-09.onnx").exists()
    assert SegmentsManifest.load(tmp_path) == segments.manifest
    chain = Chain.load(tmp_path, Session)
    feeds = partition.random_feeds(segments.manifest.inputs)
    assert partition.max_abs_diff(partition.run_model(model, feeds), chain.part("input", "output").run(feeds)) == 0

    (tmp_path / "segment-02.onnx").write_bytes(b"tampered")
    with pytest.raises(ModelError, match="does not match the sha256"):
        Chain.load(tmp_path, Session)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format=9), "segments format 9 is not supported"),
        (lambda d: d["segments"][0].update(file="../escape.onnx"), "not a plain file name"),
        (lambda d: d["cuts"].pop(0), "run from 'input' to 'output'"),
        (lambda d: d["segments"].pop(), "need 2 segments"),
        (lambda d: d.pop("cuts"), "missing or malformed field 'cuts'"),
    ],
)
def test_a_bad_segments_manifest_is_refused_with_the_reason(tmp_path: Path, change: object, message: str) -> None:
    model_id, model = partition.load_model("tiny")
    ids = [cut.id for cut in partition.enumerate_cuts(model)]
    data = partition.split_segments(model, [ids[2]], model_id=model_id).manifest.to_json()
    change(data)  # type: ignore[operator]
    (tmp_path / SEGMENTS_FILE).write_text(json.dumps(data))
    with pytest.raises(ModelError, match=message):
        SegmentsManifest.load(tmp_path)


def test_a_chain_reports_its_cuts_and_refuses_others() -> None:
    model_id, model = partition.load_model("tiny")
    ids = [cut.id for cut in partition.enumerate_cuts(model)]
    chain = _chain(partition.split_segments(model, [ids[2]], model_id=model_id))
    manifest = chain.manifest.manifest(ids[2])
    assert (manifest.cut_id, manifest.head_sha256, manifest.tail_sha256) == (ids[2], None, None)
    part = chain.part(ids[2], "output")
    assert (part.inputs, part.outputs) == (manifest.crossing, manifest.outputs)
    with pytest.raises(ModelError, match=f"not at {ids[1]!r}"):
        chain.part(ids[1], "output")
    with pytest.raises(ValueError, match="comes before"):
        chain.run({}, "output", "input")

"""Cuts of every zoo model reproduce the full model (slow: real model sizes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from models import partition

if TYPE_CHECKING:
    import onnx

TOLERANCE = 1e-4
SAMPLE_EVERY = 3


@pytest.fixture(scope="module", params=["googlenet", "mobilenet_v2", "resnet18", "tiny"])
def zoo_model(request: pytest.FixtureRequest) -> tuple[str, onnx.ModelProto]:
    return partition.load_model(request.param)


@pytest.mark.slow
def test_cuts_of_every_zoo_model_reproduce_the_full_model(zoo_model: tuple[str, onnx.ModelProto]) -> None:
    # Every cut of tiny; of the big models every third one, the widest and edge-only (a split of resnet18 takes
    # about a second, and its 54 cuts were the suite's slowest test; the DAG tests cover every kind of cut).
    # ORT optimisations off: results are then bit-exact, and sessions are created faster.
    model_id, model = zoo_model
    cuts = partition.enumerate_cuts(model)
    if model_id != "tiny":
        widest = max(cuts, key=lambda cut: len(cut.tensors))
        cuts = list(dict.fromkeys([*cuts[::SAMPLE_EVERY], widest, cuts[-1]]))
    feeds = partition.random_feeds(cuts[0].tensors, seed=3)  # the input cut's tensors are the model's inputs
    full = partition.run_model(model, feeds, optimize=False)
    worst: dict[str, float] = {}
    for cut in cuts:
        split = partition.split(model, cut, model_id=model_id)
        worst[cut.id] = partition.max_abs_diff(full, partition.run_split(split, feeds, optimize=False))
    assert {cut_id: diff for cut_id, diff in worst.items() if diff > TOLERANCE} == {}


@pytest.mark.slow
def test_resnet18_has_many_single_tensor_cuts() -> None:
    _, model = partition.load_model("resnet18")
    cuts = partition.enumerate_cuts(model)
    assert sum(cut.single_tensor for cut in cuts) >= 20
    assert max(len(cut.tensors) for cut in cuts) == 2

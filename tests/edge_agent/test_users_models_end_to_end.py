"""Models as users bring them (dynamic sizes, data-dependent axes, several inputs) through a real broker and hub."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
import pytest

from edge_agent import EDGE_ONLY, EdgeAgent
from models import Session
from protocol.errors import ModelError
from tests.corpus import CORPUS, realistic_inputs

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from cloud_hub import Hub

    StartHub = Callable[..., Awaitable[Hub]]

pytestmark = pytest.mark.broker

SHAPES = {
    "detector": {"images": (1, 3, 96, 128)},
    "dynamic_classifier": {"input": (1, 3, 80, 112)},
    "recurrent": {"input": (1, 512)},
}
"""The sizes each model is counted at: a batch axis and fixed sizes may be left out."""


def _inputs(name: str) -> dict[str, np.ndarray]:
    if name == "recurrent":
        return realistic_inputs(name, samples=512)
    _, _, height, width = SHAPES[name][next(iter(SHAPES[name]))]
    return realistic_inputs(name, height=height, width=width)


@pytest.mark.parametrize("name", sorted(SHAPES))
async def test_every_auto_candidate_is_served_as_the_whole_model_answers(
    name: str, broker_url: str, prefix: str, start_hub: StartHub, tmp_path: Path
) -> None:
    path = tmp_path / f"{name}.onnx"
    onnx.save(CORPUS[name](), path)
    await start_hub(models_dir=tmp_path, use_zoo=False, max_batch=4)
    inputs = _inputs(name)
    expected = Session(path).run(inputs)
    async with EdgeAgent(
        broker_url, model=path, prefix=prefix, threads=1, fallback=False, input_shapes=SHAPES[name]
    ) as agent:
        candidates = [cut.id for cut in agent.model.candidates if cut.id != EDGE_ONLY]
        assert len(candidates) >= 3, candidates
        for cut in candidates:
            result = await agent.infer(inputs, cut=cut)
            assert result.hub_id is not None, cut
            for key, want in expected.items():
                np.testing.assert_allclose(result.outputs[key], want, atol=1e-5, err_msg=f"{name} at {cut}")
        chosen = await agent.infer(inputs)  # cut="auto", warmed up at the stated shapes
    assert chosen.fallback is None
    for key, want in expected.items():
        np.testing.assert_allclose(chosen.outputs[key], want, atol=1e-5)


async def test_a_dynamic_model_without_shapes_is_refused_naming_the_option(
    broker_url: str, prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "detector.onnx"
    onnx.save(CORPUS["detector"](), path)
    with pytest.raises(ModelError, match="--input-shape images=1x3xHEIGHTxWIDTH"):
        async with EdgeAgent(broker_url, model=path, prefix=prefix, threads=1):
            pass

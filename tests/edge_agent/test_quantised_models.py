"""A QDQ model through the runtime: exact at its int8 cuts, within a stated tolerance at float ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from edge_agent import EDGE_ONLY, EdgeAgent
from models.partition import enumerate_cuts, int8_cuts, load_model_file
from tests._support import quantised_tiny

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from cloud_hub import Hub

pytestmark = pytest.mark.broker

FLOAT_CUT_TOLERANCE = 0.01
"""docs/runtime.md: a float cut that splits one of ONNX Runtime's QDQ fusions runs that operator in float: up to 1%
of the largest logit."""


async def test_a_qdq_model_is_exact_at_int8_cuts_and_close_at_float_ones(
    tmp_path: Path, broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    path = quantised_tiny(tmp_path)
    model = load_model_file(path)
    cuts = enumerate_cuts(model)
    int8 = int8_cuts(model, cuts)
    floats = [cut.id for cut in cuts[1:-1] if cut.single_tensor and cut.id not in int8]
    await start_hub(models_dir=tmp_path, use_zoo=False)
    images = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    async with EdgeAgent(broker_url, model=str(path), prefix=prefix, threads=1, fallback=False) as agent:
        full = agent.model.halves(EDGE_ONLY).head.run({"image": images})["logits"]
        scale = float(np.abs(full).max())
        for cut_id in [*sorted(int8), *floats[::4]]:
            got = np.concatenate([(await agent.infer(image, cut=cut_id)).outputs["logits"] for image in images])
            error = float(np.abs(got - full).max()) / scale
            if cut_id in int8:
                assert error < 1e-6, cut_id  # int8 on the wire, every fusion whole on both sides
            else:
                assert error <= FLOAT_CUT_TOLERANCE, cut_id

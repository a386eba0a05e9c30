"""A model with an If whose branches read tensors from outside, served end to end at every cut."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
import pytest

from edge_agent import EDGE_ONLY, EdgeAgent
from tests.models.test_partition import if_outer_scope

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from cloud_hub import Hub

pytestmark = pytest.mark.broker


async def test_an_if_model_is_served_exactly_at_every_cut(
    tmp_path: Path, broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    path = tmp_path / "branchy.onnx"
    onnx.save(if_outer_scope(), path)
    await start_hub(models_dir=tmp_path, use_zoo=False)
    async with EdgeAgent(broker_url, model=str(path), cut="input", prefix=prefix, threads=1, fallback=False) as agent:
        full = agent.model.halves(EDGE_ONLY).head
        cuts = [cut.id for cut in agent.model.cuts if cut.id != EDGE_ONLY]
        assert len(cuts) >= 3
        for sign in (1.0, -1.0):  # both branches
            x = sign * np.arange(1, 5, dtype=np.float32)
            expected = full.run({"x": x[np.newaxis]})["y"]
            for cut in cuts:
                result = await agent.infer({"x": x}, cut=cut)
                assert result.hub_id is not None, cut
                np.testing.assert_allclose(result.outputs["y"], expected, atol=1e-6, err_msg=cut)

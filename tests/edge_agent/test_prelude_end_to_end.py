"""A float-input model behind a prelude, served through a real broker and hub: its input cut sends a JPEG."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
import pytest

from edge_agent import CLOUD_ONLY, EdgeAgent
from models import prelude
from tests._support import LOADS_IN_TIME
from tests.models._prelude_reference import convnet, reference, run

if TYPE_CHECKING:
    from pathlib import Path

    from tests._support import StartHub

pytestmark = pytest.mark.broker


async def test_a_float_model_behind_a_prelude_sends_a_jpeg_at_cloud_only(
    broker_url: str, prefix: str, start_hub: StartHub, tmp_path: Path
) -> None:
    steps = prelude.Preprocessing(image=(120, 160), layout="nchw", scale=1 / 255, fit="letterbox")
    path = tmp_path / "detector-u8.onnx"
    onnx.save(prelude.add_prelude(convnet(), steps).model, path)
    await start_hub(models_dir=tmp_path, use_zoo=False)
    rows, cols = np.mgrid[0:120, 0:160]
    photo = np.stack([rows * 2, cols, (rows + cols) // 2], axis=-1).astype(np.uint8)  # smooth, as photos are
    options = {"model": path, "cut": CLOUD_ONLY, "prefix": prefix, "threads": 1, "timeouts": LOADS_IN_TIME}
    async with (
        EdgeAgent(broker_url, codec="jpeg", **options) as agent,  # type: ignore[arg-type]
        EdgeAgent(broker_url, **options) as raw,  # type: ignore[arg-type]
    ):
        sent = await agent.infer(photo)
        exact = await raw.infer(photo)
    assert (sent.fallback, sent.hub_id, sent.codec) == (None, "hub0", "jpeg")
    assert sent.bytes_sent < exact.bytes_sent / 10  # a JPEG of the image, not its 57,600 bytes
    expected = run(convnet(), reference(photo[np.newaxis], steps))
    np.testing.assert_allclose(exact.outputs["y"], expected, atol=1e-4, rtol=0)
    assert np.abs(sent.outputs["y"] - expected).max() <= 0.01 * np.abs(expected).max()  # q90 of a smooth image

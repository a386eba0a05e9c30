"""A lossy codec through a real broker, judged on a trained model's labelled test set."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from edge_agent import EDGE_ONLY, EdgeAgent
from models import digits

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from cloud_hub import Hub

    StartHub = Callable[..., Awaitable[Hub]]

pytestmark = pytest.mark.broker

STATED_LOSS = 0.005  # docs/codecs.md: int8 at an intermediate cut costs at most 0.5 points of top-1


@pytest.mark.parametrize("codec", ["int8+zstd", "int8-channel+zstd"])
async def test_int8_with_zstd_keeps_the_trained_models_answers(
    broker_url: str, prefix: str, start_hub: StartHub, codec: str
) -> None:
    await start_hub()
    images, labels = digits.test_set()
    async with (
        EdgeAgent(broker_url, model="digits", cut="conv2.relu", prefix=prefix, threads=1, codec=codec) as agent,
        EdgeAgent(broker_url, model="digits", cut="conv2.relu", prefix=prefix, threads=1) as raw,
    ):
        fp32 = agent.model.halves(EDGE_ONLY).head.run({"image": images})["logits"].argmax(axis=1)
        results = [await agent.infer(image) for image in images]
        raw_bytes = (await raw.infer(images[0])).bytes_sent
    assert all(result.fallback is None and result.hub_id is not None for result in results)
    got = np.array([int(result.outputs["logits"].argmax()) for result in results])
    assert (got == labels).mean() >= (fp32 == labels).mean() - STATED_LOSS
    assert np.mean([result.bytes_sent for result in results]) < raw_bytes / 3

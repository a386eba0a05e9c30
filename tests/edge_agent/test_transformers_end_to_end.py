"""Transformers through a real broker: a ViT at several cuts, a BERT with int64 tokens of any length."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from edge_agent import CLOUD_ONLY, EDGE_ONLY, EdgeAgent

if TYPE_CHECKING:
    from tests._support import StartHub

pytestmark = pytest.mark.broker


def _cuts(agent: EdgeAgent) -> list[str]:
    inner = [cut.id for cut in agent.model.cuts if cut.id not in {CLOUD_ONLY, EDGE_ONLY}]
    single = [cut.id for cut in agent.model.cuts if cut.single_tensor and cut.id in inner]
    multi = [cut for cut in inner if cut not in single]
    return [CLOUD_ONLY, single[len(single) // 2], multi[len(multi) // 2], inner[-1]]


async def test_a_vit_is_served_exactly_at_several_cuts(broker_url: str, prefix: str, start_hub: StartHub) -> None:
    await start_hub()
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    async with EdgeAgent(
        broker_url, model="vit_tiny", cut=CLOUD_ONLY, prefix=prefix, threads=1, fallback=False
    ) as agent:
        expected = agent.model.halves(EDGE_ONLY).head.run({"image": image[np.newaxis]})["logits"]
        for cut in _cuts(agent):
            result = await agent.infer(image, cut=cut)
            assert result.hub_id is not None, cut
            np.testing.assert_allclose(result.outputs["logits"], expected, atol=1e-5, err_msg=cut)


async def test_a_bert_takes_token_ids_of_any_length(broker_url: str, prefix: str, start_hub: StartHub) -> None:
    await start_hub()
    async with EdgeAgent(
        broker_url, model="bert_tiny", cut=CLOUD_ONLY, prefix=prefix, threads=1, fallback=False
    ) as agent:
        full = agent.model.halves(EDGE_ONLY).head
        for length in (5, 40):
            tokens = np.random.default_rng(length).integers(0, 1000, length, dtype=np.int64)
            expected = full.run({"tokens": tokens[np.newaxis]})["logits"]
            for cut in _cuts(agent):
                result = await agent.infer(tokens, cut=cut)
                assert result.hub_id is not None, cut
                np.testing.assert_allclose(result.outputs["logits"], expected, atol=1e-5, err_msg=f"{cut} S={length}")
    async with EdgeAgent(broker_url, model="bert_tiny", prefix=prefix, threads=1) as auto:  # cut=auto, int8+zstd-free
        candidates = {cut.id for cut in auto.model.candidates}
        result = await auto.infer(np.arange(12, dtype=np.int64))
    # Counted at the 128 tokens its metadata states, the ids (1 KiB) send more than the pooled vector (256 B).
    assert candidates == {CLOUD_ONLY, "pool", "head.matmul", EDGE_ONLY}
    assert result.cut_id in candidates

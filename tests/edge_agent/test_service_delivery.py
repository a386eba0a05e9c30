"""The agent service with a fetched model: an empty cache filled from a hub, then offline on what it holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from cloud_hub import free_port
from edge_agent import EDGE_ONLY, ModelConfig, ServiceConfig
from edge_agent._service import OFFLINE_REASON
from models import SegmentsManifest, file_sha256_hex
from protocol.errors import ModelError
from tests._support import TINY, infer_json, output_logits, random_images, save_tiny_segments, tiny_logits, until
from tests.edge_agent.test_service import _get, _post, serving

if TYPE_CHECKING:
    from pathlib import Path

    from tests._support import StartHub

pytestmark = pytest.mark.broker

CUT = "pool"  # a candidate cut of the tiny model's segments


def _fetching(broker: str, prefix: str, state_dir: Path, **model: object) -> ServiceConfig:
    entry = ModelConfig(name=TINY, model=TINY, cut=CUT, threads=1, fetch=True, **model)  # type: ignore[arg-type]
    return ServiceConfig(
        models=(entry,), broker=broker, prefix=prefix, listen="127.0.0.1:0", state_dir=state_dir, agent_id="cam"
    )


async def test_a_service_with_an_empty_cache_fetches_its_model_and_serves_it_offline_later(
    broker_url: str, prefix: str, start_hub: StartHub, tmp_path: Path
) -> None:
    save_tiny_segments(tmp_path / "hub-models")
    hub = await start_hub(models_dir=tmp_path / "hub-models", use_zoo=False, hub_id="delivering-hub")
    image = random_images(1, seed=21)[0]
    state = tmp_path / "state"
    async with serving(_fetching(broker_url, prefix, state, timeout_s=60.0)) as service:  # the tail loads in time
        await until(lambda: service.agents[TINY].connected, "the agent to connect")
        status, answer = await _post(service, f"/v2/models/{TINY}/infer", infer_json(image))
        _, described = await _get(service, f"/v2/models/{TINY}")
    assert hub.delivery is not None
    assert hub.delivery.blocks_sent > 0
    (held,) = (state / "models" / TINY).iterdir()  # one version, checked file by file
    chain = SegmentsManifest.load(held)
    assert all(file_sha256_hex(held / segment.file) == segment.sha256 for segment in chain.segments)
    assert status == 200
    assert (answer["parameters"]["cut"], answer["parameters"]["hub"]) == (CUT, "delivering-hub")
    assert answer["model_version"] == described["versions"][0] == held.name
    np.testing.assert_allclose(output_logits(answer), tiny_logits(image), atol=1e-5, rtol=0)

    nowhere = f"mqtt://127.0.0.1:{free_port('127.0.0.1')}"  # a device restarted without its broker
    async with serving(_fetching(nowhere, prefix, state)) as offline:
        status, answer = await _post(offline, f"/v2/models/{TINY}/infer", infer_json(image))
    assert status == 200
    assert (answer["parameters"]["cut"], answer["parameters"]["reason"]) == (EDGE_ONLY, OFFLINE_REASON)
    assert answer["model_version"] == held.name
    np.testing.assert_allclose(output_logits(answer), tiny_logits(image), atol=1e-5, rtol=0)


async def test_a_fetched_model_neither_offered_nor_held_stops_the_service_with_a_model_error(
    broker_url: str, prefix: str, start_hub: StartHub, tmp_path: Path
) -> None:
    await start_hub(models_dir=tmp_path, use_zoo=False)  # offers nothing
    with pytest.raises(ModelError, match=TINY):
        async with serving(_fetching(broker_url, prefix, tmp_path / "state", version="0123456789ab")):
            pass

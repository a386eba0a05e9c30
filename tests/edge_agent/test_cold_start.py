"""A model's first use takes longer than a request's deadline: 'loading', and what an agent does with it."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from edge_agent import EDGE_ONLY, EdgeAgent, Timeouts
from protocol import Topics, decode_status
from tests._support import watching

if TYPE_CHECKING:
    from cloud_hub import Hub
    from cloud_hub._splitter import Outcome
    from tests._support import StartHub

pytestmark = pytest.mark.broker

MODEL = "resnet18"  # building, hashing and splitting it on first use takes the hub over a second
CUT = "layer3.1.out"
SHORT = Timeouts(request=3.0, retry=None, load=60.0)
SLOW_LOAD_S = 6.0
"""How much longer the hub's loads take here: longer than a deadline, on an idle machine or a busy one."""


def _slow_loads(hub: Hub) -> Hub:
    """Make every model the hub splits take SLOW_LOAD_S longer, as a model far larger than the zoo's would.

    The sleep is in the hub's loading thread, where the split waits for its child process: what a
    request sees is a load longer than its deadline, whatever the machine's load.
    """
    splitter = hub.store._splitter
    grow = splitter.grow

    def slow_grow(*args: Any, **kwargs: Any) -> Outcome:  # noqa: ANN401 - Splitter.grow's own
        time.sleep(SLOW_LOAD_S)
        return grow(*args, **kwargs)

    splitter.grow = slow_grow  # type: ignore[method-assign]
    return hub


async def test_without_fallback_the_agent_sends_new_requests_until_the_model_is_loaded(
    broker_url: str, prefix: str, start_hub: StartHub, caplog: pytest.LogCaptureFixture
) -> None:
    _slow_loads(await start_hub())
    image = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    caplog.set_level(logging.INFO, logger="edgecut.agent")
    async with EdgeAgent(
        broker_url, model=MODEL, cut=CUT, prefix=prefix, threads=1, fallback=False, timeouts=SHORT
    ) as agent:
        expected = agent.model.halves(EDGE_ONLY).head.run({"image": image[np.newaxis]})["logits"]
        first = await agent.infer(image)
        again = await agent.infer(image)  # loaded now: answered at once
    assert first.hub_id is not None
    assert first.fallback is None
    np.testing.assert_allclose(first.outputs["logits"], expected, atol=1e-4)
    assert "is loading on this hub" in caplog.text
    assert again.hub_id is not None


async def test_with_fallback_the_device_answers_while_the_hub_loads(
    broker_url: str, prefix: str, start_hub: StartHub
) -> None:
    _slow_loads(await start_hub())
    image = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    async with EdgeAgent(broker_url, model=MODEL, cut=CUT, prefix=prefix, threads=1, timeouts=SHORT) as agent:
        result = await agent.infer(image)
    assert result.fallback is not None
    assert "loading" in result.fallback


async def test_the_hub_status_shows_what_it_is_loading(broker_url: str, prefix: str, start_hub: StartHub) -> None:
    hub = _slow_loads(await start_hub(status_interval=0.2))
    image = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    async with (
        watching(broker_url, Topics(prefix).status(hub.config.hub_id)) as watcher,
        EdgeAgent(broker_url, model=MODEL, cut=CUT, prefix=prefix, threads=1, timeouts=SHORT) as agent,
    ):
        await agent.infer(image)  # the device answers while the hub loads
        seen = []
        for _ in range(50):
            status = decode_status((await watcher.next()).payload)
            seen.append(status.loading_s)
            if status.loading_s:
                break
    loading = next(entry for entry in seen if entry)
    assert agent.model.model_sha256 in loading
    assert CUT in loading[agent.model.model_sha256]

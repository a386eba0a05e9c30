"""cut="auto" end to end: a real hub, a real broker, an emulated link that changes under the agent.

The agent runs resnet18 as a device ten times slower than this host
(stretched sessions) behind an emulated link. On a fast link, sending the
image wins by a wide margin, even where the hub shares a busy machine (a
device only four times slower lost to it under `make test-stress`); on a slow
one, running everything on the device does, also by a wide margin: with a
20 ms delay, sending `pool`'s 2 KB after nearly the whole model cost only
~10% more than running the rest on the device, within what a busy host's
device times spread, and `make test-stress` saw the planner settle on
`pool`. The test asserts which cut the planner uses, never how long
anything took.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np
import pytest

from edge_agent import CLOUD_ONLY, EDGE_ONLY, EdgeAgent, InferenceResult
from simulations import LinkProxy, fixed_link, stretched_sessions

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from cloud_hub import Hub

pytestmark = pytest.mark.broker

MODEL = "resnet18"
DEVICE_FACTOR = 10.0
FAST = fixed_link(rate_bit_s=200e6, delay_s=0.001)
SLOW = fixed_link(rate_bit_s=2e6, delay_s=0.1)


async def test_auto_moves_to_the_device_when_the_link_slows_and_back_when_it_recovers(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    await start_hub(preload=(f"{MODEL}:{CLOUD_ONLY}",), status_interval=0.5)
    upstream = urlsplit(broker_url)
    image = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    async with LinkProxy(FAST, upstream=(upstream.hostname or "", upstream.port or 0)) as proxy:
        url = broker_url.replace(f":{upstream.port}", f":{proxy.port}")
        agent = EdgeAgent(url, model=MODEL, prefix=prefix, threads=1, session_factory=stretched_sessions(DEVICE_FACTOR))
        async with agent:
            results = [await agent.infer(image) for _ in range(20)]
            assert _settled(results)[-8:] == [CLOUD_ONLY] * 8, _why(results)

            proxy.set_spec(SLOW)
            slow = [await agent.infer(image) for _ in range(12)]
            assert EDGE_ONLY in [r.cut_id for r in slow[:5]], _why(slow)  # two surprising requests show the change
            assert _settled(slow)[-5:] == [EDGE_ONLY] * 5, _why(slow)

            proxy.set_spec(FAST)  # nothing the agent sends shows it: its probes must
            recovered = [await agent.infer(image) for _ in range(60)]
            assert CLOUD_ONLY in [r.cut_id for r in recovered[:40]], _why(recovered)
            assert _settled(recovered)[-8:] == [CLOUD_ONLY] * 8, _why(recovered)


def _settled(results: list[InferenceResult]) -> list[str]:
    """The cuts the planner chose as best, leaving out the requests it spent exploring or re-checking a cut."""
    return [r.cut_id for r in results if not r.reason.startswith(("exploring", "re-checking"))]


def _why(results: list[InferenceResult]) -> list[tuple[str, str, float, float]]:
    """On failure, what the planner thought: make test-stress has seen edge cuts chosen here (notes)."""
    return [(r.cut_id, r.reason, round(r.predicted_ms, 1), round(r.timings.total_ms, 1)) for r in results]

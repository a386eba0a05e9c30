"""The agent's metrics and health over real HTTP, with a real broker and hub: what it counts and estimates."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge_agent import EDGE_ONLY, EdgeAgent, RequestTimeoutError, Timeouts
from protocol.errors import ConfigError
from tests._support import TINY, TINY_TAIL, http_exchange, random_images, scrape

if TYPE_CHECKING:
    from protocol.http import Endpoint
    from tests._support import StartHub

pytestmark = pytest.mark.broker

HTTP = "127.0.0.1:0"
INNER_CUT = "stem.out"
RUNTIME_MD = Path(__file__).resolve().parents[2] / "docs" / "runtime.md"


def _address(endpoint: Endpoint | None) -> tuple[str, int]:
    assert endpoint is not None
    assert endpoint.address is not None
    return endpoint.address


def _labels(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


async def test_metrics_count_the_agents_requests_by_cut_codec_and_outcome(
    broker_url: str, prefix: str, start_hub: StartHub
) -> None:
    await start_hub(preload=(TINY_TAIL, f"{TINY}:{INNER_CUT}"))
    images = random_images(5, seed=3)
    async with EdgeAgent(broker_url, model=TINY, cut=INNER_CUT, prefix=prefix, threads=1, http=HTTP) as agent:
        for image in images[:3]:
            await agent.infer(image)
        for image in images[3:]:
            await agent.infer(image, cut=EDGE_ONLY)
        sent = [(await agent.infer(images[0])).bytes_sent]
        samples = await scrape(_address(agent.http))
    requests = "edgecut_agent_requests_total"
    assert samples[requests, _labels(model=TINY, cut=INNER_CUT, codec="raw", outcome="success")] == 4
    assert samples[requests, _labels(model=TINY, cut=EDGE_ONLY, codec="raw", outcome="success")] == 2
    duration = "edgecut_agent_request_duration_seconds_count"
    assert samples[duration, _labels(model=TINY, cut=INNER_CUT)] == 4
    assert samples["edgecut_agent_sent_bytes_total", _labels(model=TINY, cut=INNER_CUT, codec="raw")] == 4 * sent[0]
    assert samples["edgecut_agent_broker_connected", _labels()] == 1
    assert ("edgecut_agent_predicted_duration_seconds_count", _labels(model=TINY, cut=INNER_CUT)) not in samples


async def test_fallbacks_and_errors_are_outcomes_of_their_own(broker_url: str, prefix: str) -> None:
    image = random_images(1, seed=5)[0]
    no_hub = Timeouts(request=0.3, retry=None)
    async with EdgeAgent(
        broker_url, model=TINY, cut=INNER_CUT, prefix=prefix, threads=1, timeouts=no_hub, http=HTTP
    ) as agent:
        assert (await agent.infer(image)).fallback is not None
    async with EdgeAgent(
        broker_url, model=TINY, cut=INNER_CUT, prefix=prefix, threads=1, timeouts=no_hub, fallback=False, http=HTTP
    ) as strict:
        with pytest.raises(RequestTimeoutError):
            await strict.infer(image)
        failed = await scrape(_address(strict.http))
    assert (
        failed[
            "edgecut_agent_requests_total",
            _labels(model=TINY, cut=INNER_CUT, codec="raw", outcome="RequestTimeoutError"),
        ]
        == 1
    )


async def test_an_auto_agent_reports_its_link_estimates_and_predictions(
    broker_url: str, prefix: str, start_hub: StartHub
) -> None:
    await start_hub()
    async with EdgeAgent(
        broker_url, model=TINY, prefix=prefix, threads=1, timeouts=Timeouts(load=60), http=HTTP
    ) as agent:
        results = [await agent.infer(image) for image in random_images(3, seed=6)]
        samples = await scrape(_address(agent.http))
    assert samples["edgecut_agent_link_rtt_seconds", _labels(model=TINY)] > 0
    predicted = [
        value for (name, _), value in samples.items() if name == "edgecut_agent_predicted_duration_seconds_count"
    ]
    assert sum(predicted) == sum(not math.isnan(result.predicted_ms) for result in results) > 0


async def test_health_says_ready_once_connected_and_open(broker_url: str, prefix: str) -> None:
    agent = EdgeAgent(broker_url, model=TINY, cut=INNER_CUT, prefix=prefix, threads=1, http=HTTP)
    async with agent:
        address = _address(agent.http)
        live = await http_exchange(address, b"GET /health/live HTTP/1.1\r\n\r\n")
        ready = await http_exchange(address, b"GET /health/ready HTTP/1.1\r\n\r\n")
    assert (live[0], ready[0]) == (200, 200)
    assert agent.http is not None
    assert not agent.http.listening.is_set()  # closed with the agent


def test_a_bad_http_address_is_a_config_error(broker_url: str) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        EdgeAgent(broker_url, model=TINY, http="nowhere")


async def test_the_docs_list_every_agent_metric_with_its_labels(broker_url: str, prefix: str) -> None:
    async with EdgeAgent(broker_url, model=TINY, cut=INNER_CUT, prefix=prefix, threads=1, http=HTTP) as agent:
        _, _, body = await http_exchange(  # before any request: no labelled samples, so no _created families
            _address(agent.http), b"GET /metrics HTTP/1.1\r\n\r\n"
        )
    exposed = {
        family.name + ("_total" if family.type == "counter" else ""): family.type
        for family in text_string_to_metric_families(body.decode())
    }
    section = RUNTIME_MD.read_text(encoding="utf-8").split("### The agent's metrics", 1)[1].split("\n## ", 1)[0]
    documented = dict(re.findall(r"^\| `(edgecut_agent_[a-z_]+)` \| ([a-z]+) \|", section, flags=re.MULTILINE))
    assert documented == exposed

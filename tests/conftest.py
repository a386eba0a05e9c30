"""Shared fixtures: a real mosquitto broker, unique topic prefixes."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from cloud_hub import Hub, HubConfig, LocalBroker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator


def _broker_unavailable(reason: str) -> None:
    """Fail where a broker is required (CI sets EDGECUT_REQUIRE_BROKER=1), else skip."""
    if os.environ.get("EDGECUT_REQUIRE_BROKER") == "1":
        pytest.fail(f"a broker is required here: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def broker_url() -> Iterator[str]:
    """URL of a real broker: EDGECUT_TEST_BROKER=host:port, else a mosquitto we start."""
    external = os.environ.get("EDGECUT_TEST_BROKER")
    if external:
        yield f"mqtt://{external}"
        return
    if shutil.which("mosquitto") is None:
        _broker_unavailable("mosquitto is not installed (apt-get install mosquitto)")
    with LocalBroker(kind="mosquitto") as broker:
        yield broker.url


@pytest.fixture
def own_broker() -> Iterator[LocalBroker]:
    """A mosquitto of this test's own, which the test may stop and restart."""
    if shutil.which("mosquitto") is None:
        _broker_unavailable("mosquitto is not installed (apt-get install mosquitto)")
    with LocalBroker(kind="mosquitto") as broker:
        yield broker


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A topic prefix no other test uses, so parallel runs never cross-talk."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)[:40]
    return f"test/{uuid.uuid4().hex[:8]}/{name}"


@pytest.fixture
async def start_hub(broker_url: str, prefix: str) -> AsyncIterator[Callable[..., Awaitable[Hub]]]:
    """Start in-process hubs on the test's broker and prefix; stopped at teardown."""
    running: list[tuple[Hub, asyncio.Task[None]]] = []

    async def start(**overrides: Any) -> Hub:  # noqa: ANN401 - HubConfig's fields
        options: dict[str, Any] = {"broker": broker_url, "prefix": prefix, "threads": 1, "hub_id": f"hub{len(running)}"}
        hub = Hub(HubConfig(**(options | overrides)))
        task = asyncio.create_task(hub.serve())
        ready = asyncio.create_task(hub.ready.wait())
        await asyncio.wait([task, ready], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            ready.cancel()
            task.result()  # raises the start-up error
        running.append((hub, task))
        return hub

    yield start
    for hub, _ in running:
        hub.request_shutdown()
    await asyncio.gather(*(task for _, task in running), return_exceptions=True)

"""Shared fixtures: a real broker, unique topic prefixes.

The broker is mosquitto when it is installed, else the embedded broker that
ships with edgecut (QoS 1 on Linux, see docs/broker.md), so the suite runs on a machine
with only Python. ``EDGECUT_TEST_BROKER_KIND=mosquitto|iotcore`` insists on one
kind (CI insists on mosquitto); ``EDGECUT_TEST_BROKER=host:port`` uses a broker
that is already running.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import uuid
from typing import TYPE_CHECKING, Any, NoReturn, cast

import pytest

from cloud_hub import BrokerKind, Hub, HubConfig, LocalBroker
from protocol.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator


@pytest.fixture(autouse=True, scope="session")
def _agent_state_in_a_temporary_directory(tmp_path_factory: pytest.TempPathFactory) -> None:
    """``edgecut agent`` keeps head times under ``$EDGECUT_STATE_DIR``: a test run leaves none in the home directory."""
    os.environ["EDGECUT_STATE_DIR"] = str(tmp_path_factory.mktemp("agent-state"))


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """Collect cycles after every test, so that a socket, file or process it leaked fails that test.

    A leak warns (ResourceWarning, an error here) when the object is collected;
    without this, objects in reference cycles are collected at some later test
    or at exit, where pytest can only report them for the whole session. What
    survives is frozen (moved out of the collector's sight), so each collection
    walks only what the test itself made: a full one takes ~45 ms here.
    """
    yield
    gc.collect()
    gc.freeze()


def _broker_unavailable(reason: str) -> NoReturn:
    """Fail where a broker is required (CI sets EDGECUT_REQUIRE_BROKER=1), else skip."""
    if os.environ.get("EDGECUT_REQUIRE_BROKER") == "1":
        pytest.fail(f"a broker is required here: {reason}")
    pytest.skip(reason)


def _local_broker(port: int = 0) -> LocalBroker:
    kind = os.environ.get("EDGECUT_TEST_BROKER_KIND", "auto")
    if kind not in {"auto", "mosquitto", "iotcore"}:
        pytest.fail(f"EDGECUT_TEST_BROKER_KIND must be auto, mosquitto or iotcore, not {kind!r}")
    try:
        return LocalBroker(kind=cast("BrokerKind", kind), port=port)
    except ConfigError as exc:
        _broker_unavailable(str(exc))


@pytest.fixture(scope="session")
def broker_url() -> Iterator[str]:
    """URL of a real broker: EDGECUT_TEST_BROKER=host:port, else a local one we start."""
    external = os.environ.get("EDGECUT_TEST_BROKER")
    if external:
        yield f"mqtt://{external}"
        return
    with _local_broker() as broker:
        yield broker.url


@pytest.fixture
def own_broker() -> Iterator[LocalBroker]:
    """A local broker of this test's own, which the test may stop and restart."""
    with _local_broker() as broker:
        yield broker


@pytest.fixture
def broker_at() -> Callable[[int], LocalBroker]:
    """Makes a local broker of the tests' kind on a given port: one that appears after its clients started."""
    return _local_broker


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

"""The hub against a real broker: bad input, status, restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import numpy as np
import pytest

from cloud_hub import Hub, HubConfig, LocalBroker
from edge_agent import CLOUD_ONLY, EdgeAgent, Timeouts
from protocol import ErrorCode, Topics, decode_reply, decode_status, encode_request
from tests._support import Watcher, tiny_request, watching

if TYPE_CHECKING:
    from protocol.mqtt import Incoming
    from tests._support import StartHub

pytestmark = pytest.mark.broker

IMAGE = np.zeros((32, 32, 3), dtype=np.uint8)


async def _ask(
    watcher: Watcher, topics: Topics, payload: bytes, correlation: bytes = b"req-1", seconds: float = 10
) -> Incoming:
    """Publish ``payload`` as agent ``raw``'s request and return the one message that comes back within ``seconds``."""
    await watcher.publish(topics.request("raw"), payload, correlation=correlation)
    return await watcher.next(seconds)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x00not msgpack", ErrorCode.BAD_REQUEST),
        (b"\x81\xa1v\x07", ErrorCode.UNSUPPORTED_VERSION),
    ],
)
async def test_undecodable_request_gets_an_error_reply_and_the_hub_lives_on(
    broker_url: str, prefix: str, start_hub: StartHub, payload: bytes, code: ErrorCode
) -> None:
    hub = await start_hub()
    topics = Topics(prefix)
    async with watching(broker_url, topics.response("raw")) as watcher:
        reply = decode_reply((await _ask(watcher, topics, payload, correlation=b"garbage-1")).payload)
        assert reply.error is not None
        assert (reply.request_id, reply.error.code, reply.hub_id) == ("garbage-1", code, hub.config.hub_id)
        good = decode_reply((await _ask(watcher, topics, encode_request(tiny_request()))).payload)
    assert good.ok
    assert good.outputs["logits"].shape == (1, 10)


@pytest.mark.parametrize(
    ("changes", "code", "fragment"),
    [
        ({"tensors": {"image": np.zeros((1, 16, 16, 3), np.uint8)}}, ErrorCode.TENSOR_MISMATCH, "16"),
        ({"tensors": {"image": np.zeros((1, 32, 32, 3), np.float32)}}, ErrorCode.TENSOR_MISMATCH, "float32"),
        ({"tensors": {"wrong": IMAGE[np.newaxis]}}, ErrorCode.TENSOR_MISMATCH, "wrong"),
        ({"cut_id": "no-such-cut"}, ErrorCode.UNKNOWN_CUT, "no-such-cut"),
        ({"model_id": "nope", "model_sha256": "0" * 64}, ErrorCode.UNKNOWN_MODEL, "nope"),
        ({"model_sha256": "0" * 64}, ErrorCode.UNKNOWN_MODEL, "its 'tiny' has sha256"),
        ({"tail_sha256": "f" * 64}, ErrorCode.MODEL_MISMATCH, "tail"),
    ],
)
async def test_requests_that_do_not_fit_the_model_are_refused_by_name(
    *, broker_url: str, prefix: str, start_hub: StartHub, changes: dict[str, object], code: ErrorCode, fragment: str
) -> None:
    await start_hub()
    topics = Topics(prefix)
    # An unknown model is looked up among every model the hub could serve: seconds on a busy machine.
    request = tiny_request(**({"deadline_ms": 60_000.0} | changes))
    async with watching(broker_url, topics.response("raw")) as watcher:
        reply = decode_reply((await _ask(watcher, topics, encode_request(request), seconds=60)).payload)
    assert reply.error is not None
    assert reply.error.code == code
    assert fragment in reply.error.message


async def test_status_is_retained_online_then_offline(broker_url: str, prefix: str, start_hub: StartHub) -> None:
    hub = await start_hub(hub_id="status-hub")
    async with watching(broker_url, Topics(prefix).status("status-hub")) as watcher:
        online = decode_status((await watcher.next()).payload)
        assert (online.node_id, online.role, online.state) == ("status-hub", "hub", "online")
        hub.request_shutdown()
        offline = decode_status((await watcher.next()).payload)
    assert offline.state == "offline"


def _hub_process(broker_url: str, prefix: str, hub_id: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "edgecut", "hub", "--broker", broker_url, "--prefix", prefix]
    # Preloaded: the hub is online only once the tail is loaded, so the first request is served quickly.
    return subprocess.Popen([*command, "--hub-id", hub_id, "--threads", "1", "--preload", "tiny:input"])  # noqa: S603


async def _wait_online(url: str, topics: Topics, hub_id: str) -> None:
    async with watching(url, topics.status(hub_id)) as watcher:
        await watcher.status("online", 60)


@pytest.mark.slow
async def test_killed_hub_process_is_bridged_by_fallback_then_its_restart_serves(broker_url: str, prefix: str) -> None:
    topics = Topics(prefix)
    hub = _hub_process(broker_url, prefix, "proc-hub")
    try:
        await _wait_online(broker_url, topics, "proc-hub")
        timeouts = Timeouts(request=1.0)
        async with EdgeAgent(broker_url, model="tiny", cut=CLOUD_ONLY, prefix=prefix, timeouts=timeouts) as agent:
            assert (await agent.infer(IMAGE)).hub_id == "proc-hub"
            os.kill(hub.pid, signal.SIGKILL)
            hub.wait(10)
            during = await agent.infer(IMAGE)
            assert during.fallback is not None
            hub = _hub_process(broker_url, prefix, "proc-hub")
            await _wait_online(broker_url, topics, "proc-hub")
            after = await agent.infer(IMAGE)
        assert after.fallback is None
        assert after.hub_id == "proc-hub"
    finally:
        hub.kill()
        hub.wait(10)


async def test_broker_restart_agent_and_hub_reconnect(own_broker: LocalBroker, prefix: str) -> None:
    url = own_broker.url
    # Preloaded: the first request's 1 s deadline is for the restart, not for a cold load.
    hub = Hub(HubConfig(broker=url, prefix=prefix, threads=1, hub_id="restart-hub", preload=("tiny:input",)))
    hub_task = asyncio.create_task(hub.serve())
    await asyncio.wait_for(hub.ready.wait(), 30)
    timeouts = Timeouts(request=1.0)
    try:
        async with EdgeAgent(url, model="tiny", cut=CLOUD_ONLY, prefix=prefix, timeouts=timeouts) as agent:
            assert (await agent.infer(IMAGE)).fallback is None
            own_broker.kill()
            during = await agent.infer(IMAGE)
            assert during.fallback is not None
            own_broker.start()
            await agent._connection.wait_connected(15)
            for _ in range(50):  # the hub reconnects on its own backoff schedule
                after = await agent.infer(IMAGE)
                if after.fallback is None:
                    break
            assert after.fallback is None
            assert after.hub_id == "restart-hub"
            assert agent._connection.connects >= 2
    finally:
        hub.request_shutdown()
        await hub_task


async def test_no_request_is_lost_to_broker_restarts_under_load(own_broker: LocalBroker, prefix: str) -> None:
    """Fallback off: every request in flight across three broker restarts is answered by the hub (bench/soak.py
    --faults broker does twenty and more)."""
    url = own_broker.url
    hub = Hub(HubConfig(broker=url, prefix=prefix, threads=1, hub_id="restarted", preload=("tiny:input",)))
    hub_task = asyncio.create_task(hub.serve())
    await asyncio.wait_for(hub.ready.wait(), 30)
    timeouts = Timeouts(request=15.0, retry=2.0)
    images = [np.full((32, 32, 3), index, np.uint8) for index in range(4)]
    try:
        async with EdgeAgent(
            url, model="tiny", cut=CLOUD_ONLY, prefix=prefix, fallback=False, timeouts=timeouts
        ) as agent:

            async def keep_asking() -> list[str | None]:
                hubs = []
                for _ in range(10):
                    hubs.append((await agent.infer(images[len(hubs) % 4])).hub_id)
                    await asyncio.sleep(0.1)
                return hubs

            asking = [asyncio.create_task(keep_asking()) for _ in range(3)]
            for _ in range(3):
                await asyncio.sleep(0.5)
                await asyncio.to_thread(own_broker.stop)
                await asyncio.sleep(0.5)
                await asyncio.to_thread(own_broker.start)
            answered = [hub_id for task in asking for hub_id in await task]
    finally:
        hub.request_shutdown()
        await hub_task
    assert answered == ["restarted"] * 30  # none raised, none fell back: every one answered by the hub

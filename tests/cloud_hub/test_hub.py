"""The hub against a real mosquitto: bad input, status, restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Self

import numpy as np
import pytest

from cloud_hub import Hub, HubConfig, LocalBroker
from edge_agent import CLOUD_ONLY, EdgeAgent, Timeouts
from models import partition, sha256_hex
from protocol import ErrorCode, InferenceRequest, Topics, decode_reply, decode_status, encode_request
from protocol.mqtt import Connection, Incoming

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    StartHub = Callable[..., Awaitable[Hub]]

pytestmark = pytest.mark.broker

IMAGE = np.zeros((32, 32, 3), dtype=np.uint8)


class RawClient:
    """A bare MQTT client that publishes whatever the test gives it."""

    def __init__(self, url: str, topics: Topics, subscriptions: list[str]) -> None:
        self.topics = topics
        self.received: asyncio.Queue[Incoming] = asyncio.Queue()
        self.connection = Connection(
            url,
            client_id=f"raw-{id(self)}",
            subscriptions=[(t, 1) for t in subscriptions],
            on_message=self.received.put_nowait,
        )

    async def __aenter__(self) -> Self:
        await self.connection.__aenter__()
        await self.connection.wait_connected(10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.__aexit__(None, None, None)

    async def request(self, payload: bytes, correlation: bytes = b"req-1", agent: str = "raw") -> Incoming:
        await self.connection.publish(
            self.topics.request(agent),
            payload,
            qos=1,
            response_topic=self.topics.response(agent),
            correlation=correlation,
            timeout=5,
        )
        return await asyncio.wait_for(self.received.get(), 10)


def _tiny_request(**changes: object) -> InferenceRequest:
    _, model = partition.load_model("tiny")
    fields: dict[str, object] = {
        "request_id": "req-1",
        "agent_id": "raw",
        "model_id": "tiny",
        "model_sha256": sha256_hex(model.SerializeToString()),
        "cut_id": CLOUD_ONLY,
        "tensors": {"image": IMAGE[np.newaxis]},
        "sent_at": time.time(),
        "deadline_ms": 5000.0,
    }
    return InferenceRequest(**(fields | changes))  # type: ignore[arg-type]


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
    async with RawClient(broker_url, topics, [topics.response("raw")]) as client:
        reply = decode_reply((await client.request(payload, correlation=b"garbage-1")).payload)
        assert reply.error is not None
        assert (reply.request_id, reply.error.code, reply.hub_id) == ("garbage-1", code, hub.config.hub_id)
        good = decode_reply((await client.request(encode_request(_tiny_request()))).payload)
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
        ({"tail_sha256": "f" * 64}, ErrorCode.MODEL_MISMATCH, "tail"),
    ],
)
async def test_requests_that_do_not_fit_the_model_are_refused_by_name(
    *, broker_url: str, prefix: str, start_hub: StartHub, changes: dict[str, object], code: ErrorCode, fragment: str
) -> None:
    await start_hub()
    topics = Topics(prefix)
    async with RawClient(broker_url, topics, [topics.response("raw")]) as client:
        reply = decode_reply((await client.request(encode_request(_tiny_request(**changes)))).payload)
    assert reply.error is not None
    assert reply.error.code == code
    assert fragment in reply.error.message


async def test_status_is_retained_online_then_offline(broker_url: str, prefix: str, start_hub: StartHub) -> None:
    hub = await start_hub(hub_id="status-hub")
    topics = Topics(prefix)
    async with RawClient(broker_url, topics, [topics.status("status-hub")]) as watcher:
        online = decode_status((await asyncio.wait_for(watcher.received.get(), 10)).payload)
        assert (online.node_id, online.role, online.state) == ("status-hub", "hub", "online")
        hub.request_shutdown()
        offline = decode_status((await asyncio.wait_for(watcher.received.get(), 10)).payload)
    assert offline.state == "offline"


def _hub_process(broker_url: str, prefix: str, hub_id: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "edgecut", "hub", "--broker", broker_url, "--prefix", prefix]
    return subprocess.Popen([*command, "--hub-id", hub_id, "--threads", "1"])  # noqa: S603 - our own CLI


async def _wait_online(url: str, topics: Topics, hub_id: str) -> None:
    async with RawClient(url, topics, [topics.status(hub_id)]) as watcher:
        while True:
            status = decode_status((await asyncio.wait_for(watcher.received.get(), 60)).payload)
            if status.state == "online":
                return


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
    hub = Hub(HubConfig(broker=url, prefix=prefix, threads=1, hub_id="restart-hub"))
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

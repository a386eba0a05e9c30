"""The outbox's bookkeeping on its own, with a stand-in for the connection it publishes on."""

from __future__ import annotations

import asyncio
import time

from edge_agent._outbox import Outbox
from protocol import NodeStatus
from protocol.errors import TransportError
from protocol.mqtt import Incoming
from tests._support import until


class _Gated:
    """Publishes when the test opens the gate: a publish the test can hold in flight."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.published: list[bytes] = []
        self.connects = 0

    async def connected(self, outbox: Outbox) -> None:
        """A (re)connect, as the connection reports it to its ``on_connect``."""
        self.connects += 1
        await outbox.on_connect()

    async def publish(self, _topic: str, payload: bytes, **_options: object) -> None:
        await self.gate.wait()
        self.published.append(payload)


async def test_a_reason_to_publish_again_during_a_publish_publishes_once_more() -> None:
    """A hub comes online while a publish is in flight: that publish may have reached nobody."""
    connection = _Gated()
    outbox = Outbox(connection, request_topic="r", ping_topic="p", response_topic="s", qos=1, retry_s=None)  # type: ignore[arg-type]
    waiting = asyncio.create_task(outbox.send_and_wait("id-1", b"request", time.perf_counter() + 30))
    await connection.connected(outbox)  # the first connect
    await until(lambda: "id-1" in outbox.pending, "the request to be pending")
    await connection.connected(outbox)  # a reconnect
    outbox.on_status(NodeStatus(node_id="hub", role="hub", state="online", sent_at=0.0))
    connection.gate.set()  # the first publish completes only now, after both reasons to publish again
    await until(lambda: len(connection.published) == 2, "the request to be published again")
    outbox.on_reply(Incoming(topic="s", payload=b"reply", qos=1, correlation=b"id-1"))
    assert await waiting == b"reply"
    assert outbox.publishes == 2


async def test_a_hub_status_after_the_first_connect_publishes_nothing_again() -> None:
    """Retained hub statuses can come in before the first connect's callback: they lost nothing of ours."""
    connection = _Gated()
    connection.gate.set()
    outbox = Outbox(connection, request_topic="r", ping_topic="p", response_topic="s", qos=1, retry_s=None)  # type: ignore[arg-type]
    online = NodeStatus(node_id="hub", role="hub", state="online", sent_at=0.0)
    outbox.on_status(online)  # retained, heard while still subscribing
    await connection.connected(outbox)
    waiting = asyncio.create_task(outbox.send_and_wait("id-1", b"request", time.perf_counter() + 30))
    await until(lambda: outbox.publishes == 1, "the request to be published")
    outbox.on_status(online)  # the hub's next status (a load report)
    await asyncio.sleep(0)
    outbox.on_reply(Incoming(topic="s", payload=b"reply", qos=1, correlation=b"id-1"))
    assert await waiting == b"reply"
    assert outbox.publishes == 1


class _LostAfterTheReply:
    """The hub's reply is read in the same pass as the socket's end: the publish in flight then fails."""

    connects = 1

    def __init__(self) -> None:
        self.outbox: Outbox | None = None
        self.publishes = 0

    async def publish(self, _topic: str, _payload: bytes, *, correlation: bytes, timeout: float, **_: object) -> None:  # noqa: ASYNC109 - the connection's own signature
        self.publishes += 1
        if self.publishes == 1:
            assert self.outbox is not None
            self.outbox.on_reply(Incoming(topic="s", payload=b"the reply", qos=1, correlation=correlation))
            msg = "the connection was lost before the broker confirmed the publish"
            raise TransportError(msg)
        await asyncio.sleep(timeout)  # the broker stays away
        msg = "no connection to the broker"
        raise TransportError(msg)


async def test_a_reply_that_came_while_a_failing_publish_was_in_flight_is_returned() -> None:
    connection = _LostAfterTheReply()
    outbox = Outbox(connection, request_topic="r", ping_topic="p", response_topic="s", qos=1, retry_s=None)  # type: ignore[arg-type]
    connection.outbox = outbox
    reply = await outbox.send_and_wait("id-1", b"request", time.perf_counter() + 5)
    assert (reply, connection.publishes) == (b"the reply", 1)

"""The supervised MQTT connection against a real mosquitto: limits, handlers, subscriptions, failures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from typing import TYPE_CHECKING

import pytest

from cloud_hub import LocalBroker, free_port
from protocol import PACKET_OVERHEAD_BYTES, ErrorCode
from protocol.errors import ProtocolError, TransportError
from protocol.mqtt import Backoff, Connection, Incoming, Will
from tests._support import until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.broker

FAST = Backoff(initial=0.01, maximum=0.05)
CONNACK_ACCEPTED = bytes([0x20, 3, 0, 0, 0])  # MQTT 5: no session present, success, no properties
MQTT_DISCONNECT = bytes([0xE0])


def _id(role: str) -> str:
    return f"{role}-{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def _connected(connection: Connection) -> AsyncIterator[Connection]:
    async with connection:
        await connection.wait_connected(10)
        yield connection


@contextlib.asynccontextmanager
async def _receiver(url: str, *topics: str) -> AsyncIterator[asyncio.Queue[Incoming]]:
    received: asyncio.Queue[Incoming] = asyncio.Queue()
    connection = Connection(
        url, client_id=_id("rx"), subscriptions=[(t, 1) for t in topics], on_message=received.put_nowait
    )
    async with _connected(connection):
        yield received


async def _next(received: asyncio.Queue[Incoming]) -> Incoming:
    return await asyncio.wait_for(received.get(), 10)


def test_backoff_grows_with_full_jitter_up_to_the_cap() -> None:
    backoff = Backoff(initial=0.1, maximum=1.0, factor=2.0)
    delays = backoff.delays()
    ceilings = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    for ceiling in ceilings:
        delay = next(delays)
        assert ceiling / 2 <= delay <= ceiling
    many = [next(delays) for _ in range(200)]
    assert max(many) <= 1.0
    assert min(many) >= 0.5
    assert len(set(many)) > 1  # jittered, not a fixed pause


async def test_a_connection_is_not_reentrant(broker_url: str) -> None:
    connection = Connection(broker_url, client_id=_id("once"))
    async with connection:
        with pytest.raises(RuntimeError, match="not re-entrant"):
            await connection.__aenter__()


async def test_oversized_publish_is_refused_before_it_reaches_the_broker(broker_url: str, prefix: str) -> None:
    connection = Connection(broker_url, client_id=_id("big"), max_message_bytes=1000)
    async with _receiver(broker_url, f"{prefix}/#") as received, _connected(connection):
        with pytest.raises(ProtocolError, match="1001 byte message exceeds the 1000 byte limit") as caught:
            await connection.publish(f"{prefix}/big", b"x" * 1001, qos=1, timeout=5)
        assert caught.value.code == ErrorCode.TOO_LARGE
        assert connection.is_connected  # refused here, so the broker did not drop us
        await connection.publish(f"{prefix}/fits", b"x" * 1000, qos=1, timeout=5)
        incoming = await _next(received)
    assert (incoming.topic, len(incoming.payload)) == (f"{prefix}/fits", 1000)


async def test_a_message_over_the_receivers_limit_is_never_delivered_to_it(
    own_broker: LocalBroker, prefix: str
) -> None:
    """The receiver tells the broker its limit (MQTT 5 Maximum Packet Size): a flood of huge messages stays there."""
    if own_broker.kind != "mosquitto":
        pytest.skip("rumqttd, the embedded broker, delivers past a client's Maximum Packet Size (docs/broker.md)")
    broker_url = own_broker.url
    received: asyncio.Queue[Incoming] = asyncio.Queue()
    small = Connection(
        broker_url,
        client_id=_id("small"),
        subscriptions=[(f"{prefix}/#", 1)],
        on_message=received.put_nowait,
        max_message_bytes=1000,
    )
    sender = Connection(broker_url, client_id=_id("big"))
    async with _connected(small), _connected(sender):
        await sender.publish(f"{prefix}/huge", b"x" * (1000 + PACKET_OVERHEAD_BYTES + 1), qos=1, timeout=5)
        await sender.publish(f"{prefix}/fits", b"x" * 1000, qos=1, timeout=5)
        assert (await _next(received)).topic == f"{prefix}/fits"  # the huge one, sent first, never came
        assert small.is_connected


async def test_publish_without_a_broker_is_a_transport_error_with_the_reason() -> None:
    connection = Connection(f"mqtt://127.0.0.1:{free_port()}", client_id=_id("lonely"), backoff=FAST)
    async with connection:
        with pytest.raises(TransportError, match=r"within 0\.3 s: .*Connection refused"):
            await connection.publish("t", b"x", qos=1, timeout=0.3)
        assert not connection.is_connected
        assert connection.connects == 0


async def test_an_attempt_closed_before_the_connack_fails_at_once_and_says_so() -> None:
    async def accept_and_close(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()  # as a proxy in front of a stopped broker does

    server = await asyncio.start_server(accept_and_close, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, Connection(f"mqtt://127.0.0.1:{port}", client_id=_id("proxied"), backoff=FAST) as connection:
        # Without the fix the first attempt waits out its 10 s connect timeout and there is no reason yet.
        with pytest.raises(TransportError, match="closed before the broker's CONNACK"):
            await connection.wait_connected(2)


async def test_properties_travel_with_the_message(broker_url: str, prefix: str) -> None:
    topic = f"{prefix}/props"
    async with _receiver(broker_url, topic) as received, _connected(Connection(broker_url, client_id=_id("tx"))) as tx:
        await tx.publish(topic, b"a", qos=1, response_topic=f"{prefix}/answer", timeout=5)
        await tx.publish(topic, b"b", qos=0, correlation=b"corr", expiry_s=0.2, timeout=5)
        await tx.publish(topic, b"c", qos=1, timeout=5)
        first, second, third = [await _next(received) for _ in range(3)]
    assert (first.payload, first.response_topic, first.correlation, first.qos) == (b"a", f"{prefix}/answer", None, 1)
    # No QoS check here: rumqttd (the embedded broker) delivers QoS 0 messages at the subscription's QoS 1.
    assert (second.payload, second.response_topic, second.correlation) == (b"b", None, b"corr")
    assert (third.response_topic, third.correlation) == (None, None)


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux's")
async def test_what_a_connection_reads_it_acknowledges_at_once(broker_url: str, prefix: str) -> None:
    """After each read the socket is in quick-ack mode, though sending the PUBACK had taken it out.

    A broker with Nagle's algorithm on (the embedded rumqttd) otherwise holds the rest of a message until the
    kernel's delayed acknowledgement, up to 40 ms (bench/broker_link.py measures it).
    """
    topic = f"{prefix}/acked"
    received: asyncio.Queue[Incoming] = asyncio.Queue()
    rx = Connection(broker_url, client_id=_id("rx"), subscriptions=[(topic, 1)], on_message=received.put_nowait)
    async with _connected(rx), _connected(Connection(broker_url, client_id=_id("tx"))) as tx:
        sock = rx._session.client._client.socket()  # type: ignore[union-attr]
        modes = []
        for _ in range(5):
            await tx.publish(topic, bytes(20_000), qos=1, timeout=5)
            await _next(received)  # read, and acknowledged with a PUBACK: a send right after a read
            modes.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK))
    assert modes == [1] * 5


async def test_a_failing_handler_does_not_take_the_connection_down(
    broker_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    topic = f"{prefix}/handler"
    seen: list[bytes] = []

    def handler(incoming: Incoming) -> None:
        if incoming.payload == b"bad":
            msg = "handler bug"
            raise ValueError(msg)
        seen.append(incoming.payload)

    rx = Connection(broker_url, client_id=_id("rx"), subscriptions=[(topic, 1)], on_message=handler)
    tx = Connection(broker_url, client_id=_id("tx"))
    with caplog.at_level(logging.ERROR, logger="edgecut.mqtt"):
        async with _connected(rx), _connected(tx):
            await tx.publish(topic, b"bad", qos=1, timeout=5)
            await tx.publish(topic, b"good", qos=1, timeout=5)
            await until(lambda: seen == [b"good"], "the message after the bad one")
            assert rx.connects == 1
    assert "handler failed on a message" in caplog.text


async def test_a_connection_without_a_handler_drops_messages_quietly(broker_url: str, prefix: str) -> None:
    topic = f"{prefix}/nobody"
    rx = Connection(broker_url, client_id=_id("rx"), subscriptions=[(topic, 1)])
    async with _connected(rx), _connected(Connection(broker_url, client_id=_id("tx"))) as tx:
        await tx.publish(topic, b"ignored", qos=1, timeout=5)
        await rx.publish(topic, b"still works", qos=1, timeout=5)  # its own message comes back, unhandled
        assert rx.is_connected


async def test_unsubscribe_stops_delivery_now_and_after_reconnects(broker_url: str, prefix: str) -> None:
    kept, dropped, early = f"{prefix}/kept", f"{prefix}/dropped", f"{prefix}/early"
    received: asyncio.Queue[Incoming] = asyncio.Queue()
    rx = Connection(
        broker_url,
        client_id=_id("rx"),
        subscriptions=[(kept, 1), (dropped, 1), (early, 1)],
        on_message=received.put_nowait,
    )
    await rx.unsubscribe(early)  # not connected yet: only forgotten
    async with _connected(rx), _connected(Connection(broker_url, client_id=_id("tx"))) as tx:
        await tx.publish(dropped, b"1", qos=1, timeout=5)
        assert (await _next(received)).topic == dropped
        await rx.unsubscribe(dropped)
        for topic in (early, dropped, kept):
            await tx.publish(topic, b"2", qos=1, timeout=5)
        assert (await _next(received)).topic == kept
    assert received.empty()


async def test_a_failing_on_connect_is_retried_not_fatal(
    broker_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    async def on_connect() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            msg = "first on_connect fails"
            raise RuntimeError(msg)

    connection = Connection(broker_url, client_id=_id("flaky"), on_connect=on_connect, backoff=FAST)
    with caplog.at_level(logging.ERROR, logger="edgecut.mqtt"):
        async with connection:
            await until(lambda: len(calls) == 2, "a second on_connect")
            await connection.wait_connected(10)
            assert connection.connects == 2
            await connection.publish(f"{prefix}/after", b"ok", qos=1, timeout=5)
    assert "first on_connect fails" in caplog.text


async def test_a_dropped_socket_publishes_the_will_and_reconnects(broker_url: str, prefix: str) -> None:
    topic, will_topic = f"{prefix}/live", f"{prefix}/will"
    received: asyncio.Queue[Incoming] = asyncio.Queue()
    rx = Connection(
        broker_url,
        client_id=_id("rx"),
        subscriptions=[(topic, 1)],
        on_message=received.put_nowait,
        will=Will(will_topic, b"gone"),
        backoff=FAST,
    )
    async with _receiver(broker_url, will_topic) as wills, _connected(rx):
        session = rx._session
        assert session is not None
        session.client._client.socket().shutdown(socket.SHUT_RDWR)  # the link dies without a DISCONNECT
        will = await _next(wills)
        await until(lambda: rx.connects == 2 and rx.is_connected, "the reconnect")
        await rx.publish(topic, b"back", qos=1, timeout=5)
        assert (await _next(received)).payload == b"back"  # subscribed again
    assert (will.topic, will.payload) == (will_topic, b"gone")


async def test_abort_drops_the_socket_so_the_broker_publishes_the_will(broker_url: str, prefix: str) -> None:
    will_topic = f"{prefix}/will"
    doomed = Connection(broker_url, client_id=_id("doomed"), will=Will(will_topic, b"crashed", retain=False))
    async with _receiver(broker_url, will_topic) as wills, _connected(doomed):
        await doomed.abort()
        will = await _next(wills)
        assert not doomed.is_connected
    assert will.payload == b"crashed"


async def test_the_connack_says_whether_a_kept_session_was_resumed(broker_url: str, prefix: str) -> None:
    topic, client_id = f"{prefix}/queued", _id("persistent")
    received: asyncio.Queue[Incoming] = asyncio.Queue()

    def persistent(subscriptions: list[tuple[str, int]]) -> Connection:
        return Connection(
            broker_url,
            client_id=client_id,
            subscriptions=subscriptions,
            on_message=received.put_nowait,
            session_expiry_s=30,
        )

    first = persistent([(topic, 1)])
    async with _connected(first):
        pass
    assert first.connack is not None
    assert first.connack.accepted
    assert not first.connack.session_present
    async with _connected(Connection(broker_url, client_id=_id("tx"))) as tx:
        await tx.publish(topic, b"while away", qos=1, timeout=5)
    second = persistent([])  # no subscription of its own: what arrives, the kept session brought
    async with _connected(second):
        assert (await _next(received)).payload == b"while away"
    assert second.connack is not None
    assert second.connack.session_present
    async with _connected(Connection(broker_url, client_id=client_id)) as clean:  # a clean start ends the session
        assert clean.connack is not None
        assert not clean.connack.session_present


async def test_reconnects_and_resubscribes_after_a_broker_restart(own_broker: LocalBroker, prefix: str) -> None:
    topic = f"{prefix}/again"
    received: asyncio.Queue[Incoming] = asyncio.Queue()
    rx = Connection(
        own_broker.url,
        client_id=_id("rx"),
        subscriptions=[(topic, 1)],
        on_message=received.put_nowait,
        backoff=FAST,
    )
    async with _connected(rx):
        own_broker.kill()
        await until(lambda: not rx.is_connected, "the loss to be noticed")
        with pytest.raises(TransportError):
            await rx.publish(topic, b"x", qos=1, timeout=0.05)
        own_broker.start()
        await rx.wait_connected(15)
        assert rx.connects == 2
        async with _connected(Connection(own_broker.url, client_id=_id("tx"))) as tx:
            await tx.publish(topic, b"after restart", qos=1, timeout=5)
            assert (await _next(received)).payload == b"after restart"


def _freeze(broker: LocalBroker) -> None:
    """Stop the broker process (SIGSTOP): it keeps its sockets, and answers nothing."""
    process = broker._process or broker._iotcore._process  # type: ignore[union-attr]
    assert process is not None
    os.killpg(process.pid, signal.SIGSTOP) if broker._process else os.kill(process.pid, signal.SIGSTOP)


async def test_a_publish_waiting_for_its_acknowledgement_fails_at_once_when_the_connection_drops(
    own_broker: LocalBroker, prefix: str
) -> None:
    if own_broker.kind != "mosquitto":
        # Under load (make test-stress), 1 run in 5 on rumqttd never showed the publish pending after the freeze;
        # the cause is not found. What is tested is the client's: mosquitto shows it.
        pytest.skip("frozen with SIGSTOP, rumqttd does not reliably hold a publish unacknowledged")
    connection = Connection(own_broker.url, client_id=_id("tx"), backoff=FAST)
    async with _connected(connection):
        _freeze(own_broker)
        publishing = asyncio.create_task(connection.publish(f"{prefix}/t", b"x", qos=1, timeout=600))

        def pending() -> bool:  # on whichever session the publish went out
            session = connection._session
            return session is not None and bool(session.client._pending_publishes)

        await until(pending, "the publish to wait for its PUBACK")
        own_broker.kill()  # the connection drops with the publish unacknowledged
        # Before the fix the publish waited out its whole timeout (a request's deadline), though
        # nothing could acknowledge it on a dead connection.
        with pytest.raises(TransportError, match="lost before the broker confirmed it"):
            await asyncio.wait_for(publishing, 60)


async def test_a_connection_closed_while_it_connects_says_goodbye_on_the_socket_it_opened() -> None:
    after_connack: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)  # the CONNECT
        writer.write(CONNACK_ACCEPTED)
        after_connack.set_result(await reader.read())  # up to the client's close
        writer.close()

    server = await asyncio.start_server(broker, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        connection = Connection(f"mqtt://127.0.0.1:{port}", client_id=_id("brief"))
        async with connection:
            await asyncio.sleep(0)  # the attempt is under way in aiomqtt's executor thread
        # Still referenced, so nothing is left to the garbage collector: the client closed its socket itself.
        sent = await asyncio.wait_for(after_connack, 15)
    assert sent[:1] == MQTT_DISCONNECT


async def test_closing_gets_through_a_swallowed_cancel(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Python 3.11 aiomqtt's publish can swallow a cancel (CPython gh-86296); closing must not hang on it."""
    cancels: list[int] = []

    async def stubborn_session(_self: Connection) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancels.append(1)  # swallowed, as asyncio.wait_for on 3.11 may do
        await asyncio.sleep(3600)

    monkeypatch.setattr(Connection, "_serve_one_connection", stubborn_session)
    connection = Connection(f"mqtt://127.0.0.1:{free_port()}", client_id=_id("stubborn"))
    await connection.__aenter__()
    await asyncio.sleep(0.01)  # the supervisor is inside the session now
    await asyncio.wait_for(connection.__aexit__(None, None, None), 5)
    assert cancels == [1]


async def test_an_unreachable_broker_is_one_warning_however_long_it_stays_away(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="edgecut.mqtt")
    url = f"mqtt://127.0.0.1:{free_port('127.0.0.1')}"  # nothing listens there
    connection = Connection(
        url, client_id=f"offline-{uuid.uuid4().hex[:6]}", backoff=Backoff(initial=0.01, maximum=0.02)
    )

    def attempts() -> list[logging.LogRecord]:
        return [record for record in caplog.records if "lost or refused" in record.getMessage()]

    async with connection:
        await until(lambda: len(attempts()) >= 5, "five failed attempts")
    assert [record.levelno for record in attempts()][:5] == [logging.WARNING] + [logging.DEBUG] * 4

"""LocalBroker: real mosquitto and embedded brokers that start, carry messages, stop and restart."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import socket
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cloud_hub import LocalBroker, free_port, resolve_kind
from protocol.errors import ConfigError
from protocol.mqtt import ACKS_AT_ONCE, BrokerURL, Connection, Incoming

if TYPE_CHECKING:
    from cloud_hub import BrokerKind

pytestmark = pytest.mark.broker

needs_mosquitto = pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto is not installed")
needs_iotcore = pytest.mark.skipif(importlib.util.find_spec("iotcore") is None, reason="iotcore is not installed")


async def _round_trip(url: str, payload: bytes = b"ping") -> Incoming:
    """Subscribe on one connection, publish on another, return what arrived."""
    topic = f"test/{uuid.uuid4().hex[:8]}/broker"
    received: asyncio.Queue[Incoming] = asyncio.Queue()
    qos = BrokerURL.parse(url).qos
    subscriber = Connection(
        url, client_id=f"sub-{uuid.uuid4().hex[:8]}", subscriptions=[(topic, qos)], on_message=received.put_nowait
    )
    async with subscriber, Connection(url, client_id=f"pub-{uuid.uuid4().hex[:8]}") as publisher:
        await subscriber.wait_connected(10)
        await publisher.publish(topic, payload, qos=qos, timeout=10)
        return await asyncio.wait_for(received.get(), 10)


def _accepts_connections(broker: LocalBroker) -> bool:
    try:
        with socket.create_connection((broker.host, broker.port), timeout=1):
            return True
    except OSError:
        return False


@needs_mosquitto
async def test_mosquitto_carries_messages_and_restarts_on_the_same_port() -> None:
    broker = LocalBroker(kind="mosquitto")
    assert broker.kind == "mosquitto"
    assert not broker.is_running
    assert "stopped" in repr(broker)
    with broker:
        assert broker.is_running
        assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
        assert BrokerURL.parse(broker.url).qos == 1
        assert "running" in repr(broker)
        assert (await _round_trip(broker.url, b"first")).payload == b"first"
        port = broker.port

        broker.stop()
        assert not broker.is_running
        assert not _accepts_connections(broker)
        broker.stop()  # twice is fine

        assert broker.start() is broker
        assert broker.port == port
        assert (await _round_trip(broker.url, b"after stop")).payload == b"after stop"

        broker.kill()
        assert not broker.is_running
        assert not _accepts_connections(broker)
        broker.start()
        assert broker.start() is broker  # already running: a no-op
        assert (await _round_trip(broker.url, b"after kill")).payload == b"after kill"
    assert not broker.is_running


@needs_mosquitto
async def test_mosquitto_on_a_chosen_port() -> None:
    port = free_port()
    with LocalBroker(kind="mosquitto", port=port) as broker:
        assert broker.url == f"mqtt://127.0.0.1:{port}"
        assert (await _round_trip(broker.url)).payload == b"ping"


@pytest.mark.parametrize(
    "kind", [pytest.param("mosquitto", marks=needs_mosquitto), pytest.param("iotcore", marks=needs_iotcore)]
)
def test_a_broker_on_a_taken_port_is_a_config_error(kind: BrokerKind) -> None:
    with socket.socket() as taken:  # a local setting to change, not a broker that cannot be reached
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = LocalBroker(kind=kind, port=port)
        try:
            with pytest.raises(ConfigError, match=f"cannot start {kind} on 127.0.0.1:{port}: Address already in use"):
                broker.start(timeout=5)
            assert not broker.is_running
        finally:
            broker.stop()


@needs_mosquitto
async def test_mosquitto_carries_the_largest_protocol_message() -> None:
    with LocalBroker(kind="mosquitto", max_message_bytes=2 * 1024 * 1024) as broker:
        payload = bytes(range(256)) * (2 * 1024 * 1024 // 256)
        assert (await _round_trip(broker.url, payload)).payload == payload


@needs_iotcore
async def test_embedded_broker_carries_messages_and_restarts() -> None:
    with LocalBroker(kind="iotcore") as broker:
        assert broker.kind == "iotcore"
        assert broker.is_running
        # QoS 1 where edgecut's connections acknowledge at once: else rumqttd holds small QoS 1 messages ~44 ms
        qos = "" if ACKS_AT_ONCE else "?qos=0"
        assert broker.url == f"mqtt://127.0.0.1:{broker.port}{qos}"
        assert BrokerURL.parse(broker.url).qos == (1 if ACKS_AT_ONCE else 0)
        assert (await _round_trip(broker.url, b"first")).payload == b"first"

        broker.stop()
        assert not broker.is_running
        broker.start()
        assert (await _round_trip(broker.url, b"after stop")).payload == b"after stop"

        broker.kill()
        assert not broker.is_running
        broker.start()
        assert (await _round_trip(broker.url, b"after kill")).payload == b"after kill"
    assert not broker.is_running


@needs_mosquitto
def test_auto_prefers_mosquitto() -> None:
    assert resolve_kind("auto") == "mosquitto"
    assert resolve_kind("mosquitto") == "mosquitto"


def test_mosquitto_missing_from_path_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="mosquitto is not on PATH"):
        resolve_kind("mosquitto")
    with pytest.raises(ConfigError, match="mosquitto is not on PATH"):
        LocalBroker(kind="mosquitto")


@needs_iotcore
def test_auto_without_mosquitto_falls_back_to_the_embedded_broker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert resolve_kind("auto") == "iotcore"
    assert resolve_kind("iotcore") == "iotcore"


def test_no_broker_at_all_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "iotcore", None)  # makes `import iotcore` raise ImportError
    with pytest.raises(ConfigError, match="no local broker"):
        resolve_kind("auto")


@needs_iotcore
def test_extra_config_is_for_mosquitto_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no mosquitto: auto means the embedded broker
    with pytest.raises(ConfigError, match="extra_config is mosquitto configuration"):
        LocalBroker(extra_config="allow_anonymous false\n")


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_free_port_lies_below_the_ephemeral_range() -> None:
    """A client reconnecting to a port of the ephemeral range can be given that port and connect to itself."""
    low, _ = (int(bound) for bound in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert all(free_port() < low for _ in range(20))

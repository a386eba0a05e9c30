"""The hub's metrics and health over real HTTP, with a real broker: counts, readiness, bad input."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cloud_hub import Hub, HubConfig, HubProcess, LocalBroker, free_port, wait_online
from edge_agent import CLOUD_ONLY
from protocol import ErrorCode, Ping, Topics, decode_reply, encode_ping
from protocol.errors import ConfigError
from protocol.http import MAX_CONNECTIONS
from tests._support import TINY_TAIL, Samples, http_exchange, scrape, tiny_request, watching

if TYPE_CHECKING:
    from tests._support import StartHub

pytestmark = pytest.mark.broker

HTTP = "127.0.0.1:0"
RUNTIME_MD = Path(__file__).resolve().parents[2] / "docs" / "runtime.md"


async def _http(hub: Hub, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` to the hub's HTTP endpoint: the status, headers and body of what comes back."""
    assert hub.http is not None
    assert hub.http.address is not None
    return await http_exchange(hub.http.address, raw)


async def _get(hub: Hub, path: str) -> tuple[int, bytes]:
    status, _, body = await _http(hub, f"GET {path} HTTP/1.1\r\nHost: hub\r\n\r\n".encode())
    return status, body


async def _scrape(hub: Hub) -> Samples:
    """Every sample of the hub's ``/metrics``, read with Prometheus's own parser, by name and labels."""
    assert hub.http is not None
    assert hub.http.address is not None
    return await scrape(hub.http.address)


def _labels(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


async def test_metrics_count_what_the_hub_answered(broker_url: str, prefix: str, start_hub: StartHub) -> None:
    hub = await start_hub(http=HTTP)
    topics = Topics(prefix)
    good, wrong_shape = 3, 2
    async with watching(broker_url, topics.response("raw")) as watcher:
        for _ in range(good):  # one at a time: the first loads the tail, and the others find it loaded
            await watcher.send(topics.request("raw"), tiny_request())
            assert decode_reply((await watcher.next()).payload).ok
        for _ in range(wrong_shape):
            await watcher.send(
                topics.request("raw"), tiny_request(tensors={"image": np.zeros((1, 16, 16, 3), np.uint8)})
            )
        await watcher.publish(topics.request("raw"), b"\x00not msgpack", correlation=b"garbage")
        await watcher.publish(topics.request("raw"), encode_ping(Ping("misplaced", time.time())))  # dropped
        await watcher.publish(topics.ping("raw"), encode_ping(Ping("pong-me", time.time())), correlation=b"p")
        replies = [decode_reply((await watcher.next()).payload) for _ in range(wrong_shape + 2)]
    outcomes = sorted("ok" if reply.error is None else str(reply.error.code) for reply in replies)
    assert outcomes == sorted(["bad_request", "ok", *[ErrorCode.TENSOR_MISMATCH.value] * wrong_shape])  # ok: the pong
    await asyncio.wait_for(hub._jobs.idle.wait(), 10)  # every reply published and counted
    samples = await _scrape(hub)

    requests = "edgecut_hub_requests_total"
    assert samples[requests, _labels(model="tiny", cut=CLOUD_ONLY, outcome="success")] == good
    assert samples[requests, _labels(model="tiny", cut=CLOUD_ONLY, outcome="tensor_mismatch")] == wrong_shape
    assert samples[requests, _labels(model="", cut="", outcome="bad_request")] == 1  # names no tail the hub holds
    assert sum(value for (name, _), value in samples.items() if name == requests) == good + wrong_shape + 1
    assert samples["edgecut_hub_compute_duration_seconds_count", _labels(model="tiny", cut=CLOUD_ONLY)] == good
    assert samples["edgecut_hub_queue_duration_seconds_count", _labels(model="tiny")] == good
    assert (
        samples["edgecut_hub_compute_duration_seconds_bucket", _labels(model="tiny", cut=CLOUD_ONLY, le="+Inf")] == good
    )
    assert samples["edgecut_hub_replies_sent_total", _labels()] == good + wrong_shape + 1
    assert samples["edgecut_hub_pings_total", _labels(outcome="answered")] == 1
    assert samples["edgecut_hub_pings_total", _labels(outcome="dropped")] == 1
    assert samples["edgecut_hub_queue_depth", _labels()] == 0
    assert samples["edgecut_hub_queue_bytes", _labels()] == 0
    assert samples["edgecut_hub_tails_loaded", _labels()] == 1
    assert samples["edgecut_hub_tails_loading", _labels()] == 0
    assert samples["edgecut_hub_broker_connected", _labels(connection="requests")] == 1
    assert samples["edgecut_hub_broker_connected", _labels(connection="pings")] == 1


async def test_ready_only_once_connected_and_live_meanwhile(own_broker: LocalBroker, prefix: str) -> None:
    own_broker.stop()  # the hub starts while its broker is down
    hub = Hub(HubConfig(broker=own_broker.url, prefix=prefix, threads=1, http=HTTP, connect_timeout=60))
    serving = asyncio.create_task(hub.serve())
    try:
        assert hub.http is not None
        await asyncio.wait_for(hub.http.listening.wait(), 10)
        assert await _get(hub, "/health/live") == (200, b"live\n")
        status, why = await _get(hub, "/health/ready")
        assert (status, why.startswith(b"starting")) == (503, True)
        assert not hub.ready.is_set()
        own_broker.start()
        await asyncio.wait_for(hub.ready.wait(), 30)
        assert await _get(hub, "/health/ready") == (200, b"ready\n")
        assert hub.http.address is not None
        idle_reader, idle_writer = await asyncio.open_connection(*hub.http.address)  # sends nothing
    finally:
        hub.request_shutdown()
        await asyncio.wait_for(serving, 30)
    assert not hub.http.listening.is_set()
    assert await asyncio.wait_for(idle_reader.read(), 10) == b""  # the hub closed it as it stopped
    idle_writer.close()
    await idle_writer.wait_closed()
    with pytest.raises(ConnectionError):
        await _get(hub, "/health/live")


async def test_not_ready_while_draining(broker_url: str, prefix: str, start_hub: StartHub) -> None:
    hub = await start_hub(http=HTTP, workers=1, grace=60, preload=(TINY_TAIL,))
    topics = Topics(prefix)
    gate = threading.Event()
    async with watching(broker_url, topics.response("raw")) as watcher:
        await watcher.send(topics.request("raw"), tiny_request())  # preloaded: no load to wait for
        assert decode_reply((await watcher.next()).payload).ok
        hub._executor.submit(gate.wait, 60)  # the one worker thread waits: the next request stays held
        try:
            held = tiny_request()
            await watcher.send(topics.request("raw"), held)
            # Read in order on the hub's one connection: the answer to this one means it holds the first.
            await watcher.publish(topics.request("raw"), b"\x00not msgpack", correlation=b"garbage")
            assert decode_reply((await watcher.next()).payload).request_id == "garbage"
            assert await _get(hub, "/health/ready") == (200, b"ready\n")
            hub.request_shutdown()
            status, why = await _get(hub, "/health/ready")
            assert (status, why.startswith(b"shutting down")) == (503, True)
            assert await _get(hub, "/health/live") == (200, b"live\n")
            assert (await _scrape(hub))["edgecut_hub_queue_depth", _labels()] >= 1  # the held one (and the garbage's)
        finally:
            gate.set()
        reply = decode_reply((await watcher.next()).payload)
    assert (reply.request_id, reply.ok) == (held.request_id, True)  # drained, not dropped


async def test_bad_http_input_gets_its_status_and_hurts_nothing(
    broker_url: str, prefix: str, start_hub: StartHub
) -> None:
    hub = await start_hub(http=HTTP, preload=(TINY_TAIL,))  # no load: the idle connection's 5 s are the test's
    assert hub.http is not None
    assert hub.http.address is not None
    idle_reader, idle_writer = await asyncio.open_connection(*hub.http.address)  # sends nothing
    try:
        assert (await _get(hub, "/nothing/here"))[0] == 404
        assert (await _http(hub, b"POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"))[0] == 405
        assert (await _http(hub, b"garbage\r\n\r\n"))[0] == 400
        assert (await _http(hub, b"\xff\xfe \x00 \x01\r\n\r\n"))[0] == 400
        assert (await _http(hub, b"GET metrics HTTP/1.1\r\n\r\n"))[0] == 400
        assert (await _http(hub, b"GET /metrics SMTP/9\r\n\r\n"))[0] == 400
        assert (await _http(hub, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000))[0] == 431
        status, headers, body = await _http(hub, b"HEAD /health/live HTTP/1.1\r\n\r\n")
        assert (status, headers["content-length"], body) == (200, "5", b"")
        assert (await _get(hub, "/health/ready?verbose=1"))[0] == 200
        for partial in (b"", b"GET /metr"):  # closed before a whole request: nothing to answer
            reader, writer = await asyncio.open_connection(*hub.http.address)
            writer.write(partial)
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
            await writer.wait_closed()
        topics = Topics(prefix)
        async with watching(broker_url, topics.response("raw")) as watcher:
            await watcher.send(topics.request("raw"), tiny_request())
            assert decode_reply((await watcher.next()).payload).ok
        assert (await _get(hub, "/health/live"))[0] == 200
        assert not idle_reader.at_eof()  # an idle connection holds up no one
    finally:
        idle_writer.close()
        await idle_writer.wait_closed()


async def test_a_taken_http_port_stops_the_start(start_hub: StartHub) -> None:
    first = await start_hub(http=HTTP)
    assert first.http is not None
    assert first.http.address is not None
    host, port = first.http.address
    with pytest.raises(ConfigError, match="cannot serve HTTP"):
        await start_hub(http=f"{host}:{port}", hub_id="second")


@pytest.mark.parametrize("http", ["8000", ":8000", "host:port", "127.0.0.1:65536", "127.0.0.1:-1"])
def test_http_must_be_host_and_port(http: str) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        HubConfig(http=http)


def test_http_takes_ipv6_in_brackets() -> None:
    assert HubConfig(http="[::1]:9100").http_address() == ("::1", 9100)
    assert HubConfig().http_address() is None


async def test_edgecut_hub_serves_http_once_online(broker_url: str, prefix: str) -> None:
    port = free_port()
    with HubProcess(broker_url, prefix=prefix, hub_id="cli-hub", options=["--http", f"127.0.0.1:{port}"], quiet=True):
        await wait_online(broker_url, prefix, ["cli-hub"], 60)  # its status goes out once it is ready
        ready = await asyncio.to_thread(_urlopen, f"http://127.0.0.1:{port}/health/ready")
        metrics = await asyncio.to_thread(_urlopen, f"http://127.0.0.1:{port}/metrics")
    assert ready == "ready\n"
    names = {family.name for family in text_string_to_metric_families(metrics)}
    assert {"edgecut_hub_requests", "edgecut_hub_queue_depth", "edgecut_hub_broker_connected"} <= names


def _urlopen(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - a loopback http:// URL
        return str(answer.read().decode())


async def test_the_docs_list_every_metric_with_its_labels(start_hub: StartHub) -> None:
    hub = await start_hub(http=HTTP)
    _, _, body = await _http(hub, b"GET /metrics HTTP/1.1\r\n\r\n")
    exposed = {
        family.name + ("_total" if family.type == "counter" else ""): family.type
        for family in text_string_to_metric_families(body.decode())
    }
    table = RUNTIME_MD.read_text(encoding="utf-8").split("## Metrics and health", 1)[1].split("\n## ", 1)[0]
    documented = dict(re.findall(r"^\| `(edgecut_hub_[a-z_]+)` \| ([a-z]+) \|", table, flags=re.MULTILINE))
    assert documented == exposed


async def test_connections_past_the_limit_are_closed_unanswered(start_hub: StartHub) -> None:
    hub = await start_hub(http=HTTP)
    assert hub.http is not None
    assert hub.http.address is not None
    idle = [await asyncio.open_connection(*hub.http.address) for _ in range(MAX_CONNECTIONS)]
    try:
        # Accepted in order: this one finds the limit reached (the idle ones are held until their timeout).
        reader, writer = await asyncio.open_connection(*hub.http.address)
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed without a word
        writer.close()
        await writer.wait_closed()
    finally:
        for _, idle_writer in idle:
            idle_writer.close()
            await idle_writer.wait_closed()
    assert await _get(hub, "/health/live") == (200, b"live\n")  # served again once they are gone

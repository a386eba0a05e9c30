"""The link model on virtual time, and the proxy carrying real bytes (and an agent's request) through it.

Timing is checked on the model, with virtual time. The proxy's tests assert
only lower bounds on elapsed time (a proxy can be late, never early), which
shows the model is applied without making a test depend on the machine's
speed; how close to the model the proxy comes is bench/links.py's job.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from typing import TYPE_CHECKING

import numpy as np
import pytest

from edge_agent import EdgeAgent
from protocol.mqtt import BrokerURL
from simulations._link import SEGMENT_BYTES, Direction, DirectionSpec, LinkSpec
from simulations._proxy import LinkProxy
from simulations._traces import RateTrace
from tests._support import random_images, tiny_logits

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from cloud_hub import Hub


def _direction(**spec: float) -> Direction:
    return Direction(DirectionSpec(**spec), random.Random(0))  # type: ignore[arg-type]


# --- the model, on virtual time ------------------------------------------------------------


def test_a_chunk_leaves_after_its_bits_at_the_rate_and_the_delay() -> None:
    link = _direction(rate_bit_s=8000, delay_s=0.05)
    assert link.departure(0.0, 1000) == pytest.approx(1.05)  # 8000 bits at 8000 bit/s, then 50 ms


def test_chunks_queue_behind_each_other_and_an_idle_link_forgets_its_debt() -> None:
    link = _direction(rate_bit_s=8000)
    assert link.departure(0.0, 1000) == pytest.approx(1.0)
    assert link.departure(0.5, 1000) == pytest.approx(2.0)  # waits for the first
    assert link.departure(10.0, 500) == pytest.approx(10.5)  # idle since 2.0: starts at once


def test_an_unlimited_link_adds_only_its_delay() -> None:
    link = _direction(delay_s=0.2)
    assert [link.departure(t, 10**6) for t in (0.0, 0.1)] == pytest.approx([0.2, 0.3])


def test_jitter_delays_but_never_reorders() -> None:
    link = Direction(DirectionSpec(delay_s=0.01, jitter_s=0.05), random.Random(1))
    times = [link.departure(i * 0.001, 100) for i in range(500)]
    assert times == sorted(times)
    extra = np.diff(times)
    assert max(times[i] - i * 0.001 for i in range(500)) > 0.05  # jitter shows
    assert (extra >= 0).all()


def test_jitter_from_measured_samples_draws_only_those() -> None:
    samples = (0.0, 0.02, 0.1)
    link = Direction(DirectionSpec(jitter_samples_s=samples), random.Random(2))
    departures = [link.departure(100.0 * i, 1) - 100.0 * i for i in range(200)]  # far apart: no queueing
    assert set(np.round(departures, 9)) == set(samples)


def test_a_lost_segment_costs_the_retransmission_timeout() -> None:
    always = Direction(DirectionSpec(loss=0.999999, rto_s=0.2), random.Random(3))
    assert always.departure(0.0, SEGMENT_BYTES) == pytest.approx(0.2)
    sometimes = Direction(DirectionSpec(loss=0.1, rto_s=0.2), random.Random(4))
    penalties = [sometimes.departure(10.0 * i, SEGMENT_BYTES) - 10.0 * i for i in range(2000)]
    assert 0.07 < np.mean(np.array(penalties) > 0) < 0.13
    many_segments = Direction(DirectionSpec(loss=0.1, rto_s=0.2), random.Random(4))
    hits = [many_segments.departure(10.0 * i, 20 * SEGMENT_BYTES) > 10.0 * i for i in range(500)]
    assert np.mean(hits) > 0.8  # 1 - 0.9**20 of larger chunks lose a segment


def test_a_named_stream_is_made_on_the_first_draw_and_draws_as_one_made_at_once() -> None:
    quiet = Direction(DirectionSpec(delay_s=0.01), "1/cams-0/up")
    quiet.departure(0.0, 1000)
    assert "rng" not in vars(quiet)  # no jitter nor loss: no stream was made
    spec = DirectionSpec(delay_s=0.01, jitter_s=0.05, loss=0.1)
    named, made = Direction(spec, "1/cams-0/up"), Direction(spec, random.Random("1/cams-0/up"))
    assert [named.departure(i, 5000) for i in range(50)] == [made.departure(i, 5000) for i in range(50)]


def test_a_rewound_trace_plays_from_the_moment_asked_whenever_it_is() -> None:
    stall = RateTrace(starts_s=(0.0, 1.0, 2.0), rates_bit_s=(8000.0, 0.0, 8000.0), duration_s=3.0, source="stall")
    link = Direction(DirectionSpec(trace=stall), random.Random(0))
    assert link.departure(1.5, 500) == pytest.approx(2.5)  # meets the stall: waits for its end, then 0.5 s
    link.rewind(10.0, 0.0)  # from now on, as at the trace's start
    assert link.departure(10.0, 500) == pytest.approx(10.5)
    link.rewind(20.0, 1.5)
    assert link.departure(20.0, 500) == pytest.approx(21.0)  # the stall's last half second, as at 1.5 s


def test_slices_are_10_ms_of_the_rate_and_at_least_a_segment() -> None:
    link = _direction(rate_bit_s=8_000_000)  # 10 ms = 10,000 bytes
    pieces = link.slices(0.0, b"x" * 25_000)
    assert [len(piece) for piece in pieces] == [10_000, 10_000, 5_000]
    slow = _direction(rate_bit_s=8000)
    assert [len(piece) for piece in slow.slices(0.0, b"x" * 3000)] == [SEGMENT_BYTES, SEGMENT_BYTES, 104]
    assert _direction().slices(0.0, b"x" * 10**6) == [b"x" * 10**6]


@pytest.mark.parametrize(
    "bad", [{"rate_bit_s": 0}, {"delay_s": -1}, {"jitter_s": -0.1}, {"loss": 1.0}, {"queue_bytes": 0}]
)
def test_a_direction_out_of_range_is_refused_naming_the_field(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        DirectionSpec(**bad)  # type: ignore[arg-type]


# --- the proxy, with real sockets ------------------------------------------------------------


async def _sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads length-prefixed messages; answers each with its length as 8 bytes, then EOF when the client ends."""
    try:
        while header := await reader.read(8):
            size = int.from_bytes(header, "big")
            body = await reader.readexactly(size)
            writer.write(len(body).to_bytes(8, "big") + body[:16])
            await writer.drain()
    except asyncio.IncompleteReadError:
        pass
    finally:
        writer.close()


async def _exchange(port: int, payloads: list[bytes]) -> tuple[list[bytes], float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.perf_counter()
    answers = []
    for payload in payloads:
        writer.write(len(payload).to_bytes(8, "big") + payload)
        await writer.drain()
        size = int.from_bytes(await reader.readexactly(8), "big")
        answers.append(size.to_bytes(8, "big") + await reader.readexactly(min(size, 16)))
    elapsed = time.perf_counter() - started
    writer.close()
    await writer.wait_closed()
    return answers, elapsed


async def test_the_proxy_carries_every_byte_in_order_both_ways_and_no_faster_than_the_link() -> None:
    server = await asyncio.start_server(_sink, "127.0.0.1", 0)
    upstream = ("127.0.0.1", server.sockets[0].getsockname()[1])
    spec = LinkSpec(name="test", up=DirectionSpec(rate_bit_s=8_000_000, delay_s=0.01), down=DirectionSpec(delay_s=0.01))
    payloads = [bytes(range(256)) * 4 * size for size in (1, 10, 100)]  # 1 KB, 10 KB, 100 KB
    async with server, LinkProxy(spec, upstream=upstream) as proxy:
        answers, elapsed = await _exchange(proxy.port, payloads)
        assert proxy.connections == 1
    assert answers == [len(p).to_bytes(8, "big") + p[:16] for p in payloads]
    least = sum((len(p) + 8) * 8 / 8_000_000 + 0.02 for p in payloads)  # serialisation + both delays, each
    assert elapsed >= least  # a proxy can be late, never early


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux's")
async def test_the_proxy_acknowledges_what_it_reads_from_upstream_at_once() -> None:
    """As edgecut's own clients do: a broker with Nagle's algorithm on would otherwise wait for a delayed ACK."""
    server = await asyncio.start_server(_sink, "127.0.0.1", 0)
    upstream = ("127.0.0.1", server.sockets[0].getsockname()[1])
    spec = LinkSpec(name="test", up=DirectionSpec(), down=DirectionSpec())
    payload = bytes(20_000)
    async with server, LinkProxy(spec, upstream=upstream) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        modes = []
        for _ in range(5):  # each answer read right after the request was sent: without quick-acks, delayed ones
            writer.write(len(payload).to_bytes(8, "big") + payload)
            await writer.drain()
            await reader.readexactly(8 + 16)
            (to_upstream,) = [
                w.get_extra_info("socket") for w in proxy._open if w.get_extra_info("peername") == upstream
            ]
            modes.append(to_upstream.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK))
        writer.close()
        await writer.wait_closed()
    assert modes == [1] * 5


async def test_a_queue_limit_pushes_back_on_the_sender_and_loses_nothing() -> None:
    server = await asyncio.start_server(_sink, "127.0.0.1", 0)
    upstream = ("127.0.0.1", server.sockets[0].getsockname()[1])
    spec = LinkSpec(name="tight", up=DirectionSpec(rate_bit_s=80_000_000, queue_bytes=4096), down=DirectionSpec())
    payload = bytes(range(256)) * 4096  # 1 MiB through a 4 KiB queue
    async with server, LinkProxy(spec, upstream=upstream) as proxy:
        answers, _ = await _exchange(proxy.port, [payload])
    assert answers == [len(payload).to_bytes(8, "big") + payload[:16]]


async def test_an_unreachable_upstream_closes_the_client_connection() -> None:
    spec = LinkSpec(name="nowhere", up=DirectionSpec(), down=DirectionSpec())
    async with LinkProxy(spec, upstream=("127.0.0.1", 1)) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()


async def test_an_outage_holds_every_byte_until_the_link_is_back_and_loses_none() -> None:
    received = asyncio.Event()

    async def counting_sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(1)
        received.set()
        await _sink(reader, writer)

    server = await asyncio.start_server(counting_sink, "127.0.0.1", 0)
    upstream = ("127.0.0.1", server.sockets[0].getsockname()[1])
    spec = LinkSpec(name="plain", up=DirectionSpec(), down=DirectionSpec())
    async with server, LinkProxy(spec, upstream=upstream) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        proxy.cut_off()
        writer.write(b"!" + (4).to_bytes(8, "big") + b"ping")
        await writer.drain()
        with pytest.raises(TimeoutError):  # held, not lost: a plain relay delivers this within milliseconds
            await asyncio.wait_for(received.wait(), 0.3)
        proxy.restore()
        assert await reader.readexactly(12) == (4).to_bytes(8, "big") + b"ping"
        writer.close()
        await writer.wait_closed()


async def test_a_new_spec_applies_to_open_connections() -> None:
    server = await asyncio.start_server(_sink, "127.0.0.1", 0)
    upstream = ("127.0.0.1", server.sockets[0].getsockname()[1])
    fast = LinkSpec(name="fast", up=DirectionSpec(), down=DirectionSpec())
    slow = LinkSpec(name="slow", up=DirectionSpec(delay_s=0.2), down=DirectionSpec())
    async with server, LinkProxy(fast, upstream=upstream) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        proxy.set_spec(slow)
        started = time.perf_counter()
        writer.write((1).to_bytes(8, "big") + b"x")
        await writer.drain()
        await reader.readexactly(9)
        assert time.perf_counter() - started >= 0.2
        assert proxy.spec is slow
        writer.close()
        await writer.wait_closed()


async def test_after_the_same_seed_an_open_connection_meets_the_same_luck() -> None:
    """Common random numbers: every reseed with 2 replays its draws (three long ones, then a short one).

    The proxy's own seed (10) draws only short delays for the first messages,
    and so do seed 2's other streams (another connection's, the way down),
    and its fourth draw is short: only draws that start again from seed 2's
    stream of this connection's way up make both rounds of three slow.
    """
    server = await asyncio.start_server(_sink, "127.0.0.1", 0)
    upstream = ("127.0.0.1", server.sockets[0].getsockname()[1])
    spec = LinkSpec(name="coin", up=DirectionSpec(jitter_samples_s=(0.0, 0.25)), down=DirectionSpec())
    async with server, LinkProxy(spec, upstream=upstream, seed=10) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            for _ in range(2):
                proxy.reseed(2)
                started = time.perf_counter()
                for _ in range(3):
                    writer.write((1).to_bytes(8, "big") + b"x")
                    await writer.drain()
                    await reader.readexactly(9)
                assert time.perf_counter() - started >= 0.75  # seed 2's first three draws: 0.25 s each
        finally:
            writer.close()
            await writer.wait_closed()


async def test_after_a_rewind_an_open_connection_meets_the_trace_where_it_was_rewound_to() -> None:
    """Common trace moments: the trace stalls for half a second 5 s in, and a rewind to 5 s meets the stall at once."""
    server = await asyncio.start_server(_sink, "127.0.0.1", 0)
    upstream = ("127.0.0.1", server.sockets[0].getsockname()[1])
    stall = RateTrace(starts_s=(0.0, 5.0, 5.5), rates_bit_s=(1e9, 0.0, 1e9), duration_s=60.0, source="stall")
    spec = LinkSpec(name="stall", up=DirectionSpec(trace=stall), down=DirectionSpec())
    async with server, LinkProxy(spec, upstream=upstream) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            writer.write((1).to_bytes(8, "big") + b"x")  # the connection is open at the proxy
            await writer.drain()
            await reader.readexactly(9)
            proxy.rewind(5.0)
            started = time.perf_counter()
            writer.write((1).to_bytes(8, "big") + b"x")
            await writer.drain()
            await reader.readexactly(9)
            assert time.perf_counter() - started >= 0.45  # held until the stall ends, 0.5 s after the rewind
        finally:
            writer.close()
            await writer.wait_closed()


@pytest.mark.broker
async def test_an_agent_reaches_its_hub_through_an_emulated_link(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    await start_hub()
    url = BrokerURL.parse(broker_url)
    spec = LinkSpec(
        name="3g-ish", up=DirectionSpec(rate_bit_s=2_000_000, delay_s=0.04), down=DirectionSpec(delay_s=0.04)
    )
    image = random_images(1, seed=21)[0]
    async with LinkProxy(spec, upstream=(url.host, url.port)) as proxy:
        through = f"mqtt://127.0.0.1:{proxy.port}?qos={url.qos}"
        async with EdgeAgent(through, model="tiny", cut="stem.out", prefix=prefix, fallback=False, threads=1) as agent:
            result = await agent.infer(image)
    assert (result.hub_id, result.fallback) == ("hub0", None)
    np.testing.assert_allclose(result.outputs["logits"], tiny_logits(image), atol=1e-4)
    assert result.timings.network_ms >= 80  # both one-way delays, at least

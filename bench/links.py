"""How faithful is the link emulator? Configured against achieved, through the real proxy.

Three measurements, on loopback through ``simulations.LinkProxy`` to a small
TCP sink that answers each message with 8 bytes:

1. goodput: messages of 1 KB, 16 KB, 256 KB, 1 MB and 4 MB at 1, 5, 20 and
   100 Mbit/s (upstream shaped, no delay); goodput = message bits / (time to
   the answer - the same exchange through an unshaped proxy);
2. delay: a 1-byte exchange at 0, 10, 50 and 200 ms one way (both ways
   delayed); achieved = (round trip - the unshaped round trip) / 2;
3. trace playback: a client keeps the upstream full for the first seconds of
   a trace; the sink counts the bytes delivered each second; compared with
   the trace's capacity per second (correlation, total bytes).

Targets: goodput within 5% of the rate, delay within 1 ms or 5% (the larger),
playback correlation >= 0.95 and total bytes within 3%.

    python bench/links.py [--repeats 3] [--trace-seconds 30] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from simulations import DirectionSpec, LinkProxy, LinkSpec, RateTrace, read_cooked

SIZES = (1_000, 16_000, 256_000, 1_000_000, 4_000_000)
RATES = (1e6, 5e6, 20e6, 100e6)
DELAYS = (0.0, 0.010, 0.050, 0.200)
GOODPUT_TOLERANCE = 0.05
DELAY_TOLERANCE = (1.0, 0.05)  # ms, or this fraction of the delay, whichever is larger
LONGEST_S = 8.0  # skip a size whose transfer alone would take longer (4 MB at 1 Mbit/s: 32 s)
RESOLUTION_S = 0.002  # below this, a message's serialisation is lost in the timers' millisecond
TRACE = Path(__file__).resolve().parents[1] / "simulations" / "traces" / "norway_bus_1.tsv"


async def _sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while header := await reader.read(8):
            size = int.from_bytes(header, "big")
            await reader.readexactly(size)
            writer.write(size.to_bytes(8, "big"))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _round_trips(port: int, size: int, repeats: int) -> float:
    """Median seconds from sending ``size`` bytes to their 8-byte answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = b"x" * size
    samples = []
    try:
        for _ in range(repeats + 1):
            started = time.perf_counter()
            writer.write(size.to_bytes(8, "big") + payload)
            await writer.drain()
            await reader.readexactly(8)
            samples.append(time.perf_counter() - started)
    finally:
        writer.close()
        await writer.wait_closed()
    return statistics.median(samples[1:])


def _spec(*, rate: float | None = None, delay: float = 0.0, trace: RateTrace | None = None) -> LinkSpec:
    return LinkSpec(
        name="bench", up=DirectionSpec(rate_bit_s=rate, delay_s=delay, trace=trace), down=DirectionSpec(delay_s=delay)
    )


async def goodput(upstream: tuple[str, int], repeats: int) -> list[dict[str, Any]]:
    rows = []
    async with LinkProxy(_spec(), upstream=upstream) as plain:
        base = {size: await _round_trips(plain.port, size, repeats) for size in SIZES}
    for rate in RATES:
        async with LinkProxy(_spec(rate=rate), upstream=upstream) as proxy:
            for size in SIZES:
                if (size + 8) * 8 / rate > LONGEST_S:
                    continue
                elapsed = await _round_trips(proxy.port, size, repeats) - base[size]
                expected = (size + 8) * 8 / rate
                achieved = (size + 8) * 8 / elapsed if elapsed > 0 else float("inf")
                rows.append(
                    {
                        "rate_mbit_s": rate / 1e6,
                        "bytes": size,
                        "achieved_mbit_s": achieved / 1e6,
                        "extra_ms": (elapsed - expected) * 1000,
                        "resolved": expected >= RESOLUTION_S,
                    }
                )
    return rows


async def delay(upstream: tuple[str, int], repeats: int) -> list[dict[str, Any]]:
    async with LinkProxy(_spec(), upstream=upstream) as plain:
        base = await _round_trips(plain.port, 1, repeats * 10)
    rows = []
    for one_way in DELAYS:
        async with LinkProxy(_spec(delay=one_way), upstream=upstream) as proxy:
            achieved = (await _round_trips(proxy.port, 1, repeats * 10) - base) / 2
        rows.append({"delay_ms": one_way * 1000, "achieved_ms": achieved * 1000})
    return rows


async def playback(trace: RateTrace, seconds: float) -> dict[str, Any]:
    delivered = np.zeros(int(seconds) + 2)
    started = [0.0]

    async def counting_sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                delivered[min(int(time.perf_counter() - started[0]), len(delivered) - 1)] += len(data)
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(counting_sink, "127.0.0.1", 0)
    upstream = ("127.0.0.1", server.sockets[0].getsockname()[1])
    spec = LinkSpec(name="trace", up=DirectionSpec(trace=trace, queue_bytes=256 * 1024), down=DirectionSpec())
    async with server, LinkProxy(spec, upstream=upstream) as proxy:
        _, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        started[0] = time.perf_counter()
        chunk = b"x" * 65536
        while time.perf_counter() - started[0] < seconds:
            writer.write(chunk)
            await writer.drain()  # the proxy's queue limit pushes back: the link stays full
        writer.close()
    whole = int(seconds)
    got = delivered[:whole] * 8
    capacity = np.array([trace.bits_between(t, t + 1) for t in range(whole)])
    return {
        "trace": trace.source,
        "seconds": whole,
        "correlation": float(np.corrcoef(got, capacity)[0, 1]),
        "delivered_mbit": float(got.sum() / 1e6),
        "capacity_mbit": float(capacity.sum() / 1e6),
    }


async def measure(repeats: int, trace_seconds: float) -> dict[str, Any]:
    server = await asyncio.start_server(_sink, "127.0.0.1", 0)
    upstream = ("127.0.0.1", server.sockets[0].getsockname()[1])
    async with server:
        rates = await goodput(upstream, repeats)
        delays = await delay(upstream, repeats)
    trace = await playback(read_cooked(TRACE), trace_seconds)
    return {"goodput": rates, "delay": delays, "playback": trace}


def _print(result: dict[str, Any]) -> None:
    print("$ python bench/links.py " + " ".join(sys.argv[1:]))
    print(f"\n{'rate Mbit/s':>11} {'message':>10} {'achieved':>9} {'error':>7} {'extra ms':>9}  (target: within 5%)")
    for row in result["goodput"]:
        error = row["achieved_mbit_s"] / row["rate_mbit_s"] - 1
        head = f"{row['rate_mbit_s']:>11g} {row['bytes'] / 1000:>7,.0f} KB"
        extra = f"{row['extra_ms']:>+9.2f}"
        if not row["resolved"]:
            print(f"{head} {'-':>9} {'-':>7} {extra}  under 2 ms of serialisation: not rated")
            continue
        flag = "" if abs(error) <= GOODPUT_TOLERANCE else "  <-- misses"
        print(f"{head} {row['achieved_mbit_s']:>9.2f} {error:>+7.1%} {extra}{flag}")
    print(f"\n{'delay ms':>8} {'achieved':>9} {'error ms':>9}  (target: within 1 ms or 5%)")
    for row in result["delay"]:
        error = row["achieved_ms"] - row["delay_ms"]
        flag = "" if abs(error) <= max(DELAY_TOLERANCE[0], DELAY_TOLERANCE[1] * row["delay_ms"]) else "  <-- misses"
        print(f"{row['delay_ms']:>8g} {row['achieved_ms']:>9.2f} {error:>+9.2f}{flag}")
    trace = result["playback"]
    ratio = trace["delivered_mbit"] / trace["capacity_mbit"] - 1
    print(
        f"\ntrace {trace['trace']}, first {trace['seconds']} s: correlation {trace['correlation']:.3f} "
        f"(target >= 0.95), delivered {trace['delivered_mbit']:.1f} of {trace['capacity_mbit']:.1f} Mbit "
        f"({ratio:+.1%}, target within 3%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="exchanges per row, median (default 3)")
    parser.add_argument("--trace-seconds", type=float, default=30, help="trace playback length (default 30)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    result = asyncio.run(measure(args.repeats, args.trace_seconds))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)


if __name__ == "__main__":
    main()

"""Is hub memory bounded by its configuration, whatever the senders do?

Two measurements, each printed with the command that reran it:

1. ONNX Runtime alone: a resnet18 tail (cut ``input``) runs batch 1, then a
   batch of 32, then batch 1 again, with ``Session(release_memory=...)`` off
   and on: resident memory after the large batch and the batch-1 latency
   (median of 30) show what releasing the arena after large runs costs.
2. A real hub process (``edgecut hub --preload resnet18:input``) on a local
   broker gets a burst of requests of the largest allowed batch from several
   connections at once, then requests beyond its bounds (a batch over
   ``max_batch``); its resident memory before, at the peak (sampled every
   50 ms) and 5 s after the burst.

    python bench/memory.py [--burst 80] [--batch 32]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from cloud_hub import LocalBroker
from models import Session, partition, sha256_hex
from protocol import InferenceRequest, Topics, decode_reply, decode_status, encode_request
from protocol.mqtt import Connection, Incoming

PAGE = 4096


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process, in MB."""
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * PAGE / 2**20


def ort_alone(batch: int) -> None:
    print(f"$ python bench/memory.py   (1) ONNX Runtime alone, resnet18 tail at 'input', 1 thread, batch {batch}")
    print(f"{'release_memory':<15} {'batch-1 ms':>10} {'RSS before MB':>14} {'after batch MB':>15} {'growth MB':>10}")
    for release in ("off", "on"):
        # Each setting in a fresh process: the arena of one must not hide the other.
        subprocess.run([sys.executable, __file__, "--ort-row", release, "--batch", str(batch)], check=True)  # noqa: S603


def ort_row(release: bool, batch: int) -> None:  # noqa: FBT001
    """One row of measurement (1), in this process."""
    _, model = partition.load_model("resnet18")
    tail = partition.split(model, "input", model_id="resnet18").tail
    if tail is None:
        msg = "resnet18 has a tail at 'input'"
        raise SystemExit(msg)
    session = Session(tail.SerializeToString(), threads=1, release_memory=release)
    one = {"image": np.zeros((1, 224, 224, 3), np.uint8)}
    for _ in range(3):
        session.run(one)
    before = rss_mb()
    times = []
    for _ in range(30):
        started = time.perf_counter()
        session.run(one)
        times.append(time.perf_counter() - started)
    session.run({"image": np.zeros((batch, 224, 224, 3), np.uint8)})
    session.run(one)
    after = rss_mb()
    ms = statistics.median(times) * 1000
    print(f"{release!s:<15} {ms:>10.1f} {before:>14.0f} {after:>15.0f} {after - before:>10.0f}", flush=True)


async def hub_burst(burst: int, batch: int) -> None:
    prefix = f"bench/{uuid.uuid4().hex[:8]}"
    with LocalBroker() as broker:
        hub = _start_hub(broker.url, prefix)
        try:
            await _burst_against(hub.pid, broker.url, prefix, burst, batch)
        finally:
            hub.terminate()
            hub.wait(30)


def _start_hub(url: str, prefix: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "edgecut", "hub", "--broker", url, "--prefix", prefix]
    command += ["--hub-id", "bench-hub", "--threads", "1", "--preload", "resnet18:input"]
    return subprocess.Popen(command, stderr=subprocess.DEVNULL)  # noqa: S603


async def _burst_against(pid: int, url: str, prefix: str, burst: int, batch: int) -> None:
    topics = Topics(prefix)
    replies: asyncio.Queue[Incoming] = asyncio.Queue()
    statuses: asyncio.Queue[Incoming] = asyncio.Queue()
    subscriptions = [(topics.response("bench"), 1), (topics.status("bench-hub"), 1)]

    def route(incoming: Incoming) -> None:
        (statuses if "/status/" in incoming.topic else replies).put_nowait(incoming)

    async with Connection(url, client_id="bench", subscriptions=subscriptions, on_message=route) as connection:
        await connection.wait_connected(10)
        while decode_status((await asyncio.wait_for(statuses.get(), 120)).payload).state != "online":
            pass
        before = rss_mb(pid)
        sha = sha256_hex(partition.load_model("resnet18")[1].SerializeToString())
        peak = [before]
        sampler = asyncio.create_task(_sample(pid, peak))
        payloads = [_request(sha, batch) for _ in range(burst)]
        await asyncio.gather(*(_publish(connection, topics, payload) for payload in payloads))
        codes = await _codes(replies, len(payloads))
        await _publish(connection, topics, _request(sha, batch + 1))
        over = await _codes(replies, 1)
        await asyncio.sleep(5)
        sampler.cancel()
        after = rss_mb(pid)
    size = len(payloads[0]) / 2**20
    print(f"\n$ python bench/memory.py   (2) hub process, {burst} requests of batch {batch} ({size:.1f} MiB each)")
    print(f"all at once: replies {codes}; then one of batch {batch + 1}: {over}")
    print(f"hub RSS before {before:.0f} MB, peak {max(peak):.0f} MB, 5 s after {after:.0f} MB")


async def _codes(replies: asyncio.Queue[Incoming], count: int) -> dict[str, int]:
    codes: dict[str, int] = {}
    for _ in range(count):
        reply = decode_reply((await asyncio.wait_for(replies.get(), 300)).payload)
        code = reply.error.code if reply.error else "ok"
        codes[code] = codes.get(code, 0) + 1
    return codes


async def _sample(pid: int, peak: list[float]) -> None:
    while True:
        peak.append(rss_mb(pid))
        await asyncio.sleep(0.05)


def _request(sha: str, batch: int) -> bytes:
    request = InferenceRequest(
        request_id=uuid.uuid4().hex,
        agent_id="bench",
        model_id="resnet18",
        model_sha256=sha,
        cut_id="input",
        tensors={"image": np.random.default_rng(0).integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)},
        sent_at=time.time(),
        deadline_ms=600_000.0,
    )
    return encode_request(request)


async def _publish(connection: Connection, topics: Topics, payload: bytes) -> None:
    await connection.publish(topics.request("bench"), payload, qos=1, timeout=60)


def main() -> None:
    logging.getLogger("mqtt").setLevel(logging.ERROR)  # aiomqtt warns about the burst's pending publishes
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=80, help="requests of the largest batch (default 80)")
    parser.add_argument("--batch", type=int, default=32, help="the hub's max_batch (default 32, its default)")
    parser.add_argument("--ort-row", choices=["off", "on"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ort_row:
        ort_row(args.ort_row == "on", args.batch)
        return
    ort_alone(args.batch)
    asyncio.run(hub_burst(args.burst, args.batch))


if __name__ == "__main__":
    main()

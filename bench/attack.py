"""Attack a hub as an outside client would, and measure what each attack costs the valid requests of another agent.

A hub runs in its own process on a local broker, with its default settings
(``--threads 1``). A victim agent sends valid requests (resnet18 at its
``input`` cut: the camera's uint8 image, the hub runs the whole model) every
50 ms, fallback off, first unattacked, then while an attacker, in a process of
its own, runs one attack; then the next attack. Per attack the report gives
the victim's p95 latency before and during the attack and their ratio (one
run: both phases on the same machine, minutes apart), the hub's resident
memory before, at its peak and 2 s after, and what the attacker got back.

The attacks (issue 23), each what a client the broker's ACL allows may send:

- ``bombs``: requests whose tensors declare far more than their compressed
  data (1 GiB of uint8 in 33 bytes, 2^31-1 float64 elements, 48 MiB behind a
  batch of 16384, float32 where the cut takes uint8, a PNG header of
  8000x8000 behind a 32x32 shape), 14 of each;
- ``cut-cycling``: 200 distinct valid cuts of resnet18, mobilenet_v2 and
  googlenet, one after another;
- ``ping-flood``: 20,000 small pings as fast as the attacker can send them;
- ``big-pings``: 30 pings of 16 MiB;
- ``greedy``: an agent keeping 16 valid requests in flight for 8 s;
- ``forged-status``: forged hub statuses (``offline``, and ``wait_ms`` 1e6)
  every 20 ms on the attacker's own status topic: the victim's publishes per
  request are counted (1.0: none was repeated).

    python bench/attack.py [--attack NAME ...] [--broker auto|mosquitto|iotcore] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from cloud_hub import HubProcess, LocalBroker, wait_online
from edge_agent import CLOUD_ONLY, EdgeAgent, ModelHalves, Timeouts
from protocol import (
    InferenceRequest,
    NodeStatus,
    Ping,
    Topics,
    decode_reply,
    encode_ping,
    encode_request,
    encode_status,
)
from protocol.mqtt import Connection, Incoming

ATTACKS = ("bombs", "cut-cycling", "ping-flood", "big-pings", "greedy", "forged-status")
VICTIM_MODEL = "resnet18"
BOMB_MODEL = "tiny"
HUB = "hub-a"
PERIOD_S = 0.05
BASELINE_S = 5.0
MIN_ATTACK_S = 5.0


# --- the attacker, in a process of its own ------------------------------------------------


class Attacker:
    """One client the ACL allows: publishes on its own request topic, reads its own replies."""

    def __init__(self, url: str, prefix: str, agent_id: str = "attacker") -> None:
        self.topics = Topics(prefix)
        self.agent_id = agent_id
        self.replies: collections.Counter[str] = collections.Counter()
        self.answered = asyncio.Event()
        self._waiting: dict[str, asyncio.Future[str]] = {}
        self.connection = Connection(
            url,
            client_id=agent_id,
            subscriptions=[(self.topics.response(agent_id), 1)],
            on_message=self._on_reply,
            max_message_bytes=32 << 20,
        )

    def _on_reply(self, incoming: Incoming) -> None:
        reply = decode_reply(incoming.payload)
        outcome = "ok" if reply.error is None else reply.error.code
        self.replies[outcome] += 1
        waiting = self._waiting.pop(reply.request_id, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(outcome)

    async def send(self, payload: bytes, request_id: str, *, qos: int = 1, ping: bool = False) -> None:
        topic = self.topics.ping(self.agent_id) if ping else self.topics.request(self.agent_id)
        await self.connection.publish(topic, payload, qos=qos, correlation=request_id.encode(), timeout=30)

    async def ask(self, payload: bytes, request_id: str, timeout_s: float = 60) -> str:
        """Send and wait for the reply's outcome (an error code or ``ok``)."""
        future = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        await self.send(payload, request_id)
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return "no reply"


def _request(model_sha256: str, model_id: str, cut: str, tensors: dict[str, Any], agent: str) -> InferenceRequest:
    return InferenceRequest(
        request_id=uuid.uuid4().hex,
        agent_id=agent,
        model_id=model_id,
        model_sha256=model_sha256,
        cut_id=cut,
        tensors=tensors,
        sent_at=time.time(),
        deadline_ms=30_000,
    )


def _bombs(sha: str, agent: str) -> list[tuple[str, bytes]]:
    template = msgpack.unpackb(
        encode_request(_request(sha, BOMB_MODEL, CLOUD_ONLY, {"image": np.zeros((1, 32, 32, 3), np.uint8)}, agent))
    )
    zstd = __import__("zstandard")
    png = _png_header(8000, 8000)
    kinds = [
        ("zstd", "uint8", [1 << 30], zstd.ZstdCompressor().compress(bytes(1 << 20)), None),
        ("zstd", "float64", [2**31 - 1], zstd.ZstdCompressor().compress(bytes(1 << 20)), None),
        ("zstd", "uint8", [16384, 32, 32, 3], zstd.ZstdCompressor().compress(bytes(1 << 20)), None),
        ("int8+zstd", "float32", [1024, 32, 32, 3], zstd.ZstdCompressor().compress(bytes(1 << 20)), None),
        ("png", "uint8", [1, 32, 32, 3], png, {"sizes": [len(png)]}),
    ]
    payloads = []
    for _ in range(14):
        for codec, dtype, shape, data, params in kinds:
            wire = dict(template, id=uuid.uuid4().hex, codec=codec)
            tensor: dict[str, Any] = {"dtype": dtype, "shape": shape, "data": data}
            if params:
                tensor["params"] = params
            wire["tensors"] = {"image": tensor}
            payloads.append((wire["id"], msgpack.packb(wire)))
    return payloads


def _png_header(width: int, height: int) -> bytes:
    import struct  # noqa: PLC0415
    import zlib  # noqa: PLC0415

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"junk")) + chunk(b"IEND", b"")


def _cycled_cuts(agent: str, count: int) -> list[tuple[str, bytes]]:
    from models import partition, sha256_hex, zoo  # noqa: PLC0415 - the attacker's tooling

    per_model = []
    for name in ("resnet18", "mobilenet_v2", "googlenet"):
        model = zoo.build(name)
        sha = sha256_hex(model.SerializeToString())
        cuts = [cut for cut in partition.enumerate_cuts(model) if cut.id not in {CLOUD_ONLY, "output"}]
        per_model.append([(name, sha, cut) for cut in cuts])
    chosen = [entry for group in zip(*per_model, strict=False) for entry in group][:count]
    payloads = []
    for name, sha, cut in chosen:
        tensors = {
            spec.name: np.zeros(tuple(d if isinstance(d, int) else 1 for d in spec.shape), spec.dtype)
            for spec in cut.tensors
        }
        request = _request(sha, name, cut.id, tensors, agent)
        payloads.append((request.request_id, encode_request(request)))
    return payloads


async def attack(kind: str, url: str, prefix: str) -> dict[str, Any]:
    """Run one attack to its end; what the attacker sent and got back."""
    attacker = Attacker(url, prefix)
    sent = 0
    async with attacker.connection:
        await attacker.connection.wait_connected(10)
        if kind == "bombs":
            sha = ModelHalves.open(BOMB_MODEL, threads=1).model_sha256
            outcomes = [await attacker.ask(payload, request_id) for request_id, payload in _bombs(sha, "attacker")]
            sent = len(outcomes)
        elif kind == "cut-cycling":
            payloads = _cycled_cuts("attacker", 200)
            outcomes = [await attacker.ask(payload, request_id) for request_id, payload in payloads]
            sent = len(outcomes)
        elif kind == "ping-flood":
            for index in range(20_000):
                ping = encode_ping(Ping(request_id=f"p{index}", sent_at=time.time()))
                await attacker.send(ping, f"p{index}", qos=0, ping=True)
            sent = 20_000
        elif kind == "big-pings":
            for index in range(30):
                big = msgpack.packb({"v": 1, "t": "ping", "id": f"b{index}", "sent_at": 1.0, "pad": bytes(16 << 20)})
                await attacker.send(big, f"b{index}", ping=True)
            sent = 30
        elif kind == "greedy":
            sent = await _greedy(url, prefix)
        elif kind == "forged-status":
            sent = await _forge(attacker)
        await asyncio.sleep(1)  # the last answers
    return {"sent": sent, "replies": dict(attacker.replies)}


async def _greedy(url: str, prefix: str) -> int:
    image = np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    timeouts = Timeouts(request=30, retry=None)
    async with EdgeAgent(
        url, model=VICTIM_MODEL, cut=CLOUD_ONLY, prefix=prefix, agent_id="greedy", fallback=False, timeouts=timeouts
    ) as agent:
        done = 0
        end = time.monotonic() + 8

        async def keep_sending() -> None:
            nonlocal done
            while time.monotonic() < end:
                with contextlib.suppress(Exception):
                    await agent.infer(image)
                done += 1

        await asyncio.gather(*(keep_sending() for _ in range(16)))
    return done


async def _forge(attacker: Attacker) -> int:
    topic = attacker.topics.status(attacker.agent_id)
    offline = encode_status(NodeStatus(node_id=HUB, role="hub", state="offline", sent_at=time.time()))
    slow = encode_status(NodeStatus(node_id=HUB, role="hub", state="online", sent_at=time.time(), queue_wait_ms=1e6))
    end, sent = time.monotonic() + 8, 0
    while time.monotonic() < end:
        for payload in (offline, slow):
            await attacker.connection.publish(topic, payload, qos=0, retain=True, timeout=5)
            sent += 1
        await asyncio.sleep(0.02)
    return sent


# --- the harness ------------------------------------------------------------------------


class Victim:
    """Valid requests every PERIOD_S, latencies stamped with when they were sent."""

    def __init__(self, agent: EdgeAgent) -> None:
        self.agent = agent
        self.samples: list[tuple[float, float, str]] = []  # (sent at, ms, outcome)
        self.image = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                result = await self.agent.infer(self.image)
                outcome = "ok"
            except Exception as exc:  # noqa: BLE001 - every failure is a sample
                outcome = type(exc).__name__
            else:
                del result
            self.samples.append((started, (time.monotonic() - started) * 1000, outcome))
            await asyncio.sleep(max(0.0, PERIOD_S - (time.monotonic() - started)))

    def p95(self, start: float, end: float) -> tuple[float, int, int]:
        """p95 ms of the requests sent in [start, end), their count, and how many failed."""
        window = [(ms, outcome) for at, ms, outcome in self.samples if start <= at < end]
        if not window:
            return math.nan, 0, 0
        latencies = sorted(ms for ms, _ in window)
        return (
            latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
            len(window),
            sum(outcome != "ok" for _, outcome in window),
        )


class Seen:
    """Counts the messages on a topic: how often the victim published (its requests, and any again)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, _incoming: Incoming) -> None:
        self.count += 1


class Memory:
    """The hub's resident memory, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []

    def now_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return math.nan

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                self.samples.append((time.monotonic(), self.now_mb()))
            await asyncio.sleep(0.05)

    def peak(self, start: float, end: float) -> float:
        return max((mb for at, mb in self.samples if start <= at < end), default=math.nan)


async def run_attack(kind: str, url: str, prefix: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--as-attacker", kind, "--url", url, "--prefix", prefix]
    process = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
    out, _ = await process.communicate()
    return json.loads(out.decode().strip().splitlines()[-1])


async def bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    prefix = f"attack/{uuid.uuid4().hex[:8]}"
    rows = []
    with (
        LocalBroker(kind=args.broker, max_message_bytes=32 << 20) as broker,
        HubProcess(
            broker.url,
            prefix=prefix,
            hub_id=HUB,
            options=["--threads", "1", "--preload", f"{VICTIM_MODEL}:{CLOUD_ONLY}", "--preload", f"{BOMB_MODEL}:input"],
            quiet=True,
        ) as hub,
    ):
        await wait_online(broker.url, prefix, [HUB], 120)
        assert hub.pid is not None  # noqa: S101 - started above
        memory = Memory(hub.pid)
        timeouts = Timeouts(request=10)
        seen = Seen()
        watch = Connection(
            broker.url, client_id="observer", subscriptions=[(Topics(prefix).request("victim"), 1)], on_message=seen
        )
        async with (
            watch,
            EdgeAgent(
                broker.url,
                model=VICTIM_MODEL,
                cut=CLOUD_ONLY,
                prefix=prefix,
                agent_id="victim",
                fallback=False,
                threads=1,
                timeouts=timeouts,
            ) as agent,
        ):
            victim = Victim(agent)
            stop = asyncio.Event()
            loops = [asyncio.create_task(victim.run(stop)), asyncio.create_task(memory.run(stop))]
            for kind in args.attack:
                print(f"{kind} ...", file=sys.stderr, flush=True)
                baseline_start = time.monotonic()
                publishes_before = seen.count
                requests_before = len(victim.samples)
                await asyncio.sleep(BASELINE_S)
                attack_start = time.monotonic()
                outcome = await run_attack(kind, broker.url, prefix)
                await asyncio.sleep(max(0.0, MIN_ATTACK_S - (time.monotonic() - attack_start)))
                attack_end = time.monotonic()
                await asyncio.sleep(2)
                after_mb = memory.now_mb()
                before_p95, before_n, _ = victim.p95(baseline_start, attack_start)
                during_p95, during_n, failed = victim.p95(attack_start, attack_end)
                requests = len(victim.samples) - requests_before
                rows.append(
                    {
                        "attack": kind,
                        "p95_before_ms": round(before_p95, 1),
                        "p95_during_ms": round(during_p95, 1),
                        "ratio": round(during_p95 / before_p95, 2),
                        "victim_requests": [before_n, during_n],
                        "victim_failed": failed,
                        "victim_publishes_per_request": round((seen.count - publishes_before) / requests, 2),
                        "hub_mb": [
                            round(memory.peak(baseline_start, attack_start)),
                            round(memory.peak(attack_start, attack_end + 2)),
                            round(after_mb),
                        ],
                        "attacker": outcome,
                    }
                )
            stop.set()
            await asyncio.gather(*loops)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attack", action="append", choices=ATTACKS, help="an attack to run (repeatable; default all)")
    parser.add_argument("--broker", choices=["auto", "mosquitto", "iotcore"], default="auto", help="local broker kind")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--as-attacker", choices=ATTACKS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.as_attacker:
        print(json.dumps(asyncio.run(attack(args.as_attacker, args.url, args.prefix))))
        return
    args.attack = args.attack or list(ATTACKS)
    rows = asyncio.run(bench(args))
    command = "python bench/attack.py " + " ".join(sys.argv[1:])
    if args.json:
        print(json.dumps({"command": command, "attacks": rows}, indent=2))
        return
    print(f"$ {command}")
    header = f"{'attack':<14} {'p95 before':>10} {'during':>8} {'ratio':>6} {'failed':>6} {'pub/req':>7}"
    print(f"{header}  hub MB (before/peak/after)  attacker got")
    for row in rows:
        replies = ", ".join(f"{code} {count}" for code, count in sorted(row["attacker"]["replies"].items()))
        print(
            f"{row['attack']:<14} {row['p95_before_ms']:>10} {row['p95_during_ms']:>8} {row['ratio']:>6}"
            f" {row['victim_failed']:>6} {row['victim_publishes_per_request']:>7}  "
            f"{'/'.join(str(mb) for mb in row['hub_mb']):<26}  {row['attacker']['sent']} sent: {replies or 'nothing'}"
        )


if __name__ == "__main__":
    main()

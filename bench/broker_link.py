"""Where the time of a cloud-only request goes through an emulated link, on each local broker.

For each broker kind installed (mosquitto, the embedded iotcore), a hub in
its own process and one agent as a Raspberry Pi 4 (stretched sessions)
behind an emulated link (``simulations.LinkProxy``, ``--link``, default
``wifi``) send resnet18's camera image cloud-only, raw (150 KB of uint8)
and as a JPEG (about 20 KB), in turns, and print the medians of the total
time and of its parts as the agent reports them (``InferenceResult.timings``).
The demo's Wi-Fi table (``make demo``) found the JPEG slower than raw uint8
on the embedded broker and faster on mosquitto, until edgecut's connections
acknowledged every read at once (docs/broker.md): this shows which part
moves, and that both brokers now carry the JPEG alike.

    python bench/broker_link.py [--link wifi] [--requests 15] [--qos 0|1] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import uuid
from typing import Any, Literal

from cloud_hub import HubProcess, LocalBroker, wait_online
from edge_agent import CLOUD_ONLY, EdgeAgent, InferenceResult
from models import camera_images
from protocol.mqtt import BrokerURL
from simulations import PROFILES, LinkProxy, preset, stretched_sessions

Kind = Literal["mosquitto", "iotcore"]
PREFIX = "bench-broker-link"
MODEL = "resnet18"
CODECS = ("raw", "jpeg")
WARM_UP = 2
"""Requests per codec not counted: the first warm the hub and the link."""
PARTS = ("total_ms", "encode_ms", "network_ms", "hub_queue_ms", "hub_compute_ms", "decode_ms")


def installed_kinds() -> list[Kind]:
    """The local brokers this machine can start: mosquitto where it is on PATH, and the embedded one."""
    return (["mosquitto"] if shutil.which("mosquitto") else []) + ["iotcore"]


async def measure(kind: Kind, link: str, requests: int, qos: int | None = None) -> dict[str, dict[str, float]]:
    """Median ms of each part, by codec, of ``requests`` cloud-only requests per codec taken in turns.

    ``qos``: of requests and replies; by default the broker's own (``LocalBroker.url``).
    """
    results: dict[str, list[InferenceResult]] = {codec: [] for codec in CODECS}
    hub_id = f"bench-hub-{uuid.uuid4().hex[:6]}"
    with LocalBroker(kind=kind) as broker:
        url = BrokerURL.parse(broker.url)
        qos = url.qos if qos is None else qos
        direct = f"mqtt://{url.host}:{url.port}?qos={qos}"
        with HubProcess(direct, prefix=PREFIX, hub_id=hub_id):
            await wait_online(direct, PREFIX, [hub_id], 120)
            async with LinkProxy(preset(link), upstream=(url.host, url.port)) as proxy:
                agents = {codec: _agent(f"mqtt://127.0.0.1:{proxy.port}?qos={qos}", codec) for codec in CODECS}
                async with agents["raw"], agents["jpeg"]:
                    for index, image in enumerate(camera_images(WARM_UP + requests, (224, 224, 3), seed=0)):
                        for codec, agent in agents.items():  # in turns: the host's drift falls on both alike
                            result = await agent.infer(image)
                            if index >= WARM_UP:
                                results[codec].append(result)
    return {
        codec: {part: statistics.median(getattr(r.timings, part) for r in runs) for part in PARTS}
        | {"bytes_sent": statistics.median(r.bytes_sent for r in runs)}
        for codec, runs in results.items()
    }


def _agent(url: str, codec: str) -> EdgeAgent:
    """A Pi 4 sending the image cloud-only with ``codec``."""
    return EdgeAgent(
        url,
        model=MODEL,
        cut=CLOUD_ONLY,
        codec=codec,
        prefix=PREFIX,
        agent_id=f"bench-{codec}",
        threads=1,
        session_factory=stretched_sessions(PROFILES["rpi4"].factor),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--link", default="wifi", help="a link preset (edgecut sim link --list; default wifi)")
    parser.add_argument("--requests", type=int, default=15, help="measured requests per codec (default 15)")
    parser.add_argument(
        "--qos", type=int, choices=(0, 1), help="of requests and replies (default: each broker's own URL's)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures: dict[str, Any] = {}
    for kind in installed_kinds():
        figures[kind] = asyncio.run(measure(kind, args.link, args.requests, args.qos))
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    qos = "" if args.qos is None else f" --qos {args.qos}"
    print(f"$ python bench/broker_link.py --link {args.link} --requests {args.requests}{qos}")
    print(f"{MODEL} cloud-only as a Pi 4 over {args.link}: medians, ms")
    print(f"{'broker':<10} {'codec':<6} {'bytes':>8} " + " ".join(f"{part[:-3]:>12}" for part in PARTS))
    for kind, by_codec in figures.items():
        for codec, parts in by_codec.items():
            cells = " ".join(f"{parts[part]:12.1f}" for part in PARTS)
            print(f"{kind:<10} {codec:<6} {parts['bytes_sent']:8.0f} {cells}")


if __name__ == "__main__":
    main()

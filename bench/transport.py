"""How thin is the runtime? Agent round trip vs bare aiomqtt echo + head + tail compute.

For each cut: the median of N agent inferences through a real hub and broker,
against the sum of medians measured the same way in this run: a bare aiomqtt
request/response echo carrying the same request and reply byte counts (MQTT 5,
TCP_NODELAY, same broker and QoS), and the compute: the head and then the tail
run alone, one after the other as the pipeline runs them (each alone in a
loop keeps its weights in the CPU's caches, which a pipeline that runs the
other half in between never does: on one machine that costs 1-1.5 ms of
resnet18's tail, nothing of the runtime's); with a codec other than raw, also
the codec alone (encoding the crossing tensors and decoding them, as agent
and hub do). The ratio is the runtime's overhead; the target is <= 1.1. The
head and tail columns show each alone in a loop, for reference. A codec is
measured only at the cuts where it sends what it names: elsewhere its row
would repeat raw's (``jpeg`` on float activations) or another codec's.

    python bench/transport.py [--model resnet18] [--requests 30] [--broker URL] [--codec int8+zstd ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import time
from typing import Any

import aiomqtt
import numpy as np
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_hub import Hub, HubConfig, LocalBroker
from edge_agent import EDGE_ONLY, EdgeAgent, Timeouts, codec_at
from edgecut._demo import pick_cuts, sample_images
from protocol import RAW_CODEC, decode_tensor, encode_tensor
from protocol.mqtt import BrokerURL

NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _client(url: BrokerURL) -> aiomqtt.Client:
    return aiomqtt.Client(url.host, url.port, protocol=aiomqtt.ProtocolVersion.V5, socket_options=NODELAY)


async def echo_round_trip(url: BrokerURL, request_bytes: int, reply_bytes: int, count: int) -> float:
    """Median ms of a bare MQTT 5 request/response with these payload sizes."""
    request, reply = b"x" * request_bytes, b"y" * reply_bytes
    async with _client(url) as server, _client(url) as client:
        await server.subscribe("bench/echo/req", qos=url.qos)
        await client.subscribe("bench/echo/resp", qos=url.qos)

        async def serve() -> None:
            messages = aiter(server.messages)
            for _ in range(count + 1):
                message = await anext(messages)
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                props.CorrelationData = message.properties.CorrelationData  # type: ignore[union-attr]
                await server.publish("bench/echo/resp", reply, qos=url.qos, properties=props)

        echo = asyncio.create_task(serve())
        replies = aiter(client.messages)
        samples = []
        for i in range(count + 1):
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = "bench/echo/resp"
            props.CorrelationData = str(i).encode()
            started = time.perf_counter()
            await client.publish("bench/echo/req", request, qos=url.qos, properties=props)
            await anext(replies)
            samples.append(time.perf_counter() - started)
        await echo
    return _median_ms(samples[1:])


def compute_ms(session: Any, feeds: dict[str, np.ndarray], count: int) -> float:  # noqa: ANN401
    """Median ms of ``session.run(feeds)``."""
    session.run(feeds)
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        session.run(feeds)
        samples.append(time.perf_counter() - started)
    return _median_ms(samples)


def in_turn_ms(head: Any, tail: Any, feeds: dict[str, np.ndarray], count: int) -> float:  # noqa: ANN401
    """Median ms of the head and then the tail, run one after the other (the head optional)."""
    crossing = head.run(feeds) if head is not None else feeds
    tail.run(crossing)
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        crossing = head.run(feeds) if head is not None else feeds
        tail.run(crossing)
        samples.append(time.perf_counter() - started)
    return _median_ms(samples)


def codec_round_ms(tensors: dict[str, np.ndarray], codec: str, count: int) -> float:
    """Median ms of encoding ``tensors`` with ``codec`` and decoding them again."""
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        for name, array in tensors.items():
            payload = encode_tensor(array, codec)
            decode_tensor({**payload, "data": bytes(payload["data"])}, name=name, codec=codec)
        samples.append(time.perf_counter() - started)
    return _median_ms(samples)


async def bench_cut(agent: EdgeAgent, url: BrokerURL, cut: str, images: list[np.ndarray]) -> dict[str, Any]:
    """Measure one cut: agent round trips, then the same bytes bare, then compute alone."""
    await agent.infer(images[0], cut=cut)
    totals, sent, received = [], 0, 0
    for image in images:
        result = await agent.infer(image, cut=cut)
        totals.append(result.timings.total_ms / 1000)
        sent = result.bytes_sent
        received = sum(v.nbytes for v in result.outputs.values()) + 200  # tensor + envelope
    halves = agent.model.halves(cut)
    feeds = {agent.model.inputs[0].name: images[0][np.newaxis]}
    head_ms = compute_ms(halves.head, feeds, len(images)) if halves.head else 0.0
    crossing = halves.head.run(feeds) if halves.head else feeds
    tail_ms = compute_ms(halves.tail, crossing, len(images))
    tensors = {spec.name: crossing[spec.name] for spec in halves.manifest.crossing}
    compute = in_turn_ms(halves.head, halves.tail, feeds, len(images))
    codec_ms = codec_round_ms(tensors, agent.codec, len(images)) if agent.codec != RAW_CODEC else 0.0
    echo_ms = await echo_round_trip(url, sent, received, len(images))
    agent_ms = _median_ms(totals)
    floor = echo_ms + compute + codec_ms
    return {
        "cut": cut,
        "codec": agent.codec,
        "request_bytes": sent,
        "codec_ms": codec_ms,
        "agent_ms": agent_ms,
        "echo_ms": echo_ms,
        "head_ms": head_ms,
        "tail_ms": tail_ms,
        "compute_ms": compute,
        "ratio": agent_ms / floor,
    }


async def main(
    model: str, requests: int, broker: str | None, only: list[str] | None = None, codecs: list[str] | None = None
) -> list[dict[str, Any]]:
    """Run the benchmark over every demo cut but edge-only, with each codec."""
    with contextlib.ExitStack() as stack:
        if broker is None:
            broker = stack.enter_context(LocalBroker()).url
        url = BrokerURL.parse(broker)
        hub = Hub(HubConfig(broker=broker, prefix="bench", hub_id="bench-hub", threads=1))
        serving = asyncio.create_task(hub.serve())
        await hub.ready.wait()
        try:
            rows = []
            for codec in codecs or [RAW_CODEC]:
                async with EdgeAgent(
                    broker,
                    model=model,
                    cut=EDGE_ONLY,  # sends nothing: any codec starts; each cut below is asked for
                    prefix="bench",
                    threads=1,
                    timeouts=Timeouts(request=30),
                    codec=codec,
                ) as agent:
                    shape = tuple(int(d) for d in agent.model.inputs[0].shape[1:])
                    images = list(sample_images(requests, shape))  # type: ignore[arg-type]
                    cuts = only or [c for c in pick_cuts(agent.model) if c != "output"]
                    cuts = [c for c in cuts if codec_at(codec, agent.model.halves(c).manifest.crossing) == codec]
                    rows += [await bench_cut(agent, url, cut, images) for cut in cuts]
            return rows
        finally:
            hub.request_shutdown()
            await serving


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--broker", default=None, help="default: start a local broker")
    parser.add_argument("--cut", action="append", dest="cuts", help="measure this cut only (repeatable)")
    parser.add_argument("--codec", action="append", dest="codecs", help="measure with this codec (repeatable)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = asyncio.run(main(args.model, args.requests, args.broker, args.cuts, args.codecs))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(
            f"{'cut':<24} {'codec':<18} {'req bytes':>10} {'agent ms':>9} {'echo ms':>8} {'head ms':>8} "
            f"{'tail ms':>8} {'in turn':>8} {'codec ms':>8} {'ratio':>6}"
        )
        for r in rows:
            print(
                f"{r['cut']:<24} {r['codec']:<18} {r['request_bytes']:>10,} {r['agent_ms']:>9.2f} {r['echo_ms']:>8.2f} "
                f"{r['head_ms']:>8.2f} {r['tail_ms']:>8.2f} {r['compute_ms']:>8.2f} {r['codec_ms']:>8.2f}"
                f" {r['ratio']:>6.3f}"
            )

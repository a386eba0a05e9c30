"""How thin is the runtime? Agent round trip vs bare aiomqtt echo + head + tail compute.

For each cut, sample by sample in turn (so the machine's slower and faster
moments fall on every measurement alike): an agent inference through a real
hub and broker (the hub holds the cut's split directory, as a fleet at one
fixed cut is deployed; ``--hub-chain``: the zoo model as a chain of
segments); a bare aiomqtt request/response echo carrying the same request
and reply byte counts (MQTT 5, TCP_NODELAY and quick acknowledgements as
edgecut's connections, same broker and QoS); and the
compute: the head and then the tail, one after the other as the pipeline runs
them (a half run alone in a loop keeps its weights in the CPU's caches, which a
pipeline that runs the other half in between never does: on one machine that
costs 1-1.5 ms of resnet18's tail, nothing of the runtime's); with a codec
other than raw, also the codec alone (encoding the crossing tensors and
decoding them, as agent and hub do). The ratio of the agent's median to the
sum of the others' medians is the runtime's overhead; the target is <= 1.1.
The head and tail columns show each half alone, for reference. A second
table shows where the agent's time beyond the floor went, from the timings
it reports (``InferenceResult.timings``): its head and the hub's tail each
against the floor's share, the network against the echo, and the parts the
floor has none of (encoding, the hub's queue, decoding). A codec is
measured only at the cuts where it sends what it names: elsewhere its row
would repeat raw's (``jpeg`` on float activations) or another codec's.

    python bench/transport.py [--model resnet18] [--requests 30] [--broker URL] [--codec int8+zstd ...] [--hub-chain]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import aiomqtt
import numpy as np
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_hub import Hub, HubConfig, LocalBroker
from edge_agent import EDGE_ONLY, EdgeAgent, Timeouts, Timings, codec_at
from models import camera_images, partition, zoo
from protocol import RAW_CODEC, decode_tensor, encode_tensor
from protocol.mqtt import BrokerURL, acknowledge_reads_at_once

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _client(url: BrokerURL) -> aiomqtt.Client:
    """A bare client with the socket settings of edgecut's: no Nagle, reads acknowledged at once.

    Without the quick acknowledgements a broker that leaves Nagle on (the embedded rumqttd) holds small
    QoS 1 messages ~44 ms, and the floor would be the broker's stall (docs/broker.md).
    """
    client = aiomqtt.Client(url.host, url.port, protocol=aiomqtt.ProtocolVersion.V5, socket_options=NODELAY)
    acknowledge_reads_at_once(client._client)  # noqa: SLF001 - aiomqtt's paho client
    return client


class Echo:
    """A bare MQTT 5 request/response pair on the broker: the transport alone, one round trip at a time."""

    def __init__(self, url: BrokerURL, request_bytes: int, reply_bytes: int) -> None:
        self._url = url
        self._request, self._reply = b"x" * request_bytes, b"y" * reply_bytes
        self._stack = contextlib.AsyncExitStack()
        self._sent = 0

    async def __aenter__(self) -> Self:
        qos = self._url.qos
        server = await self._stack.enter_async_context(_client(self._url))
        client = await self._stack.enter_async_context(_client(self._url))
        await server.subscribe("bench/echo/req", qos=qos)
        await client.subscribe("bench/echo/resp", qos=qos)
        self._server, self._client = server, client
        self._replies = aiter(client.messages)
        self._serving = asyncio.create_task(self._serve())
        return self

    async def __aexit__(self, *exc: object) -> None:
        while not self._serving.done():  # a cancel inside aiomqtt's publish can be swallowed (CPython gh-86296)
            self._serving.cancel()
            await asyncio.wait([self._serving], timeout=0.1)
        await self._stack.aclose()

    async def _serve(self) -> None:
        async for message in self._server.messages:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.CorrelationData = message.properties.CorrelationData  # type: ignore[union-attr]
            await self._server.publish("bench/echo/resp", self._reply, qos=self._url.qos, properties=props)

    async def round_trip(self) -> float:
        """Seconds for one request to go out and its reply to come back."""
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = "bench/echo/resp"
        props.CorrelationData = str(self._sent).encode()
        self._sent += 1
        started = time.perf_counter()
        await self._client.publish("bench/echo/req", self._request, qos=self._url.qos, properties=props)
        await anext(self._replies)
        return time.perf_counter() - started


def timed(run: Callable[[], object]) -> float:
    """Seconds ``run()`` takes."""
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def in_turn(
    run_head: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    run_tail: Callable[[dict[str, np.ndarray]], object],
    feeds: dict[str, np.ndarray],
) -> tuple[float, float]:
    """Seconds the head and then the tail take, run one after the other as the pipeline runs them."""
    started = time.perf_counter()
    crossing = run_head(feeds)
    head_done = time.perf_counter()
    run_tail(crossing)
    return head_done - started, time.perf_counter() - head_done


def codec_round(tensors: dict[str, np.ndarray], codec: str) -> None:
    """Encode ``tensors`` with ``codec`` and decode them again, as agent and hub do."""
    for name, array in tensors.items():
        payload = encode_tensor(array, codec)
        decode_tensor({**payload, "data": bytes(payload["data"])}, name=name, codec=codec)


async def bench_cut(agent: EdgeAgent, url: BrokerURL, cut: str, images: list[np.ndarray]) -> dict[str, Any]:
    """Measure one cut: per sample, an agent round trip, the same bytes bare, then the compute alone.

    The measurements take turns, sample by sample, so that the machine's
    slower and faster moments fall on all of them alike.
    """
    first = await agent.infer(images[0], cut=cut)
    sent = first.bytes_sent
    received = sum(v.nbytes for v in first.outputs.values()) + 200  # tensor + envelope
    halves = agent.model.halves(cut)
    head, tail = halves.head, halves.tail
    if tail is None:
        msg = f"cut {cut!r} sends nothing: it has no transport to measure"
        raise ValueError(msg)
    name = agent.model.inputs[0].name

    def run_head(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return head.run(feeds) if head is not None else feeds

    crossing = run_head({name: images[0][np.newaxis]})
    tensors = {spec.name: crossing[spec.name] for spec in halves.manifest.crossing}
    keys = ("agent", "echo", "compute", "head_in_turn", "tail_in_turn", "head", "tail", "codec")
    samples: dict[str, list[float]] = {key: [] for key in keys}
    timings: list[Timings] = []
    async with Echo(url, sent, received) as echo:
        await echo.round_trip()
        for image in images:
            feeds = {name: image[np.newaxis]}
            timings.append((await agent.infer(image, cut=cut)).timings)
            samples["agent"].append(timings[-1].total_ms / 1000)
            samples["echo"].append(await echo.round_trip())
            head_s, tail_s = in_turn(run_head, tail.run, feeds)
            samples["compute"].append(head_s + tail_s)
            samples["head_in_turn"].append(head_s)
            samples["tail_in_turn"].append(tail_s)
            samples["head"].append(timed(lambda: run_head(feeds)))  # noqa: B023
            samples["tail"].append(timed(lambda: tail.run(crossing)))
            if agent.codec != RAW_CODEC:
                samples["codec"].append(timed(lambda: codec_round(tensors, agent.codec)))
    ms = {key: _median_ms(values) if values else 0.0 for key, values in samples.items()}
    floor = ms["echo"] + ms["compute"] + ms["codec"]
    return {
        "cut": cut,
        "codec": agent.codec,
        "request_bytes": sent,
        "codec_ms": ms["codec"],
        "agent_ms": ms["agent"],
        "echo_ms": ms["echo"],
        "head_ms": ms["head"],
        "tail_ms": ms["tail"],
        "compute_ms": ms["compute"],
        "ratio": ms["agent"] / floor,
        "over": over_the_floor(timings, ms),
    }


@contextlib.contextmanager
def split_directory(model: str, cut: str) -> Iterator[Path]:
    """A directory holding zoo ``model`` split at ``cut``, for the block's duration."""
    with tempfile.TemporaryDirectory(prefix="edgecut-bench-") as directory:
        halves = partition.split(zoo.build(model), cut, model_id=model)
        partition.save_split(halves, Path(directory) / cut)
        yield Path(directory)


def over_the_floor(timings: list[Timings], ms: dict[str, float]) -> dict[str, float]:
    """Where the agent's time beyond the floor went: medians of its timings against the floor's parts, in ms.

    The head and the tail are set against their times in turn (each right
    after the other half, as in the pipeline), not alone: a half run alone
    after itself finds its data in the CPU's caches (resnet18's stem: 5.1 ms
    alone, 7.3 in turn), which the agent's head never does.
    """

    def median(field: str) -> float:
        return float(statistics.median(getattr(t, field) for t in timings))

    return {
        "edge": median("edge_ms") - ms["head_in_turn"],
        "encode": median("encode_ms"),
        "network": median("network_ms") - ms["echo"],
        "hub_queue": median("hub_queue_ms"),
        "hub_tail": median("hub_compute_ms") - ms["tail_in_turn"],
        "decode": median("decode_ms"),
    }


@contextlib.asynccontextmanager
async def serving_hub(broker: str, models_dir: Path | None = None) -> AsyncIterator[Hub]:
    """A hub on ``broker`` for the block's duration, serving what ``models_dir`` holds and the zoo."""
    hub = Hub(HubConfig(broker=broker, prefix="bench", hub_id="bench-hub", threads=1, models_dir=models_dir))
    serving = asyncio.create_task(hub.serve())
    await hub.ready.wait()
    try:
        yield hub
    finally:
        hub.request_shutdown()
        await serving


async def main(
    model: str,
    requests: int,
    broker: str | None,
    only: list[str] | None = None,
    codecs: list[str] | None = None,
    *,
    shared_hub: bool = False,
    hub_chain: bool = False,
) -> list[dict[str, Any]]:
    """Run the benchmark over every demo cut but edge-only, with each codec.

    Each cut gets a hub of its own holding that cut's split directory, as a
    fleet at one fixed cut is deployed (``edgecut models split --cut``). With
    ``hub_chain``, the hub holds the zoo model instead, as a chain of
    segments through the model's candidate cuts (the tail then runs through
    the later cuts' boundaries); with ``shared_hub``, one such hub serves
    every cut.
    """
    async with contextlib.AsyncExitStack() as stack:
        if broker is None:
            broker = stack.enter_context(LocalBroker()).url
        url = BrokerURL.parse(broker)
        if shared_hub:
            await stack.enter_async_context(serving_hub(broker))
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
                images = list(camera_images(requests, shape))
                cuts = only or [c for c in agent.model.spread_cuts() if c != "output"]
                for cut in cuts:
                    if codec_at(codec, agent.model.halves(cut).manifest.crossing) != codec:
                        continue
                    async with contextlib.AsyncExitStack() as own:
                        if not shared_hub:
                            models_dir = None if hub_chain else own.enter_context(split_directory(model, cut))
                            await own.enter_async_context(serving_hub(broker, models_dir))
                        rows.append(await bench_cut(agent, url, cut, images))
        return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18", help="zoo model (default resnet18)")
    parser.add_argument("--requests", type=int, default=30, help="timed requests per cut (default 30)")
    parser.add_argument("--broker", default=None, help="default: start a local broker")
    parser.add_argument("--cut", action="append", dest="cuts", help="measure this cut only (repeatable)")
    parser.add_argument("--codec", action="append", dest="codecs", help="measure with this codec (repeatable)")
    parser.add_argument(
        "--shared-hub",
        action="store_true",
        help="one hub for every cut, holding the model's chain (implies --hub-chain)",
    )
    parser.add_argument(
        "--hub-chain",
        action="store_true",
        help="each cut's hub holds the zoo model as a chain of segments (default: the cut's split directory)",
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead")
    args = parser.parse_args()
    rows = asyncio.run(
        main(
            args.model,
            args.requests,
            args.broker,
            args.cuts,
            args.codecs,
            shared_hub=args.shared_hub,
            hub_chain=args.hub_chain,
        )
    )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(" ".join(["$ python bench/transport.py", *sys.argv[1:]]))
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
        print(
            "\nover the floor, ms (medians): the agent's own parts, and each against the part of the floor it matches"
        )
        parts = ("edge", "encode", "network", "hub queue", "hub tail", "decode")
        print(f"{'cut':<24} {'codec':<18} " + " ".join(f"{part:>9}" for part in parts))
        for r in rows:
            over = " ".join(f"{ms:>9.2f}" for ms in r["over"].values())
            print(f"{r['cut']:<24} {r['codec']:<18} {over}")

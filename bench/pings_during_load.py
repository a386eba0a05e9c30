"""Does a hub answer pings at once while it loads a large model? Ping round trips before, during and after a load.

A hub serves a directory holding one large model (a stack of fp32 matrix
products: ``--megabytes`` of weights, a user's 330 MB ViT-B/16 in size, not
in kind). A plain MQTT 5 client pings it every ``--every-ms`` from start to
end; one request for the large model starts its load (hashing, splitting in a
child process, sessions built in the hub's loading thread) and is answered
``loading`` and then, sent again, with its outputs. The table gives the ping
round trips in each phase: a hub whose event loop the load holds up answers
late during the load. The round trip's floor is the broker's: compare the
phase before the load with the phase during it.

    python bench/pings_during_load.py [--megabytes 320] [--every-ms 20] [--broker URL] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_hub import Hub, HubConfig, LocalBroker
from models import sha256_hex
from protocol import InferenceRequest, Ping, Topics, decode_reply, encode_ping, encode_request
from protocol.mqtt import BrokerURL

WIDTH = 2048
PREFIX = "bench"
AGENT = "pinger"
LOAD_WAIT_S = 300
"""The longest the bench waits for the load: requests answered ``loading`` are sent again until then."""


def large_model(megabytes: int) -> onnx.ModelProto:
    """A chain of ``WIDTH``-square matrix products (with a Relu between), ``megabytes`` of fp32 weights in all."""
    layers = max(1, megabytes * 2**20 // (WIDTH * WIDTH * 4))
    rng = np.random.default_rng(0)
    nodes, weights, name = [], [], "x"
    for i in range(layers):
        weight = (rng.standard_normal((WIDTH, WIDTH), dtype=np.float32) / WIDTH**0.5).astype(np.float32)
        weights.append(numpy_helper.from_array(weight, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [name, f"w{i}"], [f"m{i}"], name=f"layer{i}.matmul"))
        nodes.append(helper.make_node("Relu", [f"m{i}"], [f"layer{i}.out"], name=f"layer{i}.relu"))
        name = f"layer{i}.out"
    graph = helper.make_graph(
        nodes,
        "large",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", WIDTH])],
        weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


class Pinger:
    """Pings the hub every ``every_s`` on the agent's ping topic; keeps each round trip with the time it was sent."""

    def __init__(self, url: BrokerURL, every_s: float) -> None:
        self._url, self._every_s = url, every_s
        self.samples: list[tuple[float, float | None]] = []  # (sent, round trip in s, or None if unanswered)
        self._sent: dict[str, float] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Ping until ``stop`` is set; unanswered pings count as lost."""
        topics = Topics(PREFIX)
        async with aiomqtt.Client(self._url.host, self._url.port, protocol=aiomqtt.ProtocolVersion.V5) as client:
            await client.subscribe(topics.response(AGENT), qos=0)
            reader = asyncio.create_task(self._read(client))
            index = 0
            while not stop.is_set():
                ping_id = f"ping-{index}"
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                props.ResponseTopic = topics.response(AGENT)
                props.CorrelationData = ping_id.encode()
                self._sent[ping_id] = time.perf_counter()
                payload = encode_ping(Ping(request_id=ping_id, sent_at=time.time()))
                await client.publish(topics.ping(AGENT), payload, qos=0, properties=props)
                index += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._every_s)
            await asyncio.sleep(1.0)  # the last answers
            reader.cancel()
        self.samples += [(sent, None) for sent in self._sent.values()]

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            ping_id = decode_reply(message.payload).request_id if message.payload else ""
            sent = self._sent.pop(ping_id, None)
            if sent is not None:
                self.samples.append((sent, time.perf_counter() - sent))


async def ask(url: BrokerURL, request: InferenceRequest, timeout_s: float) -> str:
    """Send ``request`` as the pinger agent; the reply's error code, or ``ok``."""
    topics = Topics(PREFIX)
    async with aiomqtt.Client(url.host, url.port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(topics.response(AGENT), qos=1)
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = topics.response(AGENT)
        props.CorrelationData = request.request_id.encode()
        await client.publish(topics.request(AGENT), encode_request(request), qos=1, properties=props)
        async with asyncio.timeout(timeout_s):
            async for message in client.messages:
                reply = decode_reply(message.payload)
                if reply.request_id == request.request_id:
                    return "ok" if reply.error is None else str(reply.error.code)
    return "none"


def phase_rows(samples: list[tuple[float, float | None]], load: tuple[float, float]) -> list[dict[str, Any]]:
    """Round-trip figures of the pings sent before, during and after the load."""
    phases = {"before": [], "during": [], "after": []}
    for sent, rtt in samples:
        phase = "before" if sent < load[0] else "during" if sent < load[1] else "after"
        phases[phase].append(rtt)
    rows = []
    for phase, rtts in phases.items():
        answered = sorted(r * 1000 for r in rtts if r is not None)
        rows.append(
            {
                "phase": phase,
                "pings": len(rtts),
                "lost": len(rtts) - len(answered),
                "p50_ms": statistics.median(answered) if answered else None,
                "p99_ms": answered[min(len(answered) - 1, int(len(answered) * 0.99))] if answered else None,
                "max_ms": answered[-1] if answered else None,
            }
        )
    return rows


async def main(megabytes: int, every_ms: float, broker: str | None) -> dict[str, Any]:
    """Serve a large model, ping throughout, load it with one request; the ping figures by phase."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        model = large_model(megabytes)
        path = Path(tmp) / "large.onnx"
        onnx.save_model(model, path)
        sha = sha256_hex(path.read_bytes())  # a model file is known by its bytes' sha256
        if broker is None:
            broker = stack.enter_context(LocalBroker()).url
        url = BrokerURL.parse(broker)
        hub = Hub(
            HubConfig(
                broker=broker,
                prefix=PREFIX,
                hub_id="bench-hub",
                models_dir=Path(tmp),
                use_zoo=False,
                pings_per_agent_s=1000,
            )
        )
        serving = asyncio.create_task(hub.serve())
        await hub.ready.wait()
        stop = asyncio.Event()
        pinger = Pinger(url, every_ms / 1000)
        pinging = asyncio.create_task(pinger.run(stop))
        await asyncio.sleep(1.0)
        x = np.random.default_rng(1).standard_normal((1, WIDTH), dtype=np.float32)

        def request() -> InferenceRequest:
            return InferenceRequest(
                request_id=f"large-{time.perf_counter_ns()}",
                agent_id=AGENT,
                model_id="large",
                model_sha256=sha,
                cut_id="layer0.out",
                tensors={"layer0.out": x},
                sent_at=time.time(),
                deadline_ms=2000.0,
            )

        started = time.perf_counter()
        outcomes = [await ask(url, request(), 30)]
        while outcomes[-1] == "loading" and time.perf_counter() - started < LOAD_WAIT_S:
            outcomes.append(await ask(url, request(), 30))
        loaded = time.perf_counter()
        await asyncio.sleep(1.0)
        stop.set()
        await pinging
        hub.request_shutdown()
        await serving
    return {
        "megabytes": megabytes,
        "load_s": loaded - started,
        "requests": outcomes,
        "phases": phase_rows(pinger.samples, (started, loaded)),
        "slowest": sorted(
            ({"at_s": sent - started, "ms": rtt * 1000} for sent, rtt in pinger.samples if rtt is not None),
            key=lambda ping: -ping["ms"],
        )[:5],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=320, help="weights of the large model")
    parser.add_argument("--every-ms", type=float, default=20.0, help="time between pings")
    parser.add_argument("--broker", default=None, help="default: start a local broker")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead")
    args = parser.parse_args()
    result = asyncio.run(main(args.megabytes, args.every_ms, args.broker))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"python bench/pings_during_load.py --megabytes {args.megabytes} --every-ms {args.every_ms:g}")
        print(f"load of {result['megabytes']} MB: {result['load_s']:.1f} s; requests answered {result['requests']}")
        print(f"{'phase':<8} {'pings':>6} {'lost':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        for row in result["phases"]:
            figures = " ".join(
                f"{row[k]:>8.1f}" if row[k] is not None else f"{'-':>8}" for k in ("p50_ms", "p99_ms", "max_ms")
            )
            print(f"{row['phase']:<8} {row['pings']:>6} {row['lost']:>5} {figures}")
        slowest = ", ".join(f"{ping['ms']:.0f} ms at {ping['at_s']:+.1f} s" for ping in result["slowest"])
        print(f"slowest pings (sent, from the load's start): {slowest}")

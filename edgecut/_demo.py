"""``edgecut demo``: broker, hub and agent, one model at several cuts, on loopback and over emulated conditions.

It shows the mission end to end: at every cut the agent runs the head, the hub
(its own process, so that the two do not share an interpreter) runs the tail
over MQTT, and the result must equal the full model run locally. Then the same
cuts run again as a slow device would, over emulated links, with cloud-only
also sending the image as a camera would (a JPEG), and beside them
``cut="auto"``: which choice is fastest depends on the device and the link,
which is why agents make it, and the demo shows the planner making it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import statistics
import sys
import uuid
from typing import TYPE_CHECKING

import numpy as np

from cloud_hub import HubProcess, LocalBroker, wait_online
from edge_agent import CLOUD_ONLY, EDGE_ONLY, EdgeAgent, InferenceResult, Timeouts
from edgecut._demo_report import EMULATED_REQUESTS, TOLERANCE, AutoRun, DemoReport, DemoRow, EmulatedRow, format_report
from models import camera_images
from protocol import RAW_CODEC
from protocol.mqtt import BrokerURL

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["TOLERANCE", "DemoReport", "DemoRow", "format_report", "run_demo"]

PREFIX = "edgecut-demo"
_ONLINE_TIMEOUT_S = 120.0
CONDITIONS = (("rpi4", "wifi"), ("rpi4", "3g-bus"))
"""The emulated conditions, (device profile, link preset): ``edgecut sim devices``, ``edgecut sim link --list``."""
JPEG = "jpeg"
"""How a camera sends its image: cloud-only's honest baseline under emulated conditions."""
AUTO_LEARNING_REQUESTS = 12
"""Requests ``cut="auto"`` makes under each condition before the measured ones: it learns the link and the hub."""


async def run_demo(
    *,
    broker: str | None = None,
    model: str = "resnet18",
    requests: int = 8,
    cuts: list[str] | None = None,
    emulated_requests: int = EMULATED_REQUESTS,
) -> DemoReport:
    """Start what is missing (broker, hub), run ``requests`` inferences per cut, compare, then emulate.

    Args:
        broker: Use this broker; ``None`` starts a local one (mosquitto if on
            PATH, else the embedded iotcore broker).
        model: Zoo model name or ``.onnx`` path.
        requests: Measured requests per cut on loopback (after one warm-up request).
        cuts: Cut ids to run; ``None`` picks edge-only, cloud-only and three between.
        emulated_requests: Measured requests per cut under each emulated
            condition; 0 skips the emulation.
    """
    with contextlib.ExitStack() as stack:
        if broker is None:
            local = LocalBroker()
            stack.push(local)  # its __exit__ stops it and removes its files
            await asyncio.to_thread(local.start)  # start() polls the port: keep it off the event loop
            _progress(f"started {local.kind} broker at {local.url}")
            broker = local.url
        hub = stack.enter_context(
            HubProcess(broker, prefix=PREFIX, hub_id=f"demo-hub-{uuid.uuid4().hex[:6]}", options=["--threads", "1"])
        )
        await wait_online(broker, PREFIX, [hub.hub_id], _ONLINE_TIMEOUT_S)
        _progress(f"hub {hub.hub_id} online (its own process)")
        return await _run_against(broker, model, requests, cuts, emulated_requests)


async def _run_against(
    broker: str, model: str, requests: int, cuts: list[str] | None, emulated_requests: int
) -> DemoReport:
    timeouts = Timeouts(request=30.0)
    async with EdgeAgent(
        broker, model=model, cut=CLOUD_ONLY, agent_id="demo-agent", prefix=PREFIX, threads=1, timeouts=timeouts
    ) as agent:
        _progress(f"agent connected; {agent.model.model_id} has {len(agent.model.cuts)} cuts")
        chosen = cuts or agent.model.spread_cuts()
        rows = [await _measure_cut(agent, cut, requests) for cut in chosen]
    emulated = []
    for device, link in CONDITIONS if emulated_requests else ():
        emulated.append(await _emulate(broker, model, chosen, device=device, link=link, requests=emulated_requests))
    return DemoReport(
        model=model, broker=broker, requests=requests, rows=rows, emulated=emulated, emulated_requests=emulated_requests
    )


async def _measure_cut(agent: EdgeAgent, cut: str, requests: int) -> DemoRow:
    images, reference = await _references(agent, requests + 1)
    await agent.infer(images[0], cut=cut)  # warm-up: the hub loads this tail on first use
    results = [await agent.infer(image, cut=cut) for image in images[1:]]
    diff = _max_diff([results], reference[1:])
    _progress(f"cut {cut}: {requests} requests, max |diff| {diff:.2e}")
    return _row(cut, results, diff)


async def _emulate(broker: str, model: str, cuts: list[str], *, device: str, link: str, requests: int) -> EmulatedRow:
    """The cuts, cloud-only as a JPEG and ``cut="auto"`` choosing among them, as ``device`` over ``link``.

    Auto learns first (``AUTO_LEARNING_REQUESTS``); then every policy takes
    its turn on each image. Measured one policy after another, one run found
    the raw image fastest (79 ms against the JPEG's 94) and another the JPEG
    (81 against 97): the host's load moved between the policies.
    """
    from simulations import PROFILES, LinkProxy, preset, stretched_sessions  # noqa: PLC0415 - the demo's own use

    url = BrokerURL.parse(broker)
    profile = PROFILES[device]
    runs: dict[str, list[InferenceResult]] = {}
    async with LinkProxy(preset(link), upstream=(url.host, url.port)) as proxy:

        def agent(role: str, **options: object) -> EdgeAgent:
            return EdgeAgent(
                f"mqtt://127.0.0.1:{proxy.port}?qos={url.qos}",
                model=model,
                agent_id=f"demo-{device}-{link}{role}",
                prefix=PREFIX,
                threads=1,
                timeouts=Timeouts(request=60.0),
                session_factory=stretched_sessions(profile.factor),
                **options,  # type: ignore[arg-type]
            )

        async with (
            agent("", cut=CLOUD_ONLY) as fixed,
            agent("-jpeg", cut=CLOUD_ONLY, codec=JPEG) as camera,
            agent("-auto", codec=[RAW_CODEC, JPEG]) as auto,
        ):
            for cut in cuts:  # load every head now: loading is not what the table compares
                await asyncio.to_thread(fixed.model.halves, cut)
            images, reference = await _references(fixed, requests)
            for image in itertools.islice(itertools.cycle(images), AUTO_LEARNING_REQUESTS):
                await auto.infer(image)
            chosen = []
            for image in images:  # in turns, image by image: the host's drift falls on every policy alike
                for cut in cuts:
                    runs.setdefault(cut, []).append(await fixed.infer(image, cut=cut))
                runs.setdefault(f"{CLOUD_ONLY}@{JPEG}", []).append(await camera.infer(image))
                chosen.append(await auto.infer(image))
    auto_run = AutoRun(label=_most_used(chosen), total_ms=_median_total(chosen), learning=AUTO_LEARNING_REQUESTS)
    row = EmulatedRow(
        device=device,
        factor=profile.factor,
        link=link,
        total_ms={label: _median_total(results) for label, results in runs.items()},
        max_abs_diff=_max_diff([*runs.values(), chosen], reference, lossless=True),
        auto=auto_run,
    )
    _progress(
        f"{device} (x{profile.factor:g}) on {link}: fastest fixed choice {row.fastest} "
        f"({row.total_ms[row.fastest]:.0f} ms); auto used {auto_run.label} ({auto_run.total_ms:.0f} ms)"
    )
    return row


def _median_total(results: list[InferenceResult]) -> float:
    return statistics.median(result.timings.total_ms for result in results)


def _most_used(results: list[InferenceResult]) -> str:
    """The cut (``cut@codec`` for a codec other than raw) most of ``results`` ran at."""
    labels = (r.cut_id if r.codec == RAW_CODEC else f"{r.cut_id}@{r.codec}" for r in results)
    return collections.Counter(labels).most_common(1)[0][0]


async def _references(agent: EdgeAgent, count: int) -> tuple[list[np.ndarray], list[dict[str, np.ndarray]]]:
    spec = agent.model.inputs[0]
    images = list(camera_images(count, tuple(int(d) for d in spec.shape[1:])))
    return images, await asyncio.to_thread(_reference_outputs, agent, images)


def _reference_outputs(agent: EdgeAgent, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    full = agent.model.halves(EDGE_ONLY).head
    if full is None:
        msg = "the demo needs an agent holding the full model"
        raise TypeError(msg)
    return [full.run({agent.model.inputs[0].name: image[np.newaxis]}) for image in images]


def _max_diff(
    runs: Sequence[list[InferenceResult]], reference: list[dict[str, np.ndarray]], *, lossless: bool = False
) -> float:
    """Largest |result - full model| in ``runs`` (each aligned with ``reference``); ``lossless``: raw results only."""
    return max(
        (
            float(np.abs(result.outputs[name] - expected[name]).max())
            for results in runs
            for result, expected in zip(results, reference, strict=True)
            if not lossless or all(codec == RAW_CODEC for codec in result.tensor_codecs.values())
            for name in expected
        ),
        default=0.0,
    )


def _row(cut: str, results: list[InferenceResult], max_diff: float) -> DemoRow:
    def median(values: list[float]) -> float:
        return statistics.median(values)

    return DemoRow(
        cut=cut,
        bytes_sent=int(median([r.bytes_sent for r in results])),
        edge_ms=median([r.timings.edge_ms + r.timings.encode_ms for r in results]),
        transfer_ms=median([r.timings.network_ms + r.timings.hub_queue_ms + r.timings.decode_ms for r in results]),
        hub_ms=median([r.timings.hub_compute_ms for r in results]),
        total_ms=median([r.timings.total_ms for r in results]),
        max_abs_diff=max_diff,
        fallbacks=sum(r.fallback is not None for r in results),
    )


def _progress(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr, flush=True)  # noqa: T201 - progress for the user

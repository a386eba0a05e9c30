"""``edgecut demo``: broker, hub and agent in one process, one model at several cuts.

It shows the mission end to end: at every cut the agent runs the head, the hub
runs the tail over MQTT, and the result must equal the full model run locally.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import statistics
import sys
from typing import TYPE_CHECKING

import numpy as np

from cloud_hub import Hub, HubConfig, LocalBroker
from edge_agent import CLOUD_ONLY, EDGE_ONLY, EdgeAgent, InferenceResult, Timeouts
from models import Session

if TYPE_CHECKING:
    from collections.abc import Iterator

    from edge_agent import ModelHalves

TOLERANCE = 1e-4
"""Largest allowed |split - full| on any output element (ORT fuses differently per half)."""


@dataclasses.dataclass(frozen=True, slots=True)
class DemoRow:
    """Medians over the requests at one cut."""

    cut: str
    bytes_sent: int
    edge_ms: float
    transfer_ms: float
    hub_ms: float
    total_ms: float
    max_abs_diff: float
    fallbacks: int

    @property
    def ok(self) -> bool:
        """True when every result matched the full model and none fell back."""
        return self.max_abs_diff <= TOLERANCE and self.fallbacks == 0


@dataclasses.dataclass(frozen=True, slots=True)
class DemoReport:
    """What the demo ran and measured."""

    model: str
    broker: str
    requests: int
    rows: list[DemoRow]

    @property
    def ok(self) -> bool:
        """True when every cut matched."""
        return all(row.ok for row in self.rows)

    def to_json(self) -> dict[str, object]:
        """The report as a JSON-ready dict."""
        return {
            "model": self.model,
            "broker": self.broker,
            "requests": self.requests,
            "tolerance": TOLERANCE,
            "ok": self.ok,
            "rows": [dataclasses.asdict(row) for row in self.rows],
        }


def sample_images(count: int, shape: tuple[int, ...], seed: int = 0) -> Iterator[np.ndarray]:
    """Deterministic camera-like uint8 images: smooth gradients plus noise."""
    rng = np.random.default_rng(seed)
    height, width, channels = shape
    y, x = np.mgrid[0:height, 0:width]
    for _ in range(count):
        fx, fy = rng.uniform(0.005, 0.05, 2).tolist()
        phase = rng.uniform(0, 6.3)
        base = 127 + 100 * np.sin(fx * x + fy * y + phase)
        tint = rng.uniform(0.6, 1.0, channels)
        noise = rng.normal(0, 12, (height, width, channels))
        yield np.clip(base[..., None] * tint + noise, 0, 255).astype(np.uint8)


def pick_cuts(model: ModelHalves, intermediate: int = 3) -> list[str]:
    """Edge-only, cloud-only and ``intermediate`` single-tensor cuts spread over the model."""
    inner = [cut.id for cut in model.cuts if cut.single_tensor and cut.id not in {CLOUD_ONLY, EDGE_ONLY}]
    step = len(inner) / (intermediate + 1)
    chosen = [inner[int(step * (i + 1))] for i in range(intermediate)] if inner else []
    return [EDGE_ONLY, *dict.fromkeys(chosen), CLOUD_ONLY]


async def run_demo(
    *, broker: str | None = None, model: str = "resnet18", requests: int = 8, cuts: list[str] | None = None
) -> DemoReport:
    """Start what is missing (broker, hub), run ``requests`` inferences per cut, compare.

    Args:
        broker: Use this broker; ``None`` starts a local one (mosquitto if on
            PATH, else the embedded iotcore broker).
        model: Zoo model name or ``.onnx`` path.
        requests: Measured requests per cut (after one warm-up request).
        cuts: Cut ids to run; ``None`` picks edge-only, cloud-only and three between.
    """
    with contextlib.ExitStack() as stack:
        if broker is None:
            local = LocalBroker()
            stack.push(local)  # its __exit__ stops it and removes its files
            await asyncio.to_thread(local.start)  # start() polls the port: keep it off the event loop
            _progress(f"started {local.kind} broker at {local.url}")
            broker = local.url
        return await _run_against(broker, model, requests, cuts)


async def _run_against(broker: str, model: str, requests: int, cuts: list[str] | None) -> DemoReport:
    hub = Hub(HubConfig(broker=broker, hub_id="demo-hub", prefix="edgecut-demo", threads=1))
    serving = asyncio.create_task(hub.serve(), name="edgecut[demo-hub].serve")
    try:
        async with EdgeAgent(
            broker,
            model=model,
            cut=CLOUD_ONLY,
            agent_id="demo-agent",
            prefix="edgecut-demo",
            threads=1,
            timeouts=Timeouts(request=30.0),
        ) as agent:
            _progress(f"hub and agent connected; {agent.model.model_id} has {len(agent.model.cuts)} cuts")
            rows = [await _measure_cut(agent, cut, requests) for cut in cuts or pick_cuts(agent.model)]
    finally:
        hub.request_shutdown()
        await serving
    return DemoReport(model=model, broker=broker, requests=requests, rows=rows)


async def _measure_cut(agent: EdgeAgent, cut: str, requests: int) -> DemoRow:
    spec = agent.model.inputs[0]
    shape = tuple(int(d) for d in spec.shape[1:])
    images = list(sample_images(requests + 1, shape))
    reference = await asyncio.to_thread(_reference_outputs, agent, images)
    await agent.infer(images[0], cut=cut)  # warm-up: the hub loads this tail on first use
    results: list[InferenceResult] = []
    diffs: list[float] = []
    for image, expected in zip(images[1:], reference[1:], strict=True):
        result = await agent.infer(image, cut=cut)
        results.append(result)
        diffs.append(max(float(np.abs(result.outputs[k] - expected[k]).max()) for k in expected))
    _progress(f"cut {cut}: {requests} requests, max |diff| {max(diffs):.2e}")
    return _row(cut, results, max(diffs))


def _reference_outputs(agent: EdgeAgent, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    full = agent.model.halves(EDGE_ONLY).head
    if not isinstance(full, Session):
        msg = "the demo needs an agent holding the full model"
        raise TypeError(msg)
    return [full.run({agent.model.inputs[0].name: image[np.newaxis]}) for image in images]


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


def format_report(report: DemoReport) -> str:
    """The report as a text table."""
    header = (
        f"{'cut':<28} {'bytes sent':>11} {'edge ms':>8} {'transfer ms':>12} {'hub ms':>7} {'total ms':>9} "
        f"{'max |diff|':>11}"
    )
    lines = [f"{report.model} over {report.broker}, median of {report.requests} requests per cut", header]
    for row in report.rows:
        mark = "" if row.ok else "  <-- beyond tolerance" if row.max_abs_diff > TOLERANCE else "  <-- fell back"
        lines.append(
            f"{row.cut:<28} {row.bytes_sent:>11,} {row.edge_ms:>8.1f} {row.transfer_ms:>12.1f} "
            f"{row.hub_ms:>7.1f} {row.total_ms:>9.1f} {row.max_abs_diff:>11.1e}{mark}"
        )
    verdict = "all cuts match the full model" if report.ok else "SOME CUTS DO NOT MATCH"
    lines.append(f"{verdict} (tolerance {TOLERANCE:g})")
    return "\n".join(lines)


def _progress(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr, flush=True)  # noqa: T201 - progress for the user

"""Does cut="auto" match the hindsight oracle? Every policy on the same request stream, over a grid.

A grid of cells: models x device speeds x hub loads x links. In each cell one
agent (resnet18, mobilenet_v2 or googlenet: a DAG) runs behind an emulated
link (``simulations.LinkProxy``) as a device of the given speed (stretched
sessions), against a hub in its own process. The request stream is paced: a
slot every ``--period`` seconds, and in every slot each policy sends one
request back to back: edge-only, cloud-only, every other candidate cut
fixed, and auto (the planner), in orders that put each policy first, and
right after each other one, equally often (:func:`balanced_orders`). So
every policy meets the link at the same moments and the same neighbours,
and with the same luck: before each policy's request of a slot, the link's
jitter and loss draws start again from the slot's seed and a trace plays
again from the slot's moment (its time since the cell's first slot: common
random numbers; ``--no-common-draws`` turns both off), so that no policy is
judged by whether its turn met a retransmission or a trace's stall (the
``lte-drive`` trace carries nothing for a second 12 s in). For each slot the
best fixed cut is known (the per-request oracle).
The agent's chain holds every candidate, so switching between policies
loads nothing; only auto's requests teach the planner.

Links: ``step`` (20 Mbit/s, 2 Mbit/s from a third of the slots, 20 again from
two thirds; 20 ms one way), ``wifi-congested`` (5 Mbit/s, jitter, 1% loss),
and two real traces, ``lte-drive`` and ``3g-bus`` (simulations/traces).
Devices: a Raspberry Pi 4 (x5.4) and a Raspberry Pi 3 (x10.7), as the
``simulations`` device profiles rate them against one x86 core (this host's
core runs resnet18 about 2x faster than that reference, so these are
stretches of this host, not faithful Pis). Each cell starts its agent
afresh, from the model's file, as a device restarted between cells: it keeps
its head times in a state directory of the model and device, so that after
each's first cell the warm-up's timed runs are skipped (``--cold-starts``:
a state directory of its own for every cell, and the warm-up every time).
The first ``--warm-up`` slots are not counted: they show the start (the
first request goes to the remote cut that sends least, to learn the hub).
Hub loads: ``idle``, and ``busy``: a load generator in its own
process sends the hub resnet18 cloud-only requests at 85% of what it can
serve. The agent may use the codecs a user would allow (``--codecs``, by default
raw, jpeg and int8+zstd): cloud-only sends a camera-like image as a JPEG, and a
cut's policy is run only with the codec that sends least there (the map,
bench/split_map.py, shows the larger encodings of a cut losing). With a JPEG
allowed no split runs as a fixed policy unless ``--inner`` asks for some: on
those maps none beats both extremes, and each costs nearly a whole model on
the device a slot (the splits sending least are the last ones). Edge-only
runs in every cell, at the same moments as the others: the host's load moves
a device's times from one cell to the next by more than the 5% the bench
judges by. (``--share-edge-only`` runs it in the first link's cell of each
model, device and hub load only, and lets its requests stand in for it in
the other links' cells: quicker, since edge-only sends nothing, but less
fair.)

Printed per cell: mean and p95 of edge-only, cloud-only, the best fixed cut
(the oracle) and auto; auto/oracle; auto/better extreme; auto's mean against
the per-slot best (traces); the cut auto used most; exploration and switches;
prediction error; for the step link, how many of auto's requests each step
took to come within 10% of the new oracle. Then a fleet of agents saturating
one hub, and the planner's decision time.

    python bench/planner.py [--models resnet18 mobilenet_v2 googlenet] [--slots 12] [--json FILE] [--markdown FILE]
    python bench/planner.py --map MODEL [bench/split_map.py's arguments]      # the split map instead
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from cloud_hub import HubProcess, LocalBroker, wait_online
from edge_agent import CLOUD_ONLY, EDGE_ONLY, Candidate, EdgeAgent, InferenceResult, Observation, Planner, Timeouts
from models import camera_images, zoo
from protocol import InferenceRequest, Topics, encode_request
from protocol.mqtt import Connection
from simulations import PROFILES, LinkProxy, fixed_link, preset, stretched_sessions

if TYPE_CHECKING:
    from collections.abc import Iterator

    from simulations import LinkSpec

PREFIX = "bench-planner"
AUTO = "auto"
DEVICES = {"rpi4": PROFILES["rpi4"].factor, "rpi3": PROFILES["rpi3"].factor}
LOADS = ("idle", "busy")
DEFAULT_CODECS = ["raw", "jpeg", "int8+zstd"]
IMAGE_SHAPE = (224, 224, 3)
LINKS = ("step", "wifi-congested", "lte-drive", "3g-bus")
STEP_FAST = fixed_link(rate_bit_s=20e6, delay_s=0.020)
STEP_SLOW = fixed_link(rate_bit_s=2e6, delay_s=0.020)
BUSY = 0.85
WITHIN = 0.10  # a step is recovered once auto is within this of the new oracle
WORSE = 1.05  # a cell where auto's mean is over this times the oracle's is listed with the reason
EXPLORING_A_LOT = 0.2
SWITCHING_A_LOT = 3.0


@dataclasses.dataclass
class Request:
    """One request of one policy in one slot."""

    ms: float
    cut: str
    predicted_ms: float = math.nan
    reason: str = ""
    fallback: bool = False


@dataclasses.dataclass
class Cell:
    """What one cell measured: by slot, by policy."""

    model: str
    device: str
    load: str
    link: str
    slots: list[dict[str, Request]] = dataclasses.field(default_factory=list)

    def policy(self, name: str) -> list[Request]:
        return [slot[name] for slot in self.slots if name in slot]

    @property
    def fixed(self) -> list[str]:
        return [name for name in self.slots[0] if name != AUTO] if self.slots else []

    @property
    def cloud(self) -> str:
        """The cloud-only policy: the image as the codecs allow sending it (a JPEG where allowed)."""
        return next(name for name in self.fixed if name.partition("@")[0] == CLOUD_ONLY)


# --- running -------------------------------------------------------------------------


def hub_process(broker: str, models: list[str]) -> HubProcess:
    """A hub in its own process (one worker, one ORT thread) with each model's chain preloaded."""
    options = ["--threads", "1", "--workers", "1", "--status-interval", "0.5", "--max-queue", "256"]
    for model in models:
        options += ["--preload", f"{model}:{CLOUD_ONLY}"]
    return HubProcess(broker, prefix=PREFIX, hub_id=f"bench-hub-{uuid.uuid4().hex[:6]}", options=options)


@contextlib.contextmanager
def load_process(broker: str, rate: float) -> Iterator[None]:
    """The busy hub's other clients: a process sending resnet18 cloud-only requests at ``rate`` per second."""
    command = [sys.executable, __file__, "--load-child", broker, str(rate)]
    with subprocess.Popen(command, stdin=subprocess.DEVNULL) as process:  # noqa: S603 - this very script
        try:
            yield
        finally:
            process.terminate()
            process.wait(30)


async def load_child(broker: str, rate: float) -> None:
    """Publish pre-encoded cloud-only requests at ``rate`` per second until terminated (replies ignored)."""
    from edge_agent import ModelHalves  # noqa: PLC0415

    model = ModelHalves.open("resnet18", threads=1)
    image = np.random.default_rng(1).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    topics = Topics(PREFIX)
    async with Connection(broker, client_id="bench-load", subscriptions=[(topics.response("bench-load"), 0)]) as link:
        await link.wait_connected(10)
        started = time.perf_counter()
        for index in range(10**9):
            await asyncio.sleep(max(0.0, started + index / rate - time.perf_counter()))
            request = InferenceRequest(
                request_id=uuid.uuid4().hex,
                agent_id="bench-load",
                model_id="resnet18",
                model_sha256=model.model_sha256,
                cut_id=CLOUD_ONLY,
                tensors={"image": image},
                sent_at=time.time(),
                deadline_ms=2000.0,
            )
            await link.publish(topics.request("bench-load"), encode_request(request), qos=0, timeout=5)


async def hub_cloud_only_ms(broker: str) -> float:
    """The hub's median time to run resnet18's whole tail (cloud-only), from its replies."""
    async with EdgeAgent(broker, model="resnet18", cut=CLOUD_ONLY, prefix=PREFIX, threads=1) as agent:
        image = np.zeros((224, 224, 3), np.uint8)
        results = [await agent.infer(image) for _ in range(12)]
    return statistics.median(result.timings.hub_compute_ms for result in results[2:])


def link_spec(name: str) -> LinkSpec:
    return STEP_FAST if name == "step" else preset(name)


@dataclasses.dataclass
class Devices:
    """Where the bench's agents find their models (one file each) and keep their head times."""

    directory: Path
    cold_starts: bool = False

    def model(self, name: str) -> Path:
        """The zoo model ``name`` as a file, as a user's model comes (written once)."""
        path = self.directory / "models" / f"{name}.onnx"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(zoo.build(name).SerializeToString())
        return path

    def state(self, model: str, device: str) -> Path:
        """The state directory of ``model`` on ``device``: shared by their cells, or one per cell with cold starts."""
        key = f"{model}-{device}" + (f"-{uuid.uuid4().hex[:8]}" if self.cold_starts else "")
        return self.directory / "state" / key


async def run_cell(
    broker: str, cell: Cell, args: argparse.Namespace, devices: Devices, edge_only: list[Request] | None = None
) -> list[Request]:
    """Run every policy of ``cell`` on one paced stream of ``args.warm_up`` + ``args.slots`` slots (the first not kept).

    The agent may use ``args.codecs``; the fixed policies are those of
    :func:`fixed_policies` with ``args.inner`` splits. Edge-only sends
    nothing, so the link does not change its times: given ``edge_only``
    (another link's, same model, device and hub), those stand in for it and
    the slots are shorter. Returns the edge-only requests the cell used.
    """
    slots, period, warm_up = args.slots, args.period, args.warm_up
    upstream = urlsplit(broker)
    image = next(camera_images(1, IMAGE_SHAPE, seed=0))
    async with LinkProxy(link_spec(cell.link), upstream=(upstream.hostname or "", upstream.port or 0)) as proxy:
        url = broker.replace(f":{upstream.port}", f":{proxy.port}")
        agent = EdgeAgent(
            url,
            model=devices.model(cell.model),
            prefix=PREFIX,
            threads=1,
            session_factory=stretched_sessions(DEVICES[cell.device]) if DEVICES[cell.device] > 1 else None,
            timeouts=Timeouts(request=30.0, retry=None),
            codec=args.codecs,
            state_dir=devices.state(cell.model, cell.device),
        )
        async with agent:
            await agent.infer(image)  # sizes the image codecs on this image, for fixed_policies to compare
            edge, *others = fixed_policies(agent, args.inner)
            policies = [*others, AUTO] if edge_only else [edge, *others, AUTO]
            orders = balanced_orders(len(policies))
            started = time.perf_counter()
            for index in range(-warm_up, slots):
                if cell.link == "step":
                    proxy.set_spec(STEP_SLOW if slots // 3 <= index < 2 * slots // 3 else STEP_FAST)
                await asyncio.sleep(max(0.0, started + (index + warm_up) * period - time.perf_counter()))
                order = orders[index % len(orders)]
                luck = f"{cell.model}/{cell.device}/{cell.load}/{cell.link}/{index}"  # the slot's seed
                moment = time.perf_counter() - started  # the slot's time on a trace
                slot = {}
                for at in order:
                    if args.common_draws:  # the same luck, and the same moment of a trace, for every policy of the slot
                        proxy.reseed(luck)
                        proxy.rewind(moment)
                    slot[policies[at]] = await _one(agent, image, policies[at])
                if index >= 0:
                    cell.slots.append({edge: edge_only[index]} | slot if edge_only else slot)
    return [slot[edge] for slot in cell.slots]


def balanced_orders(count: int) -> list[list[int]]:
    """Orders of ``count`` policies in which each comes first, and right after each other one, equally often.

    A Williams design: ``count`` orders for an even count, twice that for an
    odd one. A request is slower right after some others on this host (right
    after cloud-only's JPEG, an emulated device's run takes about 5% longer:
    ``bench/neighbours.py``), so an order that merely rotates, which puts
    auto after cloud-only in two slots of three and edge-only never, charges
    auto for its neighbour.
    """
    first, low, high = [0], 1, count - 1
    while low <= high:
        first.append(low)
        low += 1
        if low <= high:
            first.append(high)
            high -= 1
    rows = [[(at + shift) % count for at in first] for shift in range(count)]
    return rows if count % 2 == 0 else rows + [row[::-1] for row in rows]


def fixed_policies(agent: EdgeAgent, inner: int) -> list[str]:
    """Edge-only, cloud-only and the ``inner`` cuts that send least, each with its codec that sends least there.

    Left out, to keep a slot short: a cut's larger encodings, and the cuts
    sending more than cloud-only, which run part of the model on the
    device and still send more (neither wins on the maps of
    bench/split_map.py but for a hub slower than the device).
    """
    planner = agent.core.planner
    assert planner is not None  # noqa: S101 - the agent is made with cut="auto"
    smallest: dict[str, tuple[int, str]] = {}
    for candidate in planner.candidates:
        sent = (planner.bytes_of(candidate.label), candidate.label)
        smallest[candidate.id] = min(smallest.get(candidate.id, sent), sent)
    edge = next(candidate.label for candidate in planner.candidates if candidate.edge_only)
    cloud_bytes, cloud = smallest.pop(CLOUD_ONLY)
    smallest.pop(edge)
    splits = sorted(sent for sent in smallest.values() if sent[0] < cloud_bytes)[:inner]
    return [edge, cloud, *(label for _, label in splits)]


def _cut_and_codec(policy: str) -> tuple[str | None, str | None]:
    if policy == AUTO:
        return None, None
    cut, _, codec = policy.partition("@")
    return cut, codec or None


async def _one(agent: EdgeAgent, image: np.ndarray, policy: str) -> Request:
    cut, codec = _cut_and_codec(policy)
    result: InferenceResult = await agent.infer(image, cut=cut, codec=codec)
    return Request(
        ms=result.timings.total_ms,
        cut=result.cut_id if result.codec == "raw" else f"{result.cut_id}@{result.codec}",
        predicted_ms=result.predicted_ms,
        reason=result.reason,
        fallback=result.fallback is not None,
    )


# --- the fleet: several agents on one hub ------------------------------------------------


async def run_fleet(broker: str, args: argparse.Namespace, devices: Devices) -> dict[str, list[float]]:
    """``args.fleet_agents`` resnet18 agents (Pi 4s) at once, each policy in turn: latencies but the first quarter.

    Paced so that all of them cloud-only would need about the hub's whole
    capacity: its queue grows, and the best is to keep some work on the devices.
    """
    latencies: dict[str, list[float]] = {}
    fleet = [
        EdgeAgent(
            broker,
            model=devices.model("resnet18"),
            prefix=PREFIX,
            threads=1,
            agent_id=f"fleet-{index}",
            session_factory=stretched_sessions(DEVICES["rpi4"]),
            timeouts=Timeouts(request=30.0, retry=None),
            codec=args.codecs,
            state_dir=devices.state("resnet18", "rpi4"),
        )
        for index in range(args.fleet_agents)
    ]
    async with contextlib.AsyncExitStack() as stack:
        async with asyncio.TaskGroup() as starting:  # at once: their starts mostly wait on the emulated device
            for agent in fleet:
                starting.create_task(stack.enter_async_context(agent))
        image = next(camera_images(1, IMAGE_SHAPE, seed=2))
        await fleet[0].infer(image)  # sizes the image codecs, for fixed_policies to compare
        policies = [*fixed_policies(fleet[0], args.inner), AUTO]
        requests, period = args.fleet_requests, args.fleet_period
        for policy in policies:
            results = await asyncio.gather(*(_paced(agent, image, policy, requests, period) for agent in fleet))
            latencies[policy] = [ms for per_agent in results for ms in per_agent[requests // 4 :]]
    return latencies


async def _paced(agent: EdgeAgent, image: np.ndarray, policy: str, requests: int, period: float) -> list[float]:
    started = time.perf_counter()
    out = []
    for index in range(requests):
        await asyncio.sleep(max(0.0, started + index * period - time.perf_counter()))
        out.append((await _one(agent, image, policy)).ms)
    return out


# --- the decision time -------------------------------------------------------------------


def decision_times_us(candidates: int, decisions: int = 2000) -> tuple[float, float]:
    """Median and p99 microseconds of ``Planner.choose`` over ``candidates`` cuts, the planner warm."""
    rng = np.random.default_rng(3)
    cuts = [Candidate(id=f"c{i}", bytes=int(rng.integers(1_000, 800_000))) for i in range(candidates - 1)]
    cuts.append(Candidate(id="output", bytes=4_000, edge_only=True))
    planner = Planner(cuts)
    for index, cut in enumerate(cuts):
        planner.seed_head(cut.id, 0.5 * index, 0.0)
    planner.observe_probe(0, 20.0, 0.0)
    planner.observe_probe(100_000, 60.0, 0.0)
    times = []
    for index in range(decisions):
        now = index * 0.01
        started = time.perf_counter_ns()
        decision = planner.choose(now)
        times.append((time.perf_counter_ns() - started) / 1000)
        size = next(cut.bytes for cut in cuts if cut.id == decision.cut_id)
        planner.observe(
            Observation(
                cut_id=decision.cut_id,
                bytes_sent=size,
                edge_ms=1.0,
                network_ms=20 + size * 8 / 20e6 * 1000,
                hub_compute_ms=2.0,
                answered_by_hub=decision.cut_id != "output",
            ),
            now,
        )
    return statistics.median(times), float(np.percentile(times, 99))


# --- reporting -------------------------------------------------------------------------


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def _p95(values: list[float]) -> float:
    return float(np.percentile(values, 95)) if values else math.nan


def summarise(cell: Cell) -> dict[str, Any]:
    """The cell's figures: per policy, the oracle, auto against both, and auto's own behaviour."""
    per = {name: [r.ms for r in cell.policy(name)] for name in [*cell.fixed, AUTO]}
    oracle = min(cell.fixed, key=lambda name: _mean(per[name]))
    better_extreme = min((EDGE_ONLY, cell.cloud), key=lambda name: _mean(per[name]))
    per_slot_best = [min(slot[name].ms for name in cell.fixed) for slot in cell.slots]
    auto = cell.policy(AUTO)
    cuts = [r.cut for r in auto]
    settled = Counter(cuts[len(cuts) // 2 :]).most_common(1)[0][0] if cuts else ""
    errors = [abs(r.predicted_ms - r.ms) / r.ms for r in auto if not math.isnan(r.predicted_ms) and r.ms > 0]
    exploring = sum(r.reason.startswith(("exploring", "re-checking", "learning")) for r in auto)
    switches = sum(a != b for a, b in itertools.pairwise(cuts))
    inner = [name for name in cell.fixed if name not in {EDGE_ONLY, cell.cloud}]
    best_inner = min(inner, key=lambda name: _mean(per[name])) if inner else None
    summary: dict[str, Any] = {
        "model": cell.model,
        "device": cell.device,
        "load": cell.load,
        "link": cell.link,
        "slots": len(cell.slots),
        "mean": {name: _mean(values) for name, values in per.items()},
        "p95": {name: _p95(values) for name, values in per.items()},
        "oracle": oracle,
        "cloud": cell.cloud,
        "auto_vs_oracle_mean": _mean(per[AUTO]) / _mean(per[oracle]),
        "auto_vs_oracle_p95": _p95(per[AUTO]) / _p95(per[oracle]),
        "auto_vs_better_extreme": _mean(per[AUTO]) / _mean(per[better_extreme]),
        "auto_vs_per_request_oracle": _mean(per[AUTO]) / _mean(per_slot_best),
        "settled": settled,
        "explored": exploring / len(auto) if auto else math.nan,
        "switches_per_20": 20 * switches / max(1, len(cuts) - 1),
        "prediction_error_median": float(np.median(errors)) if errors else math.nan,
        "prediction_error_p95": _p95(errors),
        "fallbacks": sum(r.fallback for r in auto),
        "split_wins": None,
    }
    if best_inner is not None:
        margin = min(_mean(per[EDGE_ONLY]), _mean(per[cell.cloud])) / _mean(per[best_inner])
        if margin > 1.0:
            summary["split_wins"] = {"cut": best_inner, "by": margin}
    if cell.link == "step":
        summary["step_recovery"] = _step_recovery(cell)
    if summary["auto_vs_oracle_mean"] > WORSE:
        summary["why_worse"] = _why_worse(cell, summary)
    return summary


def _why_worse(cell: Cell, summary: dict[str, Any]) -> str:
    """Why auto's mean was over 1.05x the oracle's, read from its requests: the first cause that applies."""
    auto = cell.policy(AUTO)
    if summary["fallbacks"]:
        return f"{summary['fallbacks']} of {len(auto)} requests fell back to the device"
    if summary["explored"] > EXPLORING_A_LOT:
        return f"exploring: {summary['explored']:.0%} of its requests tried other choices"
    if summary["switches_per_20"] >= SWITCHING_A_LOT:
        return f"switching {summary['switches_per_20']:.1f} times in 20 requests between close choices"
    settled, oracle = summary["settled"], summary["oracle"]
    if settled != oracle:
        at_settled = [r for r in auto if r.cut == settled]
        predicted = statistics.median(r.predicted_ms for r in at_settled)
        return (
            f"mispredicted: {settled} predicted at {predicted:.0f} ms, measured"
            f" {summary['mean'].get(settled, math.nan):.0f} ms as a fixed policy; {oracle} measured"
            f" {summary['mean'][oracle]:.0f} ms"
        )
    more = summary["mean"][AUTO] - summary["mean"][oracle]
    spread = summary["p95"][oracle] / summary["mean"][oracle]
    return f"the oracle's choice too, {more:.0f} ms a request more (the oracle's p95 is {spread:.2f}x its mean)"


def _step_recovery(cell: Cell) -> list[int | None]:
    """For each step, auto's requests until it keeps to cuts within 10% of that phase's oracle (None: never).

    A cut is good in a phase when its mean there (every policy ran every
    slot) is within 10% of the best fixed cut's; judging the cuts rather
    than single requests keeps one jittery request from reading as a miss.
    """
    slots = len(cell.slots)
    phases = [(slots // 3, 2 * slots // 3), (2 * slots // 3, slots)]
    counts: list[int | None] = []
    for start, end in phases:
        phase = cell.slots[start:end]
        means = {name: _mean([slot[name].ms for slot in phase]) for name in cell.fixed}
        good = {name for name, ms in means.items() if ms <= min(means.values()) * (1 + WITHIN)}
        cuts = [slot[AUTO].cut for slot in phase]
        counts.append(next((i for i in range(len(cuts)) if set(cuts[i:]) <= good), None))
    return counts


def print_cell(summary: dict[str, Any]) -> None:
    """Two lines: every policy's mean/p95 ms, then how auto did."""
    mean, p95 = summary["mean"], summary["p95"]
    oracle = summary["oracle"]

    def figures(name: str) -> str:
        return f"{mean[name]:6.0f}/{p95[name]:<6.0f}"

    where = f"{summary['model']:<12} {summary['device']:<4} {summary['load']:<4} {summary['link']:<14}"
    print(
        f"{where} edge {figures(EDGE_ONLY)} {summary['cloud']} {figures(summary['cloud'])} "
        f"oracle {oracle:<15} {figures(oracle)} auto {figures(AUTO)}"
    )
    extra = f"  step recovery {summary['step_recovery']}" if "step_recovery" in summary else ""
    extra += f"  ({summary['seconds']:.0f} s)" if "seconds" in summary else ""
    wins = summary["split_wins"]
    extra += f"  SPLIT WINS: {wins['cut']} by {wins['by']:.2f}x" if wins else ""
    print(
        f"{'':<37} auto/oracle {summary['auto_vs_oracle_mean']:.2f}/{summary['auto_vs_oracle_p95']:.2f}"
        f"  /extreme {summary['auto_vs_better_extreme']:.2f}  /per-request {summary['auto_vs_per_request_oracle']:.2f}"
        f"  settled {summary['settled']}  explore {summary['explored']:.0%}"
        f"  switch/20 {summary['switches_per_20']:.1f}  error {summary['prediction_error_median']:.0%}"
        f"/{summary['prediction_error_p95']:.0%}{extra}",
        flush=True,
    )


def print_worse(summaries: list[dict[str, Any]]) -> None:
    """The cells where auto's mean was over 1.05x the oracle's, each with the reason read from its requests."""
    worse = [summary for summary in summaries if "why_worse" in summary]
    print(
        f"auto within {WORSE:.2f}x of the oracle in {len(summaries) - len(worse)} of {len(summaries)} cells", flush=True
    )
    for summary in worse:
        where = f"{summary['model']} {summary['device']} {summary['load']} {summary['link']}"
        print(f"  {where}: {summary['auto_vs_oracle_mean']:.2f}x, {summary['why_worse']}", flush=True)


HEADER = (
    "| model | device | hub | link | edge-only | cloud-only | oracle (best fixed) | auto | auto/oracle mean, p95"
    " | auto/better extreme | auto/per-request oracle | settled | switches/20 | prediction error median, p95"
    " | step recovery (requests) |"
)


def markdown(report: dict[str, Any], command: str) -> str:
    """The run as docs/planner.md shows it: the command, the cells' table, the cells over 1.05x, the fleet."""

    def ratio(value: float) -> str:
        return f"{value:.2f}"

    lines = [
        f"    $ {command}      # {report['seconds']:.0f} s",
        "",
        HEADER,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in report["cells"]:
        mean, p95, oracle, cloud = cell["mean"], cell["p95"], cell["oracle"], cell["cloud"]

        def ms(name: str, mean: dict[str, float] = mean, p95: dict[str, float] = p95) -> str:
            return f"{mean[name]:.0f} / {p95[name]:.0f}"

        recovery = ", ".join(str(count) for count in cell.get("step_recovery", []))
        lines.append(
            f"| {cell['model']} | {cell['device']} | {cell['load']} | {cell['link']} | {ms(EDGE_ONLY)}"
            f" | {cloud}: {ms(cloud)} | {oracle}: {ms(oracle)} | {ms(AUTO)}"
            f" | {ratio(cell['auto_vs_oracle_mean'])}, {ratio(cell['auto_vs_oracle_p95'])}"
            f" | {ratio(cell['auto_vs_better_extreme'])} | {ratio(cell['auto_vs_per_request_oracle'])}"
            f" | {cell['settled']} | {cell['switches_per_20']:.1f}"
            f" | {cell['prediction_error_median']:.0%}, {cell['prediction_error_p95']:.0%} | {recovery} |"
        )
    worse = [cell for cell in report["cells"] if "why_worse" in cell]
    lines += [
        "",
        f"auto within {WORSE:.2f}x of the oracle in {len(report['cells']) - len(worse)} of {len(report['cells'])}:",
        "",
    ]
    lines += [
        f"- {c['model']} {c['device']} {c['load']} {c['link']}: {ratio(c['auto_vs_oracle_mean'])}x, {c['why_worse']}"
        for c in worse
    ]
    if report["fleet"]:
        lines += ["", "| policy | mean ms | p95 ms |", "|---|---|---|"]
        lines += [f"| {name} | {f['mean']:.1f} | {f['p95']:.1f} |" for name, f in report["fleet"].items()]
    times = ", ".join(f"{n} candidates {d['median']:.0f} / {d['p99']:.0f} µs" for n, d in report["decision_us"].items())
    lines += ["", f"Decision time (median / p99): {times}.", ""]
    return "\n".join(lines)


def print_trace(cell: Cell) -> None:
    """Auto's requests one by one: slot, cut, actual and predicted ms, and why."""
    for index, slot in enumerate(cell.slots):
        best = min(cell.fixed, key=lambda name: slot[name].ms)
        request = slot[AUTO]
        print(
            f"    {index:3d} {request.cut:<16} {request.ms:7.1f} ms  predicted {request.predicted_ms:7.1f}"
            f"  (best {best} {slot[best].ms:.0f})  {request.reason}"
        )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"cells": [], "fleet": {}, "decision_us": {}}
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="bench-planner-") as directory,
        LocalBroker() as broker,
        hub_process(broker.url, args.models) as hub,
    ):
        devices = Devices(Path(directory), cold_starts=args.cold_starts)
        await wait_online(broker.url, PREFIX, [hub.hub_id], 300)
        cloud_ms = await hub_cloud_only_ms(broker.url)
        rate = BUSY * 1000 / cloud_ms
        ready = f"{time.perf_counter() - started:.0f} s in"
        print(f"hub: resnet18 cloud-only tail {cloud_ms:.1f} ms; busy = {rate:.0f} requests/s ({ready})", flush=True)
        print("cells: mean/p95 ms", flush=True)
        for load in args.loads:
            with load_process(broker.url, rate) if load == "busy" else contextlib.nullcontext():
                edge_only: dict[tuple[str, str], list[Request]] = {}
                for model, device, link in itertools.product(args.models, args.devices, args.links):
                    cell = Cell(model, device, load, link)
                    cell_started = time.perf_counter()
                    shared = edge_only.get((model, device)) if args.share_edge_only else None
                    measured = await run_cell(broker.url, cell, args, devices, shared)
                    edge_only.setdefault((model, device), measured)
                    summary = summarise(cell)
                    summary["seconds"] = time.perf_counter() - cell_started
                    report["cells"].append(summary)
                    print_cell(summary)
                    if args.trace:
                        print_trace(cell)
        print_worse(report["cells"])
        if args.fleet:
            fleet_started = time.perf_counter()
            fleet = await run_fleet(broker.url, args, devices)
            report["fleet_seconds"] = time.perf_counter() - fleet_started
            report["fleet"] = {name: {"mean": _mean(v), "p95": _p95(v)} for name, v in fleet.items()}
            every = f"a request every {args.fleet_period} s each"
            took = f"{report['fleet_seconds']:.0f} s"
            print(f"fleet: {args.fleet_agents} resnet18 agents (Pi 4s) on one hub, {every} ({took}):")
            for name, figures in report["fleet"].items():
                print(f"  {name:<15} mean {figures['mean']:7.1f} ms  p95 {figures['p95']:7.1f} ms")
    for count in (4, 16, 64, 256):
        median, p99 = decision_times_us(count)
        report["decision_us"][count] = {"median": median, "p99": p99}
        print(f"decision time, {count} candidates: median {median:.1f} us, p99 {p99:.1f} us")
    report["seconds"] = time.perf_counter() - started
    print(f"took {report['seconds']:.0f} s")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["resnet18", "mobilenet_v2", "googlenet"],
        help="zoo models (default: these three)",
    )
    parser.add_argument(
        "--codecs",
        type=lambda text: [codec.strip() for codec in text.split(",") if codec.strip()],
        default=DEFAULT_CODECS,
        help=f"codecs allowed, comma-separated (default {','.join(DEFAULT_CODECS)}: JPEG at the input, int8 inside)",
    )
    parser.add_argument(
        "--inner",
        type=int,
        help="split points run as fixed policies, those sending least (default: none with a JPEG allowed, else 2)",
    )
    parser.add_argument("--slots", type=int, default=12, help="counted slots per cell (default 12)")
    parser.add_argument("--warm-up", type=int, default=2, help="slots per cell before counting (default 2)")
    parser.add_argument("--period", type=float, default=0.25, help="seconds between slots (default 0.25)")
    parser.add_argument("--devices", nargs="+", choices=list(DEVICES), default=list(DEVICES), help="(default: all)")
    parser.add_argument("--links", nargs="+", choices=LINKS, default=list(LINKS), help="(default: all)")
    parser.add_argument("--loads", nargs="+", choices=LOADS, default=list(LOADS), help="hub loads (default: all)")
    parser.add_argument(
        "--share-edge-only",
        action="store_true",
        help="run edge-only in the first link's cell of each model, device and load only (quicker, less fair)",
    )
    parser.add_argument(
        "--cold-starts",
        action="store_true",
        help="give every cell's agent a state directory of its own: the warm-up in every cell, not each device's first",
    )
    parser.add_argument("--trace", action="store_true", help="print auto's every request too")
    parser.add_argument(
        "--map",
        nargs=argparse.REMAINDER,
        metavar="MODEL ...",
        help="map where a split pays for MODEL instead: the rest goes to bench/split_map.py (see its --help)",
    )
    parser.add_argument(
        "--no-common-draws",
        dest="common_draws",
        action="store_false",
        help="let each policy's request draw the link's jitter and loss on, and a trace play on (not from the slot's)",
    )
    parser.add_argument("--no-fleet", dest="fleet", action="store_false", help="skip the fleet")
    parser.add_argument("--fleet-agents", type=int, default=6, help="resnet18 agents (Pi 4s) on one hub (default 6)")
    parser.add_argument(
        "--fleet-requests",
        type=int,
        default=40,
        help="requests per agent and policy, the first quarter not counted (default 40)",
    )
    parser.add_argument(
        "--fleet-period", type=float, default=0.1, help="seconds between one agent's requests (default 0.1)"
    )
    parser.add_argument("--json", type=argparse.FileType("w"), help="also write the figures as JSON here")
    parser.add_argument("--markdown", type=argparse.FileType("w"), help="also write the tables as Markdown here")
    parser.add_argument("--load-child", nargs=2, metavar=("BROKER", "RATE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner is None:  # with a JPEG no split beats both extremes on bench/split_map.py's maps
        args.inner = 0 if "jpeg" in args.codecs else 2
    if args.map is not None:
        import split_map  # noqa: PLC0415 - bench/ is on the path of a script run from it; only --map needs it

        split_map.main(args.map)
        return
    if args.load_child:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(load_child(args.load_child[0], float(args.load_child[1])))
        return
    command = f"python bench/planner.py {' '.join(sys.argv[1:])}".rstrip()
    print(f"$ {command}", flush=True)
    report = asyncio.run(main_async(args))
    if args.json:
        json.dump(report, args.json, indent=2, default=str)
    if args.markdown:
        args.markdown.write(markdown(report, command))


if __name__ == "__main__":
    main()

"""Where a split pays: the best fixed choice over device speed x uplink rate, and auto against it.

For one model, measured once on this host (one ONNX Runtime thread): each
candidate cut's head time (median of several runs of the head as a fixed cut
runs it: one fused session, split at the cut),
what a request there sends under each allowed codec and how long encoding
takes (on camera-like images, ``models.camera_images``), and the hub's tail
time (the rest of the model at this host's speed, divided by
``--hub-speedup``). From those parts, for every cell of a grid of device
slowdowns (this host x1 to x40: a Jetson-class CPU to a Pi Zero-class board)
and uplink rates (0.5 to 100 Mbit/s) at a fixed round trip:

    latency = slowdown x (head + encode) + round trip + bytes / rate + tail      (edge-only: slowdown x model)
    energy  = EnergyModel(--device-watts, --radio) of that request            (docs/planner.md, "Energy")

the best fixed choice per cell (edge-only, cloud-only raw or as a JPEG, or a
split with its codec), and auto: the real ``edge_agent.Planner`` run on the
cell's arithmetic (80 requests a second apart, +-5% noise on every part),
its mean over the last 50 requests against the best fixed choice. Printed
as maps, drawn as heatmaps (``--out``), for the latency and the energy
objective. ``--check N`` runs N cells for real (emulated device and link,
a hub in its own process) and prints measured against predicted.

    python bench/split_map.py resnet18 [--rtt-ms 40] [--codecs raw,jpeg,int8,int8+zstd] [--check 3] [--out DIR]

A remote choice's time is its head on the device, the round trip, the
request's transfer up, the reply's transfer down (at the same rate, as
``--check`` emulates the link) and the tail on the hub. The arithmetic leaves
out the hub's queue (an idle hub) and the agent's, the broker's and the
link proxy's own cost (a few ms an exchange); ``--check`` shows what that
costs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent import (
    CLOUD_ONLY,
    EDGE_ONLY,
    RADIOS,
    AgentCore,
    Candidate,
    EnergyModel,
    InferenceResult,
    ModelHalves,
    Planner,
    SendPing,
    Timings,
    codec_at,
)
from models import camera_images, random_feeds, run_timed
from protocol import RAW_CODEC, InferenceReply, InferenceRequest, encode_reply, encode_request

SLOWDOWNS = (1, 2, 5, 10, 20, 40)
RATES_MBIT_S = (0.5, 1, 2, 5, 10, 20, 50, 100)
RUNS = 7  # runs whose median gives each head time
REQUESTS, COUNTED = 80, 50  # auto's requests per cell, of which the last are counted
NOISE = 0.05


@dataclasses.dataclass(frozen=True)
class Choice:
    """One fixed choice, with its parts measured on this host."""

    cut: str
    codec: str
    head_ms: float  # on the device at x1, encoding included
    bytes: int  # what a request sends (0 for edge-only)
    tail_ms: float  # on the hub
    reply_bytes: int = 0  # what the hub's answer sends back (0 for edge-only)

    @property
    def label(self) -> str:
        """``cut`` or ``cut@codec``, as the planner names it."""
        return self.cut if self.codec == RAW_CODEC else f"{self.cut}@{self.codec}"

    @property
    def edge_only(self) -> bool:
        """Runs the whole model on the device."""
        return self.cut == EDGE_ONLY


@dataclasses.dataclass(frozen=True)
class Cell:
    """A device slowdown and an uplink rate, at the map's round trip."""

    slowdown: float
    rate_mbit_s: float
    rtt_ms: float

    def transfer_ms(self, nbytes: float) -> float:
        """How long ``nbytes`` take on the link (the same rate both ways, as ``--check`` emulates it)."""
        return nbytes * 8 / (self.rate_mbit_s * 1e6) * 1000

    def network_ms(self, choice: Choice) -> float:
        """A remote choice's round trip: the request up and the reply down."""
        return self.rtt_ms + self.transfer_ms(choice.bytes) + self.transfer_ms(choice.reply_bytes)

    def latency_ms(self, choice: Choice) -> float:
        """A request's end-to-end time at ``choice``, by the arithmetic of its parts."""
        device = self.slowdown * choice.head_ms
        if choice.edge_only:
            return device
        return device + self.network_ms(choice) + choice.tail_ms

    def energy_mj(self, choice: Choice, energy: EnergyModel, every_ms: float) -> float:
        """The device's energy for a request at ``choice``, requests ``every_ms`` apart."""
        device = self.slowdown * choice.head_ms
        return energy.request_mj(device, choice.bytes, self.transfer_ms(choice.bytes), idle_after_ms=every_ms)


# --- measuring the parts ------------------------------------------------------------------------


def measure_choices(model: str, codecs: list[str], hub_speedup: float) -> list[Choice]:
    """Every candidate cut with every codec that changes what it sends, measured on this host."""
    halves = ModelHalves.open(model, threads=1, codecs=codecs)
    chain = halves.chain()
    ids = chain.manifest.cut_ids
    feeds = _sample_feeds(halves)
    reply = _reply_bytes(chain.run(feeds, ids[0], EDGE_ONLY)[0])
    head = {ids[0]: 0.0} | {cut: _fused_head_ms(halves, cut, feeds) for cut in ids[1:]}
    full = head[EDGE_ONLY]
    choices = [Choice(EDGE_ONLY, RAW_CODEC, full, 0, 0.0)]
    tensors: dict[str, np.ndarray] = feeds
    for index, cut in enumerate(ids[:-1]):
        if index:
            tensors = chain.run(tensors, ids[index - 1], cut)[0]
        crossing = {spec.name: tensors[spec.name] for spec in chain.manifest.cuts[index].crossing}
        specs = chain.manifest.cuts[index].crossing
        for codec in dict.fromkeys(codec_at(codec, specs) for codec in codecs):
            nbytes, encode_ms = _encoded(halves, cut, crossing, codec)
            tail = (full - head[cut]) / hub_speedup
            choices.append(Choice(cut, codec, head[cut] + encode_ms, nbytes, tail, reply))
    return choices


def _fused_head_ms(halves: ModelHalves, cut: str, feeds: dict[str, np.ndarray]) -> float:
    """The median ms of ``cut``'s head as a fixed cut runs it (one fused session, let go after)."""
    head = halves.halves(cut, fused=True).head
    run_timed(head, feeds)  # the first run is slow
    took = [run_timed(head, feeds)[1] for _ in range(RUNS)]
    halves.release(cut, fused=True)
    return statistics.median(took)


def _reply_bytes(outputs: dict[str, np.ndarray]) -> int:
    """What a hub's answer carrying ``outputs`` takes on the wire (raw, as a hub sends them)."""
    reply = InferenceReply(
        request_id="0" * 32,
        hub_id="map-hub",
        outputs=outputs,
        error=None,
        queue_ms=0.0,
        compute_ms=0.0,
        queue_depth=0,
    )
    return len(encode_reply(reply, max_bytes=1 << 30))


def _sample_feeds(halves: ModelHalves) -> dict[str, np.ndarray]:
    """A camera-like image for an image model (what image codecs are measured on), else random inputs."""
    specs = halves.inputs
    shape = halves.input_shapes.get(specs[0].name) if halves.input_shapes else None
    image = specs[0].dtype == "uint8" and len(specs) == 1 and shape is not None and len(shape) == 4  # noqa: PLR2004
    if image and shape is not None and shape[-1] in {1, 3}:
        return {specs[0].name: next(camera_images(1, tuple(shape[1:])))[np.newaxis]}
    return random_feeds(specs, shapes=halves.input_shapes)


def _encoded(halves: ModelHalves, cut: str, tensors: dict[str, np.ndarray], codec: str) -> tuple[int, float]:
    """A request's bytes at ``cut`` with ``codec``, and the median ms of encoding it."""
    took, size = [], 0
    for _ in range(5):
        started = time.perf_counter()
        request = InferenceRequest(
            request_id="0" * 32,
            agent_id="map",
            model_id=halves.model_id,
            model_sha256=halves.model_sha256,
            cut_id=cut,
            tensors=tensors,
            sent_at=0.0,
            deadline_ms=1000.0,
            codec=codec,
        )
        size = len(encode_request(request, max_bytes=1 << 30))
        took.append((time.perf_counter() - started) * 1000)
    return size, statistics.median(took)


# --- auto on a cell's arithmetic ------------------------------------------------------------------


def auto_mean(cell: Cell, choices: list[Choice], cost: Any, every_s: float, seed: int, **planner: Any) -> float:  # noqa: ANN401
    """Auto's mean ``cost`` over the last requests, ``every_s`` apart: the agent's core fed the cell's arithmetic.

    The core's own pings (round trip, bandwidth) are answered as the cell's
    link would; every part of a request is off by up to +-5%.
    """
    rng = random.Random(seed)  # noqa: S311 - noise, not crypto
    candidates = [Candidate(id=c.cut, bytes=c.bytes, edge_only=c.edge_only, codec=c.codec) for c in choices]
    chain = list(dict.fromkeys(c.cut for c in sorted(choices, key=lambda c: c.head_ms)))
    core = AgentCore(planner=Planner(candidates, seed=seed, **planner), chain=chain)
    assert core.planner is not None  # noqa: S101 - given one
    for choice in choices:  # the warm-up: every head time
        core.planner.seed_head(choice.cut, cell.slowdown * choice.head_ms, 0.0, codec=choice.codec)
    _answer_pings(core, core.start(0.0), cell, rng, 0.0)
    by_label = {c.label: c for c in choices}
    costs = []
    for index in range(REQUESTS):
        now = 1.0 + index * every_s
        request = core.request(now)
        decision = request.decision
        choice = by_label[decision.cut_id if decision.codec == RAW_CODEC else f"{decision.cut_id}@{decision.codec}"]
        request.sent(now, can_fall_back=True)
        result = _result(cell, choice, rng)
        done = now + result.timings.total_ms / 1000
        _answer_pings(core, core.finished(request, result, done), cell, rng, done)
        if index >= REQUESTS - COUNTED:
            costs.append(cost(choice))
    return statistics.fmean(costs)


def _answer_pings(core: AgentCore, ping: SendPing | None, cell: Cell, rng: random.Random, now: float) -> None:
    while ping is not None:
        ms = (cell.rtt_ms + cell.transfer_ms(ping.nbytes)) * (1 + rng.uniform(-NOISE, NOISE))
        now += ms / 1000
        ping = core.ping_answered(ms, now)


def _result(cell: Cell, choice: Choice, rng: random.Random) -> InferenceResult:
    def jitter(value: float) -> float:
        return value * (1 + rng.uniform(-NOISE, NOISE))

    edge = jitter(cell.slowdown * choice.head_ms)
    if choice.edge_only:
        return InferenceResult(outputs={}, cut_id=choice.cut, timings=Timings(edge_ms=edge, total_ms=edge))
    network = jitter(cell.network_ms(choice))
    tail = jitter(choice.tail_ms)
    timings = Timings(edge_ms=edge, network_ms=network, hub_compute_ms=tail, total_ms=edge + network + tail)
    return InferenceResult(
        outputs={},
        cut_id=choice.cut,
        timings=timings,
        bytes_sent=choice.bytes,
        bytes_received=choice.reply_bytes,
        hub_id="hub",
        codec=choice.codec,
    )


# --- the map ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A cell's best fixed choice and auto's ratio to it, for one objective."""

    best: str
    best_value: float
    auto_ratio: float
    split_wins: bool  # a split beats both extremes (edge-only, and cloud-only however sent)


def map_objective(
    choices: list[Choice], rtt_ms: float, objective: str, energy: EnergyModel, every_ms: float
) -> dict[tuple[float, float], Outcome]:
    """Every cell of the grid under ``objective`` ("latency" or "energy")."""
    cells = {}
    for slowdown in SLOWDOWNS:
        for rate in RATES_MBIT_S:
            cell = Cell(slowdown, rate, rtt_ms)

            def cost(choice: Choice, cell: Cell = cell) -> float:
                if objective == "latency":
                    return cell.latency_ms(choice)
                return cell.energy_mj(choice, energy, every_ms)

            values = {choice.label: cost(choice) for choice in choices}
            best = min(values, key=values.__getitem__)
            extremes = min(v for label, v in values.items() if label.split("@")[0] in {EDGE_ONLY, CLOUD_ONLY})
            options: dict[str, Any] = {"objective": objective}
            if objective == "energy":
                options["energy"] = energy
            seed = int(slowdown * 1000 + rate * 10)
            auto = auto_mean(cell, choices, cost, every_ms / 1000, seed, **options)
            cells[(slowdown, rate)] = Outcome(best, values[best], auto / values[best], values[best] < extremes)
    return cells


def print_map(title: str, cells: dict[tuple[float, float], Outcome]) -> None:
    """The grid as text: the best fixed choice per cell and auto's ratio to it."""
    print(f"\n{title}: best fixed choice (auto / best); rows: device slowdown, columns: uplink Mbit/s")
    print(f"{'':>6}" + "".join(f"{rate:>26g}" for rate in RATES_MBIT_S))
    for slowdown in SLOWDOWNS:
        row = [cells[(slowdown, rate)] for rate in RATES_MBIT_S]
        text = "".join(f"{'+' if o.split_wins else ' '}{o.best[:18]:>18} {o.auto_ratio:5.2f}" for o in row)
        print(f"{'x' + format(slowdown, 'g'):>6}" + text)
    ratios = [o.auto_ratio for o in cells.values()]
    within = sum(r <= 1.05 for r in ratios) / len(ratios)  # noqa: PLR2004
    worst = max(cells.items(), key=lambda item: item[1].auto_ratio)
    print(
        f"  auto within 1.05x of the best fixed choice in {within:.0%} of cells; worst {worst[1].auto_ratio:.2f}x "
        f"at x{worst[0][0]:g}, {worst[0][1]:g} Mbit/s (best {worst[1].best}); + marks a split beating both extremes"
    )


def draw(path: Path, model: str, title: str, cells: dict[tuple[float, float], Outcome], choices: list[Choice]) -> None:
    """A heatmap: colour = the best fixed choice, text = auto's ratio to it; a split beating both extremes boxed.

    Every choice keeps one colour in both maps of a model: edge-only, cloud-only raw and as a JPEG first.
    """
    import matplotlib as mpl  # noqa: PLC0415 - only when drawing

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    every = sorted((choice.label for choice in choices), key=_order)
    palette = plt.get_cmap("tab20")
    colour = {label: palette(index % 20) for index, label in enumerate(every)}
    labels = sorted({o.best for o in cells.values()}, key=_order)
    grid = np.array([[labels.index(cells[(s, r)].best) for r in RATES_MBIT_S] for s in SLOWDOWNS])
    figure, axes = plt.subplots(figsize=(8.5, 4.8))
    axes.imshow(grid, cmap=mpl.colors.ListedColormap([colour[label] for label in labels]), aspect="auto")
    for y, slowdown in enumerate(SLOWDOWNS):
        for x, rate in enumerate(RATES_MBIT_S):
            outcome = cells[(slowdown, rate)]
            axes.text(x, y, f"{outcome.auto_ratio:.2f}", ha="center", va="center", fontsize=8)
            if outcome.split_wins:
                axes.add_patch(plt.Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, linewidth=2, edgecolor="black"))
    axes.set_xticks(range(len(RATES_MBIT_S)), [f"{r:g}" for r in RATES_MBIT_S])
    axes.set_yticks(range(len(SLOWDOWNS)), [f"x{s:g}" for s in SLOWDOWNS])
    axes.set_xlabel("uplink (Mbit/s)")
    axes.set_ylabel("device: this host slowed by")
    axes.set_title(
        f"{Path(model).stem}, {title}: the best fixed choice (colour), auto / best (text), a split winning (boxed)",
        fontsize=9,
        loc="left",
    )
    handles = [mpl.patches.Patch(color=colour[label], label=_legend(label)) for label in labels]
    axes.legend(handles=handles, bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _order(label: str) -> tuple[int, str]:
    cut = label.split("@", maxsplit=1)[0]
    return (0 if cut == EDGE_ONLY else 1 if cut == CLOUD_ONLY else 2, label)


def _legend(label: str) -> str:
    cut = label.split("@", maxsplit=1)[0]
    return f"{label} (edge-only)" if cut == EDGE_ONLY else f"{label} (cloud-only)" if cut == CLOUD_ONLY else label


# --- the command ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Measure the parts, map both objectives, draw, and check cells for real if asked (``argv``: the arguments)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="zoo name or .onnx file")
    parser.add_argument("--rtt-ms", type=float, default=40.0, help="round trip of every cell (default 40)")
    parser.add_argument("--codecs", default="raw,jpeg,int8,int8+zstd", help="codecs allowed (comma-separated)")
    parser.add_argument("--hub-speedup", type=float, default=1.0, help="the hub's speed over this host's (1)")
    parser.add_argument("--device-watts", type=float, default=3.0, help="device power computing (default 3 W)")
    parser.add_argument("--radio", choices=sorted(RADIOS), default="wifi", help="radio power model (wifi)")
    parser.add_argument("--every-ms", type=float, default=1000.0, help="time between requests (1000)")
    parser.add_argument("--check", type=int, default=0, metavar="N", help="run N cells for real")
    parser.add_argument("--out", type=Path, help="write the heatmaps (PNG) here")
    parser.add_argument("--json", action="store_true", help="print the maps as JSON")
    args = parser.parse_args(argv)
    codecs = [codec.strip() for codec in args.codecs.split(",") if codec.strip()]
    print(f"$ python bench/split_map.py {' '.join(sys.argv[1:] if argv is None else argv)}", file=sys.stderr)
    choices = measure_choices(args.model, codecs, args.hub_speedup)
    energy = EnergyModel(args.device_watts, RADIOS[args.radio])
    maps = {
        objective: map_objective(choices, args.rtt_ms, objective, energy, args.every_ms)
        for objective in ("latency", "energy")
    }
    if args.json:
        print(json.dumps(_to_json(args.model, choices, maps), indent=2))
    else:
        print(f"{args.model}: parts measured on this host (1 thread); round trip {args.rtt_ms:g} ms")
        for choice in choices:
            print(
                f"  {choice.label:<28} head {choice.head_ms:7.2f} ms  {choice.bytes:>9,} B  "
                f"tail {choice.tail_ms:6.2f} ms"
            )
        print_map("latency", maps["latency"])
        print_map(
            f"energy ({args.device_watts:g} W computing, {args.radio}, a request every {args.every_ms:g} ms)",
            maps["energy"],
        )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        for objective, cells in maps.items():
            draw(args.out / f"map-{Path(args.model).stem}-{objective}.png", args.model, objective, cells, choices)
    if args.check:
        from split_map_check import check_cells  # noqa: PLC0415 - the real runs, only when asked

        check_cells(
            args.model, codecs=codecs, cells=maps["latency"], rtt_ms=args.rtt_ms, count=args.check, sample=_sample_feeds
        )


def _to_json(model: str, choices: list[Choice], maps: dict[str, dict[tuple[float, float], Outcome]]) -> dict[str, Any]:
    return {
        "model": model,
        "choices": [dataclasses.asdict(choice) | {"label": choice.label} for choice in choices],
        "maps": {
            objective: [
                {"slowdown": s, "rate_mbit_s": r, **dataclasses.asdict(outcome)} for (s, r), outcome in cells.items()
            ]
            for objective, cells in maps.items()
        },
    }


if __name__ == "__main__":
    main()

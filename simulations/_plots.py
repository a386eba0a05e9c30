"""A run's pictures that are not over time: the distribution, where the time went, and the capacity curve.

Drawn with ``matplotlib.figure.Figure`` (not pyplot, which keeps every figure
alive), in the colours of :mod:`simulations._plot_style`. The pictures over
time are in :mod:`simulations._plots_time`; the page that shows them all in
:mod:`simulations._report_page`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from simulations._plot_style import log_axis, png, policy_colour

if TYPE_CHECKING:
    from collections.abc import Sequence

    from simulations._capacity import CapacityResult
    from simulations._report import RequestRecord

PARTS = (
    ("device_queue_ms", "device: queue", "#64b5cd"),
    ("edge_ms", "device: head", "#4c72b0"),
    ("network_ms", "network", "#dd8452"),
    ("hub_queue_ms", "hub queue", "#c44e52"),
    ("hub_compute_ms", "hub: tail", "#8172b3"),
    ("fallback_ms", "device: tail after no answer", "#937860"),
)
"""The parts of a request's time each record measures: its field, its name, its colour."""
WAITING = ("waiting, not itemised", "#cccccc")
"""What the parts leave of the total: a deadline before a fallback, decoding, the agent's own overhead."""


@dataclasses.dataclass(frozen=True, slots=True)
class Breakdown:
    """Where one run's mean request time went, in ms: each of :data:`PARTS`, then what they leave."""

    run: str
    parts: tuple[float, ...]
    waiting_ms: float
    total_ms: float


def breakdown(records: Sequence[RequestRecord], run: str) -> Breakdown:
    """The mean of each part of ``run``'s answered ``records``, and of what the parts leave of the total."""
    rows = [record for record in records if record.run == run]
    count = max(1, len(rows))
    parts = tuple(sum(getattr(row, field) for row in rows) / count for field, _, _ in PARTS)
    total = sum(row.total_ms for row in rows) / count
    return Breakdown(run, parts, max(0.0, total - sum(parts)), total)


def breakdown_png(breakdowns: Sequence[Breakdown]) -> bytes:
    """One stacked bar per run: where its mean request time went."""
    figure = Figure(figsize=(10, 0.6 * len(breakdowns) + 1.6), layout="constrained")
    axis = figure.subplots()
    names = [b.run for b in breakdowns]
    left = [0.0] * len(breakdowns)
    for index, (_, label, colour) in enumerate(PARTS):
        widths = [b.parts[index] for b in breakdowns]
        axis.barh(names, widths, left=left, color=colour, label=label)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    axis.barh(names, [b.waiting_ms for b in breakdowns], left=left, color=WAITING[1], label=WAITING[0])
    for tick in axis.get_yticklabels():
        tick.set_color(policy_colour(tick.get_text()))
    axis.invert_yaxis()  # the first run on top, as in the table
    axis.set_xlabel("mean ms per answered request")
    axis.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3, fontsize=8, frameon=False)
    return png(figure)


def cdf_png(records: Sequence[RequestRecord], runs: Sequence[str]) -> bytes:
    """The distribution of answered requests' total times, one line per run."""
    figure = Figure(figsize=(7, 4), layout="constrained")
    axis = figure.subplots()
    for run in runs:
        values = sorted(r.total_ms for r in records if r.run == run)
        fractions = [(index + 1) / len(values) for index in range(len(values))]
        axis.plot(values, fractions, label=run, color=policy_colour(run))
    log_axis(axis, "x")
    axis.set_xlabel("total ms")
    axis.set_ylabel("fraction of requests")
    axis.grid(visible=True, alpha=0.3)
    axis.legend()
    return png(figure)


def capacity_png(results: Sequence[CapacityResult], p95_ms: float) -> bytes:
    """The p95 each policy measured per number of replicas, the target, and each policy's answer ringed."""
    figure = Figure(figsize=(7, 4), layout="constrained")
    axis = figure.subplots()
    for index, result in enumerate(results):
        colour = policy_colour(result.policy)
        replicas = [p.replicas for p in result.points]
        axis.plot(replicas, [p.p95_ms for p in result.points], marker="o", color=colour, label=result.policy)
        found = next((p for p in result.points if p.replicas == result.replicas), None)
        if found is not None:
            axis.scatter([found.replicas], [found.p95_ms], s=220, facecolors="none", edgecolors=colour, linewidths=2)
            axis.annotate(
                f"{found.replicas}",
                (found.replicas, found.p95_ms),
                textcoords="offset points",
                xytext=(9, 9 + 12 * index),  # policies that meet at one point stacked, not overprinted
                color=colour,
                fontweight="bold",
            )
    axis.axhline(p95_ms, color="black", linestyle="--", label=f"target {p95_ms:g} ms")
    axis.set_xscale("log", base=2)
    axis.xaxis.set_major_formatter("{x:.0f}")
    log_axis(axis)
    axis.set_xlabel("hub replicas")
    axis.set_ylabel("fleet p95, ms")
    axis.grid(visible=True, alpha=0.3)
    axis.legend()
    return png(figure)

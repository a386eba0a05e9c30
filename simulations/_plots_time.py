"""A run's pictures over time, every one with the scenario's faults shaded.

- :func:`latency_png`: every answered request's total time, one panel per
  policy, coloured by its cut, over every group's uplink rate;
- :func:`load_png`: requests answered per second, and p50 and p95 of the
  requests made in each interval, per policy;
- :func:`queue_png`: the hub queue waits requests met, per policy.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from simulations._plot_style import TimeAxis, log_axis, png, policy_colour
from simulations._report import percentile

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from matplotlib.axes import Axes

    from simulations._report import RequestRecord
    from simulations._scenario import GroupSpec, Scenario

_STEPS = 400
_INTERVALS = 60
"""About how many intervals the load picture cuts a run into."""
_PER_INTERVAL = 10
"""The requests an interval of the load picture should hold on average."""
_NICE_S = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_GROUP_STYLES = ("-", "--", ":", "-.")


def latency_png(
    records: Sequence[RequestRecord], runs: Sequence[str], scenario: Scenario, time: TimeAxis, cuts: Mapping[str, str]
) -> bytes:
    """Total time per answered request over time, a panel per run coloured by ``cuts``, then the links."""
    figure = Figure(figsize=(10, 2.2 * len(runs) + 2.2), layout="constrained")
    axes = figure.subplots(len(runs) + 1, 1, sharex=True, squeeze=False)[:, 0]
    for axis, run in zip(axes, runs, strict=False):
        time.draw(axis, labelled=False)
        for cut, colour in cuts.items():
            points = [(r.start_s, r.total_ms) for r in records if r.run == run and r.cut == cut]
            if points:
                xs, ys = zip(*points, strict=True)
                axis.plot(xs, ys, ".", markersize=3, color=colour, label=f"cut {cut}")  # plot: scatter is 10x slower
        log_axis(axis)
        axis.set_ylabel("total ms")
        axis.set_title(f"policy: {run}", loc="left", fontsize=10, color=policy_colour(run))
        if axis.get_legend_handles_labels()[0]:  # a run with no answer has no cut to name
            axis.legend(loc="upper right", fontsize=8, markerscale=3)
    _links(axes[-1], scenario, time)
    return png(figure)


def _links(axis: Axes, scenario: Scenario, time: TimeAxis) -> None:
    time.draw(axis)
    for index, group in enumerate(scenario.groups):
        times, rates = link_rate(scenario, group, time.duration_s)
        style = _GROUP_STYLES[index % len(_GROUP_STYLES)]
        axis.step(times, [r / 1e6 for r in rates], where="post", color="black", linestyle=style, label=group.name)
    axis.set_ylabel("uplink Mbit/s")
    axis.set_xlabel(time.label)
    axis.set_title("each group's uplink rate", loc="left", fontsize=10)
    axis.set_ylim(bottom=0)
    axis.legend(loc="upper right", fontsize=8)


def link_rate(scenario: Scenario, group: GroupSpec, duration_s: float) -> tuple[list[float], list[float]]:
    """``group``'s uplink rate (bit/s; ``nan`` when unlimited) over ``duration_s``: its link, with its link faults."""
    faults = [f for f in scenario.faults if f.kind in {"bandwidth", "outage"} and f.group == group.name]
    times = [duration_s * step / _STEPS for step in range(_STEPS + 1)]
    rates = []
    for t in times:
        rate = group.link.up.rate_at(t)
        for fault in faults:
            end = fault.at_s + fault.for_s if fault.for_s is not None else math.inf
            if fault.at_s <= t < end:
                rate = 0.0 if fault.kind == "outage" else (fault.rate_bit_s or rate)
        rates.append(rate if rate != math.inf else math.nan)
    return times, rates


def interval_s(duration_s: float, requests: int) -> float:
    """The load picture's interval: the shortest round figure that cuts ``duration_s`` into at most 60.

    And long enough for 10 of ``requests`` (a run's) on average: a p95 of fewer says little.
    """
    shortest = max(duration_s / _INTERVALS, _PER_INTERVAL * duration_s / max(1, requests))
    return next((step for step in _NICE_S if step >= shortest), _NICE_S[-1])


@dataclasses.dataclass(frozen=True, slots=True)
class Load:
    """One run's load over intervals of ``step_s``.

    Attributes:
        step_s: The intervals' length.
        per_s: Requests answered in each interval (by when the answer came), per second.
        p50_ms: The p50 of the requests made in each interval (``nan``: none were).
        p95_ms: Their p95.
    """

    step_s: float
    per_s: list[float]
    p50_ms: list[float]
    p95_ms: list[float]


def load(records: Sequence[RequestRecord], run: str, step_s: float, duration_s: float) -> Load:
    """``run``'s :class:`Load` over ``duration_s`` (an answer after it counts in the last interval)."""
    count = max(1, math.ceil(duration_s / step_s))
    made: list[list[float]] = [[] for _ in range(count)]
    answered = [0] * count
    for record in records:
        if record.run == run:
            made[min(count - 1, int(record.start_s // step_s))].append(record.total_ms)
            answered[min(count - 1, int((record.start_s + record.total_ms / 1000) // step_s))] += 1
    return Load(
        step_s,
        [n / step_s for n in answered],
        [percentile(ms, 50) for ms in made],
        [percentile(ms, 95) for ms in made],
    )


def load_png(records: Sequence[RequestRecord], runs: Sequence[str], time: TimeAxis) -> bytes:
    """Requests answered per second, and p50 (dashed) and p95 (solid) per interval, one colour per run."""
    step = interval_s(time.duration_s, max(sum(r.run == run for r in records) for run in runs))
    figure = Figure(figsize=(10, 5.5), layout="constrained")
    rate_axis, latency_axis = figure.subplots(2, 1, sharex=True)
    for run in runs:
        series = load(records, run, step, time.duration_s)
        mids = [(index + 0.5) * step for index in range(len(series.per_s))]
        colour = policy_colour(run)
        rate_axis.plot(mids, series.per_s, color=colour, label=run)
        latency_axis.plot(mids, series.p50_ms, color=colour, linestyle="--", label=f"{run} p50")
        latency_axis.plot(mids, series.p95_ms, color=colour, linestyle="-", label=f"{run} p95")
    for axis in (rate_axis, latency_axis):
        time.draw(axis, labelled=axis is rate_axis)
        axis.grid(visible=True, alpha=0.3)
    rate_axis.set_ylabel("answered per s")
    rate_axis.set_ylim(bottom=0)
    rate_axis.set_title(f"requests answered per second, over {step:g} s intervals", loc="left", fontsize=10)
    rate_axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    log_axis(latency_axis)
    latency_axis.set_ylabel("total ms")
    latency_axis.set_xlabel(time.label)
    latency_axis.set_title(
        "p50 (dashed) and p95 (solid) of the requests made in each interval", loc="left", fontsize=10
    )
    latency_axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return png(figure)


def queue_png(records: Sequence[RequestRecord], runs: Sequence[str], time: TimeAxis) -> bytes:
    """The hub queue wait each request a hub answered met, over time, one colour per run."""
    figure = Figure(figsize=(10, 3.5), layout="constrained")
    axis = figure.subplots()
    time.draw(axis)
    plotted = False
    for run in runs:
        points = [(r.start_s, r.hub_queue_ms) for r in records if r.run == run and r.hub]
        if points:
            xs, ys = zip(*points, strict=True)
            axis.plot(xs, ys, ".", markersize=3, color=policy_colour(run), label=run)
            plotted = True
    axis.set_xlabel(time.label)
    axis.set_ylabel("hub queue wait, ms")
    if not plotted:
        axis.text(0.5, 0.5, "no request reached a hub", ha="center", transform=axis.transAxes)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(markerscale=3, loc="upper right", fontsize=8)
    return png(figure)

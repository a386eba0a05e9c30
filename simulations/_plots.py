"""A run's pictures and its one-file report, built from the run directory's CSV alone.

- ``latency.png``: every request's total time over simulated time, one panel
  per run, coloured by the cut it used, with the first group's link rate
  under it;
- ``cdf.png``: the distribution of total times, one line per run;
- ``queue.png``: the hub queue waits requests met, over time, per run;
- ``report.html``: the summary table and the three pictures, inlined (no
  network needed to view it).

Drawn with ``matplotlib.figure.Figure`` (not pyplot, which keeps every figure
alive). Everything taken from the scenario is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING

import matplotlib as mpl

mpl.use("Agg")
from matplotlib.figure import Figure

from simulations._report import read_records, summarise

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from simulations._capacity import CapacityResult
    from simulations._report import RequestRecord, Summary
    from simulations._scenario import Scenario

_STEPS = 400
_COLUMNS = (
    ("run", "run"),
    ("group", "group"),
    ("count", "requests"),
    ("mean_ms", "mean ms"),
    ("p50_ms", "p50 ms"),
    ("p95_ms", "p95 ms"),
    ("p99_ms", "p99 ms"),
    ("throughput_hz", "req/s"),
    ("bytes_up_mean", "bytes up"),
    ("cut_switches", "switches"),
    ("fallbacks", "fallbacks"),
    ("errors", "errors"),
    ("lost", "lost"),
)


def write_report(out: Path, scenario: Scenario, lengths: Mapping[str, float] | None = None) -> list[Path]:
    """Draw the pictures and write ``report.html`` from ``out/requests.csv``; return the files written.

    ``lengths`` are the runs' seconds by name (default: each ``duration_s``).
    """
    records = read_records(out / "requests.csv")
    runs = list(dict.fromkeys(record.run for record in records))
    answered = [record for record in records if not record.error]  # a failed request has no latency to draw
    pictures = {
        "latency.png": _latency(answered, runs, scenario),
        "cdf.png": _cdf(answered, runs),
        "queue.png": _queue(answered, runs),
    }
    written = []
    for name, png in pictures.items():
        (out / name).write_bytes(png)
        written.append(out / name)
    page = _html(scenario, summarise(records, lengths or scenario.duration_s), pictures)
    (out / "report.html").write_text(page, encoding="utf-8")
    return [*written, out / "report.html"]


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _latency(records: list[RequestRecord], runs: list[str], scenario: Scenario) -> bytes:
    figure = Figure(figsize=(10, 2.4 * len(runs) + 1.6), layout="constrained")
    axes = figure.subplots(len(runs) + 1, 1, sharex=True, squeeze=False)[:, 0]
    cuts = sorted({record.cut for record in records})
    colours = {cut: f"C{index}" for index, cut in enumerate(cuts)}
    for axis, run in zip(axes, runs, strict=False):
        for cut in cuts:
            points = [(r.start_s, r.total_ms) for r in records if r.run == run and r.cut == cut]
            if points:
                xs, ys = zip(*points, strict=True)
                axis.scatter(xs, ys, s=4, color=colours[cut], label=cut)
        axis.set_yscale("log")
        axis.set_ylabel("total ms")
        axis.set_title(f"policy: {run}", loc="left", fontsize=10)
        axis.legend(loc="upper right", fontsize=8, markerscale=3)
    rate = axes[-1]
    times, rates = _link_rate(scenario)
    rate.step(times, [r / 1e6 for r in rates], where="post", color="black")
    rate.set_ylabel("Mbit/s")
    rate.set_xlabel("simulated s")
    rate.set_title(f"link rate of {scenario.groups[0].name} (uplink)", loc="left", fontsize=10)
    return _png(figure)


def _link_rate(scenario: Scenario) -> tuple[list[float], list[float]]:
    """The first group's uplink rate over time: its link, with its bandwidth faults."""
    group = scenario.groups[0]
    faults = [f for f in scenario.faults if f.kind in {"bandwidth", "outage"} and f.group == group.name]
    times = [scenario.duration_s * step / _STEPS for step in range(_STEPS + 1)]
    rates = []
    for t in times:
        rate = group.link.up.rate_at(t)
        for fault in faults:
            end = fault.at_s + fault.for_s if fault.for_s is not None else float("inf")
            if fault.at_s <= t < end:
                rate = 0.0 if fault.kind == "outage" else (fault.rate_bit_s or rate)
        rates.append(rate if rate != float("inf") else float("nan"))
    return times, rates


def _cdf(records: list[RequestRecord], runs: list[str]) -> bytes:
    figure = Figure(figsize=(7, 4), layout="constrained")
    axis = figure.subplots()
    for run in runs:
        values = sorted(r.total_ms for r in records if r.run == run)
        axis.plot(values, [(index + 1) / len(values) for index in range(len(values))], label=run)
    axis.set_xscale("log")
    axis.set_xlabel("total ms")
    axis.set_ylabel("fraction of requests")
    axis.grid(visible=True, alpha=0.3)
    axis.legend()
    return _png(figure)


def _queue(records: list[RequestRecord], runs: list[str]) -> bytes:
    figure = Figure(figsize=(10, 3.5), layout="constrained")
    axis = figure.subplots()
    plotted = False
    for run in runs:
        points = [(r.start_s, r.hub_queue_ms) for r in records if r.run == run and r.hub]
        if points:
            xs, ys = zip(*points, strict=True)
            axis.scatter(xs, ys, s=4, label=run)
            plotted = True
    axis.set_xlabel("simulated s")
    axis.set_ylabel("hub queue wait, ms")
    if plotted:
        axis.legend(markerscale=3)
    else:
        axis.text(0.5, 0.5, "no request reached a hub", ha="center", transform=axis.transAxes)
    return _png(figure)


def capacity_png(results: list[CapacityResult], p95_ms: float) -> bytes:
    """The p95 each policy measured per number of replicas, and the target."""
    figure = Figure(figsize=(7, 4), layout="constrained")
    axis = figure.subplots()
    for result in results:
        axis.plot(
            [p.replicas for p in result.points], [p.p95_ms for p in result.points], marker="o", label=result.policy
        )
    axis.axhline(p95_ms, color="black", linestyle="--", label=f"target {p95_ms:g} ms")
    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set_xlabel("hub replicas")
    axis.set_ylabel("fleet p95, ms")
    axis.grid(visible=True, alpha=0.3)
    axis.legend()
    return _png(figure)


def _html(scenario: Scenario, summaries: list[Summary], pictures: dict[str, bytes]) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in _COLUMNS)
    rows = []
    for summary in summaries:
        data = summary.to_json()
        cells = "".join(f"<td>{html.escape(_cell(data[key]))}</td>" for key, _ in _COLUMNS)
        rows.append(f"<tr>{cells}</tr>")
    images = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, png in pictures.items()
    )
    title = html.escape(scenario.name)
    about = html.escape(
        f"{scenario.description} {scenario.agents} agents, {scenario.duration_s:g} simulated s per run,"
        f" seed {scenario.seed}, fleet mode."
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{padding:.25em .6em;border-bottom:1px solid #ddd;text-align:right}"
        "td:nth-child(-n+2),th:nth-child(-n+2){text-align:left}img{max-width:100%}"
        f"</style></head><body><h1>{title}</h1><p>{about}</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{images}"
        "<p>Made by <code>edgecut sim run</code> from requests.csv in this directory.</p></body></html>\n"
    )


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)

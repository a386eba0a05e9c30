"""A run's one-file report, ``report.html``, and ``--find-hubs``' ``capacity.html``.

Built from the run directory alone (``requests.csv``, ``run.json``,
``profiles.json``), so a report can be redone without rerunning the
scenario. The page, top to bottom:

1. the answer (:mod:`simulations._answer`), then what ran: the scenario, its
   mode, agents, length and seed;
2. the summary table (:func:`~simulations._report.summarise`);
3. requests answered per second and p50 / p95 over time, per policy
   (``load.png``), and every request's time by its cut over every group's
   uplink rate (``latency.png``), the faults shaded on each time axis;
4. where the time went, per policy (``breakdown.png``, and its figures);
5. the distribution (``cdf.png``) and the hub queue (``queue.png``);
6. fallbacks, errors and lost requests by reason;
7. the scenario: groups, links, hub, faults.

Each picture is written beside the page and inlined in it (no network
needed to view it). Everything taken from the scenario is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import json
from typing import TYPE_CHECKING

from simulations._answer import capacity_answer, run_answer
from simulations._calibrate import load_profiles
from simulations._plot_style import TimeAxis, cut_colours
from simulations._plots import PARTS, WAITING, breakdown, breakdown_png, capacity_png, cdf_png
from simulations._plots_time import latency_png, load_png, queue_png
from simulations._report import read_records, reasons, summarise
from simulations._report_scenario import FAULT_COLUMNS, GROUP_COLUMNS, fault_rows, group_rows, hub_line

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from simulations._capacity import CapacityResult
    from simulations._plots import Breakdown
    from simulations._report import RequestRecord, Summary
    from simulations._scenario import Scenario

_SUMMARY = (
    ("run", "run", "{}"),
    ("group", "group", "{}"),
    ("count", "requests", "{:,}"),
    ("mean_ms", "mean ms", "{:,.1f}"),
    ("p50_ms", "p50 ms", "{:,.1f}"),
    ("p95_ms", "p95 ms", "{:,.1f}"),
    ("p99_ms", "p99 ms", "{:,.1f}"),
    ("throughput_hz", "req/s", "{:,.1f}"),
    ("bytes_up_mean", "mean bytes up", "{:,.0f}"),
    ("cut_switches", "cut switches", "{:,}"),
    ("fallbacks", "fallbacks", "{:,}"),
    ("errors", "errors", "{:,}"),
    ("lost", "lost", "{:,}"),
)
_LATENCY = (
    "Each answered request's total time, coloured by the cut it used, one panel per policy, over each group's"
    " uplink rate"
)
_WAITING = (
    "Waiting, not itemised: the total less the measured parts (the deadline a fallback waited for,"
    " decoding, the agent's own overhead)."
)
_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222}"
    "h1{font-size:1.45em;margin:.2em 0 .4em}h2{font-size:1.15em;margin-top:1.6em}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{padding:.25em .6em;border-bottom:1px solid #ddd;"
    "text-align:right}td:first-child,th:first-child,td.text,th.text{text-align:left}"
    "img{max-width:100%}figure{margin:1em 0}figcaption{color:#555;font-size:.9em}.about{color:#444}"
)


def write_report(out: Path, scenario: Scenario) -> list[Path]:
    """Draw the pictures and write ``report.html`` from the run directory ``out``; return the files written."""
    records = read_records(out / "requests.csv")
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    mode: str = run["mode"]
    runs = list(dict.fromkeys(record.run for record in records))
    answered = [record for record in records if not record.error]  # a failed request has no latency to draw
    time = TimeAxis.of(scenario, mode, max(run["run_s"].values(), default=scenario.duration_s))
    cuts = cut_colours(load_profiles(out / "profiles.json"), {r.cut for r in answered})
    breakdowns = [breakdown(answered, name) for name in runs]
    pictures = {
        "load.png": load_png(answered, runs, time),
        "latency.png": latency_png(answered, runs, scenario, time, cuts),
        "breakdown.png": breakdown_png(breakdowns),
        "cdf.png": cdf_png(answered, runs),
        "queue.png": queue_png(answered, runs, time),
    }
    summaries = summarise(records, run["run_s"])
    faults = "faults shaded" if scenario.faults else "no faults"
    body = [
        _summary_table(summaries),
        "<h2>Over time</h2>",
        _figure(pictures, "load.png", f"Requests answered per second, and p50 and p95, per policy; {faults}."),
        _figure(pictures, "latency.png", f"{_LATENCY}; {faults}."),
        "<h2>Where the time went</h2>",
        _figure(pictures, "breakdown.png", "Mean ms per answered request, by part, per policy."),
        _breakdown_table(breakdowns),
        "<h2>Distribution and hub queue</h2>",
        _figure(pictures, "cdf.png", "The distribution of answered requests' total times, per policy."),
        _figure(pictures, "queue.png", f"The hub queue wait of each request a hub answered; {faults}."),
        "<h2>Fallbacks and errors by reason</h2>",
        _reasons_table(records),
        _scenario_section(scenario, mode),
    ]
    answer, about = run_answer(summaries), _about(scenario, mode)
    if run.get("interrupted") and run["run_s"]:
        stopped, ran_s = list(run["run_s"].items())[-1]  # the run in progress comes last
        answer = f"interrupted ({stopped} stopped at {ran_s:,.1f} {time.label}): {answer}"
    return _write(out, "report.html", title=scenario.name, answer=answer, about=about, body=body, pictures=pictures)


def write_capacity_report(out: Path, scenario: Scenario, results: Sequence[CapacityResult], p95_ms: float) -> Path:
    """Write ``capacity.png`` and ``capacity.html`` (the answer, the curve, every point) to ``out``; return the page."""
    pictures = {"capacity.png": capacity_png(results, p95_ms)}
    points = [
        (p.policy, f"{p.replicas}", f"{p.p95_ms:,.1f}", f"{p.mean_ms:,.1f}", f"{p.fallbacks:,}", f"{p.remote:,}")
        for result in results
        for p in result.points
    ]
    body = [
        _figure(
            pictures,
            "capacity.png",
            f"Fleet p95 per number of hub replicas; ringed: the fewest that meet {p95_ms:g} ms.",
        ),
        _table(["policy", "replicas", "p95 ms", "mean ms", "fallbacks", "sent to a hub"], points),
        _scenario_section(scenario, "fleet", searched=True),
    ]
    answer = capacity_answer(results, p95_ms, scenario.agents)
    about = f"{_about(scenario, 'fleet')} Each point is one run of the scenario with that many hub replicas."
    written = _write(
        out, "capacity.html", title=scenario.name, answer=answer, about=about, body=body, pictures=pictures
    )
    return written[-1]


def _write(
    out: Path, name: str, *, title: str, answer: str, about: str, body: list[str], pictures: dict[str, bytes]
) -> list[Path]:
    written = []
    for picture, data in pictures.items():
        (out / picture).write_bytes(data)
        written.append(out / picture)
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<style>{_STYLE}</style></head><body><h1 id="answer">{html.escape(answer)}</h1>'
        f'<p class="about">{html.escape(about)}</p>{"".join(body)}'
        f"<p>Made by <code>edgecut sim run</code> from the files in this directory.</p></body></html>\n"
    )
    (out / name).write_text(page, encoding="utf-8")
    return [*written, out / name]


def _about(scenario: Scenario, mode: str) -> str:
    clock = "simulated s" if mode == "fleet" else "s of wall-clock time"
    length = f"{scenario.duration_s:g} {clock}"
    if scenario.requests is not None:
        length = f"{scenario.requests:,} requests or {length}"
    question = f": {scenario.description}" if scenario.description else ""
    return f"{scenario.name}{question} {scenario.agents:,} agents, {length} per run, seed {scenario.seed}, {mode} mode."


def _summary_table(summaries: Sequence[Summary]) -> str:
    rows = []
    for summary in summaries:
        data = summary.to_json()
        rows.append(tuple(form.format(data[key]) for key, _, form in _SUMMARY))
    return _table([title for _, title, _ in _SUMMARY], rows, text_columns=2)


def _breakdown_table(breakdowns: Sequence[Breakdown]) -> str:
    head = ["policy", *(label for _, label, _ in PARTS), WAITING[0], "total"]
    rows = [(b.run, *(f"{ms:,.1f}" for ms in (*b.parts, b.waiting_ms, b.total_ms))) for b in breakdowns]
    return _table(head, rows) + f"<p>{html.escape(_WAITING)}</p>"


def _reasons_table(records: Sequence[RequestRecord]) -> str:
    rows = [(r.run, r.kind, r.reason, r.example, f"{r.count:,}") for r in reasons(records)]
    if not rows:
        return "<p>None: no request fell back, failed or was lost.</p>"
    return _table(["run", "kind", "reason", "the first one", "requests"], rows, text_columns=4)


def _scenario_section(scenario: Scenario, mode: str, *, searched: bool = False) -> str:
    faults = fault_rows(scenario)
    policies = f" Each run: every group on one of {', '.join(scenario.policies)}." if scenario.policies else ""
    return (
        f"<h2>The scenario</h2><p>{html.escape(hub_line(scenario, mode, searched=searched) + '.' + policies)}</p>"
        + _table(list(GROUP_COLUMNS), group_rows(scenario), text_columns=len(GROUP_COLUMNS))
        + (_table(list(FAULT_COLUMNS), faults, text_columns=len(FAULT_COLUMNS)) if faults else "<p>No faults.</p>")
    )


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], *, text_columns: int = 1) -> str:
    """A table; its first ``text_columns`` columns read left-aligned, the rest (figures) right-aligned."""

    def cells(tag: str, values: Sequence[str]) -> str:
        return "".join(
            f"<{tag}{' class=text' if index < text_columns else ''}>{html.escape(value)}</{tag}>"
            for index, value in enumerate(values)
        )

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table><thead><tr>{cells('th', head)}</tr></thead><tbody>{body}</tbody></table>"


def _figure(pictures: dict[str, bytes], name: str, caption: str) -> str:
    data = base64.b64encode(pictures[name]).decode()
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)} ({html.escape(name)})</figcaption></figure>"
    )

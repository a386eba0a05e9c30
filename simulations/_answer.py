"""The report's first line: the scenario's question answered in words, with the figures.

For a run of several policies with ``auto`` among them: auto's p95 and mean
as multiples of the best fixed policy's (the one of lowest p95); without
``auto``: the policies from best p95 to worst; for one run alone: its
figures. Fallbacks, errors and lost requests follow, per run, where there
are any. For ``--find-hubs``: the replicas each policy needs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from simulations._capacity import CapacityResult
    from simulations._report import Summary

_AUTO = "auto"
_NOT_FIXED = frozenset({_AUTO, "scenario"})


def fleet_rows(summaries: Sequence[Summary]) -> dict[str, Summary]:
    """Each run's summary over its whole fleet: its ``all`` row, or its one group's."""
    rows: dict[str, Summary] = {}
    for summary in summaries:
        if summary.group == "all" or summary.run not in rows:
            rows[summary.run] = summary
    return rows


def run_answer(summaries: Sequence[Summary]) -> str:
    """The answer to a run of its scenario's policies (see the module docstring)."""
    rows = fleet_rows(summaries)
    if not rows:
        return "no request finished"
    fixed = [row for run, row in rows.items() if run not in _NOT_FIXED and not math.isnan(row.p95_ms)]
    auto = rows.get(_AUTO)
    if auto is not None and fixed and not math.isnan(auto.p95_ms):
        best = min(fixed, key=lambda row: row.p95_ms)
        line = (
            f"auto: p95 {_ms(auto.p95_ms)}, {_ratio(auto.p95_ms, best.p95_ms)} the best fixed policy ({best.run},"
            f" {_ms(best.p95_ms)}); mean {_ms(auto.mean_ms)}, {_ratio(auto.mean_ms, best.mean_ms)} {best.run}'s"
            f" {_ms(best.mean_ms)}"
        )
    elif len(rows) > 1:
        ranked = sorted(rows.values(), key=lambda row: (math.isnan(row.p95_ms), row.p95_ms))
        line = "p95 from best to worst: " + ", ".join(f"{row.run} {_ms(row.p95_ms)}" for row in ranked)
    else:
        (row,) = rows.values()
        line = f"{row.run}: p95 {_ms(row.p95_ms)}, p50 {_ms(row.p50_ms)} over {row.count:,} requests answered"
        if not row.count:
            line = f"{row.run}: no request answered"
    return line + _troubles(list(rows.values()))


def capacity_answer(results: Sequence[CapacityResult], p95_ms: float, agents: int) -> str:
    """The answer to ``--find-hubs``: the fewest hub replicas each policy needs to meet ``p95_ms``."""
    parts = []
    for result in results:
        if not result.complete:
            tried = ", ".join(f"{p.replicas}: {_ms(p.p95_ms)}" for p in result.points) or "nothing measured"
            parts.append(f"{result.policy} not found, interrupted ({tried})")
        elif result.replicas is not None:
            parts.append(f"{result.policy} {result.replicas} hub replica{'s' if result.replicas > 1 else ''}")
        elif all(point.remote == 0 for point in result.points):
            parts.append(f"{result.policy} sends nothing to a hub (no replica count changes it)")
        else:
            most = max(point.replicas for point in result.points)
            parts.append(f"{result.policy} more than {most} replicas")
    return f"p95 within {p95_ms:g} ms for {agents:,} agents: " + "; ".join(parts)


def _troubles(rows: Sequence[Summary]) -> str:
    said = []
    for field in ("fallbacks", "errors", "lost"):
        counts = [f"{row.run} {getattr(row, field):,}" for row in rows if getattr(row, field)]
        if counts:
            said.append(f"{field}: {', '.join(counts)}")
    return "; " + "; ".join(said) if said else ""


def _ms(value: float) -> str:
    if math.isnan(value):
        return "no answer"
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"  # noqa: PLR2004 - two decimals' worth


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x" if reference > 0 else "n/a"

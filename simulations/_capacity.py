"""The capacity search: the fewest hub replicas that keep a fleet's p95 under a target, per policy.

For each policy (the scenario's ``policies``, else each group's own), the
scenario runs in fleet mode with 1, 2, 4, ... replicas until the p95 of every
request's total time meets the target (or ``max_replicas`` is reached), then
bisects between the last miss and the first hit. Every run keeps the
scenario's seed and faults (a ``hub-down`` fault only where its replica
exists), so the curve compares like with like.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from simulations._report import RequestRecord, percentile
from simulations._run import run_fleet
from simulations._scenario import REPLICA_FAULTS

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

    from simulations._calibrate import ModelProfile
    from simulations._scenario import Scenario


@dataclasses.dataclass(frozen=True, slots=True)
class CapacityPoint:
    """One policy at one number of replicas."""

    policy: str
    replicas: int
    p95_ms: float
    mean_ms: float
    fallbacks: int
    remote: int  # requests that went to a hub


@dataclasses.dataclass(frozen=True, slots=True)
class CapacityResult:
    """What the search found for one policy: the fewest replicas (``None``: not within the limit) and every point.

    ``complete`` is false for the policy a search was interrupted in: its
    ``replicas`` is then ``None`` whatever its points say.
    """

    policy: str
    replicas: int | None
    points: tuple[CapacityPoint, ...]
    complete: bool = True


class SearchInterrupted(KeyboardInterrupt):
    """A capacity search stopped by Ctrl+C (or SIGTERM): what it had found so far, the policy in progress last.

    Attributes:
        results: One result per policy searched or begun.
    """

    def __init__(self, results: list[CapacityResult]) -> None:
        super().__init__()
        self.results = results


def find_hubs(
    scenario: Scenario,
    profiles: Mapping[str, ModelProfile],
    p95_ms: float,
    *,
    max_replicas: int = 64,
    progress: Callable[[CapacityPoint], None] | None = None,
) -> list[CapacityResult]:
    """Search, per policy, the fewest replicas whose fleet p95 is at most ``p95_ms``.

    Raises:
        SearchInterrupted: A ``KeyboardInterrupt`` stopped it; it carries what was found.
    """
    results: list[CapacityResult] = []
    for policy in scenario.policies or (None,):
        points: dict[int, CapacityPoint] = {}
        try:
            results.append(
                _policy(
                    scenario,
                    profiles,
                    policy,
                    p95_ms=p95_ms,
                    max_replicas=max_replicas,
                    progress=progress,
                    points=points,
                )
            )
        except KeyboardInterrupt:
            begun = CapacityResult(policy or "scenario", None, tuple(points[n] for n in sorted(points)), complete=False)
            raise SearchInterrupted([*results, begun]) from None
    return results


def _policy(
    scenario: Scenario,
    profiles: Mapping[str, ModelProfile],
    policy: str | None,
    *,
    p95_ms: float,
    max_replicas: int,
    progress: Callable[[CapacityPoint], None] | None,
    points: dict[int, CapacityPoint],
) -> CapacityResult:
    """One policy's search, each point kept in ``points`` as it is measured."""

    def measure(replicas: int) -> bool:
        if replicas not in points:
            points[replicas] = _point(scenario, profiles, policy, replicas)
            if progress is not None:
                progress(points[replicas])
        return points[replicas].p95_ms <= p95_ms

    if not measure(1) and points[1].remote == 0:  # nothing reaches a hub: replicas change nothing
        return CapacityResult(policy or "scenario", None, (points[1],))
    found = _search(measure, max_replicas)
    return CapacityResult(policy or "scenario", found, tuple(points[n] for n in sorted(points)))


def write_capacity(
    out: Path, scenario: Scenario, results: Sequence[CapacityResult], p95_ms: float, *, report: bool = True
) -> list[dict[str, Any]]:
    """Write ``capacity.json`` (every point tried, per policy) to ``out``; return the JSON.

    With ``report`` (it needs matplotlib), also ``capacity.png`` and
    ``capacity.html``: the answer, the curve with each policy's answer
    ringed, every point and the scenario.
    """
    data = [
        {
            "policy": result.policy,
            "replicas": result.replicas,
            "complete": result.complete,
            "p95_ms_target": p95_ms,
            "points": [dataclasses.asdict(point) for point in result.points],
        }
        for result in results
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "capacity.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if report:
        from simulations._report_page import write_capacity_report  # noqa: PLC0415 - matplotlib loads slowly

        write_capacity_report(out, scenario, results, p95_ms)
    return data


def _search(meets: Callable[[int], bool], limit: int) -> int | None:
    """The smallest n in 1..limit for which ``meets(n)`` (assumed monotonic), doubling then bisecting."""
    low, high = 0, 1  # meets(low) is false (0 replicas serve nothing)
    while not meets(high):
        if high >= limit:
            return None
        low, high = high, min(high * 2, limit)
    while high - low > 1:
        middle = (low + high) // 2
        if meets(middle):
            high = middle
        else:
            low = middle
    return high


def _point(
    scenario: Scenario, profiles: Mapping[str, ModelProfile], policy: str | None, replicas: int
) -> CapacityPoint:
    faults = tuple(f for f in scenario.faults if f.kind not in REPLICA_FAULTS or (f.replica or 0) < replicas)
    sized = dataclasses.replace(scenario, hub=dataclasses.replace(scenario.hub, replicas=replicas), faults=faults)
    records: list[RequestRecord] = []
    run_fleet(sized, profiles, records.append, policy=policy)
    totals = [record.total_ms for record in records]
    return CapacityPoint(
        policy=policy or "scenario",
        replicas=replicas,
        p95_ms=percentile(totals, 95),
        mean_ms=sum(totals) / len(totals) if totals else float("nan"),
        fallbacks=sum(bool(record.fallback) for record in records),
        remote=sum(record.bytes_up > 0 for record in records),
    )

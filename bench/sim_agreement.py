"""Does fleet mode tell the truth? One scenario in fleet mode and in emulate mode, p50 and p95 per policy.

Runs the scenario (a file or a bundled name) in both modes with the same
seed, optionally with every group's agent count set to ``--agents``, and
prints per policy the p50 and p95 of each mode and their ratio (fleet /
emulate); the target is within 10%. Emulate mode takes the scenario's
``duration_s`` of wall-clock time per policy.

    python bench/sim_agreement.py [bandwidth-drop] [--agents 8] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

from simulations._report import percentile, read_records
from simulations._run import run_scenario
from simulations._scenario import load_scenario
from simulations.scenarios import find

WITHIN = 0.10


def _by_policy(out: Path) -> dict[str, dict[str, float]]:
    records = read_records(out / "requests.csv")
    runs = dict.fromkeys(record.run for record in records)
    figures = {}
    for run in runs:
        totals = [record.total_ms for record in records if record.run == run]
        figures[run] = {"p50": percentile(totals, 50), "p95": percentile(totals, 95), "count": len(totals)}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", nargs="?", default="bandwidth-drop")
    parser.add_argument("--agents", type=int, help="set every group's agent count")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    scenario = load_scenario(find(args.scenario))
    if args.agents is not None:
        groups = tuple(dataclasses.replace(group, count=args.agents) for group in scenario.groups)
        scenario = dataclasses.replace(scenario, groups=groups)
    report: dict[str, Any] = {"scenario": scenario.name, "agents": scenario.agents, "policies": {}}
    with tempfile.TemporaryDirectory() as directory:
        fleet, emulate = Path(directory) / "fleet", Path(directory) / "emulate"
        run_scenario(scenario, emulate, mode="emulate", report=False)
        run_scenario(scenario, fleet, profiles_file=emulate / "profiles.json", report=False)
        fleet_figures, emulate_figures = _by_policy(fleet), _by_policy(emulate)
    print(f"$ python bench/sim_agreement.py {args.scenario}" + (f" --agents {args.agents}" if args.agents else ""))
    print(f"{scenario.name}: {scenario.agents} agents; p50 / p95 ms, fleet / emulate (target within {WITHIN:.0%})")
    for policy, ours in fleet_figures.items():
        truth = emulate_figures[policy]
        ratios = {q: ours[q] / truth[q] for q in ("p50", "p95")}
        report["policies"][policy] = {"fleet": ours, "emulate": truth, "ratio": ratios}
        marks = ["" if abs(ratio - 1) <= WITHIN else " MISS" for ratio in ratios.values()]
        print(
            f"  {policy:<12} fleet {ours['p50']:7.1f} / {ours['p95']:7.1f}   emulate {truth['p50']:7.1f} / "
            f"{truth['p95']:7.1f}   ratio {ratios['p50']:.2f}{marks[0]} / {ratios['p95']:.2f}{marks[1]}"
        )
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

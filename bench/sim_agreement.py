"""Does fleet mode tell the truth? One scenario in fleet mode and in emulate mode, p50 and p95 per policy.

Runs the scenario (a file or a bundled name) in emulate mode, then in fleet
mode twice with the same seed: on the profile measured on this host before
the run (``profiles.json``) and on the profile emulate mode observed
(``observed-profiles.json``: the devices' and hubs' compute times as the run
took them, host contention included). Optionally every group's agent count
is set to ``--agents``. Prints per policy the p50 and p95 of each and the
ratios fleet / emulate; the target is within 10%. Emulate mode takes the
scenario's ``duration_s`` of wall-clock time per policy.

    python bench/sim_agreement.py [bandwidth-drop] [--agents 8] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

from simulations import load_scenario, percentile, read_records, run_scenario
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
        emulate = Path(directory) / "emulate"
        run_scenario(scenario, emulate, mode="emulate", report=False)
        truth = _by_policy(emulate)
        fleets = {}
        for calibration, profiles in (("measured", "profiles.json"), ("observed", "observed-profiles.json")):
            out = Path(directory) / calibration
            run_scenario(scenario, out, profiles_file=emulate / profiles, report=False)
            fleets[calibration] = _by_policy(out)
    print(f"$ python bench/sim_agreement.py {args.scenario}" + (f" --agents {args.agents}" if args.agents else ""))
    print(f"{scenario.name}: {scenario.agents} agents; p50 / p95 ms (target: fleet / emulate within {WITHIN:.0%})")
    columns = f"{'emulate':>15}   {'fleet, measured':>15} {'ratio':>11}   {'fleet, observed':>15} {'ratio':>11}"
    print(f"  {'policy':<8} {columns}")
    for policy, real in truth.items():
        row = f"  {policy:<8} {real['p50']:7.1f} /{real['p95']:7.1f}"
        report["policies"][policy] = {"emulate": real}
        for calibration, figures in fleets.items():
            ours = figures[policy]
            ratios = {q: ours[q] / real[q] for q in ("p50", "p95")}
            report["policies"][policy][calibration] = {**ours, "ratio": ratios}
            marks = "".join("" if abs(ratio - 1) <= WITHIN else "!" for ratio in ratios.values())
            row += f"   {ours['p50']:7.1f} /{ours['p95']:7.1f} {ratios['p50']:5.2f}/{ratios['p95']:.2f}{marks:<2}"
        print(row)
    print("  (! marks a ratio beyond the target)")
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

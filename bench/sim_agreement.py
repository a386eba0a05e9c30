"""Does fleet mode tell the truth? Scenarios in fleet mode and in emulate mode, p50 and p95 per policy.

Runs each scenario (a file or a bundled name) in emulate mode, then in fleet
mode twice with the same seed: on the profile measured on this host before
the run (``profiles.json``) and on the profile emulate mode observed
(``observed-profiles.json``: the devices' and hubs' compute times as the run
took them, host contention included). Optionally every group's agent count
is set to ``--agents``. Prints per policy the p50 and p95 of each and the
ratios fleet / emulate; the target is within 10%. Emulate mode takes the
scenario's ``duration_s`` of wall-clock time per policy.

    python bench/sim_agreement.py [bandwidth-drop ...] [--agents 8] [--json] [--keep DIR [--reuse]]

The faults table of docs/simulation.md runs the situations in
bench/situations/ (the only hub down, a broker restart, a link outage, an
overloaded hub, a hub loading its tails on first use)::

    python bench/sim_agreement.py bench/situations/*.toml
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from simulations import (
    RequestRecord,
    Scenario,
    load_profiles,
    load_scenario,
    observed_profiles,
    percentile,
    read_records,
    run_scenario,
    save_profiles,
)
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


def _hub_start_s(scenario: Scenario, records: list[RequestRecord]) -> float | None:
    """How long emulate mode's hubs took to answer again after a ``hub-down`` restart (median), if there was one.

    Read from the requests: the first answer a hub gave after each restart.
    """
    starts = []
    for fault in scenario.faults:
        if fault.kind != "hub-down" or fault.for_s is None:
            continue
        back_s = fault.at_s + fault.for_s
        answered = [
            r.start_s + r.total_ms / 1000 for r in records if r.hub and not r.fallback and r.start_s > fault.at_s
        ]
        later = [at_s - back_s for at_s in answered if at_s > back_s]
        if later:
            starts.append(min(later))
    return round(statistics.median(starts), 2) if starts else None


def _hub_load_s(scenario: Scenario, records: list[RequestRecord]) -> float | None:
    """How long emulate mode's hub took to load the cloud-only cut's tail, without preloading (else ``None``).

    Read from cloud-only's requests (one cut, one load): the first one waited
    for the load in the hub's queue, or was answered ``loading``; then the
    load ended when the first one served left the queue.
    """
    cloud = sorted((r for r in records if r.policy == "cloud"), key=lambda r: r.start_s)
    if scenario.hub.preload or not cloud:
        return None
    served = next((r for r in cloud if r.hub and not r.fallback), None)
    if served is None:
        return None
    return round(served.start_s - cloud[0].start_s + served.hub_queue_ms / 1000, 2)


def agreement(name: str, agents: int | None, keep: Path | None = None, *, reuse: bool = False) -> dict[str, Any]:
    """One scenario in emulate mode, then in fleet mode on each calibration: p50, p95 and the ratios per policy."""
    scenario = load_scenario(find(name))
    if agents is not None:
        groups = tuple(dataclasses.replace(group, count=agents) for group in scenario.groups)
        scenario = dataclasses.replace(scenario, groups=groups)
    report: dict[str, Any] = {"scenario": scenario.name, "agents": scenario.agents, "policies": {}}
    with contextlib.ExitStack() as stack:
        directory = keep / Path(name).stem if keep else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        emulate = directory / "emulate"
        records_file = emulate / "requests.csv"
        if reuse and records_file.exists():  # the observed calibration as this code makes it from the kept records
            records = read_records(records_file)
            measured = load_profiles(emulate / "profiles.json")
            save_profiles(observed_profiles(scenario, records, measured), emulate / "observed-profiles.json")
        else:
            run_scenario(scenario, emulate, mode="emulate", report=False)
            records = read_records(records_file)
        truth = _by_policy(emulate)
        start_s, load_s = _hub_start_s(scenario, records), _hub_load_s(scenario, records)
        if start_s is not None:  # fleet mode's replicas take as long to come back as emulate mode's did
            scenario = dataclasses.replace(scenario, hub=dataclasses.replace(scenario.hub, start_s=start_s))
            report["hub_start_s"] = start_s
        if load_s is not None:  # and as long to load a tail
            scenario = dataclasses.replace(scenario, hub=dataclasses.replace(scenario.hub, load_s=load_s))
            report["hub_load_s"] = load_s
        fleets = {}
        for calibration, profiles in (("measured", "profiles.json"), ("observed", "observed-profiles.json")):
            out = directory / calibration
            run_scenario(scenario, out, profiles_file=emulate / profiles, report=False)
            fleets[calibration] = _by_policy(out)
    for policy, real in truth.items():
        report["policies"][policy] = {"emulate": real}
        for calibration, figures in fleets.items():
            ours = figures[policy]
            ratios = {q: ours[q] / real[q] for q in ("p50", "p95")}
            report["policies"][policy][calibration] = {**ours, "ratio": ratios}
    return report


def print_agreement(report: dict[str, Any]) -> None:
    """One scenario's table: per policy, emulate's p50 / p95 and each fleet calibration's with its ratios."""
    print(
        f"{report['scenario']}: {report['agents']} agents; p50 / p95 ms (target: fleet / emulate within {WITHIN:.0%})"
    )
    if "hub_start_s" in report:
        print(f"  (emulate's hub answered {report['hub_start_s']:.2f} s after its restart: fleet mode's start_s)")
    if "hub_load_s" in report:
        print(f"  (emulate's hub loaded cloud-only's tail in {report['hub_load_s']:.2f} s: fleet mode's load_s)")
    columns = f"{'emulate':>15}   {'fleet, measured':>15} {'ratio':>11}   {'fleet, observed':>15} {'ratio':>11}"
    print(f"  {'policy':<8} {columns}")
    for policy, figures in report["policies"].items():
        real = figures["emulate"]
        row = f"  {policy:<8} {real['p50']:7.1f} /{real['p95']:7.1f}"
        for calibration in ("measured", "observed"):
            ours, ratios = figures[calibration], figures[calibration]["ratio"]
            marks = "".join("" if abs(ratio - 1) <= WITHIN else "!" for ratio in ratios.values())
            row += f"   {ours['p50']:7.1f} /{ours['p95']:7.1f} {ratios['p50']:5.2f}/{ratios['p95']:.2f}{marks:<2}"
        print(row)
    print("  (! marks a ratio beyond the target)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", default=["bandwidth-drop"], help="scenario files or bundled names")
    parser.add_argument("--agents", type=int, help="set every group's agent count")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep each scenario's run directories under DIR/<scenario>")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="with --keep: rerun only fleet mode (and its observed calibration) where DIR has an emulated run",
    )
    args = parser.parse_args()
    if args.reuse and args.keep is None:
        parser.error("--reuse needs --keep DIR (where the emulated runs are)")
    print(
        f"$ python bench/sim_agreement.py {' '.join(args.scenarios)}"
        + (f" --agents {args.agents}" if args.agents else "")
    )
    reports = []
    for name in args.scenarios:
        reports.append(agreement(name, args.agents, args.keep, reuse=args.reuse))
        print_agreement(reports[-1])
    if args.json:
        print(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()

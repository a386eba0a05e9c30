"""Does fleet mode tell the truth? Scenarios in fleet mode and in emulate mode, p50 and p95 per policy.

Runs each scenario (a file or a bundled name) in emulate mode, then in fleet
mode twice with the same seed: on the profile measured on this host before
the run (``profiles.json``) and on the profile emulate mode observed
(``observed-profiles.json``: the devices' and hubs' compute times as the run
took them, host contention included). Optionally every group's agent count
is set to ``--agents``. Prints per policy the p50 and p95 of each and the
ratios fleet / emulate; the target is within 10%. Emulate mode takes the
scenario's ``duration_s`` of wall-clock time per policy.

    python bench/sim_agreement.py [bandwidth-drop ...] [--agents 8] [--seeds 3] [--json] [--keep DIR [--reuse]]

``--seeds N`` runs each scenario on its seed and the next N-1 (both modes
each time) and pools their requests: N times the wall-clock time, for a
p50 that one seed does not pin down (a policy splitting its requests
between device and hub).

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


def _totals(out: Path) -> dict[str, list[float]]:
    """Each policy's request times (ms) in a run directory."""
    totals: dict[str, list[float]] = {}
    for record in read_records(out / "requests.csv"):
        totals.setdefault(record.run, []).append(record.total_ms)
    return totals


def _figures(totals: list[float]) -> dict[str, float]:
    return {"p50": percentile(totals, 50), "p95": percentile(totals, 95), "count": len(totals)}


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


def agreement(
    name: str, agents: int | None, keep: Path | None = None, *, reuse: bool = False, seeds: int = 1
) -> dict[str, Any]:
    """One scenario in emulate mode, then in fleet mode on each calibration: p50, p95 and the ratios per policy.

    With ``seeds`` above 1 the scenario runs on its seed and the next ones,
    each in both modes, and the percentiles are of all their requests
    together: a policy that splits its requests between device and hub has
    a p50 that one seed's few hundred requests do not pin down.
    """
    scenario = load_scenario(find(name))
    if agents is not None:
        groups = tuple(dataclasses.replace(group, count=agents) for group in scenario.groups)
        scenario = dataclasses.replace(scenario, groups=groups)
    seeded = [dataclasses.replace(scenario, seed=scenario.seed + offset) for offset in range(seeds)]
    report: dict[str, Any] = {"scenario": scenario.name, "agents": scenario.agents, "seeds": [s.seed for s in seeded]}
    truth: dict[str, list[float]] = {}
    fleets: dict[str, dict[str, list[float]]] = {"measured": {}, "observed": {}}
    with contextlib.ExitStack() as stack:
        directory = keep / Path(name).stem if keep else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for one in seeded:
            runs = _one_seed(one, directory if seeds == 1 else directory / f"seed-{one.seed}", report, reuse=reuse)
            for runs_of, pooled in zip(runs, (truth, fleets["measured"], fleets["observed"]), strict=True):
                for policy, totals in runs_of.items():
                    pooled.setdefault(policy, []).extend(totals)
    report["policies"] = {}
    for policy, real_totals in truth.items():
        real = _figures(real_totals)
        report["policies"][policy] = {"emulate": real}
        for calibration, by_policy in fleets.items():
            ours = _figures(by_policy[policy])
            ratios = {q: ours[q] / real[q] for q in ("p50", "p95")}
            report["policies"][policy][calibration] = {**ours, "ratio": ratios}
    return report


def _one_seed(
    scenario: Scenario, directory: Path, report: dict[str, Any], *, reuse: bool
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[float]]]:
    """Emulate mode, then fleet mode on its two calibrations: each run's request times by policy.

    Notes in ``report`` how long emulate mode's hubs took to come back and to load.
    """
    emulate = directory / "emulate"
    records_file = emulate / "requests.csv"
    if reuse and records_file.exists():  # the observed calibration as this code makes it from the kept records
        records = read_records(records_file)
        measured = load_profiles(emulate / "profiles.json")
        save_profiles(observed_profiles(scenario, records, measured), emulate / "observed-profiles.json")
    else:
        run_scenario(scenario, emulate, mode="emulate", report=False)
        records = read_records(records_file)
    start_s, load_s = _hub_start_s(scenario, records), _hub_load_s(scenario, records)
    if start_s is not None:  # fleet mode's replicas take as long to come back as emulate mode's did
        scenario = dataclasses.replace(scenario, hub=dataclasses.replace(scenario.hub, start_s=start_s))
        report.setdefault("hub_start_s", []).append(start_s)
    if load_s is not None:  # and as long to load a tail
        scenario = dataclasses.replace(scenario, hub=dataclasses.replace(scenario.hub, load_s=load_s))
        report.setdefault("hub_load_s", []).append(load_s)
    fleets = []
    for calibration, profiles in (("measured", "profiles.json"), ("observed", "observed-profiles.json")):
        out = directory / calibration
        run_scenario(scenario, out, profiles_file=emulate / profiles, report=False)
        fleets.append(_totals(out))
    return _totals(emulate), fleets[0], fleets[1]


def print_agreement(report: dict[str, Any]) -> None:
    """One scenario's table: per policy, emulate's p50 / p95 and each fleet calibration's with its ratios."""
    seeds = report["seeds"]
    pooled = f", seeds {seeds[0]}-{seeds[-1]} pooled" if len(seeds) > 1 else ""
    print(
        f"{report['scenario']}: {report['agents']} agents{pooled}; p50 / p95 ms"
        f" (target: fleet / emulate within {WITHIN:.0%})"
    )
    if "hub_start_s" in report:
        print(f"  (emulate's hub answered {_seconds(report['hub_start_s'])} after its restart: fleet mode's start_s)")
    if "hub_load_s" in report:
        print(f"  (emulate's hub loaded cloud-only's tail in {_seconds(report['hub_load_s'])}: fleet mode's load_s)")
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


def _seconds(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values) + " s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", default=["bandwidth-drop"], help="scenario files or bundled names")
    parser.add_argument("--agents", type=int, help="set every group's agent count")
    parser.add_argument(
        "--seeds", type=int, default=1, help="run each scenario on its seed and the next N-1, pooling the requests"
    )
    parser.add_argument("--json", action="store_true", help="also print the reports as JSON")
    parser.add_argument("--keep", type=Path, help="keep each scenario's run directories under DIR/<scenario>")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="with --keep: rerun only fleet mode (and its observed calibration) where DIR has an emulated run",
    )
    args = parser.parse_args()
    if args.reuse and args.keep is None:
        parser.error("--reuse needs --keep DIR (where the emulated runs are)")
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    print(
        f"$ python bench/sim_agreement.py {' '.join(args.scenarios)}"
        + (f" --agents {args.agents}" if args.agents else "")
        + (f" --seeds {args.seeds}" if args.seeds > 1 else "")
    )
    reports = []
    for name in args.scenarios:
        reports.append(agreement(name, args.agents, args.keep, reuse=args.reuse, seeds=args.seeds))
        print_agreement(reports[-1])
    if args.json:
        print(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()

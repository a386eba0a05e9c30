"""Auto through recurring outages, in fleet mode: the link holds every byte for D s of every P s.

A handover or a tunnel holds whatever is in flight until the link carries
again, a 10 KB request as long as the 150 KB image. The planner prices that
by the time the link was out (docs/planner.md, "outages"): counted per byte
like a lossy link's stalls, outages priced the image out for a smaller
cut, and counted up to one retransmission's wait a transfer, they were too
little to leave for the device when the link was out much of the time.
Each case is a fleet-mode scenario (four resnet18 agents on one device kind,
a request a second each, 300 simulated s, on a 20 Mbit/s link with 20 ms
each way, outages from 10 s on), run once per policy: edge-only, cloud-only
(raw), the cut before the classifier (``pool``) and auto, on seeds 1 to N.
Fleet mode runs the runtime's own planner on simulated time, so the
figures repeat exactly. Printed per case: each policy's mean over the
seeds, auto's against the best fixed per seed, and auto's cuts.
``--traces`` runs the same on the mobile link presets instead (real traces,
no outage added: what pricing outages does where the link only slows down
and speeds up, or drops out now and then).

    python bench/outages.py [--profiles docs/profiles/resnet18.json] [--seeds 3] [--traces]
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from simulations import RequestRecord, parse_scenario, run_fleet, scenario_profiles

OUTAGES = (  # (seconds out, of every so many seconds, device)
    (0.0, 5.0, "rpi3"),
    (1.0, 20.0, "rpi3"),
    (0.5, 3.0, "rpi3"),
    (1.0, 5.0, "rpi3"),
    (2.0, 5.0, "rpi3"),
    (1.0, 20.0, "rpi4"),
    (1.0, 5.0, "rpi4"),
    (2.0, 5.0, "rpi4"),
)
TRACES = tuple(
    (link, device)
    for link in ("3g-bus", "3g-car", "3g-ferry", "3g-metro", "3g-train", "3g-tram", "lte-drive", "5g-walk")
    for device in ("rpi3", "rpi4")
)
POLICIES = ("edge", "cloud", "pool", "auto")
DURATION_S = 300.0
FIRST_S = 10.0


def outages_case(out_s: float, every_s: float, device: str) -> tuple[str, dict[str, Any]]:
    """The case's name, and its scenario table (what a TOML file would hold) but the seed."""
    starts = [FIRST_S + every_s * index for index in range(int((DURATION_S - FIRST_S) // every_s))] if out_s else []
    faults = [{"at_s": at_s, "kind": "outage", "group": "cams", "for_s": out_s} for at_s in starts]
    return f"{out_s:>4g} / {every_s:<3g} {device}", _scenario(device, {"rate": "20mbit", "delay": "20ms"}, faults)


def trace_case(link: str, device: str) -> tuple[str, dict[str, Any]]:
    """The case's name, and its scenario table but the seed: a link preset."""
    return f"{link:>9} {device}", _scenario(device, link, [])


def _scenario(device: str, link: object, faults: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "outages",
        "duration_s": DURATION_S,
        "hub": {"replicas": 1, "workers": 4},
        "groups": [{"name": "cams", "count": 4, "model": "resnet18", "device": device, "link": link, "rate_hz": 1.0}],
        "faults": faults,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--profiles",
        type=Path,
        default=Path("docs/profiles/resnet18.json"),
        help="the models' measured profiles (default docs/profiles/resnet18.json)",
    )
    parser.add_argument("--seeds", type=int, default=3, help="runs of each case, seeds 1 to N (default 3)")
    parser.add_argument("--traces", action="store_true", help="the mobile link presets, no outage added")
    args = parser.parse_args()
    options = " --traces" if args.traces else ""
    print(f"$ python bench/outages.py --profiles {args.profiles} --seeds {args.seeds}{options}")
    what = "link, device" if args.traces else "out s / every s, device"
    print(f"{what}: mean ms of edge / cloud / pool / auto; auto/best fixed per seed; auto's cuts")
    cases = [trace_case(*case) for case in TRACES] if args.traces else [outages_case(*case) for case in OUTAGES]
    ratios = []
    for name, table in cases:
        means: dict[str, list[float]] = {policy: [] for policy in POLICIES}
        cuts: Counter[str] = Counter()
        for seed in range(1, args.seeds + 1):
            parsed = parse_scenario(table | {"seed": seed})
            profiles = scenario_profiles(parsed, args.profiles)
            for policy in POLICIES:
                records: list[RequestRecord] = []
                run_fleet(parsed, profiles, records.append, policy=policy)
                means[policy].append(statistics.mean(record.total_ms for record in records))
                if policy == "auto":
                    cuts.update(record.cut for record in records)
        per_seed = [
            auto / min(means[policy][index] for policy in POLICIES if policy != "auto")
            for index, auto in enumerate(means["auto"])
        ]
        ratios.append(statistics.mean(per_seed))
        shown = " / ".join(f"{statistics.mean(means[policy]):.0f}" for policy in POLICIES)
        each = ", ".join(f"{ratio:.3f}" for ratio in per_seed)
        used = ", ".join(f"{cut} {count}" for cut, count in cuts.most_common())
        print(f"{name}: {shown}; {each} (mean {ratios[-1]:.3f}); {used}")
    print(f"auto/best fixed, the mean over the cases: {statistics.mean(ratios):.3f}, the worst case {max(ratios):.3f}")


if __name__ == "__main__":
    main()

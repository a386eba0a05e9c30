"""Auto on lossy links, in fleet mode: what it predicts for the cut it uses, what that cut takes, and the best fixed.

A lossy link makes some transfers wait out a retransmission timeout (200
ms), so a stream of requests pays the mean, not the typical request; the
planner predicts a clean transfer plus the recent mean stall per byte.
Each case is a fleet-mode scenario (four resnet18 agents on one device
kind, a request a second each, 300 simulated s, the profile given)
on a link with jitter and loss as the link model has them (a lost segment
stalls the stream for the RTO), run once per policy: edge-only, cloud-only
(raw), the cut before the classifier (``pool``) and auto. Fleet mode runs the
runtime's own planner on simulated time, so the figures repeat exactly.
Printed per case (the first seed's figures, with ``--seeds N`` auto's ratio
for each seed): each policy's mean, auto's against the best fixed, and
for the remote cut auto used most, its predicted and measured mean and
median: where auto is worse than the best fixed, it is the gap between
those. ``--rate`` sets each agent's requests a second: at 2, a Pi 3's runs
of the whole model (250 ms) queue behind each other half the time (the
planner's device queue term, docs/planner.md). ``--cases wifi`` runs the
jittery, lossy links of bench/planner.py's ``wifi-congested`` (5-10 Mbit/s,
20 ms of jitter, 1% loss a segment) instead, with cloud-only sending the
frame as a JPEG (``--cloud-bytes``, 14,000 by default there) as that bench's
agents do: there the JPEG is the best policy on a Pi 3 by a factor of two,
and where a request stalls, a planner that over-reads it leaves for the device.

    python bench/lossy_links.py [--profiles docs/profiles/resnet18.json] [--rate 1] [--seeds 1]
        [--cases lossy|wifi] [--cloud-bytes N] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from edge_agent import CLOUD_ONLY
from simulations import RequestRecord, parse_scenario, run_fleet, scenario_profiles

CASES = (  # (rate, jitter, loss, device)
    ("50mbit", "0ms", 0.01, "rpi3"),
    ("50mbit", "5ms", 0.003, "rpi3"),
    ("50mbit", "20ms", 0.0, "rpi3"),
    ("20mbit", "20ms", 0.002, "rpi3"),
    ("100mbit", "0ms", 0.005, "rpi4"),
    ("20mbit", "0ms", 0.0, "rpi4"),
)
WIFI_CASES = (
    ("5mbit", "20ms", 0.01, "rpi3"),
    ("5mbit", "20ms", 0.01, "rpi4"),
    ("10mbit", "5ms", 0.01, "rpi3"),
)
JPEG_BYTES = 14_000
"""A 224x224 camera frame as a JPEG, as bench/planner.py's cloud-only sends it (12-18 KB)."""
POLICIES = ("edge", "cloud", "pool", "auto")


def scenario(rate: str, jitter: str, loss: float, device: str, *, rate_hz: float, seed: int) -> dict[str, Any]:
    """The case as a scenario table (what a TOML file would hold)."""
    return {
        "name": f"lossy {rate} {jitter} {loss:g} {device}",
        "seed": seed,
        "duration_s": 300,
        "hub": {"replicas": 1, "workers": 4},
        "groups": [
            {
                "name": "cams",
                "count": 4,
                "model": "resnet18",
                "device": device,
                "link": {"rate": rate, "delay": "10ms", "jitter": jitter, "loss": loss},
                "rate_hz": rate_hz,
            }
        ],
    }


def run_case(
    case: tuple[str, str, float, str], profiles_file: Path, *, rate_hz: float, seed: int, cloud_bytes: int | None
) -> dict[str, Any]:
    """Every policy on the case: means, and auto's prediction against what its main remote cut took."""
    parsed = parse_scenario(scenario(*case, rate_hz=rate_hz, seed=seed))
    profiles = scenario_profiles(parsed, profiles_file)
    if cloud_bytes is not None:  # the image as a JPEG: only its size changes, its tail is the whole model's
        profiles = {
            name: dataclasses.replace(
                profile,
                cuts=tuple(
                    dataclasses.replace(cut, request_bytes=cloud_bytes) if cut.id == CLOUD_ONLY else cut
                    for cut in profile.cuts
                ),
            )
            for name, profile in profiles.items()
        }
    means: dict[str, float] = {}
    auto: list[RequestRecord] = []
    for policy in POLICIES:
        records: list[RequestRecord] = []
        run_fleet(parsed, profiles, records.append, policy=policy)
        means[policy] = statistics.mean(record.total_ms for record in records)
        if policy == "auto":
            auto = records
    cuts = Counter(record.cut for record in auto)
    remote = [cut for cut, _ in cuts.most_common() if cut != "output"]
    report: dict[str, Any] = {
        "case": dict(zip(("rate", "jitter", "loss", "device"), case, strict=True)),
        "mean_ms": means,
        "auto_vs_best": means["auto"] / min(ms for policy, ms in means.items() if policy != "auto"),
        "auto_cuts": dict(cuts),
    }
    if remote:
        at = [record for record in auto if record.cut == remote[0]]
        report["auto_remote"] = {
            "cut": remote[0],
            "predicted_mean_ms": statistics.mean(record.predicted_ms for record in at),
            "measured_mean_ms": statistics.mean(record.total_ms for record in at),
            "measured_median_ms": statistics.median(record.total_ms for record in at),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--profiles",
        type=Path,
        default=Path("docs/profiles/resnet18.json"),
        help="the models' measured profiles (default docs/profiles/resnet18.json)",
    )
    parser.add_argument("--rate", type=float, default=1.0, help="requests a second per agent (default 1)")
    parser.add_argument("--seeds", type=int, default=1, help="runs of each case, seeds 1 to N (default 1)")
    parser.add_argument("--cases", choices=("lossy", "wifi"), default="lossy", help="which links (default lossy)")
    parser.add_argument(
        "--cloud-bytes", type=int, help="cloud-only sends this many bytes (default: the raw image; 14000 with wifi)"
    )
    parser.add_argument("--json", type=argparse.FileType("w"), help="also write the figures as JSON here")
    args = parser.parse_args()
    cases = WIFI_CASES if args.cases == "wifi" else CASES
    cloud_bytes = JPEG_BYTES if args.cloud_bytes is None and args.cases == "wifi" else args.cloud_bytes
    options = f" --cases {args.cases}" + (f" --cloud-bytes {cloud_bytes}" if cloud_bytes is not None else "")
    print(
        f"$ python bench/lossy_links.py --profiles {args.profiles} --rate {args.rate:g} --seeds {args.seeds}{options}"
    )
    print("link (rate, jitter, loss), device: mean ms of edge / cloud / pool / auto; auto/best fixed;")
    print("    auto's main remote cut: predicted mean, measured mean and median; auto's cuts")
    reports = []
    ratios: list[float] = []
    for case in cases:
        runs = [
            run_case(case, args.profiles, rate_hz=args.rate, seed=seed, cloud_bytes=cloud_bytes)
            for seed in range(1, args.seeds + 1)
        ]
        reports += runs
        ratios.append(statistics.mean(run["auto_vs_best"] for run in runs))
        report = runs[0]
        rate, jitter, loss, device = case
        means = " / ".join(f"{report['mean_ms'][policy]:.0f}" for policy in POLICIES)
        line = f"{rate:>7} {jitter:>4} {loss:<5g} {device}: {means}; {report['auto_vs_best']:.2f}x"
        remote = report.get("auto_remote")
        if remote:
            line += (
                f"; {remote['cut']} predicted {remote['predicted_mean_ms']:.0f}, measured"
                f" {remote['measured_mean_ms']:.0f} (median {remote['measured_median_ms']:.0f})"
            )
        cuts = ", ".join(f"{cut} {count}" for cut, count in report["auto_cuts"].items())
        print(f"{line}; {cuts}")
        if args.seeds > 1:
            each = ", ".join(f"{run['auto_vs_best']:.3f}" for run in runs)
            print(f"{'':>21}auto/best fixed over {args.seeds} seeds: {each}; mean {ratios[-1]:.3f}")
    print(f"auto/best fixed, the mean over the cases: {statistics.mean(ratios):.3f}")
    if args.json:
        json.dump(reports, args.json, indent=2)


if __name__ == "__main__":
    main()

"""Emulate mode: a short scenario on a real broker, hub processes and agents behind emulated links."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from protocol.errors import ConfigError
from simulations._report import read_records, summarise
from simulations._run import run_scenario
from simulations._scenario import parse_scenario

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def _scenario(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "emulated",
        "seed": 2,
        "duration_s": 3,
        "policies": ["edge", "cloud", "auto"],
        "hub": {"replicas": 1, "workers": 1, "status_interval_s": 0.5},
        "groups": [
            {
                "name": "cams",
                "count": 2,
                "model": "tiny",
                "device": "rpi4",
                "link": {"rate": "50mbit", "delay": "5ms"},
                "rate_hz": 4.0,
                "deadline_s": 2.0,
            }
        ],
    }
    return base | changes


def test_every_policy_runs_on_real_processes_and_the_summary_is_the_csvs(tmp_path: Path) -> None:
    summaries = run_scenario(parse_scenario(_scenario()), tmp_path, mode="emulate", report=False)
    records = read_records(tmp_path / "requests.csv")
    by_run = {run: [r for r in records if r.run == run] for run in ("edge", "cloud", "auto")}
    assert all(by_run.values())
    assert {r.cut for r in by_run["edge"]} == {"output"}
    assert all(r.bytes_up == 0 and r.hub == "" for r in by_run["edge"])
    assert {r.cut for r in by_run["cloud"]} == {"input"}
    assert all(r.hub == "hub-0" and r.bytes_up > 0 and not r.fallback for r in by_run["cloud"])
    assert [s.count for s in summaries] == [s.count for s in summarise(records, 3.0)]
    assert '"mode": "emulate"' in (tmp_path / "run.json").read_text()


def test_a_killed_hub_replica_leaves_the_other_to_answer(tmp_path: Path) -> None:
    faults = [{"at_s": 1, "kind": "hub-down", "replica": 0, "for_s": 10}]
    scenario = parse_scenario(_scenario(policies=["cloud"], hub={"replicas": 2, "workers": 1}, faults=faults))
    run_scenario(scenario, tmp_path, mode="emulate", report=False)
    records = read_records(tmp_path / "requests.csv")
    assert {r.hub for r in records if r.start_s < 0.9} <= {"hub-0", "hub-1"}
    late = [r for r in records if r.start_s > 2.0]
    assert late
    assert all(r.hub == "hub-1" or r.fallback for r in late)  # hub-0 is gone: never an answer from it


def test_outages_are_refused_in_emulate_mode(tmp_path: Path) -> None:
    faults = [{"at_s": 1, "kind": "outage", "group": "cams", "for_s": 1}]
    with pytest.raises(ConfigError, match="outages run in fleet mode only"):
        run_scenario(parse_scenario(_scenario(faults=faults)), tmp_path, mode="emulate")

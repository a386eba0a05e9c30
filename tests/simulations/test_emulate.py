"""Emulate mode: a short scenario on a real broker, hub processes and agents behind emulated links."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import onnx
import pytest

from edgecut._exit import ExitCode
from models import zoo
from simulations._agent_process import EmulationError
from simulations._calibrate import CutCost, ModelProfile, load_profiles
from simulations._emulate import run_emulated
from simulations._report import read_records, summarise
from simulations._run import run_scenario
from simulations._scenario import parse_scenario
from tests._support import ignoring_sigint, signalled_output

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
    observed = load_profiles(tmp_path / "observed-profiles.json")["tiny"]
    measured = load_profiles(tmp_path / "profiles.json")["tiny"]
    assert observed.cut("input").tail_ms != measured.cut("input").tail_ms  # the hubs' own times, as they ran
    for run in ("edge", "cloud", "auto"):  # each process's output, kept per run
        assert "serving on" in (tmp_path / "logs" / run / "hub-0.log").read_text()
        assert sorted(path.name for path in (tmp_path / "logs" / run).glob("cams-*.log")) == [
            "cams-0.log",
            "cams-1.log",
        ]


def test_a_killed_hub_replica_leaves_the_other_to_answer(tmp_path: Path) -> None:
    faults = [{"at_s": 1, "kind": "hub-down", "replica": 0, "for_s": 10}]
    scenario = parse_scenario(_scenario(policies=["cloud"], hub={"replicas": 2, "workers": 1}, faults=faults))
    run_scenario(scenario, tmp_path, mode="emulate", report=False)
    records = read_records(tmp_path / "requests.csv")
    assert {r.hub for r in records if r.start_s < 0.9} <= {"hub-0", "hub-1"}
    late = [r for r in records if r.start_s > 2.0]
    assert late
    assert all(r.hub == "hub-1" or r.fallback for r in late)  # hub-0 is gone: never an answer from it


def test_an_outage_holds_the_groups_links_and_nothing_is_answered_through_it(tmp_path: Path) -> None:
    faults = [{"at_s": 1, "kind": "outage", "group": "cams", "for_s": 1.5}]
    scenario = parse_scenario(_scenario(policies=["cloud"], duration_s=4, faults=faults))
    run_scenario(scenario, tmp_path, mode="emulate", report=False)
    records = read_records(tmp_path / "requests.csv")
    answered = [r for r in records if r.hub]
    assert any(r.start_s < 1 for r in answered)
    assert any(r.start_s > 2.5 for r in answered)  # the link came back
    held = [r for r in answered if 1.1 <= r.start_s < 2.4]
    assert all(r.start_s + r.total_ms / 1000 >= 2.5 for r in held)  # none answered while the link was out


def test_through_a_broker_restart_requests_are_answered_or_fall_back_and_the_agents_come_back(tmp_path: Path) -> None:
    faults = [{"at_s": 1, "kind": "broker-restart", "for_s": 1}]
    scenario = parse_scenario(_scenario(policies=["cloud"], duration_s=6, faults=faults))
    run_scenario(scenario, tmp_path, mode="emulate", report=False)
    records = read_records(tmp_path / "requests.csv")
    assert any(r.hub for r in records if r.start_s < 1)
    assert any(r.hub for r in records if r.start_s > 4.5)  # agents and hub reconnected through the restart
    during = [r for r in records if 1.1 <= r.start_s < 1.9]
    assert all(r.fallback or r.start_s + r.total_ms / 1000 >= 2 for r in during)
    assert all(r.total_ms < 2000 + 500 for r in records)  # none waited past its 2 s deadline and fallback


def test_an_agent_that_cannot_start_fails_the_run_with_its_log() -> None:
    scenario = parse_scenario(_scenario(policies=["cloud"], duration_s=1))
    with pytest.raises(EmulationError, match=r"emulated agent cams-0 exited before it was ready; its log .* ends:"):
        asyncio.run(run_emulated(scenario, {}, [].append, policy="no-such-cut"))  # past the run's own checks


def test_an_external_broker_is_connected_to_as_it_is(tmp_path: Path, broker_url: str) -> None:
    scenario = parse_scenario(_scenario(policies=["cloud"], duration_s=2, broker={"url": broker_url}))
    assert scenario.broker.kind == "external"
    run_scenario(scenario, tmp_path, mode="emulate", report=False)
    records = read_records(tmp_path / "requests.csv")
    assert records
    assert all(r.hub == "hub-0" and not r.fallback for r in records)


def test_a_request_count_ends_an_emulated_run_early(tmp_path: Path) -> None:
    scenario = parse_scenario(_scenario(policies=["cloud"], duration_s=30, requests=6))
    run_scenario(scenario, tmp_path, mode="emulate", report=False)
    assert len(read_records(tmp_path / "requests.csv")) == 6
    assert json.loads((tmp_path / "run.json").read_text())["run_s"]["cloud"] < 30  # 2 agents at 4/s: about 1 s


def test_a_hung_hub_replica_answers_nothing_until_it_is_continued(tmp_path: Path) -> None:
    faults = [{"at_s": 1, "kind": "hub-stall", "replica": 0, "for_s": 1.5}]
    scenario = parse_scenario(_scenario(policies=["cloud"], duration_s=4, hub={"replicas": 2}, faults=faults))
    run_scenario(scenario, tmp_path, mode="emulate", report=False)
    records = read_records(tmp_path / "requests.csv")
    from_hung = [r.start_s + r.total_ms / 1000 for r in records if r.hub == "hub-0"]
    assert any(end < 1 for end in from_hung)
    assert any(end > 2.5 for end in from_hung)  # continued, it answers again
    assert not [end for end in from_hung if 1.1 < end < 2.45]  # stopped, it answers nothing


def test_a_groups_own_onnx_file_is_served_by_the_emulated_hubs(tmp_path: Path) -> None:
    model = tmp_path / "models" / "my-net.onnx"
    model.parent.mkdir()
    onnx.save(zoo.build("tiny"), model)
    groups = [{"name": "cams", "count": 1, "model": str(model), "link": {"rate": "50mbit"}, "rate_hz": 4.0}]
    scenario = parse_scenario(_scenario(policies=["cloud"], duration_s=2, groups=groups))
    run_scenario(scenario, tmp_path / "out", mode="emulate", report=False)
    records = read_records(tmp_path / "out" / "requests.csv")
    assert records
    assert all(r.hub == "hub-0" and not r.fallback for r in records)  # the hub knew the file: no unknown model


def test_a_hub_that_cannot_start_fails_the_run_at_once_with_its_log() -> None:
    unknown = ModelProfile(
        model="no-such-model",
        model_sha256="0" * 64,
        cuts=(CutCost(id="input", request_bytes=100, head_ms=0.0, tail_ms=1.0),),
        reply_bytes=100,
    )
    scenario = parse_scenario(_scenario(policies=["cloud"], duration_s=1))
    with pytest.raises(EmulationError, match=r"hub hub-0 exited with status \d+ before going online") as caught:
        asyncio.run(run_emulated(scenario, {"tiny": unknown}, [].append, policy="cloud"))
    assert "no-such-model" in str(caught.value)  # the hub's own words on why, from its log


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigint_even_in_the_background_and_sigterm_stop_an_emulated_run_and_it_writes_every_file(
    tmp_path: Path, signum: signal.Signals
) -> None:
    scenario = tmp_path / "long.toml"
    scenario.write_text(
        'name = "long"\nduration_s = 120\npolicies = ["cloud"]\n'
        '[[groups]]\nname = "cams"\ncount = 2\nmodel = "tiny"\nlink = { rate = "50mbit" }\nrate_hz = 4.0\n'
    )
    out = tmp_path / "out"
    command = [sys.executable, "-m", "edgecut", "sim", "run", str(scenario), "--mode", "emulate", "--out", str(out)]
    with subprocess.Popen(  # noqa: S603 - our own command
        [*command, "--no-report"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=ignoring_sigint,  # noqa: PLW1509 - a signal disposition, nothing threaded
    ) as run:
        rows = out / "requests.csv"
        for _ in range(600):  # up to 60 s for the first answers
            if rows.is_file() and len(rows.read_text().splitlines()) > 2:
                break
            time.sleep(0.1)
        err = signalled_output(run, signum, timeout_s=60)
    assert run.returncode == ExitCode.INTERRUPTED, err
    assert b"interrupted: what has run so far is in" in err
    assert json.loads((out / "summary.json").read_text())[0]["count"] >= 2
    assert load_profiles(out / "observed-profiles.json")["tiny"].cuts  # what the devices and hubs took, as they ran

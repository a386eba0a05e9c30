"""Fleet mode on a fixed profile: deterministic, faithful to its faults, and its summary agrees with its CSV."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from edge_agent import HubReports
from edgecut._cli import main
from edgecut._exit import ExitCode
from protocol.errors import ConfigError
from protocol.mqtt import Backoff
from simulations import COLUMNS, load_scenario, table
from simulations._calibrate import CutCost, ModelProfile, load_profiles, observed_profiles, save_profiles
from simulations._fleet import Fleet
from simulations._fleet_faults import reconnected as _reconnected
from simulations._report import RequestRecord, percentile, read_records, summarise
from simulations._run import run_scenario
from simulations._scenario import parse_scenario
from simulations.scenarios import find
from tests._support import ignoring_sigint, signalled_output

if TYPE_CHECKING:
    from protocol import NodeStatus

ROOT = Path(__file__).resolve().parents[2]

# resnet18 as this host measures it, rounded: fixed figures, so the tests need no ONNX Runtime.
PROFILE = ModelProfile(
    model="resnet18",
    model_sha256="0" * 64,
    cuts=(
        CutCost(id="input", request_bytes=150_816, head_ms=0.0, tail_ms=17.7),
        CutCost(id="layer4.0.add", request_bytes=100_656, head_ms=14.8, tail_ms=2.9),
        CutCost(id="pool", request_bytes=2_334, head_ms=17.5, tail_ms=0.1),
        CutCost(id="output", request_bytes=0, head_ms=17.7, tail_ms=0.0),
    ),
    reply_bytes=4_194,
)
PROFILES = {"resnet18": PROFILE}


def _scenario(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "name": "test",
        "seed": 3,
        "duration_s": 20,
        "policies": ["edge", "cloud", "auto"],
        "hub": {"replicas": 1, "workers": 1},
        "groups": [
            {"name": "cams", "count": 3, "device": "rpi3", "link": {"rate": "20mbit", "delay": "20ms"}, "rate_hz": 2.0}
        ],
    }
    return base | changes


def _fast_pi4s(*, rate_hz: float) -> list[dict[str, object]]:
    """Three Pi 4 cameras on a fast link with a 2 s deadline, each making ``rate_hz`` requests a second."""
    link = {"rate": "100mbit", "delay": "2ms"}
    return [{"name": "cams", "count": 3, "device": "rpi4", "link": link, "rate_hz": rate_hz, "deadline_s": 2.0}]


def _records(data: dict[str, object], policy: str | None = None) -> list[RequestRecord]:
    records: list[RequestRecord] = []
    Fleet(parse_scenario(data), PROFILES, records.append, policy=policy).run()
    return records


def _record(**changes: object) -> RequestRecord:
    """A cloud-only request of agent cams-0 at the input cut, 1 ms in all, with ``changes`` (the rest as defaulted)."""
    base: dict[str, object] = {
        "run": "cloud", "group": "cams", "agent": "cams-0", "policy": "cloud", "start_s": 0.0, "cut": "input",
        "total_ms": 1.0,
    }  # fmt: skip
    return RequestRecord(**(base | changes))  # type: ignore[arg-type]


@pytest.fixture
def profiles_file(tmp_path: Path) -> Path:
    path = tmp_path / "profiles.json"
    save_profiles(PROFILES, path)
    return path


def test_the_same_seed_gives_the_same_csv_and_another_seed_another(tmp_path: Path, profiles_file: Path) -> None:
    scenario = parse_scenario(_scenario())
    for name in ("a", "b"):
        run_scenario(scenario, tmp_path / name, profiles_file=profiles_file)
    run_scenario(dataclasses.replace(scenario, seed=4), tmp_path / "c", profiles_file=profiles_file)
    first = (tmp_path / "a" / "requests.csv").read_bytes()
    assert first == (tmp_path / "b" / "requests.csv").read_bytes()
    assert first != (tmp_path / "c" / "requests.csv").read_bytes()


def test_the_summary_is_what_the_csv_says(tmp_path: Path, profiles_file: Path) -> None:
    summaries = run_scenario(parse_scenario(_scenario()), tmp_path, profiles_file=profiles_file)
    records = read_records(tmp_path / "requests.csv")
    again = summarise(records, 20.0)  # from the CSV, whose times are rounded to the microsecond
    assert len(again) == len(summaries)
    for ours, theirs in zip(again, summaries, strict=True):
        for key, value in theirs.to_json().items():
            expected = pytest.approx(value, abs=1e-3) if isinstance(value, float) else value
            assert ours.to_json()[key] == expected, key
    assert json.loads((tmp_path / "summary.json").read_text()) == [s.to_json() for s in summaries]
    run = json.loads((tmp_path / "run.json").read_text())
    assert (run["seed"], run["mode"], run["agents"]) == (3, "fleet", 3)
    by_run = {s.run: s for s in summaries}
    edge = [r.total_ms for r in records if r.run == "edge"]
    assert by_run["edge"].p95_ms == pytest.approx(percentile(edge, 95), abs=1e-3)
    assert by_run["edge"].count == len(edge) > 100
    assert {r.cut for r in records if r.run == "cloud"} == {"input"}
    assert {r.cut for r in records if r.run == "edge"} == {"output"}


def test_adding_an_agent_changes_no_other_agents_draws() -> None:
    three = [r for r in _records(_scenario(), "edge") if r.agent == "cams-0"]
    groups = [
        {"name": "cams", "count": 4, "device": "rpi3", "link": {"rate": "20mbit", "delay": "20ms"}, "rate_hz": 2.0}
    ]
    four = [r for r in _records(_scenario(groups=groups), "edge") if r.agent == "cams-0"]
    assert three == four


def test_auto_leaves_the_network_while_the_bandwidth_drops_and_comes_back() -> None:
    faults = [{"at_s": 20, "kind": "bandwidth", "group": "cams", "rate": "1mbit", "for_s": 20}]
    records = _records(_scenario(duration_s=60, faults=faults), "auto")
    before = [r.cut for r in records if 10 <= r.start_s < 20]
    during = [r.cut for r in records if 25 <= r.start_s < 40]
    after = [r.cut for r in records if r.start_s >= 50]
    assert before.count("input") > 0.9 * len(before)  # a Pi 3 on 20 Mbit/s: send the image
    assert during.count("output") > 0.9 * len(during)  # 1 Mbit/s: stay on the device
    assert after.count("input") > 0.9 * len(after)
    assert all(r.reason for r in records)  # why each cut was chosen, as the agent's result says
    assert any(r.reason.startswith("lowest predicted latency") for r in records if 25 <= r.start_s < 40)


def test_a_fixed_cut_says_so_as_the_agent_does() -> None:
    assert {r.reason for r in _records(_scenario(), "cloud")} == {"fixed cut"}


def test_a_hub_that_goes_down_loses_what_it_holds_and_the_agents_fall_back() -> None:
    faults = [{"at_s": 5, "kind": "hub-down", "replica": 0, "for_s": 5}]
    records = _records(_scenario(faults=faults), "cloud")
    fallbacks = [r for r in records if r.fallback]
    assert fallbacks
    assert all(5 <= r.start_s < 10 for r in fallbacks)
    assert all(r.fallback_ms > 0 and r.hub == "" for r in fallbacks)
    assert all(r.hub == "hub-0" for r in records if r.start_s > 11)


def test_a_hub_back_from_down_answers_once_it_has_started() -> None:
    # Emulate mode's restarted hub process answered 3.2 s after it was started (bench/sim_agreement.py):
    # fleet mode answered at once, and its p50 over a 10 s hub-down came out 0.78x emulate's.
    faults = [{"at_s": 5, "kind": "hub-down", "replica": 0, "for_s": 5}]
    records = _records(_scenario(faults=faults, hub={"replicas": 1, "workers": 1, "start_s": 3.0}), "cloud")
    assert all(r.fallback for r in records if 5 <= r.start_s < 12.5)  # down 5 s, then 3 s starting (deadline 5 s)
    answered = [r.start_s for r in records if r.hub == "hub-0" and r.start_s > 5]
    assert 12.5 < min(answered) < 13.5


def test_with_the_only_hub_down_requests_fall_back_at_their_deadline_not_before() -> None:
    groups = [
        {"name": "cams", "count": 3, "device": "rpi3", "link": {"rate": "20mbit", "delay": "20ms"}, "deadline_s": 2.0}
    ]
    faults = [{"at_s": 5, "kind": "hub-down", "replica": 0, "for_s": 10}]
    records = _records(_scenario(groups=groups, faults=faults), "cloud")
    fallbacks = [r for r in records if r.fallback]
    assert len(fallbacks) > 10
    assert all(r.fallback == "no reply within the deadline" for r in fallbacks)
    waited_ms = [r.total_ms - r.fallback_ms for r in fallbacks]  # cloud-only: no head, so until the tail began
    assert min(waited_ms) > 1999.999  # the device runs the tail once the deadline has passed ...
    assert max(waited_ms) < 2000.0 + 1000.0  # ... as soon as it is free


def test_a_closed_loop_goes_on_after_a_fallback_as_an_application_awaiting_its_result_does() -> None:
    groups = [
        {
            "name": "cams", "count": 2, "device": "rpi3", "link": {"rate": "20mbit", "delay": "20ms"},
            "arrival": "closed", "think_s": 0.5, "deadline_s": 2.0,
        }
    ]  # fmt: skip
    faults = [{"at_s": 0, "kind": "hub-down", "replica": 0}]  # the only hub, for the whole 20 s
    records = _records(_scenario(groups=groups, faults=faults), "cloud")
    for agent in ("cams-0", "cams-1"):  # each request: 2 s deadline, the tail on the device, 0.5 s to think
        starts = [r.start_s for r in records if r.agent == agent]
        assert len(starts) >= 7  # about 20 s / 2.7 s
        assert all(r.fallback == "no reply within the deadline" for r in records)
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        assert all(2.5 < gap < 3.0 for gap in gaps)  # deadline, fallback (0.19 s), think


def test_an_overloaded_hub_is_answered_at_once_and_said_so() -> None:
    groups = [
        {"name": "cams", "count": 20, "device": "rpi4", "link": {"rate": "1gbit", "delay": "1ms"}, "rate_hz": 5.0}
    ]
    records = _records(_scenario(groups=groups, hub={"replicas": 1, "workers": 1, "max_queue": 4}), "cloud")
    refused = [r for r in records if r.fallback]
    assert refused
    assert all(r.fallback.startswith("hub overloaded: hub hub-0 has 4 requests queued (max_queue 4)") for r in refused)
    assert all(r.total_ms < 1000.0 for r in refused)  # no waiting for the 5 s deadline


def test_auto_under_an_overloaded_hub_keeps_sending_and_stays_near_cloud_only() -> None:
    # As bench/situations/overloaded.toml: the hub refuses over 20% of cloud-only's requests, and edge-only
    # alone is more than the Pi 4s keep up with. Backing off to the device at each refusal (as after
    # silence) piled the work on the devices: auto's p95 was 2.2x cloud-only's here (4.9x in the bench).
    groups = [
        {"name": "cams", "count": 6, "device": "rpi4", "link": {"rate": "100mbit", "delay": "2ms"}, "rate_hz": 10.0}
    ]
    scenario = _scenario(groups=groups, duration_s=40, hub={"replicas": 1, "workers": 1, "max_queue": 2})
    runs = {policy: _records(scenario, policy) for policy in ("edge", "cloud", "auto")}
    p95 = {policy: percentile([r.total_ms for r in records], 95) for policy, records in runs.items()}
    assert sum(1 for r in runs["cloud"] if r.fallback) > 0.2 * len(runs["cloud"])
    assert p95["edge"] > 3 * p95["cloud"]  # the devices alone fall behind
    assert p95["auto"] < 1.25 * p95["cloud"]


def test_a_hub_without_preloaded_tails_loads_each_on_first_use_and_after_a_restart() -> None:
    # As a hub given no --preload: requests wait for the load until 250 ms before their 2 s deadline, then
    # get "loading" and the device answers; the load goes on, and a restarted hub has loaded nothing.
    groups = _fast_pi4s(rate_hz=4.0)
    hub = {"replicas": 1, "workers": 1, "preload": False, "load_s": 3.0}
    faults = [{"at_s": 10, "kind": "hub-down", "replica": 0, "for_s": 2}]
    records = _records(_scenario(groups=groups, hub=hub, faults=faults), "cloud")
    first = [r for r in records if r.start_s < 1.0]
    assert first
    assert all(r.fallback and r.fallback.startswith("hub loading: its tail is loading on hub") for r in first)
    assert all(1750 <= r.total_ms < 2000 for r in first)  # the hub's answer, before the agent's own deadline
    served = [r.start_s for r in records if not r.fallback]
    assert 1.0 < min(served) < 3.0  # sent before the load is done at 3 s, and served once it is
    again = sorted(r.start_s for r in records if not r.fallback and r.start_s > 10)
    assert again
    assert again[0] > 12 + 3.0 - 1.75  # back at 12 s, with its tails to load again
    quick = _records(_scenario(groups=groups, hub=hub | {"load_s": 0.5}), "cloud")
    assert not [r for r in quick if r.fallback]
    assert min(r.start_s for r in quick if r.hub_queue_ms >= 400) < 0.5  # the first ones waited for the load
    assert all(r.hub_queue_ms < 100 for r in quick if r.start_s > 1.0)  # loaded once, for everyone after


def test_a_hubs_status_is_heard_once_by_the_view_every_planner_shares(monkeypatch: pytest.MonkeyPatch) -> None:
    heard: list[str] = []
    hear = HubReports.hear

    def counted(self: HubReports, status: NodeStatus, *args: object) -> None:
        heard.append(status.node_id)
        hear(self, status, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(HubReports, "hear", counted)
    group = {"name": "cams", "count": 50, "device": "rpi4", "link": "wifi", "rate_hz": 1.0}
    scenario = parse_scenario(_scenario(groups=[group]))
    fleet = Fleet(scenario, PROFILES, lambda _: None, policy="auto")
    fleet.run()
    assert len(heard) == 11  # one replica's status at 0, 2, ..., 20 s: heard once each, not by 50 planners
    views = {id(agent.core.planner.hubs) for agent in fleet.agents if agent.core.planner is not None}
    assert len(views) == 1
    assert fleet.agents[0].core.planner.hubs.queue.count  # and it was told


def test_a_hub_runs_nothing_for_requests_past_their_deadline_when_a_worker_takes_them_up() -> None:
    # A hub hung for 8 s wakes holding 48 requests whose agents (2 s deadline) have fallen back: a real hub
    # answers those deadline_exceeded without running them, so the next requests find no backlog.
    groups = _fast_pi4s(rate_hz=2.0)
    faults = [{"at_s": 5, "kind": "hub-stall", "replica": 0, "for_s": 8}]
    records = _records(_scenario(groups=groups, hub={"replicas": 1, "workers": 1}, faults=faults), "cloud")
    held = [r for r in records if 5.1 < r.start_s < 11]
    assert held
    assert all(r.fallback == "no reply within the deadline" for r in held)
    after = [r for r in records if 13.2 < r.start_s < 14]
    assert after
    assert all(r.hub_queue_ms < 50 for r in after)  # 48 stale runs of 17.7 ms would be 850 ms of queue


def test_a_hung_hub_holds_what_it_has_until_it_wakes_or_the_broker_drops_it() -> None:
    two = {"replicas": 2, "workers": 1}
    short = _records(_scenario(hub=two, faults=[{"at_s": 5, "kind": "hub-stall", "replica": 0, "for_s": 8}]), "cloud")
    ends = [(r.start_s + r.total_ms / 1000, r) for r in short if r.hub == "hub-0"]
    assert not [r for end, r in ends if 5.05 < end < 13]  # nothing comes out of it while it hangs
    assert [r for end, r in ends if 8 <= r.start_s < 13 and end >= 13]  # what it held comes out after
    assert any(r.fallback for r in short if 5 <= r.start_s < 8)  # past their 5 s deadline: the devices answered
    long = _records(_scenario(hub=two, faults=[{"at_s": 2, "kind": "hub-stall", "replica": 0, "for_s": 17}]), "cloud")
    assert not [r for r in long if r.hub == "hub-0" and 17.1 < r.start_s < 19]  # dropped by the broker at 17 s
    assert [r for r in long if r.hub == "hub-1" and 17.1 < r.start_s < 19]


def test_a_full_hub_queue_refuses_and_the_device_answers() -> None:
    groups = [
        {"name": "cams", "count": 20, "device": "rpi4", "link": {"rate": "1gbit", "delay": "1ms"}, "rate_hz": 5.0}
    ]
    records = _records(_scenario(groups=groups, hub={"replicas": 1, "workers": 1, "max_queue": 4}), "cloud")
    assert any(r.fallback for r in records)
    assert max(r.hub_queue_ms for r in records) <= 5 * 17.7 + 1  # never more than the queue bound ahead


def test_an_outage_holds_the_links_until_it_ends() -> None:
    faults = [{"at_s": 5, "kind": "outage", "group": "cams", "for_s": 3}]
    records = _records(_scenario(faults=faults), "cloud")
    held = [r for r in records if 5 <= r.start_s < 7.5 and not r.fallback]
    assert held
    assert all(r.start_s + r.total_ms / 1000 >= 8 for r in held)


def test_a_broker_restart_holds_every_agent_until_it_and_a_hub_have_reconnected() -> None:
    faults = [{"at_s": 5, "kind": "broker-restart", "for_s": 2}]
    records = _records(_scenario(faults=faults), "cloud")
    during = [r for r in records if 5 <= r.start_s < 7]
    assert during
    finished = [r.start_s + r.total_ms / 1000 for r in during if not r.fallback]
    assert finished
    assert all(end >= 7 for end in finished)  # nobody is answered while the broker is away
    assert max(finished) < 7 + 2 + 1  # reconnected within the backoff's cap, and answered
    before = [r for r in records if r.start_s < 4.5]
    assert all(not r.fallback for r in before)


def test_reconnects_follow_the_backoff_schedule() -> None:
    rng = random.Random(1)
    assert _reconnected(10.0, 10.0, rng) > 10.0  # the first attempt comes after a pause
    at = _reconnected(0.0, 5.0, random.Random(2))
    assert 5.0 <= at <= 5.0 + Backoff().maximum
    assert _reconnected(0.0, math.inf, rng) == math.inf


def test_observed_profiles_take_each_cuts_median_times_over_the_devices_factor() -> None:
    scenario = parse_scenario(_scenario())  # rpi3: factor 10.7
    record = _record(cut="pool", bytes_up=2_334, network_ms=1.0, hub="hub-0")
    records = [
        dataclasses.replace(record, edge_ms=10.7 * head, hub_compute_ms=tail)
        for head, tail in ((20.0, 0.2), (21.0, 0.3), (40.0, 0.1))
    ]
    records.append(dataclasses.replace(record, cut="layer4.0.add", edge_ms=10.7 * 99, hub_compute_ms=99.0))
    observed = observed_profiles(scenario, records, PROFILES)["resnet18"]
    assert observed.cut("pool").head_ms == pytest.approx(21.0)
    assert observed.cut("pool").tail_ms == pytest.approx(0.2)
    assert observed.cut("layer4.0.add") == PROFILE.cut("layer4.0.add")  # one sample is not enough
    assert observed.cut("input") == PROFILE.cut("input")
    assert observed.head_spread == ()  # too few runs to say how they spread


def test_observed_fallbacks_and_batches_count_as_the_run_took_them() -> None:
    scenario = parse_scenario(_scenario())  # rpi3: factor 10.7
    record = _record(bytes_up=150_816)
    fallbacks = [dataclasses.replace(record, fallback_ms=10.7 * ms, fallback="overloaded") for ms in (30, 31, 50)]
    answered = [  # a request run in a batch of 4 counts a quarter of the run
        dataclasses.replace(record, hub="hub-0", hub_compute_ms=ms, hub_batch=batch)
        for ms, batch in ((20.0, 1), (88.0, 4), (23.0, 0))
    ]
    observed = observed_profiles(scenario, fallbacks + answered, PROFILES)["resnet18"]
    assert observed.rest_ms("input") == pytest.approx(31.0)  # as the device took it, not the profile's 17.7
    assert observed.cut("input").tail_ms == pytest.approx(22.0)
    assert observed.rest_ms("pool") == pytest.approx(17.7 - 17.5)  # no fallback there: the device's figures
    assert ModelProfile.from_json(json.loads(json.dumps(observed.to_json()))) == observed


def test_the_network_beyond_the_link_model_is_observed_and_added_to_every_exchange() -> None:
    scenario = parse_scenario(_scenario())  # 20 Mbit/s, 20 ms each way
    idle_ms = 40.0 + (150_816 + 4_194) * 8 / 20e6 * 1000
    record = _record(bytes_up=150_816, hub_compute_ms=17.7, hub="hub-0")
    records = [dataclasses.replace(record, network_ms=idle_ms + extra) for extra in (5.0, 6.0, 9.0)]
    observed = observed_profiles(scenario, records, PROFILES)["resnet18"]
    assert observed.network_excess_ms == pytest.approx(6.0)
    plain = [r for r in _records(_scenario(), "cloud") if r.hub]
    calibrated: list[RequestRecord] = []
    Fleet(scenario, {"resnet18": observed}, calibrated.append, policy="cloud").run()
    least = min(r.network_ms for r in calibrated if r.hub)
    assert least == pytest.approx(min(r.network_ms for r in plain) + 6.0)
    assert min(r.network_ms for r in plain) == pytest.approx(idle_ms, abs=0.01)


def test_records_written_before_a_column_existed_read_with_its_default(tmp_path: Path) -> None:
    path = tmp_path / "requests.csv"
    header = [column for column in COLUMNS if column not in {"hub_batch", "reason"}]
    row = dict.fromkeys(header, "0") | {"run": "cloud", "group": "cams", "agent": "cams-0", "policy": "cloud"}
    row |= {"cut": "input", "predicted_ms": "nan", "fallback": "", "error": "", "hub": "hub-0"}
    path.write_text(",".join(header) + "\n" + ",".join(row[column] for column in header) + "\n")
    (record,) = read_records(path)
    assert (record.hub_batch, record.reason) == (0, "")
    assert record.hub == "hub-0"


def test_a_fallback_runs_the_rest_of_the_model_as_the_device_runs_it() -> None:
    # An observed profile's tail times are a hub's (its cold runs after a load, its share of a busy host);
    # a device finishing the model itself takes what its own figures say: the whole model less the head.
    observed = dataclasses.replace(
        PROFILE, cuts=(dataclasses.replace(PROFILE.cuts[0], tail_ms=106.0), *PROFILE.cuts[1:])
    )
    assert observed.rest_ms("input") == pytest.approx(17.7)
    assert observed.rest_ms("layer4.0.add") == pytest.approx(17.7 - 14.8)
    assert observed.rest_ms("output") == 0.0
    without_edge = dataclasses.replace(PROFILE, cuts=PROFILE.cuts[:3])
    assert without_edge.rest_ms("pool") == 0.1  # no whole-model figure: the cut's tail time
    faults = [{"at_s": 0, "kind": "hub-down", "replica": 0}]
    records: list[RequestRecord] = []
    Fleet(parse_scenario(_scenario(faults=faults)), {"resnet18": observed}, records.append, policy="cloud").run()
    assert {round(r.fallback_ms, 6) for r in records} == {round(17.7 * 10.7, 6)}  # rpi3: x10.7


def test_a_profile_with_a_spread_draws_each_devices_runs_from_it() -> None:
    spread = (1.0,) * 19 + (3.0,)  # one run in 20 takes three times as long
    profiles = {"resnet18": dataclasses.replace(PROFILE, head_spread=spread)}
    records: list[RequestRecord] = []
    Fleet(parse_scenario(_scenario()), profiles, records.append, policy="edge").run()
    heads = sorted({round(r.edge_ms, 3) for r in records})
    assert heads == [round(17.7 * 10.7, 3), round(3 * 17.7 * 10.7, 3)]
    slow = sum(r.edge_ms > 17.7 * 10.7 * 2 for r in records)
    assert 0 < slow < len(records) / 5


def test_observed_head_times_give_the_spread_of_a_devices_runs() -> None:
    scenario = parse_scenario(_scenario())
    record = _record(run="edge", policy="edge", cut="output")
    heads = [20.0] * 30 + [30.0] * 10  # a quarter of the runs 1.5 times as long
    records = [dataclasses.replace(record, edge_ms=10.7 * ms) for ms in heads]
    observed = observed_profiles(scenario, records, PROFILES)["resnet18"]
    assert observed.cut("output").head_ms == pytest.approx(20.0)
    assert observed.head_spread == pytest.approx((1.0,) * 15 + (1.5,) * 5)
    assert ModelProfile.from_json(json.loads(json.dumps(observed.to_json()))) == observed


def test_a_request_count_ends_each_run_and_the_throughput_is_over_its_own_length(tmp_path: Path) -> None:
    scenario = parse_scenario(_scenario(requests=50, duration_s=60))
    summaries = run_scenario(scenario, tmp_path, profiles_file=_profiles_file(tmp_path), report=False)
    records = read_records(tmp_path / "requests.csv")
    ran = json.loads((tmp_path / "run.json").read_text())["run_s"]
    for run in ("edge", "cloud", "auto"):
        assert sum(r.run == run for r in records) == 50
        assert 0 < ran[run] < 60  # 3 agents at 2 requests/s: about 8 s
    expected = [50 / ran[run] for run in ("edge", "cloud", "auto")]  # run.json keeps milliseconds
    assert [s.throughput_hz for s in summaries] == pytest.approx(expected, rel=1e-3)
    assert [s.throughput_hz for s in summarise(records, ran)] == pytest.approx(expected)


def test_a_policy_naming_no_candidate_cut_is_refused() -> None:
    with pytest.raises(Exception, match=r"policy 'layer1' is not auto, edge, cloud or a candidate cut of resnet18"):
        _records(_scenario(), "layer1")


def test_a_scenario_is_checked_whole_before_anything_runs(tmp_path: Path, profiles_file: Path) -> None:
    with pytest.raises(Exception, match="policy 'layer1'"):
        run_scenario(parse_scenario(_scenario(policies=["auto", "layer1"])), tmp_path, profiles_file=profiles_file)
    assert not (tmp_path / "requests.csv").exists()


def test_the_report_shows_the_summary_and_escapes_what_the_scenario_says(tmp_path: Path, profiles_file: Path) -> None:
    scenario = parse_scenario(_scenario(name="<script>alert(1)</script>", duration_s=5))
    summaries = run_scenario(scenario, tmp_path, profiles_file=profiles_file)
    page = (tmp_path / "report.html").read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("data:image/png;base64,") == 5
    assert "http" not in page  # nothing to fetch
    for summary in summaries:
        assert f"<td>{summary.count}</td>" in page


def test_the_command_runs_a_scenario_file(
    tmp_path: Path, profiles_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        'name = "cli"\nduration_s = 5\npolicies = ["edge", "auto"]\n'
        '[[groups]]\nname = "g"\ncount = 2\nlink = { rate = "10mbit", delay = "10ms" }\n'
    )
    out = tmp_path / "out"
    argv = ["sim", "run", str(scenario), "--out", str(out), "--profiles", str(profiles_file), "--seed", "7", "--json"]
    assert main(argv) == ExitCode.OK
    rows = json.loads(capsys.readouterr().out)
    assert [(row["run"], row["group"]) for row in rows] == [("edge", "g"), ("auto", "g")]
    assert json.loads((out / "run.json").read_text())["seed"] == 7
    for picture in ("latency.png", "cdf.png", "queue.png"):
        assert (out / picture).read_bytes().startswith(b"\x89PNG")
    argv.remove("--json")
    assert main([*argv, "--no-report"]) == ExitCode.OK
    shown = capsys.readouterr()
    assert "run   group  requests" in shown.out  # the summary table
    progress = [line for line in shown.err.splitlines() if "5/5 simulated s" in line]
    assert [line.split()[0] for line in progress] == ["edge", "auto"]  # a finished bar per run
    assert main(["sim", "run", "--list"]) == ExitCode.OK
    assert "bandwidth-drop" in capsys.readouterr().out
    assert main([*argv, "--find-hubs", "--p95-ms", "100", "--mode", "emulate"]) == ExitCode.CONFIG
    assert "--find-hubs runs the scenario many times: fleet mode only" in capsys.readouterr().err
    scenario.write_text('name = "cli"\n')
    assert main(["sim", "run", str(scenario), "--out", str(out)]) == ExitCode.CONFIG
    assert "groups: at least one [[groups]] table is needed" in capsys.readouterr().err


def test_the_capacity_search_finds_the_fewest_replicas(tmp_path: Path, profiles_file: Path) -> None:
    from simulations._capacity import _search, find_hubs  # noqa: PLC0415

    assert [_search(lambda n, k=k: n >= k, 64) for k in (1, 2, 3, 5, 64)] == [1, 2, 3, 5, 64]
    assert _search(lambda n: n > 8, 8) is None
    groups = [
        {"name": "many", "count": 16, "device": "rpi4", "link": {"rate": "1gbit", "delay": "1ms"}, "rate_hz": 4.0}
    ]
    scenario = parse_scenario(_scenario(groups=groups, policies=["cloud", "edge"]))
    cloud, edge = find_hubs(scenario, PROFILES, 60.0, max_replicas=16)
    assert cloud.replicas is not None
    assert cloud.replicas > 1  # 16 x 4 requests/s of 17.7 ms overload one worker
    by = {point.replicas: point for point in cloud.points}
    assert by[cloud.replicas].p95_ms <= 60.0 < by[cloud.replicas - 1].p95_ms
    assert edge.replicas is None
    assert len(edge.points) == 1  # edge-only sends nothing: no replica count helps
    argv = ["sim", "run", str(tmp_path / "none.toml"), "--find-hubs", "--p95-ms", "60"]
    (tmp_path / "none.toml").write_text(
        'name = "c"\nduration_s = 10\npolicies = ["cloud"]\n[[groups]]\nname = "g"\ncount = 16\nrate_hz = 4.0\n'
        'link = { rate = "1gbit", delay = "1ms" }\n'
    )
    assert main([*argv, "--profiles", str(profiles_file), "--out", str(tmp_path / "cap"), "--json"]) == ExitCode.OK
    assert (tmp_path / "cap" / "capacity.png").exists()
    assert '<h1 id="answer">p95 within 60 ms for 16 agents: cloud ' in (tmp_path / "cap" / "capacity.html").read_text()
    assert main(["sim", "run", str(tmp_path / "none.toml"), "--find-hubs"]) == ExitCode.CONFIG


@pytest.mark.slow
def test_models_profile_measures_the_candidate_cuts_and_adds_them_to_a_profiles_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profiles = tmp_path / "profiles.json"
    assert main(["models", "profile", "tiny", "--out", str(profiles)]) == ExitCode.OK
    assert "added to" in capsys.readouterr().out
    assert main(["models", "profile", "digits", "--out", str(profiles), "--json"]) == ExitCode.OK
    printed = ModelProfile.from_json(json.loads(capsys.readouterr().out))
    assert printed.cuts[0].id == "input"
    assert printed.cuts[-1].id == "output"
    assert printed.cuts[-1].head_ms >= max(cut.head_ms for cut in printed.cuts)  # the whole model on the device
    assert all(cut.request_bytes > 0 for cut in printed.cuts[:-1])
    saved = load_profiles(profiles)
    assert set(saved) == {"tiny", "digits"}  # the second added to the first
    assert saved["digits"].cuts == printed.cuts


def _profiles_file(directory: Path) -> Path:
    path = directory / "fixed-profiles.json"
    save_profiles(PROFILES, path)
    return path


def test_emulate_mode_refuses_more_agents_than_its_bound_before_starting_anything(tmp_path: Path) -> None:
    scenario = parse_scenario(_scenario())  # 3 agents
    with pytest.raises(ConfigError, match=r"scenario 'test' has 3 agents; .* at most 2 \(--max-agents\)"):
        run_scenario(scenario, tmp_path / "out", mode="emulate", max_agents=2)
    assert not (tmp_path / "out").exists()


def test_a_faster_hub_divides_the_tail_times_and_a_device_factor_replaces_the_devices() -> None:
    hub = _scenario(hub={"replicas": 1, "workers": 1, "speedup": 4.0})
    assert {round(r.hub_compute_ms, 3) for r in _records(hub, policy="cloud") if r.hub} == {round(17.7 / 4, 3)}
    assert {round(r.hub_compute_ms, 3) for r in _records(_scenario(), policy="cloud") if r.hub} == {17.7}

    def median_edge(device_factor: float | None) -> float:
        group = {"name": "cams", "count": 3, "device": "rpi3", "link": {"rate": "20mbit", "delay": "20ms"}}
        if device_factor is not None:
            group["device_factor"] = device_factor
        records = _records(_scenario(groups=[group]), policy="edge")
        return percentile([r.edge_ms for r in records], 50)

    assert median_edge(8.0) == pytest.approx(8.0 * 17.7, rel=0.05)  # the profile's whole model, 8x this host
    assert median_edge(None) == pytest.approx(parse_scenario(_scenario()).groups[0].factor * 17.7, rel=0.05)


def test_emulate_mode_refuses_a_hub_faster_than_this_host(tmp_path: Path) -> None:
    scenario = parse_scenario(_scenario(hub={"replicas": 1, "speedup": 4.0}))
    with pytest.raises(ConfigError, match=r"\[hub\] speedup must be 1, not 4"):
        run_scenario(scenario, tmp_path / "out", mode="emulate")
    assert not (tmp_path / "out").exists()


def test_the_steady_table_in_the_docs_is_what_fleet_mode_gives_on_the_shipped_profile(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    docs = (root / "docs" / "simulation.md").read_text(encoding="utf-8")
    block = docs.split("$ edgecut sim run steady --profiles docs/profiles/resnet18.json\n\n```\n", 1)[1].split("\n```")[
        0
    ]
    expected = "\n".join(block.splitlines()[1:-2])  # the table, without the title, the answer and the files written
    scenario = load_scenario(find("steady"))
    summaries = run_scenario(
        scenario, tmp_path, profiles_file=root / "docs" / "profiles" / "resnet18.json", report=False
    )
    assert table(summaries) == expected


def test_ctrl_c_stops_a_fleet_run_started_in_the_background_and_it_writes_every_file(
    tmp_path: Path, profiles_file: Path
) -> None:
    scenario = tmp_path / "long.toml"
    scenario.write_text(
        'name = "long"\nduration_s = 1000000\npolicies = ["cloud"]\n'
        '[[groups]]\nname = "cams"\ncount = 2\nlink = { rate = "50mbit" }\nrate_hz = 4.0\n'
    )
    out = tmp_path / "out"
    command = [sys.executable, "-m", "edgecut", "sim", "run", str(scenario), "--out", str(out)]
    with subprocess.Popen(  # noqa: S603 - our own command
        [*command, "--profiles", str(profiles_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=ignoring_sigint,  # noqa: PLW1509 - a signal disposition, nothing threaded
    ) as run:
        rows = out / "requests.csv"
        for _ in range(1200):  # up to 120 s for finished requests to reach the file (it is written in blocks)
            if (rows.is_file() and len(rows.read_bytes().splitlines()) > 1) or run.poll() is not None:
                break
            time.sleep(0.1)
        err = signalled_output(run, signal.SIGINT, timeout_s=120)
    assert run.returncode == ExitCode.INTERRUPTED, err
    assert b"interrupted: what has run so far is in" in err
    assert json.loads((out / "summary.json").read_text())[0]["count"] > 0
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page
    assert '<h1 id="answer">interrupted (cloud stopped at ' in page
    made = json.loads((out / "run.json").read_text())
    assert made["run_s"]["cloud"] < 1000000
    assert made["interrupted"] is True


def test_a_profile_measured_on_a_busy_host_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    from simulations._calibrate import _warn_if_busy  # noqa: PLC0415 - the rule itself, without a busy host

    _warn_if_busy("resnet18", [17.0, 17.5, 18.0, 17.2, 17.9])
    assert not caplog.records
    _warn_if_busy("resnet18", [17.0, 17.5, 29.0, 17.2, 17.9])
    (warning,) = caplog.records
    assert "spread 69% around 17.5 ms" in warning.getMessage()  # (29 - 17) / 17.5
    assert "--profiles" in warning.getMessage()

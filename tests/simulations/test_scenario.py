"""Scenario files: every bundled one loads, and every problem in a bad one is named with its field path."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.errors import ConfigError
from simulations._scenario import load_scenario, parse_scenario
from simulations.scenarios import bundled, find

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "name": "ok",
    "groups": [{"name": "a", "link": {"rate": "5mbit", "delay": "20ms"}}],
}


def test_every_bundled_scenario_loads() -> None:
    names = bundled()
    expected = {"steady", "bandwidth-drop", "3g-bus", "hub-16", "hub-crash", "broker-restart", "capacity-1000"}
    assert expected <= set(names)
    for name, description in names.items():
        scenario = load_scenario(find(name))
        assert scenario.groups
        assert description


def test_every_situation_of_the_faults_table_loads() -> None:
    situations = sorted((ROOT / "bench" / "situations").glob("*.toml"))
    assert {path.stem for path in situations} == {"hub-down", "broker-restart", "outage", "overloaded", "loading"}
    for path in situations:
        scenario = load_scenario(path)
        assert scenario.policies == ("cloud", "auto")


def test_a_negative_hub_start_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"hub.start_s: must not be negative"):
        parse_scenario(GOOD | {"hub": {"start_s": -1.0}})


def test_defaults_live_on_the_dataclasses() -> None:
    scenario = parse_scenario(GOOD)
    group = scenario.groups[0]
    assert (scenario.seed, scenario.duration_s, scenario.policies, scenario.hub.replicas) == (0, 60.0, (), 1)
    assert (group.count, group.model, group.device, group.arrival, group.policy) == (
        1,
        "resnet18",
        "rpi4",
        "poisson",
        "auto",
    )
    assert group.link.up.rate_bit_s == 5e6
    assert group.link.up.delay_s == pytest.approx(0.02)


def test_every_problem_is_named_at_once() -> None:
    bad = {
        "name": "bad",
        "colour": "blue",
        "duration_s": -1,
        "policies": ["auto", ""],
        "hub": {"replicas": 0},
        "groups": [
            {"name": "a", "link": "lte", "device": "rpi9", "arrival": "burst", "count": 1.5},
            {"name": "a", "link": "wifi"},
            {"name": "c", "link": {"rate": "fast"}},
        ],
        "faults": [
            {"at_s": 5, "kind": "bandwidth", "group": "nope"},
            {"kind": "meteor"},
        ],
    }
    with pytest.raises(ConfigError) as caught:
        parse_scenario(bad, source="bad.toml")
    text = str(caught.value)
    for expected in (
        "bad.toml:",
        "colour: unknown key",
        "duration_s: must be positive",
        "policies[1]: must be",
        "hub.replicas: must be positive",
        "groups[0].link: no link preset named 'lte'",
        "groups[0].device: no device profile named 'rpi9'",
        "groups[0].arrival: must be one of poisson, closed",
        "groups[0].count: must be an integer",
        "groups[2].link.rate: a rate such as '2mbit' is needed",
        "groups: the name 'a' is used twice",
        "faults[0].group: needs the name of a group",
        "faults[0].rate: a rate such as '2mbit' is needed",
        "faults[1].at_s:",
        "faults[1].kind: must be one of bandwidth, outage, hub-down",
    ):
        assert expected in text, expected


def test_a_hub_fault_names_a_replica_that_exists() -> None:
    data = GOOD | {"hub": {"replicas": 2}, "faults": [{"at_s": 1, "kind": "hub-down", "replica": 2}]}
    with pytest.raises(ConfigError, match=r"faults\[0\].replica: needs a replica index from 0 to 2 - 1"):
        parse_scenario(data)


def test_files_that_are_not_toml_or_not_there_are_config_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("name = [\n")
    with pytest.raises(ConfigError, match=r"broken\.toml: not TOML"):
        load_scenario(broken)
    with pytest.raises(ConfigError, match="cannot read scenario"):
        load_scenario(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="no bundled scenario of that name; bundled: "):
        find("no-such-scenario")


def test_a_problem_in_a_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "lines.toml"
    path.write_text(
        'name = "lines"\n'
        "\n"
        "[[groups]]\n"
        'name = "a"\n'
        'link = "wifi"\n'
        "\n"
        "[[groups]]\n"
        'name = "b"\n'
        'link = "lte"\n'
        "count = 0\n"
        "\n"
        "[[faults]]\n"
        'kind = "meteor"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    text = str(caught.value)
    assert "line 9: groups[1].link: no link preset named 'lte'" in text
    assert "line 10: groups[1].count: must be positive" in text
    assert "line 13: faults[0].kind: must be one of" in text
    assert "line 12: faults[0].at_s:" in text  # missing: the line of its table


def test_the_broker_is_embedded_mosquitto_auto_or_an_external_url() -> None:
    assert parse_scenario(GOOD).broker.kind == "auto"
    assert parse_scenario(GOOD | {"broker": {"kind": "embedded"}}).broker.kind == "embedded"
    external = parse_scenario(GOOD | {"broker": {"url": "mqtt://10.0.0.5:1883"}}).broker
    assert (external.kind, external.url) == ("external", "mqtt://10.0.0.5:1883")
    for broker, expected in (
        ({"kind": "rabbit"}, "broker.kind: must be one of auto, embedded, mosquitto, external"),
        ({"kind": "external"}, "broker.url: is needed with kind = 'external', and only then"),
        ({"kind": "mosquitto", "url": "mqtt://h:1883"}, "broker.url: is needed with kind = 'external'"),
        ({"url": "http://h"}, "broker.url:"),
    ):
        with pytest.raises(ConfigError, match=expected):
            parse_scenario(GOOD | {"broker": broker})


def test_an_external_broker_cannot_be_restarted_by_a_scenario() -> None:
    restart = [{"at_s": 5, "kind": "broker-restart", "for_s": 2}]
    assert parse_scenario(GOOD | {"faults": restart}).faults[0].kind == "broker-restart"
    with pytest.raises(ConfigError, match=r"faults\[0\].kind: an external broker cannot be restarted"):
        parse_scenario(GOOD | {"broker": {"url": "mqtt://10.0.0.5:1883"}, "faults": restart})


def test_a_run_may_end_at_a_request_count() -> None:
    assert parse_scenario(GOOD).requests is None
    assert parse_scenario(GOOD | {"requests": 500}).requests == 500
    for bad in (0, 2.5, "many"):
        with pytest.raises(ConfigError, match="requests: must be"):
            parse_scenario(GOOD | {"requests": bad})


def test_a_link_may_follow_a_trace_file_named_from_the_scenarios_directory(tmp_path: Path) -> None:
    (tmp_path / "traces").mkdir()
    (tmp_path / "traces" / "drive.log").write_text("0\t1.5\n1\t2.0\n2\t0.5\n3\t1.0\n")
    path = tmp_path / "traced.toml"
    path.write_text(
        'name = "traced"\n[[groups]]\nname = "a"\nlink = { trace = "traces/drive.log", delay = "30ms" }\n'
        '[[groups]]\nname = "b"\nlink = { trace = "missing.log" }\n'
        '[[groups]]\nname = "c"\nlink = { trace = "traces/drive.log", rate = "5mbit" }\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    text = str(caught.value)
    assert "groups[1].link.trace: " in text
    assert "missing.log" in text
    assert "groups[2].link: a trace sets the rate" in text
    assert "groups[0]" not in text
    path.write_text('name = "traced"\n[[groups]]\nname = "a"\nlink = { trace = "traces/drive.log", delay = "30ms" }\n')
    link = load_scenario(path).groups[0].link
    assert link.up.trace is not None
    assert link.up.trace.rate_at(0.5) == pytest.approx(2e6)  # a cooked sample covers the second before it
    assert link.up.delay_s == pytest.approx(0.03)


def test_a_hung_hub_fault_names_a_replica() -> None:
    data = GOOD | {"hub": {"replicas": 2}, "faults": [{"at_s": 1, "kind": "hub-stall", "for_s": 3}]}
    with pytest.raises(ConfigError, match=r"faults\[0\].replica: needs a replica index from 0 to 2 - 1"):
        parse_scenario(data)
    data["faults"][0]["replica"] = 1  # type: ignore[index]
    assert parse_scenario(data).faults[0].kind == "hub-stall"


def test_a_links_delay_may_be_bare_milliseconds_and_faults_come_in_time_order() -> None:
    groups = [{"name": "a", "link": {"rate": "5mbit", "delay": 40, "jitter": "2ms"}}]
    faults = [{"at_s": 9, "kind": "outage", "group": "a"}, {"at_s": 2, "kind": "outage", "group": "a", "for_s": 1}]
    scenario = parse_scenario(GOOD | {"groups": groups, "faults": faults})
    assert scenario.groups[0].link.up.delay_s == pytest.approx(0.04)
    assert [fault.at_s for fault in scenario.faults] == [2.0, 9.0]
    with pytest.raises(ConfigError, match=r"groups\[0\]\.link\.delay_ms: unknown key; known: column, delay"):
        parse_scenario(GOOD | {"groups": [{"name": "a", "link": {"rate": "5mbit", "delay_ms": 40}}]})


def _refused(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    return str(caught.value).splitlines()[1:]


def test_unknown_models_and_cuts_are_named_with_their_lines_before_anything_is_measured(tmp_path: Path) -> None:
    problems = _refused(
        tmp_path,
        'name = "m"\n'
        'policies = ["auto", "layer1"]\n'
        "[[groups]]\n"
        'name = "a"\n'
        'link = "wifi"\n'
        'model = "resnet19"\n'
        "[[groups]]\n"
        'name = "b"\n'
        'link = "wifi"\n'
        'policy = "pool"\n'  # a candidate cut of resnet18: fine
        "[[groups]]\n"
        'name = "c"\n'
        'link = "wifi"\n'
        'model = "missing.onnx"\n',
    )
    assert problems[0] == (
        "  line 2: policies[1]: policy 'layer1' is not edge, cloud, auto or a candidate cut of resnet18 "
        "(input, layer4.0.add, pool, output)"
    )
    assert problems[1].startswith("  line 6: groups[0].model: no zoo model named 'resnet19' and no such file; the zoo:")
    assert problems[2] == "  line 14: groups[2].model: no such file: missing.onnx"
    assert len(problems) == 3


def test_a_fault_after_the_run_is_refused() -> None:
    late = GOOD | {"duration_s": 60, "faults": [{"at_s": 200, "kind": "outage", "group": "a", "for_s": 5}]}
    with pytest.raises(ConfigError, match=r"faults\[0\]\.at_s: the run ends at 60 s: the fault would never happen"):
        parse_scenario(late)
    with pytest.raises(ConfigError, match=r"faults\[0\]\.at_s: the run ends at 60 s"):
        parse_scenario(late | {"faults": [{"at_s": 60, "kind": "outage", "group": "a"}]})
    assert parse_scenario(late | {"faults": [{"at_s": 59, "kind": "outage", "group": "a"}]}).faults


def test_a_syntax_error_is_named_at_its_line_and_field(tmp_path: Path) -> None:
    head = 'name = "s"\nseed = 1\n\n[hub]\nreplicas = 1\n\n[[groups]]\nname = "a"\nlink = "wifi"\n# the rate\n'
    (unclosed,) = _refused_toml(tmp_path, head + "rate_hz = [[0, 1], [30, 2]\ncount = 2\n")
    assert unclosed.endswith("not TOML: line 11: groups[0].rate_hz: Unclosed array")
    (bare,) = _refused_toml(tmp_path, head + "count = 2\ndevice = rpi4\n")
    assert "not TOML: line 12: groups[0].device: " in bare
    (open_end,) = _refused_toml(tmp_path, head + 'policy = "auto\n\n')
    assert "not TOML: line 11: groups[0].policy: " in open_end


def _refused_toml(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    return str(caught.value).splitlines()


def test_a_table_names_every_problem_and_all_come_sorted_by_line(tmp_path: Path) -> None:
    problems = _refused(
        tmp_path,
        'name = "t"\n'
        "duration_s = 30\n"
        "[[faults]]\n"
        "at_s = 40\n"
        'kind = "outage"\n'
        'group = "a"\n'
        "[[groups]]\n"
        'name = "a"\n'
        'link = { rate = "fast", delay = "soon", jitter = "2ms", loss = 2 }\n'
        "count = 0\n",
    )
    assert [problem.split(": ")[1] for problem in problems] == [
        "faults[0].at_s",
        "groups[0].link.rate",
        "groups[0].link.delay",
        "groups[0].link.loss",
        "groups[0].count",
    ]
    lines = [int(problem.split()[1].rstrip(":")) for problem in problems]
    assert lines == [4, 9, 9, 9, 10]

"""Scenario files: every bundled one loads, and every problem in a bad one is named with its field path."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from protocol.errors import ConfigError
from simulations._scenario import load_scenario, parse_scenario
from simulations.scenarios import bundled, find

if TYPE_CHECKING:
    from pathlib import Path

GOOD = {
    "name": "ok",
    "groups": [{"name": "a", "link": {"rate": "5mbit", "delay": "20ms"}}],
}


def test_every_bundled_scenario_loads() -> None:
    names = bundled()
    assert {"steady", "bandwidth-drop", "3g-bus", "hub-16", "hub-crash", "capacity-1000"} <= set(names)
    for name, description in names.items():
        scenario = load_scenario(find(name))
        assert scenario.groups
        assert description


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
        "groups[2].link:",
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

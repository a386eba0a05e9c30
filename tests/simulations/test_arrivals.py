"""Arrivals as stated: Poisson from the start at the scenario's rate, a curve followed, groups that join and leave."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import time
from typing import TYPE_CHECKING

import pytest

from protocol.errors import ConfigError
from simulations._agent_process import _requests
from simulations._arrivals import RateCurve, arrivals
from simulations._fleet import Fleet
from simulations._scenario import parse_scenario
from tests.simulations.test_agent_process import CONFIG, _RefusingAgent
from tests.simulations.test_fleet import PROFILES

if TYPE_CHECKING:
    from simulations._report import RequestRecord

_AGENTS = 2000


def _expected(curve: RateCurve, start_s: float, stop_s: float) -> float:
    """The requests ``curve`` gives an agent from ``start_s`` to ``stop_s`` (the trapezoids of its pieces)."""
    grid = sorted({start_s, stop_s, *(t for t, _ in curve.points if start_s < t < stop_s)})
    rates = [_rate_at(curve, t) for t in grid]
    return sum((r0 + r1) / 2 * (t1 - t0) for (t0, r0), (t1, r1) in itertools.pairwise(zip(grid, rates, strict=True)))


def _rate_at(curve: RateCurve, t_s: float) -> float:
    """The rate just after ``t_s`` (the curve's own definition, written out again for the test)."""
    points = curve.points
    if t_s < points[0][0]:
        return points[0][1]
    for (t0, r0), (t1, r1) in itertools.pairwise(points):
        if t0 <= t_s < t1:
            return r0 + (r1 - r0) * (t_s - t0) / (t1 - t0)
    return points[-1][1]


def _counts(curve: RateCurve, windows: list[tuple[float, float]], *, stop_s: float) -> list[int]:
    times = [t for i in range(_AGENTS) for t in arrivals(1, f"a-{i}", curve, start_s=0.0, stop_s=stop_s)]
    return [sum(start <= t < end for t in times) for start, end in windows]


def test_a_constant_rate_is_poisson_from_the_start_with_no_extra_request() -> None:
    first, whole = _counts(RateCurve.constant(1.0), [(0, 1), (0, 30)], stop_s=30.0)
    assert whole == pytest.approx(_AGENTS * 30, rel=0.02)  # sd 0.4%: 2% is five of them
    assert first == pytest.approx(_AGENTS, rel=0.1)  # an extra request at the start made it 1.6x
    gaps = [b - a for a, b in itertools.pairwise(arrivals(1, "a-0", RateCurve.constant(1.0), start_s=0, stop_s=1e4))]
    assert sum(gaps) / len(gaps) == pytest.approx(1.0, rel=0.05)


def test_a_step_and_a_piecewise_linear_curve_are_followed() -> None:
    step = RateCurve(((10.0, 0.5), (10.0, 2.0)))  # 0.5/s, then 2/s from 10 s
    windows = [(0.0, 10.0), (10.0, 20.0)]
    assert _counts(step, windows, stop_s=20.0) == pytest.approx([_AGENTS * 5, _AGENTS * 20], rel=0.03)
    day = RateCurve(((0.0, 0.2), (10.0, 0.2), (20.0, 2.0), (30.0, 0.0)))  # night, a morning ramp, an evening fall
    windows = [(0.0, 10.0), (10.0, 15.0), (15.0, 20.0), (20.0, 25.0), (25.0, 30.0), (30.0, 40.0)]
    expected = [_AGENTS * _expected(day, start, end) for start, end in windows]
    counts = _counts(day, windows, stop_s=40.0)
    assert counts[:-1] == pytest.approx(expected[:-1], rel=0.05)
    assert counts[-1] == expected[-1] == 0  # a rate of zero after the last point: no more requests


def test_an_agent_starts_and_stops_when_told() -> None:
    times = list(arrivals(1, "a-0", RateCurve.constant(5.0), start_s=12.5, stop_s=20.0))
    assert times == sorted(times)
    assert times[0] > 12.5
    assert times[-1] < 20.0
    assert len(times) == pytest.approx(5 * 7.5, rel=0.4)


def _fleet(groups: list[dict[str, object]], *, duration_s: float) -> list[RequestRecord]:
    data = {"name": "load", "seed": 1, "duration_s": duration_s, "policies": ["edge"], "groups": groups}
    records: list[RequestRecord] = []
    Fleet(parse_scenario(data), PROFILES, records.append, policy="edge").run()
    return records


def test_fleet_mode_offers_the_load_the_scenario_states() -> None:
    link = {"rate": "50mbit", "delay": "5ms"}
    records = _fleet([{"name": "cams", "count": _AGENTS, "link": link, "rate_hz": 1.0}], duration_s=30)
    started = [r.start_s for r in records]
    assert len(started) == pytest.approx(_AGENTS * 30, rel=0.02)  # on the edge: every request ends within 0.1 s
    assert sum(t < 1.0 for t in started) == pytest.approx(_AGENTS, rel=0.1)


def test_groups_join_and_leave_and_follow_their_rate_curve_in_fleet_mode() -> None:
    link = {"rate": "50mbit", "delay": "5ms"}
    groups = [
        {"name": "day", "count": 200, "link": link, "rate_hz": [[0, 1.0], [10, 1.0], [10, 3.0]]},
        {"name": "shift", "count": 200, "link": link, "rate_hz": 2.0, "start_s": 5, "stop_s": 15},
    ]
    records = _fleet(groups, duration_s=20)
    day = [r.start_s for r in records if r.group == "day"]
    shift = [r.start_s for r in records if r.group == "shift"]
    assert sum(t < 10 for t in day) == pytest.approx(200 * 10, rel=0.1)
    assert sum(t >= 10 for t in day) == pytest.approx(200 * 30, rel=0.1)
    assert min(shift) >= 5
    assert max(shift) < 15
    assert len(shift) == pytest.approx(200 * 2 * 10, rel=0.1)


def test_emulate_mode_makes_the_requests_fleet_mode_makes(capsys: pytest.CaptureFixture[str]) -> None:
    config = dataclasses.replace(CONFIG, rate_hz=((0.0, 20.0), (2.0, 60.0)), start_s=1.0, stop_s=3.0)
    started = time.monotonic() - 10.0  # every request already due: they all go at once
    asyncio.run(_requests(_RefusingAgent(), config, started))  # type: ignore[arg-type]
    made = [json.loads(line)["record"] for line in capsys.readouterr().out.splitlines()]
    curve = RateCurve(config.rate_hz)
    planned = list(arrivals(config.seed, config.name, curve, start_s=config.start_s, stop_s=config.stop_s))
    assert len(made) == len(planned) > 40  # the same stream, start and stop: the group left, the requests ended


GOOD = {"name": "ok", "duration_s": 60, "groups": [{"name": "a", "link": {"rate": "5mbit"}}]}


def _problems(**group: object) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_scenario(GOOD | {"groups": [{"name": "a", "link": {"rate": "5mbit"}} | group]})
    return str(caught.value)


def test_a_rate_is_a_number_or_a_curve_and_a_group_joins_and_leaves_within_the_run() -> None:
    group = parse_scenario(GOOD | {"groups": [{"name": "a", "link": "wifi", "rate_hz": [[0, 1], [30, 2.5]]}]}).groups[0]
    assert group.rate_hz == RateCurve(((0.0, 1.0), (30.0, 2.5)))
    assert (group.start_s, group.stop_s) == (0.0, None)
    assert parse_scenario(GOOD).groups[0].rate_hz == RateCurve.constant(1.0)
    for bad, expected in (
        (0, "groups[0].rate_hz: must be positive, not 0"),
        ("fast", "groups[0].rate_hz: must be a rate in requests/s or a list of [t_s, rate_hz] points"),
        ([], "groups[0].rate_hz: must be a rate in requests/s or a list"),
        ([[0, 1], [5]], "groups[0].rate_hz[1]: must be a point [t_s, rate_hz], not [5]"),
        ([[0, 1], [5, -1]], "groups[0].rate_hz[1]: a time and a rate must not be negative"),
        ([[10, 1], [5, 2]], "groups[0].rate_hz[1]: comes before the point ahead of it (10 s)"),
        ([[0, 0], [5, 0]], "groups[0].rate_hz: the rate is zero throughout"),
        ([[0, 1], [90, 2]], "groups[0].rate_hz: the run ends at 60 s: a point at 90 s is never reached"),
    ):
        assert expected in _problems(rate_hz=bad), bad
    assert "groups[0].start_s: the run ends at 60 s: the group would never join" in _problems(start_s=60)
    assert "groups[0].stop_s: the run ends at 60 s" in _problems(stop_s=61)
    assert "groups[0].stop_s: must come after start_s (20 s)" in _problems(start_s=20, stop_s=10)
    assert "groups[0].start_s: must not be negative" in _problems(start_s=-1)

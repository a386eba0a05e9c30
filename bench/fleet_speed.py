"""How fast fleet mode runs: wall time per request and times real time, per policy, and the planner's share.

Runs a scenario (default: the bundled ``capacity-1000``, 1,000 agents at 500
requests/s in all) once per policy in fleet mode, on one profile (measured
now, or the profiles file given), and prints for each the wall seconds, microseconds
per request and how many times faster than real time it ran; for ``auto``,
the time spent in each :class:`edge_agent.Planner` method (timed by wrapping
them, which adds about a microsecond a call) and the speed the planners
alone allow: how many times real time the run would be were everything
else free. ``--agents`` sets the agent
count at the same requests per second in all (each agent's rate divided).

    python bench/fleet_speed.py [capacity-1000] [--policies cloud,auto,edge] [--agents 10000]
        [--profiles docs/profiles/resnet18.json]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

from edge_agent import Planner
from simulations import RateCurve, load_scenario, run_fleet, scenario_profiles
from simulations.scenarios import find

_TIMED = ("choose", "observe", "observe_hub", "probe", "observe_probe", "observe_unanswered")


def _time_planner() -> dict[str, list[float]]:
    """Wrap the planner's methods to count their calls and seconds."""
    spent: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for name in _TIMED:
        method = getattr(Planner, name)

        @functools.wraps(method)
        def timed(*args: Any, _method: Any = method, _name: str = name, **kwargs: Any) -> Any:  # noqa: ANN401
            started = time.perf_counter()
            try:
                return _method(*args, **kwargs)
            finally:
                spent[_name][0] += 1
                spent[_name][1] += time.perf_counter() - started

        setattr(Planner, name, timed)
    return spent


def _divided(curve: RateCurve, by: float) -> RateCurve:
    """``curve`` with every rate divided by ``by``."""
    return RateCurve(tuple((t_s, rate / by) for t_s, rate in curve.points))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "scenario", nargs="?", default="capacity-1000", help="a scenario file or bundled name (default capacity-1000)"
    )
    parser.add_argument("--policies", default="cloud,edge,auto", help="comma-separated (default cloud,edge,auto)")
    parser.add_argument("--agents", type=int, help="agents in all, at the scenario's requests/s in all")
    parser.add_argument("--profiles", type=Path, help="a profiles file (default: measure the models now)")
    args = parser.parse_args()
    scenario = load_scenario(find(args.scenario))
    if args.agents is not None:
        scale = args.agents / scenario.agents
        groups = [
            dataclasses.replace(g, count=round(g.count * scale), rate_hz=_divided(g.rate_hz, scale))
            for g in scenario.groups
        ]
        scenario = dataclasses.replace(scenario, groups=tuple(groups))
    profiles = scenario_profiles(scenario, args.profiles)
    options = "".join(
        f" --{name} {value}" for name, value in (("agents", args.agents), ("profiles", args.profiles)) if value
    )
    print(f"$ python bench/fleet_speed.py {args.scenario} --policies {args.policies}{options}")
    scaled = f" scaled to {scenario.agents:,} agents" if args.agents else f": {scenario.agents:,} agents"
    print(f"{scenario.name}{scaled}, {scenario.duration_s:g} simulated s per policy")
    for policy in args.policies.split(","):
        spent = _time_planner() if policy == "auto" else None
        records: list[object] = []
        started = time.perf_counter()
        run_fleet(scenario, profiles, records.append, policy=policy)
        wall = time.perf_counter() - started
        rate = len(records) / scenario.duration_s
        print(
            f"  {policy:<6} {wall:6.2f} s wall, {len(records):7,} requests ({rate:,.0f}/s): "
            f"{wall / len(records) * 1e6:5.1f} µs a request, {scenario.duration_s / wall:5.1f}x real time"
        )
        for name, (calls, seconds) in sorted((spent or {}).items(), key=lambda item: -item[1][1]):
            each = seconds / calls * 1e6
            print(f"         planner.{name:<19} {int(calls):8,} calls {each:6.1f} µs each, {seconds:5.2f} s")
        if spent:
            planner_s = sum(seconds for _, seconds in spent.values())
            print(
                f"         the planners alone: {planner_s:.2f} s, {planner_s / len(records) * 1e6:.1f} µs a request: "
                f"at most {scenario.duration_s / planner_s:.1f}x real time were the rest free"
            )


if __name__ == "__main__":
    main()

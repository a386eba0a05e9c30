"""Run a scenario (fleet or emulate mode) and write its outputs to a directory.

The directory gets:

- ``run.json``: how the run was made (scenario file and its sha256, seed,
  mode, edgecut version, start time, each run's seconds, in all and of wall
  time);
- ``profiles.json``: the measured model profiles the run used (pass it back
  with ``profiles=`` to rerun on the same figures);
- ``observed-profiles.json`` (emulate mode): the same profiles as the run's
  devices and hubs took them (:func:`~simulations._calibrate.observed_profiles`),
  to calibrate a fleet run on;
- ``requests.csv``: one row per finished request (:mod:`simulations._report`);
- ``summary.json``: the summary per run and group, computed from the records;
- ``latency.png``, ``cdf.png``, ``queue.png`` and ``report.html``, drawn
  from ``requests.csv`` (:mod:`simulations._plots`; needs matplotlib).

With ``policies`` in the scenario the whole scenario runs once per policy,
on the same seed: the same arrivals and link draws meet each policy.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import hashlib
import json
import math
import time
from importlib import metadata
from typing import TYPE_CHECKING

from protocol.errors import ConfigError
from simulations._calibrate import load_profiles, measure_profile, observed_profiles, save_profiles
from simulations._emulate import run_emulated
from simulations._fleet import Fleet
from simulations._report import RequestRecord, summarise, write_header, write_record

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from simulations._calibrate import ModelProfile
    from simulations._report import RowWriter, Summary
    from simulations._scenario import Scenario

_PROGRESS_STEPS = 20
MAX_EMULATED_AGENTS = 32
"""Emulate mode's default bound on a scenario's agents (a process each)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Progress:
    """Where a run is: which policy run, and how far through its simulated time."""

    run: str
    runs_done: int
    runs: int
    simulated_s: float
    duration_s: float
    requests: int


def run_scenario(
    scenario: Scenario,
    out: Path,
    *,
    source: Path | None = None,
    profiles_file: Path | None = None,
    progress: Callable[[Progress], None] | None = None,
    report: bool = True,
    mode: str = "fleet",
    max_agents: int = MAX_EMULATED_AGENTS,
) -> list[Summary]:
    """Run ``scenario``, writing its outputs to ``out`` (created if needed).

    Interrupted (``KeyboardInterrupt``), it still writes the summary of the
    requests finished so far, then re-raises.

    Args:
        scenario: The scenario.
        out: The output directory.
        source: The scenario file, for ``run.json``.
        profiles_file: Profiles from an earlier run to reuse, instead of measuring.
        progress: Called as the run goes.
        report: Also draw the pictures and write ``report.html``.
        mode: ``"fleet"`` (simulated time) or ``"emulate"`` (real processes
            and sockets, wall-clock time: :mod:`simulations._emulate`).
        max_agents: In emulate mode, the most agents a scenario may have
            (each is a process of its own, holding its own model).

    Raises:
        ConfigError: A policy names no candidate cut, or an emulated scenario has more than ``max_agents``.
        EmulationError: In emulate mode, an agent process did not start or died.
    """
    if mode == "emulate" and scenario.agents > max_agents:
        msg = (
            f"scenario {scenario.name!r} has {scenario.agents} agents; emulate mode runs a process per agent and "
            f"takes at most {max_agents} (--max-agents): run it in fleet mode, or raise the bound if this machine "
            "has the memory"
        )
        raise ConfigError(msg)
    started, wall = time.time(), time.perf_counter()
    profiles = _profiles(scenario, profiles_file)
    records: list[RequestRecord] = []
    writer: list[RowWriter] = []

    def record(item: RequestRecord) -> None:
        records.append(item)
        write_record(writer[0], item)

    lengths: dict[str, float] = {}  # each run's seconds: duration_s, or less with a request count
    runs: list[str | None] = list(scenario.policies) or [None]
    fleets = [Fleet(scenario, profiles, record, policy=policy) for policy in runs]  # every policy checked first
    out.mkdir(parents=True, exist_ok=True)
    save_profiles(profiles, out / "profiles.json")
    try:
        with (out / "requests.csv").open("w", newline="", encoding="utf-8") as file:
            writer.append(csv.writer(file))
            write_header(writer[0])
            for index, fleet in enumerate(fleets):
                if mode == "emulate":
                    lengths[fleet.run_name] = _emulate_with_progress(
                        fleet, profiles, index=index, runs=len(runs), records=records, progress=progress
                    )
                else:
                    lengths[fleet.run_name] = _run_with_progress(fleet, index, len(runs), records, progress)
        if mode == "emulate":
            save_profiles(observed_profiles(scenario, records, profiles), out / "observed-profiles.json")
        if report and records:
            from simulations._plots import write_report  # noqa: PLC0415 - matplotlib loads slowly

            write_report(out, scenario, lengths)
    finally:
        lengths = _ran_s(records, lengths)
        summaries = summarise(records, lengths)
        summary = [s.to_json() for s in summaries]
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        provenance = _provenance(
            scenario, source, started=started, wall_s=time.perf_counter() - wall, mode=mode, lengths=lengths
        )
        (out / "run.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    return summaries


def _run_with_progress(
    fleet: Fleet, index: int, runs: int, records: list[RequestRecord], progress: Callable[[Progress], None] | None
) -> float:
    """One run in fleet mode; its simulated seconds."""
    duration = fleet.scenario.duration_s
    fleet.start()
    for step in range(1, _PROGRESS_STEPS + 1):
        fleet.advance(duration * step / _PROGRESS_STEPS)
        last = step == _PROGRESS_STEPS or fleet.ended
        if progress is not None:
            shown = duration if last else fleet.env.now  # a run ended by its request count shows as done
            progress(Progress(fleet.run_name, index + last, runs, shown, duration, len(records)))
        if last:
            break
    return float(fleet.env.now)


def _emulate_with_progress(
    fleet: Fleet,
    profiles: dict[str, ModelProfile],
    *,
    index: int,
    runs: int,
    records: list[RequestRecord],
    progress: Callable[[Progress], None] | None,
) -> float:
    """One emulated run (the fleet object only names its policy and scenario); its seconds."""
    duration = fleet.scenario.duration_s

    def tick(elapsed_s: float) -> None:
        if progress is not None:
            progress(Progress(fleet.run_name, index, runs, elapsed_s, duration, len(records)))

    tick(0.0)
    policy = None if fleet.run_name == "scenario" else fleet.run_name
    ran_s = asyncio.run(run_emulated(fleet.scenario, profiles, fleet.record, policy=policy, tick=tick))
    if progress is not None:
        progress(Progress(fleet.run_name, index + 1, runs, duration, duration, len(records)))
    return ran_s


def _ran_s(records: list[RequestRecord], lengths: dict[str, float]) -> dict[str, float]:
    """Each run's seconds: as it ran, or for one cut short (Ctrl+C) until its last request ended."""
    ran = dict(lengths)
    for item in records:
        if item.run not in lengths:
            ended = item.start_s + (0.0 if math.isnan(item.total_ms) else item.total_ms / 1000)
            ran[item.run] = max(ran.get(item.run, 0.0), ended)
    return ran


def _profiles(scenario: Scenario, profiles_file: Path | None) -> dict[str, ModelProfile]:
    known = load_profiles(profiles_file) if profiles_file is not None else {}
    return {model: known.get(model) or measure_profile(model) for model in scenario.models}


def _provenance(
    scenario: Scenario, source: Path | None, *, started: float, wall_s: float, mode: str, lengths: dict[str, float]
) -> dict[str, object]:
    return {
        "scenario": scenario.name,
        "file": None if source is None else str(source),
        "file_sha256": None if source is None else hashlib.sha256(source.read_bytes()).hexdigest(),
        "seed": scenario.seed,
        "mode": mode,
        "agents": scenario.agents,
        "policies": list(scenario.policies),
        "edgecut": metadata.version("edgecut"),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "run_s": {run: round(seconds, 3) for run, seconds in lengths.items()},
        "simulated_s": round(sum(lengths.values()), 3),
        "wall_s": round(wall_s, 3),
    }

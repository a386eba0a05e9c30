"""Run a scenario (fleet or emulate mode) and write its outputs to a directory.

The directory gets:

- ``run.json``: how the run was made (scenario file and its sha256, seed,
  mode, edgecut version, start time, each run's seconds, in all and of wall
  time, and whether Ctrl+C or SIGTERM stopped it);
- ``profiles.json``: the measured model profiles the run used (pass it back
  with ``profiles=`` to rerun on the same figures);
- ``observed-profiles.json`` (emulate mode): the same profiles as the run's
  devices and hubs took them (:func:`~simulations._calibrate.observed_profiles`),
  to calibrate a fleet run on;
- ``requests.csv``: one row per finished request (:mod:`simulations._report`);
- ``logs/<run>/`` (emulate mode): each hub's and agent's output, ``hub-0.log``, ``<agent>.log``;
- ``summary.json``: the summary per run and group, computed from the records;
- ``load.png``, ``latency.png``, ``breakdown.png``, ``cdf.png``,
  ``queue.png`` and ``report.html``, drawn from the files above
  (:mod:`simulations._report_page`; needs matplotlib).

With ``policies`` in the scenario the whole scenario runs once per policy,
on the same seed: the same arrivals and link draws meet each policy.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import functools
import hashlib
import json
import math
import time
from importlib import metadata
from typing import TYPE_CHECKING, Protocol

from protocol.errors import ConfigError
from simulations._calibrate import observed_profiles, save_profiles, scenario_profiles
from simulations._collector import few_collections
from simulations._emulate import run_emulated
from simulations._report import summarise, write_header, write_record
from simulations._scenario import check_policy

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from simulations._calibrate import ModelProfile
    from simulations._report import RequestRecord, RowWriter, Summary
    from simulations._scenario import Scenario

_PROGRESS_STEPS = 20
"""Fleet mode's progress ticks per run."""
MAX_EMULATED_AGENTS = 32
"""Emulate mode's default bound on a scenario's agents (a process each)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Progress:
    """Where a run is: which policy run, and how far through its (simulated or wall-clock) time."""

    run: str
    runs_done: int
    runs: int
    simulated_s: float
    duration_s: float
    requests: int


class Runner(Protocol):
    """One run of a scenario in one mode: every group on ``policy`` (``None``: its own); the seconds it ran.

    Each finished request goes to ``record``; ``tick`` hears the seconds run so far, now and then.
    """

    def __call__(
        self,
        scenario: Scenario,
        profiles: Mapping[str, ModelProfile],
        record: Callable[[RequestRecord], None],
        *,
        policy: str | None = None,
        tick: Callable[[float], None] | None = None,
    ) -> float: ...


def run_fleet(
    scenario: Scenario,
    profiles: Mapping[str, ModelProfile],
    record: Callable[[RequestRecord], None],
    *,
    policy: str | None = None,
    tick: Callable[[float], None] | None = None,
) -> float:
    """Run ``scenario`` once in fleet mode (simulated time, :mod:`simulations._fleet`); its simulated seconds.

    It runs for ``duration_s``, or until ``requests`` requests have finished
    (later ones are not recorded). Writes nothing; ``tick`` hears the
    simulated seconds 20 times a run. Needs SimPy (``edgecut[sim]``).

    Raises:
        ConfigError: A policy names no candidate cut.
    """
    from simulations._fleet import Fleet  # noqa: PLC0415 - SimPy comes with the sim extra, used here only

    with few_collections() as built:
        fleet = Fleet(scenario, profiles, record, policy=policy)
        fleet.start()
        built()
        for step in range(1, _PROGRESS_STEPS + 1):
            fleet.advance(scenario.duration_s * step / _PROGRESS_STEPS)
            if fleet.ended:
                break
            if tick is not None:
                tick(float(fleet.env.now))
        return float(fleet.env.now)


def _run_emulated(
    scenario: Scenario,
    profiles: Mapping[str, ModelProfile],
    record: Callable[[RequestRecord], None],
    *,
    policy: str | None = None,
    tick: Callable[[float], None] | None = None,
    logs: Path | None = None,
) -> float:
    """Run ``scenario`` once in emulate mode (:mod:`simulations._emulate`); its wall-clock seconds.

    The processes' logs go to ``logs/<policy>`` (``scenario`` for the groups' own policies).
    """
    where = None if logs is None else logs / (policy or "scenario")
    return asyncio.run(run_emulated(scenario, profiles, record, policy=policy, tick=tick, logs=where))


def _runner(mode: str, out: Path) -> Runner:
    """The runner of ``mode``: fleet mode's, or emulate mode's keeping its processes' logs in ``out/logs``."""
    return run_fleet if mode == "fleet" else functools.partial(_run_emulated, logs=out / "logs")


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

    Interrupted (``KeyboardInterrupt``), it still writes every file for the
    requests finished so far (the report too), then re-raises; another
    error, every file but the report.

    Args:
        scenario: The scenario.
        out: The output directory.
        source: The scenario file, for ``run.json``.
        profiles_file: Profiles from an earlier run to reuse, instead of measuring.
        progress: Called as the run goes.
        report: Also draw the pictures and write ``report.html``.
        mode: ``"fleet"`` (simulated time, :func:`run_fleet`; needs SimPy) or
            ``"emulate"`` (real processes and sockets, wall-clock time:
            :mod:`simulations._emulate`).
        max_agents: In emulate mode, the most agents a scenario may have
            (each is a process of its own, holding its own model).

    Raises:
        ConfigError: A policy names no candidate cut, or an emulated scenario has more than ``max_agents``
            or hubs faster than this host (``[hub] speedup``).
        EmulationError: In emulate mode, an agent process did not start or died.
    """
    if mode == "emulate" and scenario.agents > max_agents:
        msg = (
            f"scenario {scenario.name!r} has {scenario.agents} agents; emulate mode runs a process per agent and "
            f"takes at most {max_agents} (--max-agents): run it in fleet mode, or raise the bound if this machine "
            "has the memory"
        )
        raise ConfigError(msg)
    if mode == "emulate" and scenario.hub.speedup != 1:
        msg = (
            f"emulate mode runs real hubs on this host: [hub] speedup must be 1, not {scenario.hub.speedup:g} "
            "(fleet mode models faster hubs)"
        )
        raise ConfigError(msg)
    runner = _runner(mode, out)
    started, wall = time.time(), time.perf_counter()
    profiles = scenario_profiles(scenario, profiles_file)
    runs: list[str | None] = list(scenario.policies) or [None]
    for policy in runs:  # every policy checked before anything runs
        check_policy(scenario, profiles, policy)
    records: list[RequestRecord] = []
    writer: list[RowWriter] = []

    def record(item: RequestRecord) -> None:
        records.append(item)
        write_record(writer[0], item)

    def show(run: str, runs_done: int, elapsed_s: float) -> None:
        if progress is not None:
            progress(Progress(run, runs_done, len(runs), elapsed_s, scenario.duration_s, len(records)))

    lengths: dict[str, float] = {}  # each run's seconds: duration_s, or less with a request count
    out.mkdir(parents=True, exist_ok=True)
    save_profiles(profiles, out / "profiles.json")
    outputs = _Outputs(out, scenario, source=source, mode=mode, started=started, wall=wall)
    try:
        with (out / "requests.csv").open("w", newline="", encoding="utf-8") as file:
            writer.append(csv.writer(file))
            write_header(writer[0])
            for index, policy in enumerate(runs):
                name = policy or "scenario"
                show(name, index, 0.0)
                lengths[name] = runner(
                    scenario, profiles, record, policy=policy, tick=functools.partial(show, name, index)
                )
                show(name, index + 1, scenario.duration_s)  # a run ended by its request count shows as done
    except BaseException as exc:  # written, then raised again
        interrupted = isinstance(exc, KeyboardInterrupt)
        outputs.write(records, lengths, profiles, report=report and interrupted, interrupted=interrupted)
        raise
    return outputs.write(records, lengths, profiles, report=report)


@dataclasses.dataclass(frozen=True, slots=True)
class _Outputs:
    """Writes what a run has given into its directory, when it ends or is interrupted (Ctrl+C)."""

    out: Path
    scenario: Scenario
    source: Path | None
    mode: str
    started: float
    wall: float

    def write(
        self,
        records: list[RequestRecord],
        lengths: dict[str, float],
        profiles: dict[str, ModelProfile],
        *,
        report: bool,
        interrupted: bool = False,
    ) -> list[Summary]:
        """``summary.json``, ``run.json``, the observed profiles (emulate mode), and the report when ``report``."""
        out, scenario = self.out, self.scenario
        lengths = _ran_s(records, lengths)
        summaries = summarise(records, lengths)
        summary = [s.to_json() for s in summaries]
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        provenance = _provenance(
            scenario,
            self.source,
            started=self.started,
            wall_s=time.perf_counter() - self.wall,
            mode=self.mode,
            lengths=lengths,
            interrupted=interrupted,
        )
        (out / "run.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        if self.mode == "emulate":
            save_profiles(observed_profiles(scenario, records, profiles), out / "observed-profiles.json")
        if report and records:
            from simulations._report_page import write_report  # noqa: PLC0415 - matplotlib loads slowly

            write_report(out, scenario)
        return summaries


def _ran_s(records: list[RequestRecord], lengths: dict[str, float]) -> dict[str, float]:
    """Each run's seconds: as it ran, or for one cut short (Ctrl+C) until its last request ended."""
    ran = dict(lengths)
    for item in records:
        if item.run not in lengths:
            ended = item.start_s + (0.0 if math.isnan(item.total_ms) else item.total_ms / 1000)
            ran[item.run] = max(ran.get(item.run, 0.0), ended)
    return ran


def _provenance(
    scenario: Scenario,
    source: Path | None,
    *,
    started: float,
    wall_s: float,
    mode: str,
    lengths: dict[str, float],
    interrupted: bool,
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
        "interrupted": interrupted,
    }

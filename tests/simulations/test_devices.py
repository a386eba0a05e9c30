"""Emulated devices: stretched ONNX Runtime sessions through the agent's session factory, and CPU quotas.

No timing is asserted: the stretch is checked by what the session asks to
sleep for what it measured; how close the achieved factor comes is
``bench/devices.py``'s job.
"""

from __future__ import annotations

import functools
import itertools
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_agent import ModelHalves
from models import partition
from protocol.errors import ConfigError
from simulations import _devices
from simulations._devices import (
    PROFILES,
    DeviceProfile,
    StretchedSession,
    cpu_quota,
    cpu_quota_available,
    quota_us,
    stretched_sessions,
)

MODEL = "tiny"
CUT = "stem.out"


def _image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)


def _stretched(model: ModelHalves, cut: str) -> tuple[StretchedSession, StretchedSession]:
    halves = model.halves(cut)
    assert isinstance(halves.head, StretchedSession)
    assert isinstance(halves.tail, StretchedSession)
    return halves.head, halves.tail


# --- profiles -----------------------------------------------------------------


def test_profiles_are_named_by_their_key_and_say_where_their_factor_comes_from() -> None:
    assert PROFILES["host"].factor == 1.0
    for name, profile in PROFILES.items():
        assert profile.name == name
        assert profile.factor >= 1.0
        assert profile.source


def test_a_profile_cannot_make_a_device_faster() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        DeviceProfile(name="fast", factor=0.5, source="made up")


# --- stretched sessions ---------------------------------------------------------


def _full_model() -> bytes:
    return partition.load_model(MODEL)[1].SerializeToString()


def test_stretched_sessions_give_the_same_outputs_and_record_their_stretch() -> None:
    plain = ModelHalves.open(MODEL, threads=1).halves(CUT)
    head, tail = _stretched(ModelHalves.open(MODEL, threads=1, session_factory=stretched_sessions(3.0)), CUT)
    assert plain.head is not None
    assert plain.tail is not None
    feeds = {"image": _image()}
    crossing = head.run(feeds)
    for name, value in plain.head.run(feeds).items():
        np.testing.assert_array_equal(crossing[name], value)
    np.testing.assert_array_equal(tail.run(crossing)["logits"], plain.tail.run(crossing)["logits"])
    for session in (head, tail):
        assert session.runs == 1
        assert session.ran_s > 0
        assert session.slept_s <= 2.0 * session.ran_s  # exact with fake clocks: see below


def test_a_run_lasts_factor_times_its_compute() -> None:
    clock = functools.partial(next, itertools.count(10.0, 0.25))  # every reading 0.25 s after the last
    cpu = functools.partial(next, itertools.count(3.0, 0.25))
    slept: list[float] = []
    factory = stretched_sessions(4.0, clock=clock, sleep=slept.append, cpu_clock=cpu)
    head = factory(_full_model(), 1)
    assert isinstance(head, StretchedSession)
    head.run({"image": _image()})
    head.run({"image": _image()})
    assert slept == [0.75, 0.75]
    assert (head.runs, head.ran_s, head.slept_s) == (2, 0.5, 1.5)


def test_time_spent_waiting_for_a_host_core_is_not_stretched() -> None:
    clock = functools.partial(next, itertools.count(10.0, 0.5))  # the run took 0.5 s here...
    cpu = functools.partial(next, itertools.count(3.0, 0.25))  # ... of which 0.25 s computing
    slept: list[float] = []
    head = stretched_sessions(4.0, clock=clock, sleep=slept.append, cpu_clock=cpu)(_full_model(), 1)
    head.run({"image": _image()})
    assert slept == [0.5]  # 4 x 0.25 s of compute in all, not 4 x 0.5 s


def test_one_thread_counts_the_callers_cpu_time_and_more_threads_the_wall_time() -> None:
    model = _full_model()
    assert stretched_sessions(2.0)(model, 1)._cpu_clock is time.thread_time  # type: ignore[attr-defined]
    assert stretched_sessions(2.0)(model, 2)._cpu_clock is time.perf_counter  # type: ignore[attr-defined]


def test_factor_one_never_sleeps() -> None:
    slept: list[float] = []
    session = stretched_sessions(1.0, sleep=slept.append)(_full_model(), 1)
    session.run({"image": _image()})
    assert slept == []


def test_concurrent_runs_all_count() -> None:
    slept: list[float] = []
    factory = stretched_sessions(2.0, sleep=slept.append)  # list.append is atomic
    head = factory(_full_model(), 1)
    assert isinstance(head, StretchedSession)

    def runs() -> None:
        for _ in range(10):
            head.run({"image": _image()})

    workers = [threading.Thread(target=runs) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert head.runs == 40
    assert len(slept) <= 40  # a run that waited long enough for a core here needs no sleep
    assert head.slept_s == pytest.approx(sum(slept))
    assert head.slept_s <= head.ran_s  # each run at most as long again as its compute


@pytest.mark.parametrize("factor", [0.99, 0.0, -2.0, float("nan"), float("inf")])
def test_a_factor_below_one_or_not_finite_is_refused(factor: float) -> None:
    with pytest.raises(ValueError, match="finite number >= 1"):
        stretched_sessions(factor)


# --- CPU quotas -------------------------------------------------------------------


def test_the_period_grows_when_the_quota_would_fall_under_one_millisecond() -> None:
    assert quota_us(0.25) == (10_000, 2_500)
    assert quota_us(0.1) == (10_000, 1_000)
    assert quota_us(1 / 18.5) == (18_500, 1_000)
    assert quota_us(2.0) == (10_000, 20_000)  # two whole cores


@pytest.mark.parametrize("fraction", [0.0, -0.5, float("nan"), 0.0005])
def test_an_unusable_fraction_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"), cpu_quota(fraction, pid=1):
        pass


def test_a_missing_cpu_controller_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_devices, "CPU_ROOT", tmp_path)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert not cpu_quota_available()
    missing = r"cgroup v1 cpu controller mounted at .* \(no cpu\.cfs_quota_us there\)"
    with pytest.raises(ConfigError, match=missing), cpu_quota(0.5, pid=1):
        pass


def test_not_being_root_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert not cpu_quota_available()
    with pytest.raises(ConfigError, match="needs root"), cpu_quota(0.5, pid=1):
        pass


def _cpu_cgroup_line(pid: int) -> str:
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    return next(line for line in lines if "cpu" in line.split(":")[1].split(","))


@pytest.mark.skipif(not cpu_quota_available(), reason="needs root and the cgroup v1 cpu controller")
def test_a_quota_holds_a_child_process_and_is_removed_afterwards() -> None:
    with subprocess.Popen([sys.executable, "-c", "while True: pass"]) as child:
        try:
            before = _cpu_cgroup_line(child.pid)
            with cpu_quota(0.25, pid=child.pid) as group:
                assert group.name.startswith(f"edgecut-{child.pid}-")
                assert (group / "cpu.cfs_period_us").read_text().strip() == "10000"
                assert (group / "cpu.cfs_quota_us").read_text().strip() == "2500"
                assert str(child.pid) in (group / "cgroup.procs").read_text().split()
                assert str(child.pid) in (group / "tasks").read_text().split()
                assert _cpu_cgroup_line(child.pid).endswith(f"/{group.name}")
            assert not group.exists()
            assert _cpu_cgroup_line(child.pid) == before
            assert str(child.pid) in (group.parent / "cgroup.procs").read_text().split()
        finally:
            child.kill()


# --- the runtime knows no simulator -----------------------------------------------


def test_the_agent_imports_no_simulations() -> None:
    code = "import sys, edge_agent; print(sorted(m for m in sys.modules if m.split('.')[0] == 'simulations'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)  # noqa: S603
    assert result.stdout.strip() == "[]"
    sources = Path(__file__).parents[2] / "edge_agent"
    assert [path.name for path in sources.glob("*.py") if "simulations" in path.read_text()] == []

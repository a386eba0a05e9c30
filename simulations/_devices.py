"""Emulated edge devices: a device's compute speed as a factor relative to this host.

A :class:`DeviceProfile` names a device and how many times slower than this
host it computes (:data:`PROFILES`). Two mechanisms make an agent that slow;
neither needs the agent to know it is emulated:

- :func:`stretched_sessions` (portable, no privileges) returns an
  :data:`edge_agent.SessionFactory` for the agent's ``session_factory``: each
  ORT run is measured and then followed, in the same worker thread, by a sleep
  of ``factor - 1`` times the measured time, so the run's wall time is
  ``factor`` times the host's. Only model compute slows down: the agent's
  Python code, encoding and network stack run at host speed, and a sleeping
  session leaves the CPU free, so CPU contention (a slow device's compute
  competing with its own other work) is not modelled.
- :func:`cpu_quota` (root, the cgroup v1 cpu controller) puts a process in a
  cgroup with a CFS bandwidth limit (``cpu.cfs_quota_us`` per
  ``cpu.cfs_period_us``, what ``docker --cpus`` does). Everything the process
  does then runs on that fraction of one core: ONNX Runtime, Python, message
  encoding, TLS and the network stack's work in the process, so contention
  between them is real. A quota of ``1 / factor`` of ONE core is "factor times
  slower" only for single-threaded compute: give the agent ``threads=1``
  (with n ORT threads the quota is shared between them). The period is short
  (10 ms) so the process is throttled smoothly, not in long stalls (a 100 ms
  period stalls in 75 ms blocks at 25 %).

A quota is an average over periods, not a slower clock, which limits it for
short runs. A run ends in whole periods, so single runs take steps of the
period; and a process that idled (an agent between requests) gets the
period's whole quota at once when it wakes. ``bench/devices.py`` measured a
resnet18 head of ~7 ms at factors 4 and 8: back to back, the medians came
within 2-9 % (once 36 % on a loaded machine), but after idling the runs took
only 2-2.5 and 4.5-5.5 times as long. Stretching, its runs interleaved like
the after-idle ones, came within 3 %. Use stretching for a device's
per-request compute time, and a quota for sustained load and contention.

The factors are estimates, said where each comes from in its ``source``.
They are ratios of published single-thread ResNet-18 times measured with one
engine on both machines (ncnn's ``benchncnn``, ``benchmark/README.md`` in
``Tencent/ncnn``), the device against an x86 server core (AMD EPYC 7742,
Zen 2, 2.25 GHz: 35.43 ms). They say how much slower the device is than such
a core, taken to stand for this host; a host much faster or slower than that
core (hosts vary: ``bench/devices.py`` prints this one's ResNet-18 time)
shifts every factor by the same ratio, and ONNX Runtime's ARM kernels need
not match ncnn's. To emulate a device's absolute speed on a given host,
multiply its factor by 35.43 ms over the host's single-thread ResNet-18 time
(the host this was written on took 17 ms with ONNX Runtime, so there the
devices are about twice as slow as their factors say).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import secrets
import threading
import time
import types
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from models import Session
from protocol.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    import numpy as np
    import onnxruntime as ort

    from edge_agent import SessionFactory

_Feeds = TypeVar("_Feeds")
_Outputs = TypeVar("_Outputs")
"""What a stretched run takes and gives: numpy arrays, or ONNX Runtime's values."""

CPU_ROOT = Path("/sys/fs/cgroup/cpu")
"""Where the cgroup v1 cpu controller is mounted."""

PERIOD_US = 10_000
"""CFS period of a quota: short, so throttling is smooth."""

_MIN_QUOTA_US = 1_000  # the kernel refuses a smaller cfs_quota_us
_MAX_PERIOD_US = 1_000_000  # and a longer cfs_period_us
_MOVE_ROUNDS = 10  # a process forked while tasks move back is caught by the next round

_NCNN = (
    "ncnn benchmark/README.md (Tencent/ncnn), benchncnn fp32 ResNet-18 on one thread: "
    "{device} {ms} ms (entry of {date}) against an AMD EPYC 7742 core 35.43 ms (entry of 2024-06); an estimate, "
    "see the module docstring"
)


def _check_factor(factor: float) -> None:
    if not (math.isfinite(factor) and factor >= 1):
        msg = f"a device factor must be a finite number >= 1 (a device can only be made slower), not {factor!r}"
        raise ValueError(msg)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeviceProfile:
    """A device's compute speed relative to this host.

    Attributes:
        name: The profile's name, a key of :data:`PROFILES`.
        factor: How many times longer the device takes for the same compute (>= 1).
        source: Where the factor comes from.
    """

    name: str
    factor: float
    source: str

    def __post_init__(self) -> None:
        _check_factor(self.factor)


PROFILES: Mapping[str, DeviceProfile] = types.MappingProxyType(
    {
        profile.name: profile
        for profile in (
            DeviceProfile(name="host", factor=1.0, source="This machine as it is."),
            DeviceProfile(
                name="rpi4",
                factor=5.4,
                source=_NCNN.format(device="Raspberry Pi 4 Model B (Cortex-A72 1.8 GHz)", date="2023-06", ms="191.10"),
            ),
            DeviceProfile(
                name="jetson-nano-cpu",
                factor=6.3,
                source=_NCNN.format(
                    device="Jetson Nano CPU (Cortex-A57 1.43 GHz, its GPU unused)", date="2022-01", ms="221.60"
                ),
            ),
            DeviceProfile(
                name="rpi3",
                factor=10.7,
                source=_NCNN.format(device="Raspberry Pi 3 Model B+ (Cortex-A53 1.4 GHz)", date="2023-06", ms="379.57"),
            ),
            DeviceProfile(
                name="rpi-zero-2w",
                factor=18.5,
                source=_NCNN.format(device="Raspberry Pi Zero 2 W (Cortex-A53 1.0 GHz)", date="2022-01", ms="654.69"),
            ),
        )
    }
)
"""The named profiles, by name."""


class StretchedSession(Session):
    """A :class:`models.Session` whose runs take ``factor`` times their compute time.

    After each run it sleeps in the calling thread until the call has lasted
    ``factor`` times the run's compute: its CPU time with one ORT thread (which
    runs the model in the calling thread), its wall time with more. Counting
    CPU time keeps the host's own contention out of the device's speed: a run
    that waited for a core here is not stretched for it, as a device with its
    own cores would not wait (wall time would multiply the wait by
    ``factor``). Concurrent runs are independent; the totals are kept under a
    lock.

    Args:
        model: The serialized ONNX model.
        threads: ONNX Runtime intra-op threads.
        factor: The stretch, >= 1.
        clock: Seconds from a monotonic clock (injectable for tests).
        sleep: Blocks for the given seconds (injectable for tests).
        cpu_clock: The calling thread's CPU seconds (injectable for tests);
            ``None``: :func:`time.thread_time` with one thread, else ``clock``.

    Attributes:
        factor: The stretch.
        runs: Runs so far.
        ran_s: Their compute time in total, before stretching.
        slept_s: The sleep they asked for in total.
    """

    def __init__(
        self,
        model: bytes,
        *,
        threads: int | None,
        factor: float,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
        cpu_clock: Callable[[], float] | None = None,
    ) -> None:
        _check_factor(factor)
        super().__init__(model, threads=threads)
        self.factor = factor
        self._clock = clock
        self._cpu_clock = cpu_clock or (time.thread_time if threads == 1 else clock)
        self._sleep = sleep
        self._lock = threading.Lock()
        self.runs = 0
        self.ran_s = 0.0
        self.slept_s = 0.0

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model, then sleep so the call lasts ``factor`` times the run's compute."""
        return self._stretched(super().run, feeds)

    def run_values(self, feeds: Mapping[str, np.ndarray | ort.OrtValue]) -> dict[str, ort.OrtValue]:
        """:meth:`models.Session.run_values`, then sleep so the call lasts ``factor`` times the run's compute."""
        return self._stretched(super().run_values, feeds)

    def _stretched(self, run: Callable[[_Feeds], _Outputs], feeds: _Feeds) -> _Outputs:
        started, computed = self._clock(), self._cpu_clock()
        outputs = run(feeds)
        compute_s = self._cpu_clock() - computed
        wait_s = max(0.0, self.factor * compute_s - (self._clock() - started))
        with self._lock:
            self.runs += 1
            self.ran_s += compute_s
            self.slept_s += wait_s
        if wait_s > 0:
            self._sleep(wait_s)
        return outputs


def stretched_sessions(
    factor: float,
    *,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
    cpu_clock: Callable[[], float] | None = None,
) -> SessionFactory:
    """A session factory for a device ``factor`` times slower than this host, by stretching each run.

    Pass it as ``session_factory`` to :class:`edge_agent.EdgeAgent` or
    :meth:`edge_agent.ModelHalves.open`.

    Args:
        factor: How many times longer each run takes (>= 1), e.g. a profile's ``factor``.
        clock: Seconds from a monotonic clock (injectable for tests).
        sleep: Blocks for the given seconds (injectable for tests).
        cpu_clock: The calling thread's CPU seconds (see :class:`StretchedSession`).

    Raises:
        ValueError: ``factor`` is below 1 or not finite.
    """
    _check_factor(factor)

    def factory(model: bytes, threads: int | None) -> Session:
        return StretchedSession(model, threads=threads, factor=factor, clock=clock, sleep=sleep, cpu_clock=cpu_clock)

    return factory


def cpu_quota_available() -> bool:
    """True when :func:`cpu_quota` can work here: root, and the cgroup v1 cpu controller mounted."""
    return _quota_unavailable() is None


def _quota_unavailable() -> str | None:
    if os.geteuid() != 0:
        return f"cpu_quota needs root: it creates cgroups under {CPU_ROOT}"
    if not (CPU_ROOT / "cpu.cfs_quota_us").is_file():
        return (
            f"cpu_quota needs the cgroup v1 cpu controller mounted at {CPU_ROOT} (no cpu.cfs_quota_us there); "
            "cgroup v2's cpu.max is not supported"
        )
    return None


def quota_us(fraction: float) -> tuple[int, int]:
    """The ``(period, quota)`` in microseconds that hold a process to ``fraction`` of one core.

    The period is :data:`PERIOD_US`, lengthened when the quota would fall
    below the kernel's 1 ms minimum (fractions under 0.1).

    Raises:
        ValueError: ``fraction`` is not positive, or so small that the period
            would exceed the kernel's 1 s maximum.
    """
    if not (math.isfinite(fraction) and fraction > 0):
        msg = f"a CPU fraction must be a positive number, not {fraction!r}"
        raise ValueError(msg)
    period = max(PERIOD_US, math.ceil(_MIN_QUOTA_US / fraction))
    if period > _MAX_PERIOD_US:
        msg = f"a CPU fraction of {fraction} needs a period over 1 s; the smallest is {_MIN_QUOTA_US / _MAX_PERIOD_US}"
        raise ValueError(msg)
    return period, round(fraction * period)


@contextlib.contextmanager
def cpu_quota(fraction: float, *, pid: int | None = None) -> Iterator[Path]:
    """Hold a process to ``fraction`` of one core while the block runs.

    Creates a cgroup ``edgecut-<pid>-<random>`` beside the process's cpu
    cgroup, sets its period and quota (:func:`quota_us`), and moves the
    process (all its threads) into it; on exit, moves every process in it
    (the target and any children it forked) back and removes it. Prefer a
    child process's ``pid``: throttling the calling process throttles
    everything it does, a test runner included.

    Args:
        fraction: Share of one core, e.g. ``1 / profile.factor``.
        pid: The process to hold; ``None``: this one.

    Yields:
        The cgroup's directory.

    Raises:
        ValueError: ``fraction`` is unusable (see :func:`quota_us`), or there
            is no process ``pid``.
        ConfigError: Not root, the cgroup v1 cpu controller is not mounted,
            or the kernel refused a cgroup write.
    """
    period, quota = quota_us(fraction)
    reason = _quota_unavailable()
    if reason is not None:
        raise ConfigError(reason)
    target = os.getpid() if pid is None else pid
    parent = _cpu_cgroup_of(target)
    group = parent / f"edgecut-{target}-{secrets.token_hex(4)}"
    _cgroup_call(group.mkdir, group)
    try:
        _write(group / "cpu.cfs_period_us", period)
        _write(group / "cpu.cfs_quota_us", quota)
        _write(group / "cgroup.procs", target)
        yield group
    finally:
        _remove(group, parent)


def _cpu_cgroup_of(pid: int) -> Path:
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except FileNotFoundError as exc:
        msg = f"there is no process {pid}"
        raise ValueError(msg) from exc
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            directory = CPU_ROOT / path.lstrip("/")
            if not directory.is_dir():
                msg = f"process {pid} is in cpu cgroup {path}, which is not visible under {CPU_ROOT}"
                raise ConfigError(msg)
            return directory
    msg = f"process {pid} is in no cgroup v1 cpu hierarchy (/proc/{pid}/cgroup)"
    raise ConfigError(msg)


def _write(path: Path, value: int) -> None:
    _cgroup_call(lambda: path.write_text(str(value)), path)


def _cgroup_call(call: Callable[[], object], path: Path) -> None:
    try:
        call()
    except OSError as exc:
        msg = f"cgroup write refused at {path}: {exc}"
        raise ConfigError(msg) from exc


def _remove(group: Path, parent: Path) -> None:
    """Move every process in ``group`` back to ``parent``, then remove ``group``."""
    for _ in range(_MOVE_ROUNDS):
        for pid in (group / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                (parent / "cgroup.procs").write_text(pid)
        try:
            group.rmdir()
        except OSError:  # busy: a process forked in the meantime; move it too
            continue
        return
    _cgroup_call(group.rmdir, group)  # the last try's error, as a ConfigError

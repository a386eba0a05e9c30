"""Do emulated devices compute as slowly as configured? Stretched sessions and CPU quotas.

The head of resnet18 at a middle cut (split on the device, one ORT thread)
runs at factors 1, 4 and 8 under each mechanism of ``simulations/_devices.py``;
for each factor the median of N runs (after 3 warm-up runs) against the median
at factor 1 gives the achieved factor. The target: within 10 % of the factor.

- stretch: ``stretched_sessions(factor)`` in this process.
- quota: one child process per factor holds the head; once it has warmed up,
  ``cpu_quota(1 / factor, pid=child)`` holds it to that share of one core
  (factor 1 gets a whole core), so this process is never throttled. Needs
  root and the cgroup v1 cpu controller, else it is skipped. Measured twice:
  "after idle", each run after its process idled (as an agent serving
  requests with gaps), and "back to back", runs without a pause.

Stretched and after-idle runs are interleaved, one run per factor per round
in a rotating order, so that load from other processes (the machine is
shared) and the state a run leaves behind hit every factor alike.

It also prints this host's single-thread time for the whole resnet18, to set
against the x86 core the device profiles' factors are relative to.

    python bench/devices.py [--cut layer2.0.out] [--runs 20] [--factors 1 4 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Self, TypeVar

import numpy as np

from edge_agent import EDGE_ONLY, ModelHalves
from simulations import cpu_quota, cpu_quota_available, stretched_sessions

if TYPE_CHECKING:
    from models import Runnable

MODEL = "resnet18"
WARM_UP = 3
TARGET = 0.10
REFERENCE_MS = 35.43  # the profiles' x86 core: ncnn's AMD EPYC 7742 resnet18 on one thread

_T = TypeVar("_T")


def _feeds() -> dict[str, np.ndarray]:
    return {"image": np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)}


def _head(cut: str, model: ModelHalves) -> Runnable:
    head = model.halves(cut).head
    if head is None:
        msg = f"{MODEL} has no head at {cut!r}"
        raise SystemExit(msg)
    return head


def _timed_ms(session: Runnable, feeds: dict[str, np.ndarray]) -> float:
    started = time.perf_counter()
    session.run(feeds)
    return (time.perf_counter() - started) * 1000


def host_reference(runs: int) -> float:
    """Median ms of the whole resnet18 on one thread here."""
    session = _head(EDGE_ONLY, ModelHalves.open(MODEL, threads=1))
    feeds = _feeds()
    for _ in range(WARM_UP):
        session.run(feeds)
    return statistics.median(_timed_ms(session, feeds) for _ in range(runs))


def _rotated(items: list[_T], by: int) -> list[_T]:
    """``items`` starting at index ``by``: each item follows each other item equally often over the rounds."""
    by %= len(items)
    return items[by:] + items[:by]


def stretch(cut: str, factors: list[float], runs: int) -> dict[float, list[float]]:
    """Head ms per factor with stretched sessions, the factors interleaved."""
    heads = {f: _head(cut, ModelHalves.open(MODEL, threads=1, session_factory=stretched_sessions(f))) for f in factors}
    feeds = _feeds()
    samples: dict[float, list[float]] = {f: [] for f in factors}
    for _ in range(WARM_UP):
        for head in heads.values():
            head.run(feeds)
    for round_ in range(runs):
        for factor in _rotated(factors, round_):
            samples[factor].append(_timed_ms(heads[factor], feeds))
    return samples


def quota(cut: str, factors: list[float], runs: int) -> tuple[dict[float, list[float]], dict[float, list[float]]]:
    """Head ms per factor, each factor a child process held to 1/factor of one core: after idle, back to back.

    Every child loads and warms up unthrottled, then gets its quota (factor 1:
    a whole core) and keeps it. After idle: the children take turns, one run
    each per round, so each run starts after its child idled while the
    others ran (as an agent serving requests with gaps). Back to back: each
    child in turn runs ``WARM_UP + runs`` times without a pause, the first
    ``WARM_UP`` unmeasured.
    """
    command = [sys.executable, __file__, "--child", "--cut", cut]
    after_idle: dict[float, list[float]] = {f: [] for f in factors}
    with contextlib.ExitStack() as stack:
        children = {f: stack.enter_context(_Child(command)) for f in factors}
        for child in children.values():
            child.call(0)  # loaded and warmed up
        for factor, child in children.items():
            stack.enter_context(cpu_quota(1 / factor, pid=child.pid))
        for round_ in range(runs):
            for factor in _rotated(factors, round_):
                after_idle[factor] += children[factor].call(1)
        back_to_back = {factor: child.call(WARM_UP + runs)[WARM_UP:] for factor, child in children.items()}
    return after_idle, back_to_back


class _Child:
    """A child process that runs the head n times for each n it is sent; EOF on its stdin stops it."""

    def __init__(self, command: list[str]) -> None:
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # noqa: S603
        self.pid = self._process.pid

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self._process.__exit__(None, None, None)  # closes stdin, which ends it, and waits

    def call(self, runs: int) -> list[float]:
        stdin, stdout = self._process.stdin, self._process.stdout
        if stdin is None or stdout is None:  # both pipes were asked for
            msg = "the child has no pipes"
            raise RuntimeError(msg)
        stdin.write(f"{runs}\n")
        stdin.flush()
        return [float(ms) for ms in json.loads(stdout.readline())]


def child(cut: str) -> None:
    """The quota child: load and warm up; then for each n read, run n times and print the ms as a JSON list."""
    head = _head(cut, ModelHalves.open(MODEL, threads=1))
    feeds = _feeds()
    for _ in range(WARM_UP):
        head.run(feeds)
    for line in sys.stdin:
        print(json.dumps([_timed_ms(head, feeds) for _ in range(int(line))]), flush=True)


def _report(mechanism: str, samples: dict[float, list[float]]) -> None:
    base, base_mean = statistics.median(samples[1.0]), statistics.fmean(samples[1.0])
    for factor, times in samples.items():
        median = statistics.median(times)
        achieved = median / base
        error = (achieved / factor - 1) * 100
        verdict = "ok" if abs(error) <= TARGET * 100 else "MISSES 10%"
        by_mean = statistics.fmean(times) / base_mean
        print(
            f"{mechanism:<20} {factor:>10g} {median:>10.2f} {achieved:>9.2f} {error:>+8.1f} {by_mean:>8.2f}  {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cut", default="layer2.0.out", help="where the head ends (default layer2.0.out)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per factor (default 20)")
    parser.add_argument(
        "--factors", type=float, nargs="+", default=[1.0, 4.0, 8.0], help="slowdowns to emulate (default 1 4 8)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.cut)
        return
    factors = sorted({1.0, *args.factors})
    print("$ python bench/devices.py", *sys.argv[1:])
    print(f"{MODEL} head at {args.cut!r}, split on the device, 1 ORT thread; median of {args.runs} runs")
    host_ms = host_reference(args.runs)
    print(f"whole {MODEL} on 1 thread here: {host_ms:.2f} ms (the profiles' reference core: {REFERENCE_MS} ms)")
    print("achieved: median / median at factor 1 (error % from it); by mean: mean / mean at factor 1")
    print(f"{'mechanism':<20} {'configured':>10} {'median ms':>10} {'achieved':>9} {'error %':>8} {'by mean':>8}")
    _report("stretch", stretch(args.cut, factors, args.runs))
    if not cpu_quota_available():
        print("quota                skipped: needs root and the cgroup v1 cpu controller at /sys/fs/cgroup/cpu")
        return
    after_idle, back_to_back = quota(args.cut, factors, args.runs)
    _report("quota, after idle", after_idle)
    _report("quota, back to back", back_to_back)


if __name__ == "__main__":
    main()

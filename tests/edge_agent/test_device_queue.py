"""The device's queue: requests on a device that runs one at a time, and what the planner makes of it."""

from __future__ import annotations

import heapq
import random
import statistics

import pytest

from edge_agent._device_queue import DeviceQueue
from edge_agent._planner import Candidate, Observation, Planner

DEVICE_MS = 200.0  # the whole model on the device
IMAGE_BYTES = 150_000
RTT_MS = 20.0
BANDWIDTH_BIT_S = 6e6  # the image: 200 ms up
TAIL_MS = 10.0  # the whole model on the hub
CLOUD_MS = RTT_MS + IMAGE_BYTES * 8 / BANDWIDTH_BIT_S * 1000 + TAIL_MS  # 230 ms: slower than the device alone
CANDIDATES = [Candidate("input", IMAGE_BYTES), Candidate("output", 0, edge_only=True)]


def _queue(intervals_s: list[float], *, overlapping: bool = True) -> DeviceQueue:
    queue = DeviceQueue()
    now = 0.0
    queue.started(now)
    for interval in intervals_s:
        if not overlapping:
            queue.ended()
        now += interval
        queue.started(now)
    return queue


def test_the_wait_is_kingmans_for_the_intervals_seen() -> None:
    queue = _queue([0.1, 0.3] * 8)  # mean 0.2 s, variance 0.01: ca^2 = 0.25
    waits = queue.wait_ms([0.0, 100.0, 200.0], 3.2)
    assert waits is not None
    # rho = 0.5 at 100 ms: 100 x 0.5 / 0.5 x 0.25 / 2; at 200 ms the device is full (rho capped at 0.99)
    assert waits[:2] == pytest.approx([0.0, 12.5])
    assert waits[2] == pytest.approx(200 * 0.99 / 0.01 * 0.125)


def test_a_steady_rate_the_device_keeps_up_with_makes_no_wait() -> None:
    waits = _queue([0.25] * 16).wait_ms([200.0], 4.0)  # a camera at 4 frames a second
    assert waits is not None
    assert waits[0] == pytest.approx(0.0, abs=1e-6)


def test_requests_one_after_another_never_queue() -> None:
    queue = _queue([0.2 + 0.01 * (i % 3) for i in range(16)], overlapping=False)
    assert queue.wait_ms([200.0], 3.5) is None


def test_no_wait_is_predicted_from_too_few_intervals() -> None:
    assert _queue([0.1, 0.3] * 3).wait_ms([100.0], 1.2) is None


def test_a_request_never_reported_ended_stops_counting_as_in_flight() -> None:
    queue = DeviceQueue(in_flight_s=10.0)
    queue.started(0.0)  # its caller gave up, and nobody said so
    for index in range(1, 40):
        queue.ended()
        queue.started(100.0 + index)  # one after the other, long after
    assert queue.wait_ms([200.0], 140.0) is None  # the old overlap aged out, none since


def test_ending_more_requests_than_started_is_harmless() -> None:
    queue = DeviceQueue()
    queue.ended()
    queue.started(0.0)
    queue.ended()
    queue.ended()
    queue.started(1.0)
    assert not queue.overlapping(1.0)


def _planner() -> Planner:
    planner = Planner(CANDIDATES)
    planner.seed_head("input", 0.0, 0.0)
    planner.seed_head("output", DEVICE_MS, 0.0)
    planner.observe_probe(0, RTT_MS, 0.0)
    planner.observe_probe(50_000, RTT_MS + 50_000 * 8 / BANDWIDTH_BIT_S * 1000, 0.0)
    return planner


def _stream(planner: Planner | None, *, rate_hz: float, requests: int, cut: str = "") -> list[tuple[str, float]]:
    """A Poisson stream of requests on a device running one at a time: each request's cut and total ms.

    With a planner, its choice (fed every result at the moment it ends), else ``cut`` for all.
    """
    rng = random.Random(3)
    device_free_s = 0.0
    ending: list[tuple[float, int, Observation]] = []  # (when, order, what it measured)
    done: list[tuple[str, float]] = []
    now = 1.0
    for index in range(requests):
        now += rng.expovariate(rate_hz)
        while ending and ending[0][0] <= now:
            at_s, _, observation = heapq.heappop(ending)
            if planner is not None:
                planner.observe(observation, at_s)
        chosen = planner.choose(now).cut_id if planner is not None else cut
        if chosen == "output":
            start_s = max(now, device_free_s)
            device_free_s = start_s + DEVICE_MS / 1000
            end_s = device_free_s
            observation = Observation(
                "output",
                0,
                DEVICE_MS,
                device_queue_ms=(start_s - now) * 1000,
                total_ms=(end_s - now) * 1000,
                answered_by_hub=False,
            )
        else:
            end_s = now + CLOUD_MS / 1000
            observation = Observation(
                "input",
                IMAGE_BYTES,
                0.0,
                network_ms=CLOUD_MS - TAIL_MS,
                hub_compute_ms=TAIL_MS,
                total_ms=CLOUD_MS,
            )
        heapq.heappush(ending, (end_s, index, observation))
        done.append((chosen, observation.total_ms))
    return done


def test_an_open_stream_that_would_queue_on_the_device_goes_to_the_hub() -> None:
    # 2.5 requests a second: on the device alone 200 ms each, but half of its time busy, so a request waits
    # 100 ms on average (M/D/1); the hub's 230 ms then wins, which the device's 200 ms alone hides.
    edge_only = _stream(None, rate_hz=2.5, requests=400, cut="output")
    cloud_only = _stream(None, rate_hz=2.5, requests=400, cut="input")
    assert statistics.mean(ms for _, ms in edge_only) > statistics.mean(ms for _, ms in cloud_only)
    planner = _planner()
    auto = _stream(planner, rate_hz=2.5, requests=400)
    settled = [cut for cut, _ in auto[100:]]
    assert settled.count("input") / len(settled) >= 0.9
    assert planner.predict_ms("output", 200.0) == pytest.approx(DEVICE_MS * 1.5, rel=0.35)  # 300 ms


def test_requests_one_after_another_stay_on_the_faster_device() -> None:
    planner = _planner()
    now = 1.0
    chosen = []
    for _ in range(100):  # each request made when the one before ended: no queue can form
        decision = planner.choose(now)
        chosen.append(decision.cut_id)
        ms = DEVICE_MS if decision.cut_id == "output" else CLOUD_MS
        now += ms / 1000
        if decision.cut_id == "output":
            planner.observe(Observation("output", 0, DEVICE_MS, total_ms=DEVICE_MS, answered_by_hub=False), now)
        else:
            observation = Observation(
                "input", IMAGE_BYTES, 0.0, network_ms=CLOUD_MS - TAIL_MS, hub_compute_ms=TAIL_MS, total_ms=CLOUD_MS
            )
            planner.observe(observation, now)
    assert chosen[20:].count("output") / 80 >= 0.95
    assert planner.predict_ms("output", now) == pytest.approx(DEVICE_MS)


def test_a_wait_for_the_device_is_not_taken_for_the_agents_overhead() -> None:
    planner = _planner()
    planner.choose(1.0)
    waited = Observation(
        "output", 0, DEVICE_MS, device_queue_ms=150.0, total_ms=DEVICE_MS + 150.0, answered_by_hub=False
    )
    planner.observe(waited, 1.35)
    assert planner.predict_ms("output", 1.35) == pytest.approx(DEVICE_MS)  # not 350: one request is no stream

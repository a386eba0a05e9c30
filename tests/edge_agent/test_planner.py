"""The planner and its estimators on synthetic worlds: devices, links and hubs given as numbers."""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
import random
import statistics

import pytest

from edge_agent._energy import RADIOS, EnergyModel, RadioName
from edge_agent._estimators import (
    LinkEstimator,
    Recent,
    RecentShare,
    _Excesses,
    _Outages,
    _Release,
    merged_mean,
    merged_quantile,
)
from edge_agent._hub_reports import HubReports
from edge_agent._planner import Candidate, Observation, Planner
from protocol import NodeStatus

# A resnet18-like profile with a bottleneck: head ms on the device per cut, bytes per cut (the hub runs the rest).
CUTS = {  # cut: (device head ms, bytes)
    "input": (0.1, 150_000),
    "stem.out": (12.0, 800_000),
    "layer2.0.out": (40.0, 400_000),
    "bottleneck": (40.0, 10_000),
    "layer4.out": (95.0, 100_000),
    "output": (100.0, 0),
}
CANDIDATES = [Candidate(id=cut, bytes=size, edge_only=cut == "output") for cut, (_, size) in CUTS.items()]


@dataclasses.dataclass
class World:
    """A device, a link and a hub, as numbers; requests through it take exactly what the numbers say."""

    device: float = 1.0  # times the profile's head ms
    bandwidth_bit_s: float = 20e6
    rtt_ms: float = 20.0
    hub_speedup: float = 6.0  # the hub runs the model this many times faster than the device at x1
    queue_ms: float = 0.0
    noise: float = 0.0
    stalls_per_byte: float = 0.0  # a lossy link: a transfer waits out a retransmission with this chance a byte
    stall_ms: float = 200.0
    rng: random.Random = dataclasses.field(default_factory=lambda: random.Random(7))

    def head_ms(self, cut: str) -> float:
        return CUTS[cut][0] * self.device

    def tail_ms(self, cut: str) -> float:
        return (CUTS["output"][0] - CUTS[cut][0]) / self.hub_speedup

    def network_ms(self, cut: str) -> float:
        """The mean: a lossy link's stalls included."""
        nbytes = CUTS[cut][1]
        return self.rtt_ms + nbytes * 8 / self.bandwidth_bit_s * 1000 + self._stall_chance(nbytes) * self.stall_ms

    def _stall_chance(self, nbytes: int) -> float:
        return min(1.0, nbytes * self.stalls_per_byte)

    def _stall(self, nbytes: int) -> float:
        return self.stall_ms if self.rng.random() < self._stall_chance(nbytes) else 0.0

    def total_ms(self, cut: str) -> float:
        if cut == "output":
            return self.head_ms(cut)
        return self.head_ms(cut) + self.network_ms(cut) + self.queue_ms + self.tail_ms(cut)

    def oracle(self) -> str:
        return min(CUTS, key=self.total_ms)

    def probe_ms(self, nbytes: int) -> float:
        return self.rtt_ms + nbytes * 8 / self.bandwidth_bit_s * 1000 + self._stall(nbytes)

    def run(self, cut: str) -> Observation:
        jitter = 1 + self.rng.uniform(-self.noise, self.noise)
        if cut == "output":
            return Observation(cut_id=cut, bytes_sent=0, edge_ms=self.head_ms(cut) * jitter, answered_by_hub=False)
        return Observation(
            cut_id=cut,
            bytes_sent=CUTS[cut][1],
            edge_ms=self.head_ms(cut) * jitter,
            network_ms=(self.rtt_ms + CUTS[cut][1] * 8 / self.bandwidth_bit_s * 1000) * jitter
            + self._stall(CUTS[cut][1]),
            hub_queue_ms=self.queue_ms,
            hub_compute_ms=self.tail_ms(cut) * jitter,
        )


def _planner(world: World, **options: object) -> Planner:
    planner = Planner(CANDIDATES, **options)  # type: ignore[arg-type]
    for cut in CUTS:  # the agent's warm-up
        planner.seed_head(cut, world.head_ms(cut), 0.0)
    planner.observe_probe(0, world.rtt_ms, 0.0)
    return planner


def _drive(planner: Planner, world: World, requests: int, start_s: float = 0.0, every_s: float = 0.1) -> list[str]:
    """Send ``requests`` through ``world`` as the agent does, probes included; return the cuts used."""
    chosen = []
    for index in range(requests):
        now = start_s + index * every_s
        decision = planner.choose(now)
        planner.observe(world.run(decision.cut_id), now)
        probe = planner.probe(now)
        if probe is not None:
            planner.observe_probe(probe, world.probe_ms(probe), now)
        chosen.append(decision.cut_id)
    return chosen


@pytest.mark.parametrize(
    ("world", "expected"),
    [
        (World(device=1.0, bandwidth_bit_s=2e6), "output"),  # a fast device on a slow link: stay on the device
        (World(device=8.0, bandwidth_bit_s=100e6), "input"),  # a slow device on a fast link: send the image
        (World(device=3.0, bandwidth_bit_s=8e6, rtt_ms=10), "bottleneck"),  # in between: the bottleneck
    ],
    ids=["fast device, slow link", "slow device, fast link", "in between"],
)
def test_the_planner_settles_on_the_oracle_cut(world: World, expected: str) -> None:
    assert world.oracle() == expected
    planner = _planner(world)
    chosen = _drive(planner, world, 200)
    assert chosen[-1] == expected
    settled = chosen[20:]
    assert settled.count(expected) / len(settled) >= 0.97  # exploration stays under a few percent
    switches = sum(a != b for a, b in itertools.pairwise(settled))
    assert switches <= 2 * len(settled) / 20  # at most one switch (and back) per 20 requests


def test_predictions_match_what_requests_take() -> None:
    world = World(device=3.0, bandwidth_bit_s=8e6, rtt_ms=10, noise=0.05)
    planner = _planner(world)
    _drive(planner, world, 50)
    for cut in CUTS:
        predicted = planner.predict_ms(cut, 5.0)
        assert predicted == pytest.approx(world.total_ms(cut), rel=0.1), cut


def test_a_bandwidth_drop_moves_the_planner_within_a_few_requests() -> None:
    world = World(device=2.0, bandwidth_bit_s=100e6)
    planner = _planner(world)
    assert _drive(planner, world, 40)[-1] == "input"
    world.bandwidth_bit_s = 2e6  # 100 -> 2 Mbit/s
    after = _drive(planner, world, 20, start_s=10.0)
    assert world.oracle() == "bottleneck"
    assert after.index("bottleneck") <= 5
    assert after[-10:] == ["bottleneck"] * 10


def test_on_a_lossy_link_the_planner_weighs_the_stalls_a_cut_risks() -> None:
    # Four image requests in ten wait out a 200 ms retransmission: sending the image takes 49 ms
    # most of the time and 129 ms on average; the bottleneck's 10 KB rarely stall (76 ms on average).
    # Predicting the typical request, the planner sent the image (bench/lossy_links.py: 1.10-1.21x).
    world = World(device=1.0, bandwidth_bit_s=100e6, stalls_per_byte=0.4 / CUTS["input"][1])
    assert world.oracle() == "bottleneck"
    assert world.total_ms("input") > world.total_ms("output")
    planner = _planner(world)
    settled = _drive(planner, world, 300)[100:]
    assert settled.count("bottleneck") / len(settled) >= 0.85
    mean_ms = statistics.mean(world.total_ms(cut) for cut in settled)
    assert mean_ms <= 1.1 * world.total_ms("bottleneck")  # what the requests cost on average, tries included
    assert planner.link.bandwidth_bit_s(30.0) == pytest.approx(100e6, rel=0.25)  # the stalls are not the link


def test_a_one_off_outage_does_not_price_the_image_out() -> None:
    # A slow device sends the image; the link then carries nothing for a second (a handover): the request and
    # the ping in it wait till it ends, the next request too. Counted whole in the tail, that outage made the
    # image 1.2x the bottleneck's cost for as long as it stayed among the recent transfers (14 s here).
    world = World(device=4.0, bandwidth_bit_s=10e6, rtt_ms=40, noise=0.05)
    assert world.oracle() == "input"
    planner = _planner(world)
    outage = (12.0, 13.0)
    chosen = []
    for index in range(60):
        now = index * 0.45
        decision = planner.choose(now)
        observation = world.run(decision.cut_id)
        held_ms = (outage[1] - now) * 1000 if outage[0] <= now < outage[1] else 0.0
        if decision.cut_id != "output":
            observation = dataclasses.replace(observation, network_ms=observation.network_ms + held_ms)
        planner.observe(observation, now)
        probe = planner.probe(now)
        if probe is not None:
            planner.observe_probe(probe, world.probe_ms(probe) + held_ms, now)
        chosen.append((now, decision.cut_id))
    after = [cut for now, cut in chosen if now >= outage[1] + 1.0]
    assert after.count("input") / len(after) >= 0.9, chosen


def _held_ms(start_s: float, outage_s: float, every_s: float) -> float:
    """How long the link holds a transfer begun at ``start_s``: out for ``outage_s`` of every ``every_s`` (from 5 s)."""
    phase = start_s % every_s
    return (outage_s - phase) * 1000 if start_s >= 5.0 and phase < outage_s else 0.0


def _mean_ms_through_outages(outage_s: float, every_s: float, fixed: str | None = None) -> float:
    """A request every 0.45 s (300) through recurring outages, each observed when it ends; the mean of the last 160.

    ``fixed``: that cut for every request, else the planner's choice.
    """
    world = World(device=4.0, bandwidth_bit_s=10e6, rtt_ms=40, noise=0.05)
    planner = _planner(world)
    ends: list[tuple[float, int, Observation | tuple[int, float]]] = []  # what ends when, in order
    totals = []
    for index in range(300):
        now = index * 0.45
        while ends and ends[0][0] <= now:
            end_s, _, ended = heapq.heappop(ends)
            if isinstance(ended, Observation):
                planner.observe(ended, end_s)
            else:
                planner.observe_probe(*ended, end_s)
        cut = fixed or planner.choose(now).cut_id
        observation = world.run(cut)
        total_ms = observation.edge_ms
        if cut != "output":
            observation = dataclasses.replace(
                observation, network_ms=observation.network_ms + _held_ms(now, outage_s, every_s)
            )
            total_ms += observation.network_ms + observation.hub_compute_ms
        heapq.heappush(ends, (now + total_ms / 1000, 2 * index, observation))
        probe = planner.probe(now)
        if probe is not None:
            probe_ms = world.probe_ms(probe) + _held_ms(now, outage_s, every_s)
            heapq.heappush(ends, (now + probe_ms / 1000, 2 * index + 1, (probe, probe_ms)))
        totals.append(total_ms)
    return statistics.mean(totals[-160:])


@pytest.mark.parametrize(
    ("outage_s", "every_s", "best"),
    [
        (2.0, 5.0, "output"),  # out 40% of the time: the device alone (the code before: 1.5x its mean)
        (1.0, 5.0, "input"),  # out a fifth: still the image (before: the bottleneck's 10 KB, 1.13x)
    ],
)
def test_recurring_outages_are_priced_per_transfer_not_per_byte(outage_s: float, every_s: float, best: str) -> None:
    # An outage holds whatever is in flight till the link carries again, a 10 KB request as long as the image:
    # counted per byte, it priced the image out for the bottleneck, and up to one retransmission's wait a
    # transfer, it was too little to leave for the device when the link was out 40% of the time.
    fixed = {cut: _mean_ms_through_outages(outage_s, every_s, fixed=cut) for cut in ("input", "bottleneck", "output")}
    assert min(fixed, key=fixed.__getitem__) == best
    assert _mean_ms_through_outages(outage_s, every_s) <= 1.05 * fixed[best]


def test_an_outage_is_no_stall_nor_are_the_transfers_it_released() -> None:
    excesses = _Excesses(32, 60.0)
    assert not excesses.add(1.0, 150.0, 80_000.0, stall_ms=200.0, noise_ms=10.0)  # a stall, a loss's: per byte
    assert not excesses.add(2.0, 100.0, 80_000.0, stall_ms=200.0, noise_ms=10.0)  # a stall too, until...
    assert excesses.add(
        2.1, 900.0, 8_000.0, stall_ms=200.0, noise_ms=10.0
    )  # ...held beyond two stalls, released with the one before
    assert excesses.add(
        2.2, 50.0, 8_000.0, stall_ms=200.0, noise_ms=10.0
    )  # began late in the outage: released with them
    assert not excesses.add(3.0, 60.0, 80_000.0, stall_ms=200.0, noise_ms=10.0)  # a stall again
    assert excesses.per_byte(3.0) == pytest.approx((150.0 + 60.0) / (80_000.0 * 3 + 8_000.0 * 2) * 8)
    assert excesses.quantile(0.5, 3.0, at_least=1, most_ms=200.0) == 100.0  # an outage's wait counts as a stall's


def test_outages_cost_what_a_transfer_begun_at_a_random_time_waits() -> None:
    outages = _Outages(60.0)
    outages.add(_Release(10.0, 1500.0, stall_s=0.2))  # the first transfer it held, 1.5 s
    outages.add(_Release(10.1, 700.0, stall_s=0.2))  # released with it: the same outage
    outages.add(_Release(40.0, 600.0, stall_s=0.2))  # another
    assert outages.cost(40.0).held_ms == pytest.approx((1500.0**2 + 600.0**2) / (2 * 60_000.0))
    assert outages.cost(40.0).share == pytest.approx((1500.0 + 600.0) / 60_000.0)
    assert outages.cost(80.0).held_ms == pytest.approx(600.0**2 / (2 * 60_000.0))  # the first is a minute old
    assert outages.cost(101.0).held_ms == outages.cost(101.0).share == 0.0


def test_a_link_that_seemed_slower_for_an_outage_keeps_it() -> None:
    # The transfers an outage held look like a slower link, then, the shorter their hold, like a faster one,
    # and a faster link clears the tail of stalls (they were the old link's): the outage stays all the same.
    link = _link_at_10_mbit_s(20.0)
    for index in range(8):  # 1 Mbit in 100 ms, as predicted
        link.observe(125_000, 120.0, 6.0 + 0.5 * index)
    for index in range(8):  # out for 2 s: those begun in it are released together, the later ones held less
        link.observe(125_000, 120.0 + 2000.0 - 250.0 * index, 12.0 + 0.01 * index)
    for index in range(4):  # as before again
        link.observe(125_000, 120.0, 12.5 + 0.5 * index)
    assert link.bandwidth_bit_s(14.0) == pytest.approx(10e6, rel=0.05)
    # One outage in the last minute, of the 2 s that held the first transfer and up to half a second more (it
    # began, on average, half an interval between transfers after the outage did); and no stall.
    out_ms = link.outage_cost(14.0).share * 60_000.0
    assert 2000.0 < out_ms < 2500.0
    assert link.outage_cost(14.0).held_ms == pytest.approx(out_ms**2 / (2 * 60_000.0))
    assert link.tail_ms_per_byte(14.0) == 0.0


def test_a_long_transfer_slowed_by_the_links_noise_met_no_outage() -> None:
    # 4 s transfers vary by up to 20 %, within the link's noise: their slow ones wait 800 ms more than predicted,
    # beyond two retransmission waits (400 ms) but no outage; priced as one, they cost ten times what they do.
    link = _link_at_10_mbit_s(20.0)
    factors = (0.85, 1.15, 0.9, 1.2, 0.8, 1.1)
    for index in range(20):
        link.observe(5_000_000, 20.0 + 4000.0 * factors[index % len(factors)], 10.0 + 3.0 * index)
    assert link.outage_cost(70.0) == (0.0, 0.0)
    assert link.bandwidth_bit_s(70.0) == pytest.approx(10e6, rel=0.2)


def test_a_slower_link_takes_with_it_the_outage_only_its_first_transfers_showed() -> None:
    # The transfers that showed a slower link are no stalls: dropped from the tail, and any outage they seemed to
    # release with them; a ping a moment later is a stall again, not released by that outage.
    link = _link_at_10_mbit_s(20.0)
    for index in range(8):  # 1 Mbit in 100 ms, as predicted
        link.observe(125_000, 120.0, 6.0 + 0.5 * index)
    for index in range(3):  # 1 Mbit in 1 s from now on: a link of 1 Mbit/s, its first transfer taken for an outage
        link.observe(125_000, 1020.0, 10.0 + 1.0 * index)
    excesses = link._beyond
    assert not excesses.add(12.1, 50.0, 8_000.0, stall_ms=200.0, noise_ms=10.0)


def test_probes_see_a_faster_link_while_the_device_runs_everything() -> None:
    world = World(device=1.0, bandwidth_bit_s=2e6)
    planner = _planner(world)
    assert _drive(planner, world, 40)[-5:] == ["output"] * 5  # nothing is sent: only probes see the link
    world.bandwidth_bit_s = 100e6
    assert world.oracle() == "input"
    after = _drive(planner, world, 30, start_s=10.0)
    assert after.index("input") <= 12  # two probes, 0.5 s apart, at one request per 0.1 s
    assert after[-10:] == ["input"] * 10


def test_the_first_answer_at_a_cut_teaches_no_queue_wait_as_its_tail_may_have_loaded_meanwhile() -> None:
    # The map's check found it: a hub loading pool's tail on first use answered in 419 ms, the wait in the
    # reply's queue time, and every remote cut looked slow until the sample aged out ten seconds later.
    world = World(device=8.0, bandwidth_bit_s=100e6)  # a slow device on a fast link: send the image
    planner = _planner(world)
    input_index = planner._index["input"]
    planner.observe(dataclasses.replace(world.run("input"), hub_queue_ms=400.0), 0.1)  # the tail loaded
    assert planner.predictions(0.2)[input_index] < 100.0
    assert planner.choose(0.2).cut_id == "input"
    planner.observe(dataclasses.replace(world.run("input"), hub_queue_ms=400.0), 0.3)  # a queue, this time
    assert planner.predictions(0.4)[input_index] > 400.0


def test_a_growing_hub_queue_moves_work_to_the_device() -> None:
    world = World(device=4.0, bandwidth_bit_s=100e6)
    planner = _planner(world)
    assert _drive(planner, world, 30)[-1] == "input"
    world.queue_ms = 1000.0
    assert _drive(planner, world, 30, start_s=10.0)[-5:] == ["output"] * 5


@pytest.mark.parametrize(
    ("objective", "budget_ms", "expected"),
    [
        ("bytes", 320.0, "output"),  # sends nothing, and fits
        ("bytes", 200.0, "bottleneck"),  # edge-only no longer fits: the fewest bytes that do
        ("edge", 200.0, "input"),  # the least device compute that fits
    ],
)
def test_other_objectives_pick_the_cheapest_cut_within_the_budget(
    objective: str, budget_ms: float, expected: str
) -> None:
    world = World(device=3.0, bandwidth_bit_s=8e6, rtt_ms=10)
    planner = _planner(world, objective=objective, budget_ms=budget_ms)
    chosen = _drive(planner, world, 60)
    assert chosen[-1] == expected
    assert chosen[-20:].count(expected) >= 19


def test_every_decision_says_why() -> None:
    world = World(device=8.0, bandwidth_bit_s=100e6)
    planner = _planner(world)
    first = planner.choose(0.0)
    assert first.explored
    assert "learning the link and the hub" in first.reason
    planner.observe(world.run(first.cut_id), 0.0)
    decision = planner.choose(0.1)
    assert decision.reason.startswith(("lowest predicted latency", "exploring", "kept"))
    assert decision.predicted_ms > 0


def test_exploration_refreshes_stale_cuts_within_two_percent_of_requests() -> None:
    world = World(device=3.0, bandwidth_bit_s=8e6, rtt_ms=10)
    planner = _planner(world)
    explored = []
    for index in range(1000):  # 100 s at 10 requests/s: every other cut goes stale (30 s) more than once
        now = index * 0.1
        decision = planner.choose(now)
        planner.observe(world.run(decision.cut_id), now)
        explored.append(decision.explored and decision.reason.startswith("exploring"))
        assert sum(explored) <= 0.02 * len(explored)  # never over budget, not even early
    assert sum(explored) >= 3


def test_head_times_survive_a_restart() -> None:
    world = World()
    planner = _planner(world)
    saved = planner.export()
    fresh = Planner(CANDIDATES)
    fresh.restore(saved | {"not-a-cut": [1.0]}, 0.0)
    assert fresh.export() == saved


def test_a_planner_needs_candidates_and_a_budget_for_other_objectives() -> None:
    with pytest.raises(ValueError, match="at least one candidate"):
        Planner([])
    with pytest.raises(ValueError, match="needs a latency budget"):
        Planner(CANDIDATES, objective="bytes")


def test_recent_is_the_median_of_the_last_samples() -> None:
    recent = Recent(window=3)
    assert (recent.value, recent.count, recent.age_s(5.0)) == (None, 0, float("inf"))
    for index, value in enumerate([10.0, 1000.0, 12.0, 11.0]):
        recent.add(value, float(index))
    assert recent.value == 12.0  # the outlier is outvoted, the oldest sample forgotten
    assert recent.age_s(5.0) == 2.0
    assert (recent.quantile(0.0), recent.quantile(1.0)) == (11.0, 1000.0)
    recent.clear()
    assert (recent.count, recent.samples(), recent.quantile(0.5)) == (0, [], None)


def test_recent_keeps_its_quantiles_as_a_sort_of_the_window_would() -> None:
    rng = random.Random(3)
    recent = Recent(window=7, max_age_s=5.0)
    kept: list[tuple[float, float]] = []
    for step in range(300):
        value = float(rng.choice([1, 2, 2, 3, 5, 8, 13]))  # ties, so that removal must find the right one
        recent.add(value, step * 0.5)
        kept = [*kept, (step * 0.5, value)][-7:]
        for q in (0.0, 0.5, 0.9, 1.0):
            young = sorted(v for at, v in kept if step * 0.5 + 3.0 - at <= 5.0)
            expected = young[min(len(young) - 1, max(0, math.ceil(q * len(young)) - 1))] if young else None
            assert recent.quantile(q, step * 0.5 + 3.0) == expected
    recent.add(math.nan, 200.0)  # says nothing
    assert recent.count == 7


def test_a_quantile_of_several_windows_is_one_window_fed_by_them_all() -> None:
    replies, statuses = Recent(8, max_age_s=10.0), Recent(8, max_age_s=10.0)
    assert merged_quantile(0.5, 0.0, 4, replies, statuses) is None
    for at, ms in enumerate([1.0, 2.0, 3.0]):
        replies.add(ms, float(at))
    statuses.add(100.0, 1.5)
    statuses.add(200.0, 6.0)
    assert merged_quantile(1.0, 6.0, 8, replies, statuses) == 200.0
    assert merged_quantile(0.0, 6.0, 4, replies, statuses) == 2.0  # the latest four: 2, 100, 3, 200
    assert merged_quantile(0.5, 6.0, 8, replies) == 2.0
    assert merged_quantile(0.5, 12.5, 8, replies, statuses) == 200.0  # all but the last are over 10 s old
    assert merged_mean(6.0, 4, replies, statuses) == pytest.approx((2 + 100 + 3 + 200) / 4)  # the same four
    assert merged_mean(6.0, 8, replies) == pytest.approx(2.0)
    assert merged_mean(12.5, 8, replies, statuses) == pytest.approx(200.0)
    assert merged_mean(30.0, 8, replies, statuses) is None


def test_a_busy_hubs_skewed_waits_are_predicted_at_their_mean() -> None:
    # Most requests find the queue empty, one in four waits 120 ms: a stream of them pays 30 ms on average,
    # which the median (0) would hide; a budget looks at the 90th percentile.
    world = World()
    planner = _planner(world)
    _drive(planner, world, 6)
    before = planner.predict_ms("input", 10.0)
    assert before is not None
    for index, wait in enumerate([0.0, 0.0, 0.0, 120.0] * 2):
        planner.observe_hub(10.0 + index * 0.1, queue_ms=wait)
    now = 10.8
    assert planner.predict_ms("input", now) == pytest.approx(before + 30.0, abs=1e-6)
    p90 = planner.predictions(now, queue_quantile=0.9)[planner._index["input"]]
    assert p90 == pytest.approx(before + 120.0, abs=1e-6)


def test_one_view_of_the_hubs_serves_every_planner_that_shares_it() -> None:
    view, world = HubReports(), World()
    first, second = _planner(world, hubs=view), _planner(world, hubs=view)
    for planner in (first, second):
        planner.observe(world.run("input"), 0.0)
    tails = {cut: world.tail_ms(cut) for cut in CUTS if cut != "output"}
    view.hear(NodeStatus("hub-0", "hub", "online", 0.0, queue_wait_ms=0.0, tail_ms={"sha": tails}), "sha", 0.0)
    for planner in (first, second):  # one status heard, by the view: both predict the cut neither used
        assert planner.predict_ms("bottleneck", 0.1) == pytest.approx(world.total_ms("bottleneck"), rel=0.01)
    version = view.version
    view.hear(NodeStatus("hub-0", "hub", "online", 1.0, queue_wait_ms=9.0, tail_ms={"other": {"input": 1.0}}), "sha", 1)
    view.hear(NodeStatus("hub-1", "hub", "loading", 1.0, queue_wait_ms=5e3, tail_ms={"sha": {"input": 1.0}}), "sha", 1)
    view.hear(NodeStatus("cam-1", "edge", "online", 1.0, queue_wait_ms=5e3, tail_ms={"sha": {"input": 1.0}}), "sha", 1)
    assert (view.version, view.tail_ms["input"], view.queue.samples()) == (version, tails["input"], [0.0, 9.0])


def test_the_link_estimate_follows_a_round_trip_ageing_out_between_samples() -> None:
    link = LinkEstimator(rtt_forget_s=30.0)
    link.observe_rtt(10.0, 0.0)
    link.observe_rtt(30.0, 20.0)
    assert link.rtt_ms(25.0) == 10.0  # median (low) of 10 and 30
    assert link.rtt_ms(29.0) == 10.0
    assert link.rtt_ms(31.0) == 30.0  # the first is older than 30 s now: no new sample told the estimator so
    assert link.rtt_ms(100.0) == 30.0  # all old: the last one stands


def test_recent_share_counts_the_window_and_forgets_old_outcomes() -> None:
    share = RecentShare(4, max_age_s=10.0)
    assert share.share(0.0) == 0.0
    for at, outcome in enumerate([True, False, True, False, False]):
        share.add(float(at), outcome=outcome)
    assert share.share(4.0) == 0.25  # the first outcome left the window of 4
    assert share.any_young(4.0)
    assert share.share(12.5) == 0.0  # the one true outcome left is 10.5 s old
    assert not share.any_young(12.5)
    for at in range(5, 9):
        share.add(float(at), outcome=False)
    assert share.share(9.0) == 0.0
    assert not share.any_young(9.0)  # the true ones left the window


def test_the_link_estimator_separates_round_trip_and_bandwidth() -> None:
    link = LinkEstimator()
    assert link.predict_ms(1000, 0.0) is None
    assert link.wants_probe(0.0)
    link.observe_rtt(20.0, 0.0)
    assert not link.wants_probe(1.0)
    for index in range(5):
        link.observe(125_000, 20.0 + 100.0, float(index))  # 1 Mbit in 100 ms: 10 Mbit/s
    assert link.bandwidth_bit_s(5.0) == pytest.approx(10e6)
    assert link.predict_ms(250_000, 5.0) == pytest.approx(220.0)


def test_the_link_estimator_follows_a_slower_link_in_three_requests() -> None:
    """Three slower in a row, not two: on a lossy link two stalled transfers in a row are common."""
    link = LinkEstimator()
    link.observe_rtt(20.0, 0.0)
    for index in range(5):
        link.observe(125_000, 120.0, float(index))
    for index in range(3):  # now 1 Mbit/s
        link.observe(125_000, 1020.0, 10.0 + index)
        assert link.wants_rtt == (index == 2)  # a new link: its round trip is to be measured afresh
    link.observe_rtt(20.0, 12.5)
    link.observe(125_000, 1020.0, 13.0)
    assert link.predict_ms(125_000, 13.0) == pytest.approx(1020.0, rel=0.15)


def test_the_stalls_per_byte_are_the_recent_transfers_mean_excess_and_age_out() -> None:
    link = LinkEstimator()
    link.observe_rtt(20.0, 0.0)
    for index in range(40):  # 10 Mbit/s, 125 KB in 100 ms; one transfer in four stalls for 200 ms
        link.observe(125_000, 120.0 + (200.0 if index % 4 == 3 else 0.0), 0.5 * index)
    assert link.bandwidth_bit_s(20.0) == pytest.approx(10e6)  # the stalls are not the link
    assert link.tail_ms_per_byte(20.0) * 125_000 == pytest.approx(50.0, rel=0.05)  # 200 ms in four transfers
    assert link.predict_ms(125_000, 20.0) == pytest.approx(120.0)  # a transfer that meets no loss
    assert link.tail_ms_per_byte(20.0 + 61.0) == 0.0  # a minute later nothing recent shows a stall


def test_stalled_transfers_are_not_bandwidth_samples() -> None:
    # 100 Mbit/s, and a 250 KB ping stalls more often than not (0.5% loss a segment): when four of the
    # last five stalled, their rate (9 Mbit/s) was the bandwidth's upper quartile; the next small ping
    # then came back "far too fast", a faster link, which cleared the stalls the planner weighs.
    link = LinkEstimator()
    link.observe_rtt(20.0, 0.0)
    for index in range(16):  # 20 ms of transfer; every other one stalls for 200 ms
        link.observe_probe(250_000, 40.0 + (200.0 if index % 2 else 0.0), 0.5 * index)
    for index in range(4):
        link.observe_probe(250_000, 240.0, 8.0 + 0.5 * index)
    assert link.bandwidth_bit_s(10.0) == pytest.approx(100e6)
    assert not link.unsettled
    assert link.tail_ms_per_byte(10.0) * 250_000 == pytest.approx(200.0 * 12 / 20, rel=0.1)  # 12 stalls in 20


def test_a_large_reply_teaches_the_overhead_not_a_slower_uplink() -> None:
    # A detector's 110 KB of raw outputs come back down a 20 Mbit/s link in 44 ms: counted as the
    # uplink's, every JPEG request looked like a slower link, twice in a row a link change, and the
    # planner never learned what a request costs (bench/split_map.py: auto at 1.28x edge-only).
    link = LinkEstimator()
    link.observe_rtt(40.0, 0.0)
    for index in range(3):
        link.observe_probe(50_000, 40.0 + 20.0, 0.1 * index)  # 400 kbit in 20 ms: 20 Mbit/s up
    sent, reply = 117_000, 110_000
    took = 40.0 + sent * 8 / 20e6 * 1000 + reply * 8 / 20e6 * 1000  # the round trip, both transfers
    for index in range(4):
        link.observe(sent, took, 1.0 + index, reply_bytes=reply)
    assert link.bandwidth_bit_s(5.0) == pytest.approx(20e6, rel=0.05)  # the uplink as the pings showed it
    assert link.predict_ms(sent, 5.0) == pytest.approx(took, rel=0.05)  # the reply's time in the overhead
    assert not link.unsettled


def test_a_ping_back_far_too_fast_shows_a_faster_link_though_too_short_to_measure_it() -> None:
    link = LinkEstimator()
    link.observe_rtt(40.0, 0.0)
    for index in range(5):  # 2 Mbit/s: 6,250 bytes take 25 ms
        link.observe_probe(6_250, 65.0, 0.1 * index)
    assert link.bandwidth_bit_s(1.0) == pytest.approx(2e6)
    link.observe_probe(6_250, 42.5, 1.0)  # now 20 Mbit/s: 2.5 ms, too short to count, but 22 ms early
    assert link.unsettled
    link.observe_probe(25_000, 50.0, 1.1)  # the same way again: a change
    assert link.bandwidth_bit_s(1.1) == pytest.approx(20e6)


def test_jitter_alone_is_not_taken_for_a_change() -> None:
    rng = random.Random(3)
    link = LinkEstimator()
    bandwidth, nbytes = 5e6, 15_000  # each ping's transfer: 24 ms, under up to 60 ms of jitter
    estimates = []
    for index in range(300):
        now = 0.25 * index
        jitter = abs(rng.gauss(0.0, 20.0)) + abs(rng.gauss(0.0, 20.0))  # there and back
        if index % 4 == 0:
            link.observe_rtt(20.0 + jitter, now)
        else:
            link.observe_probe(nbytes, 20.0 + jitter + nbytes * 8 / bandwidth * 1000, now)
        assert not link.wants_probe(now), index  # a change would forget the round trip and want it afresh
        estimates.append(link.bandwidth_bit_s(now) or 0.0)
    assert 0.7 < statistics.median(estimates) / bandwidth < 1.4


def test_without_answers_the_planner_backs_off_to_the_device_for_longer_each_time() -> None:
    world = World(device=8.0, bandwidth_bit_s=100e6)
    planner = _planner(world)
    assert _drive(planner, world, 10)[-1] == "input"
    planner.observe_unanswered(5.0)
    assert planner.choose(5.5).reason.startswith("no hub answered lately: on the device for 0.5 s")
    assert planner.choose(6.1).cut_id == "input"  # 1 s later: the hub is tried again
    planner.observe_unanswered(6.1)
    assert planner.choose(7.9).cut_id == "output"  # now 2 s
    assert planner.choose(8.2).cut_id == "input"
    planner.observe(world.run("input"), 8.2)  # answered: back to normal at once
    planner.observe_unanswered(9.0)
    assert planner.choose(9.5).cut_id == "output"
    assert planner.choose(10.1).cut_id == "input"  # 1 s again, not 4


def test_after_a_back_off_one_request_tries_the_hub_and_stragglers_do_not_lengthen_it() -> None:
    world = World(device=8.0, bandwidth_bit_s=100e6)
    planner = _planner(world)
    assert _drive(planner, world, 10)[-1] == "input"
    planner.observe_unanswered(5.0, sent_s=3.0)  # the hub went away at about 3 s: back off for 1 s
    for sent in (3.2, 3.5, 4.1, 4.9):  # the requests already out when the back-off began fail too ...
        planner.observe_unanswered(5.0 + sent - 3.0, sent_s=sent)
    assert planner.choose(6.1).cut_id == "input"  # ... but do not lengthen it: at 1 s one request tries
    trying = planner.choose(6.2)
    assert trying.cut_id == "output"  # the others stay on the device while it is out
    assert "until the request trying one is answered" in trying.reason
    planner.observe_unanswered(8.1, sent_s=6.1)  # the trial went unanswered too: 2 s this time
    assert planner.choose(9.9).cut_id == "output"
    assert planner.choose(10.2).cut_id == "input"
    planner.observe(world.run("input"), 10.3)  # the trial is answered: everything as before
    assert planner.choose(10.4).cut_id == "input"
    assert planner.choose(10.5).cut_id == "input"


def test_an_overloaded_answer_is_no_back_off_but_a_share_of_requests_the_device_finishes() -> None:
    world = World(device=8.0, bandwidth_bit_s=100e6, rtt_ms=100)  # a refusal costs a round trip
    planner = _planner(world)
    assert _drive(planner, world, 10)[-1] == "input"
    answered = planner.predict_ms("input", 5.0)
    planner.observe_refused(5.0)  # the hub is there and full: the next request may find room
    decision = planner.choose(5.1)
    assert decision.cut_id == "input"
    assert "no hub answered" not in decision.reason
    refused_once = planner.predict_ms("input", 5.1)
    assert answered is not None
    assert refused_once is not None
    assert refused_once > answered  # a share of the requests now pays a round trip and the whole model on the device
    planner.observe_abandoned()  # the request at 5.1 ended: its refusal is among those below
    for index in range(16):  # refused every time: the device alone is the faster
        planner.observe_refused(5.2 + index / 100)
    assert planner.choose(5.8).cut_id == "output"
    assert planner.choose(16.0).cut_id == "input"  # refusals 10 s old say nothing of the hub now


def test_an_overloaded_answer_to_the_trial_ends_a_back_off() -> None:
    world = World(device=8.0, bandwidth_bit_s=100e6)
    planner = _planner(world)
    assert _drive(planner, world, 10)[-1] == "input"
    planner.observe_unanswered(5.0)
    assert planner.choose(6.1).cut_id == "input"  # the trial
    planner.observe_refused(6.2)  # answered, if only to say it is full: the hub is back
    assert "no hub answered" not in planner.choose(6.3).reason


def test_a_large_overhead_every_cut_shares_does_not_hold_the_current_cut() -> None:
    # Emulate mode found it: a device whose requests queued behind each other measured seconds of
    # overhead, every cut came within 5% of the best, and the agent kept edge-only for 30 s.
    world = World(device=1.0, bandwidth_bit_s=2e6)
    planner = _planner(world)
    assert _drive(planner, world, 50)[-1] == "output"
    for index in range(5):  # each waited 3 s for the device before it ran
        ran = world.run("output")
        planner.observe(dataclasses.replace(ran, total_ms=ran.edge_ms + 3000.0), 5.0 + index / 10)
    world.bandwidth_bit_s = 100e6  # the link is fast now: sending the image takes half the device's time
    for index in range(6):
        now = 6.0 + index / 10
        planner.observe_probe(250_000, world.probe_ms(250_000), now)  # 20 ms of the new link each
    decision = planner.choose(7.0)
    assert world.oracle() == "input"
    assert (decision.cut_id, decision.reason.startswith("kept")) == ("input", False)


def test_a_queue_wait_no_longer_reported_no_longer_counts() -> None:
    world = World(device=4.0, bandwidth_bit_s=100e6)
    planner = _planner(world)
    assert _drive(planner, world, 10)[-1] == "input"
    world.queue_ms = 5_000.0  # the hub is swamped: the replies say so, and the device takes over
    assert _drive(planner, world, 10, start_s=1.0)[-1] == "output"
    assert planner.choose(2.5).cut_id == "output"
    assert planner.choose(13.0).cut_id == "input"  # 10 s later those waits say nothing of now: try again


def test_a_hubs_reported_tail_times_predict_cuts_this_agent_never_used() -> None:
    world = World(device=3.0, bandwidth_bit_s=8e6, rtt_ms=10)
    planner = _planner(world)
    planner.observe_hub(0.0, tail_ms={cut: world.tail_ms(cut) for cut in CUTS if cut != "output"})
    planner.observe(world.run("input"), 0.0)
    assert planner.predict_ms("bottleneck", 0.1) == pytest.approx(world.total_ms("bottleneck"), rel=0.01)


def test_what_the_parts_leave_out_is_learned_from_the_total() -> None:
    planner = Planner(CANDIDATES)
    for index in range(5):
        planner.observe(Observation(cut_id="output", bytes_sent=0, edge_ms=100.0, total_ms=103.0), index)
    assert planner.predict_ms("output", 5.0) == pytest.approx(103.0)


def test_a_round_trip_measured_behind_other_bytes_is_measured_again() -> None:
    link = LinkEstimator()
    link.observe_rtt(900.0, 0.0)  # the only ping queued behind a request
    assert not link.wants_rtt
    link.observe_probe(25_000, 140.0, 0.5)  # faster than the round trip: impossible
    assert link.wants_rtt
    link.observe_rtt(40.0, 0.6)
    assert not link.wants_rtt
    assert link.rtt_ms(0.6) == 40.0


def test_the_planner_pings_the_round_trip_first_when_it_is_in_doubt() -> None:
    planner = Planner(CANDIDATES)
    planner.observe_probe(0, 900.0, 0.0)
    planner.observe_probe(8_000, 45.0, 0.1)
    assert planner.probe(0.2) == 0


def test_the_planner_chooses_the_codec_too_when_bytes_matter() -> None:
    codecs = [
        Candidate(id="input", bytes=150_000),
        Candidate(id="input", bytes=20_000, codec="jpeg"),
        Candidate(id="output", bytes=0, edge_only=True),
    ]
    planner = Planner(codecs)
    planner.seed_head("input", 0.0, 0.0)  # every codec of the cut
    planner.seed_head("input", 3.0, 0.0, codec="jpeg")  # encoding the JPEG costs a little
    planner.seed_head("output", 400.0, 0.0)
    planner.observe_probe(0, 20.0, 0.0)
    planner.observe_probe(25_000, 120.0, 0.1)  # 2 Mbit/s
    planner.observe_hub(0.2, tail_ms={"input": 20.0})
    decision = planner.choose(0.3)
    assert (decision.cut_id, decision.codec) == ("input", "jpeg")  # 80 ms of JPEG beats 600 ms of raw image
    planner.observe(
        Observation(
            cut_id="input", codec="jpeg", bytes_sent=20_000, edge_ms=3.0, network_ms=100.0, hub_compute_ms=20.0
        ),
        0.4,
    )
    assert planner.predict_ms("input", 0.5, codec="jpeg") < planner.predict_ms("input", 0.5)  # type: ignore[operator]
    assert "input@jpeg" in planner.export()


# --- energy ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("radio", "expected"),
    [
        # 40 ms at 2 W plus 10 KB on WiFi (~35 mJ with its short tail) beats 100 ms at 2 W...
        ("wifi", "bottleneck"),
        # ...but LTE's tail (1.06 W until the next request, 100 ms on) makes the bytes cost more than the compute.
        ("lte", "output"),
    ],
)
def test_the_energy_objective_picks_the_cut_that_costs_the_device_least(radio: RadioName, expected: str) -> None:
    world = World()
    assert world.oracle() == "bottleneck"  # for latency
    energy = EnergyModel(compute_w=2.0, radio=RADIOS[radio])
    planner = _planner(world, objective="energy", energy=energy)
    settled = _drive(planner, world, 60)[20:]
    assert settled.count(expected) / len(settled) >= 0.95


def test_predicted_joules_are_the_energy_models_arithmetic() -> None:
    world = World()
    energy = EnergyModel(compute_w=2.0, radio=RADIOS["lte"])
    planner = _planner(world, objective="energy", energy=energy)
    _drive(planner, world, 40)
    decision = planner.choose(4.0)  # 100 ms after the last request
    assert decision.cut_id == "output"
    assert decision.predicted_j == pytest.approx(energy.request_mj(world.head_ms("output")) / 1000, rel=0.01)
    at_cut = planner.energy_mj(4.0)[[c.id for c in CANDIDATES].index("bottleneck")]
    transfer_ms = CUTS["bottleneck"][1] * 8 / world.bandwidth_bit_s * 1000
    expected = energy.request_mj(world.head_ms("bottleneck"), CUTS["bottleneck"][1], transfer_ms, idle_after_ms=100.0)
    assert at_cut == pytest.approx(expected, rel=0.05)  # the bandwidth is an estimate


@pytest.mark.parametrize(("ms_per_joule", "expected"), [(100.0, "bottleneck"), (5000.0, "output")])
def test_latency_plus_energy_weighs_a_joule_at_the_devices_price(ms_per_joule: float, expected: str) -> None:
    # bottleneck: 74 ms and ~0.23 J on LTE; edge-only: 100 ms and 0.2 J. They cost the same at ~1000 ms/J.
    world = World()
    energy = EnergyModel(compute_w=2.0, radio=RADIOS["lte"], ms_per_joule=ms_per_joule)
    planner = _planner(world, objective="latency+energy", energy=energy)
    settled = _drive(planner, world, 60)[20:]
    assert settled.count(expected) / len(settled) >= 0.95


def test_under_the_energy_objective_only_cuts_plausible_in_joules_are_explored() -> None:
    # On LTE the image is faster than edge-only (97 ms against 100) but costs 3.5x its energy (0.71 J against
    # 0.2): refreshing its estimate every 30 s spent that on a request (split_map's energy maps: auto at 1.13x).
    world = World()
    energy = EnergyModel(compute_w=2.0, radio=RADIOS["lte"])
    planner = _planner(world, objective="energy", energy=energy)
    _drive(planner, world, 40)
    joules = dict(zip(CUTS, planner.energy_mj(4.0).tolist(), strict=True))
    assert joules["input"] > 3 * joules["output"]
    assert planner.predict_ms("input", 4.0) < planner.predict_ms("output", 4.0)  # type: ignore[operator]
    explored = []
    for index in range(1000):  # 100 s: every cut goes stale (30 s) three times
        now = 4.0 + index * 0.1
        decision = planner.choose(now)
        planner.observe(world.run(decision.cut_id), now)
        if decision.explored:
            explored.append(decision.cut_id)
    assert explored
    assert set(explored) == {"bottleneck"}  # 0.23 J: within half again the best's


def test_the_energy_objectives_need_an_energy_model() -> None:
    with pytest.raises(ValueError, match="energy model"):
        Planner(CANDIDATES, objective="energy")
    assert math.isnan(Planner(CANDIDATES).choose(0.0).predicted_j)


def test_a_radio_charges_its_bits_its_time_and_its_tail_until_the_next_transfer() -> None:
    wifi = RADIOS["wifi"]  # 283.17 mW per Mbit/s, 132.86 mW while sending, 119.3 mW for 0.238 s after
    assert wifi.transfer_mj(125_000, 100.0, idle_after_ms=50.0) == pytest.approx(283.17 + 13.286 + 5.965)
    assert wifi.transfer_mj(125_000, 100.0) == pytest.approx(283.17 + 13.286 + 119.3 * 0.238)
    assert EnergyModel(compute_w=3.0).request_mj(head_ms=10.0, nbytes=125_000, transfer_ms=100.0) > 30.0
    with pytest.raises(ValueError, match="compute_w"):
        EnergyModel(compute_w=-1.0)


@pytest.mark.parametrize(
    ("late_ms", "whole_ms"),
    [
        (100.0, 100.5),  # a detector: nearly all of it before its last cut, where little is left to time the hub by
        (120.3, 115.0),  # a slowed device's noise: the late head timed above the whole model
        (114.0, 115.0),  # the hub's 2.9 ms against 1 ms on the device: "3x slower" by a late cut's sliver
    ],
    ids=["a sliver left", "less than nothing left", "a sliver that makes the hub look slow"],
)
def test_a_hub_learned_at_a_late_cut_still_gets_the_image_tried(late_ms: float, whole_ms: float) -> None:
    # The hub's first answer comes from the cut that sends least, a late one; what little of the model follows it
    # tells nothing of the hub's speed. The image, which wins on any fast hub, must be tried, not priced out.
    candidates = [
        Candidate(id="input", bytes=150_000),
        Candidate(id="late", bytes=7_000),
        Candidate(id="late", bytes=1_000, codec="int8+zstd"),
        Candidate(id="output", bytes=0, edge_only=True),
    ]
    planner = Planner(candidates)
    for cut, ms in {"input": 0.0, "late": late_ms, "output": whole_ms}.items():
        planner.seed_head(cut, ms, 0.0)
    planner.restore({"late@int8+zstd": [late_ms + 2.0] * 2}, 0.0)  # its encoding included
    for at in (0.0, 0.1):
        planner.observe_probe(0, 40.0, at)
        planner.observe_probe(100_000, 40.0 + 100_000 * 8 / 50e6 * 1000, at)
    first = planner.choose(1.0)
    assert (first.cut_id, first.codec) == ("late", "int8+zstd")  # the fewest bytes: learn the hub cheaply
    answer = Observation(
        cut_id="late", codec="int8+zstd", bytes_sent=1_000, edge_ms=late_ms, encode_ms=2.0, network_ms=40.2,
        hub_compute_ms=2.9, total_ms=late_ms + 45.1,
    )  # fmt: skip
    planner.observe(answer, 1.2)
    assert planner.choose(2.0).cut_id == "input"  # 24 ms for the bytes, 40 the round trip: worth a try
    tried = Observation(
        cut_id="input", bytes_sent=150_000, edge_ms=0.0, network_ms=64.0, hub_compute_ms=12.0, total_ms=76.5
    )
    planner.observe(tried, 2.2)
    assert planner.choose(3.0).cut_id == "input"  # measured: 76 ms against the device's 100-115
    assert planner.predict_ms("late", 3.0) is not None  # the image's tail tells the hub's speed: the rest priced


def _link_that_slowed_down(*, extra_rtt_ms: float = 0.0) -> LinkEstimator:
    """A 10 Mbit/s link, 20 ms round trip, then three requests in a row at 1 Mbit/s: a slower link (at 12 s)."""
    link = LinkEstimator()
    link.observe_rtt(20.0, 0.0)
    for index in range(5):
        link.observe(125_000, 120.0, float(index))
    for index in range(3):
        link.observe(125_000, 1020.0 + extra_rtt_ms, 10.0 + index)
    return link


def test_after_a_change_one_stalled_ping_is_not_taken_for_the_round_trip() -> None:
    """A first ping far longer than the old round trip may have waited out a loss: a second one decides."""
    link = _link_that_slowed_down()
    assert link.wants_rtt
    link.observe_rtt(220.0, 12.5)  # met a retransmission's 200 ms
    assert link.rtt_ms(12.5) == 20.0
    assert link.wants_rtt  # one more, to tell a stall from a longer round trip
    link.observe_rtt(21.0, 12.6)
    assert link.rtt_ms(12.6) == 21.0
    assert not link.wants_rtt


def test_after_a_change_a_first_ping_like_the_old_round_trip_settles_it() -> None:
    link = _link_that_slowed_down()
    link.observe_rtt(24.0, 12.5)
    assert link.rtt_ms(12.5) == 24.0
    assert not link.wants_rtt


def test_after_a_change_two_pings_show_a_longer_round_trip() -> None:
    link = _link_that_slowed_down(extra_rtt_ms=200.0)  # and 100 ms each way more
    link.observe_rtt(220.0, 12.5)
    link.observe_rtt(225.0, 12.6)
    assert link.rtt_ms(12.6) == 220.0


def test_a_stalled_ping_does_not_hide_a_faster_link() -> None:
    """Faster transfers are judged by how far pings fall below the round trip, not by the one that stalled."""
    link = LinkEstimator()
    link.observe_rtt(38.0, 0.0)
    link.observe_rtt(259.0, 0.1)  # waited out a retransmission: 221 ms above the round trip
    for index in range(5):
        link.observe_probe(125_000, 38.0 + 1000.0, 1.0 + index)  # 1 Mbit/s, as stalls made it look
    for index in range(2):  # really 10 Mbit/s: 100 ms predicted beyond the round trip, 10 taken
        link.observe_probe(12_500, 48.0, 7.0 + index)
    assert link.bandwidth_bit_s(9.0) == pytest.approx(10e6, rel=0.05)


def _link_at_10_mbit_s(*pings_ms: float) -> LinkEstimator:
    link = LinkEstimator()
    for index, ms in enumerate(pings_ms):
        link.observe_rtt(ms, index * 0.1)
    for index in range(5):
        link.observe_probe(125_000, 20.0 + 100.0, 1.0 + index)  # 1 Mbit in 100 ms
    return link


def test_a_request_that_waited_out_a_loss_is_no_overhead_sample() -> None:
    """Else it is every request's overhead until more come, and none come once the device runs everything."""
    link = _link_at_10_mbit_s(20.0)
    link.observe(2_334, 20.0 + 1.9 + 200.0, 7.0, reply_bytes=4_194)  # its reply too large to show the uplink
    assert link.overhead_ms == 0.0
    assert link.tail_ms_per_byte(7.0) > 0.0  # the stall is the tail's


def test_the_overhead_is_what_requests_take_beyond_a_ping_at_the_least_noise() -> None:
    link = _link_at_10_mbit_s(20.0, 220.0)  # one ping waited out a loss: 200 ms of the link's noise
    for index, residual_ms in enumerate((2.0, 150.0, 160.0, 3.0, 170.0)):  # jitter and stalls only add
        link.observe(2_334, 20.0 + 1.9 + residual_ms, 7.0 + index, reply_bytes=4_194)
    assert link.overhead_ms == pytest.approx(3.0, abs=0.1)


def _lossy_wifi(link: LinkEstimator, stalls: list[bool], start_s: float) -> float:
    """70 KB requests on a 5 Mbit/s link with a 20 ms round trip, each stalled 165 ms where ``stalls`` says."""
    for index, stalled in enumerate(stalls):
        link.observe(70_000, 20.0 + 112.0 + (165.0 if stalled else 0.0), start_s + 0.5 * index)
    return start_s + 0.5 * len(stalls)


def test_three_stalls_in_a_row_taken_for_a_slower_link_are_undone_when_the_old_link_shows_again() -> None:
    # On wifi-congested (bench/planner.py) three stalls in a row now and then passed for a slower link,
    # the next clean transfers for a faster one, and that change forgot every stall seen: the next
    # single stall then weighed on a handful of transfers and priced the JPEG far too high.
    link = LinkEstimator()
    link.observe_rtt(20.0, 0.0)
    now = _lossy_wifi(link, [index % 8 == 3 for index in range(32)], 0.5)
    tail_before = link.tail_ms_per_byte(now)
    assert tail_before > 0
    now = _lossy_wifi(link, [True, True, True], now)
    assert link.wants_rtt  # taken for a change: the round trip is to be measured afresh
    link.observe_rtt(20.0, now)
    now = _lossy_wifi(link, [True, False, False], now + 0.1)  # one more stall, then the old link's times
    assert link.bandwidth_bit_s(now) == pytest.approx(5e6, rel=0.05)
    assert link.tail_ms_per_byte(now) >= tail_before  # the stalls kept, the three as well
    assert not link.unsettled
    assert link.predict_ms(70_000, now) == pytest.approx(132.0, rel=0.05)


def test_a_slower_link_that_stays_slower_is_not_undone() -> None:
    link = LinkEstimator()
    link.observe_rtt(20.0, 0.0)
    now = _lossy_wifi(link, [index % 8 == 7 for index in range(32)], 0.5)
    for index in range(6):  # now 2 Mbit/s: 70 KB in 280 ms
        link.observe(70_000, 20.0 + 280.0, now + 0.5 * index)
    link.observe_rtt(20.0, now + 3.0)
    link.observe(70_000, 300.0, now + 3.5)
    assert link.bandwidth_bit_s(now + 3.5) == pytest.approx(2e6, rel=0.1)
    assert link.predict_ms(70_000, now + 3.5) == pytest.approx(300.0, rel=0.1)


def test_what_a_slower_change_keeps_to_undo_it_is_bounded_while_only_pings_come() -> None:
    link = LinkEstimator()
    link.observe_rtt(20.0, 0.0)
    now = _lossy_wifi(link, [index % 8 == 3 for index in range(32)], 0.5)
    now = _lossy_wifi(link, [True, True, True], now)
    assert link._undo is not None  # the device runs everything now: only pings come
    for index in range(100):
        link.observe_rtt(20.0, now + 10.0 * index)
    assert link._undo is None  # let go, with the events it kept


# --- what a review found (2026-12-04) -------------------------------------------------------------


def _slower_change(link: LinkEstimator) -> None:
    """A 50 ms round trip and 10 Mbit/s, then three transfers at 1 Mbit/s: a slower change, no ping since."""
    link.observe_rtt(50.0, 0.0)
    for i in range(5):
        link.observe(125_000, 150.0, 1.0 + i)
    for i in range(3):
        link.observe(125_000, 1050.0, 10.0 + i)


def test_with_no_ping_since_a_change_a_faster_transfer_is_not_taken_for_noise() -> None:
    link = LinkEstimator()
    _slower_change(link)
    predicted = link.predict_ms(125_000, 13.0)
    assert predicted is not None
    allowed = 0.4 * (predicted - 50.0) + 2.0  # change x the transfer, plus 2 ms: no pings' spread to add
    assert not link.unsettled
    link.observe(125_000, predicted - allowed - 30.0, 13.0)  # faster than the noise allows, by 30 ms
    assert link.unsettled  # one surprise: the next would show a faster link (the provisional round trip's
    # spread was its whole length, which took any transfer within a round trip of its prediction for noise)


def test_the_round_trip_ages_out_at_the_same_moment_cached_or_not() -> None:
    def pinged() -> LinkEstimator:
        link = LinkEstimator()
        link.observe_rtt(10.0, 488.392)
        link.observe_rtt(50.0, 489.392)
        return link

    now = 488.392 + 30.0  # the first ping's last moment, give or take a rounding
    asked_before = pinged()
    asked_before.estimate(493.392)  # caches the estimate
    assert asked_before.estimate(now) == pinged().estimate(now)


def test_a_slower_change_keeps_the_stalls_before_it_whatever_the_surprises_sent() -> None:
    def tail_after(first_surprise_bytes: int) -> float:
        link = LinkEstimator()
        link.observe_rtt(20.0, 0.0)
        for i in range(16):  # 70 KB requests, three of them stalled 165 ms
            link.observe(70_000, 132.0 + (165.0 if i in {3, 9, 14} else 0.0), 0.5 + 0.5 * i)
        link.observe(first_surprise_bytes, 400.0, 9.0)  # slower than predicted, three times: a slower change
        link.observe(70_000, 700.0, 9.5)
        link.observe(70_000, 700.0, 10.0)
        return link.tail_ms_per_byte(10.0)

    # A surprise of no bytes never entered the tail: dropping the surprises must not drop a stall before them.
    assert tail_after(0) == pytest.approx(tail_after(1), rel=0.01)
    assert tail_after(0) > 0


def test_asking_for_the_tail_at_another_time_changes_nothing() -> None:
    link = LinkEstimator()
    link.observe_rtt(20.0, 0.0)
    for i in range(16):
        link.observe(70_000, 132.0 + (165.0 if i % 4 == 1 else 0.0), 0.5 + 0.5 * i)
    now = 8.5
    tail = link.tail_ms_per_byte(now)
    assert tail > 0
    assert link.tail_ms_per_byte(now + 100.0) == 0.0  # all of it too old then
    assert link.tail_ms_per_byte(now) == tail  # and still there now


def test_the_tails_young_transfers_are_the_ones_a_filter_of_them_all_keeps() -> None:
    # The young transfers are counted from the latest (they come in time order): the same as filtering every one.
    rng = random.Random(5)
    excesses = _Excesses(8, 10.0)
    kept: list[tuple[float, float, float]] = []
    now = 0.0
    for step in range(400):
        now += rng.choice([0.1, 1.0, 3.0, 12.0])
        if step % 37 == 36:
            excesses.drop_latest(2)
            kept = kept[:-2]
        ms, bits = rng.uniform(-5.0, 50.0), rng.choice([8_000.0, 80_000.0])
        assert not excesses.add(now, ms, bits, stall_ms=200.0, noise_ms=10.0)  # none of them an outage: all stalls
        kept = [*[sample for sample in kept if now - sample[0] <= 10.0], (now, ms, bits)][-8:]
        for later in (0.0, 4.0, 9.5, 30.0):
            young = [(ms, bits) for at, ms, bits in kept if now + later - at <= 10.0]
            if len(young) < len(kept):  # some aged out: summed afresh, exactly as a filter would
                total_ms, total_bits = sum(ms for ms, _ in young), sum(bits for _, bits in young)
                expected = max(0.0, total_ms / total_bits * 8) if total_bits > 0 else 0.0
                assert excesses.per_byte(now + later) == expected
            ordered = sorted(ms for ms, _ in young)
            assert excesses.quantile(0.75, now + later, at_least=1, most_ms=math.inf) == (
                ordered[int(len(ordered) * 0.75)] if ordered else 0.0
            )


def test_a_windows_young_samples_are_the_ones_a_filter_of_them_all_keeps() -> None:
    rng = random.Random(6)
    recent = Recent(8, max_age_s=10.0)
    kept: list[tuple[float, float]] = []
    now = 0.0
    for _ in range(300):
        now += rng.choice([0.0, 0.5, 4.0, 11.0])  # ties in time too
        value = float(rng.randint(0, 9))
        recent.add(value, now)
        kept = [*kept, (now, value)][-8:]
        for later in (0.0, 5.0, 9.9, 20.0):
            assert list(recent.timed(now + later)) == [sample for sample in kept if now + later - sample[0] <= 10.0]


def test_exploration_draws_as_a_generator_seeded_at_the_start_would() -> None:
    planner = Planner([Candidate("input", 1000), Candidate("output", 10, edge_only=True)], seed=42)
    seeded = random.Random(42)
    assert [planner._draw() for _ in range(5)] == [seeded.random() for _ in range(5)]


def test_a_link_estimator_needs_a_transfer_time_to_measure() -> None:
    with pytest.raises(ValueError, match="min_transfer_ms must be more than 0"):
        LinkEstimator(min_transfer_ms=0)


def test_a_refusal_before_the_whole_model_was_timed_on_the_device_leaves_the_hub_predicted() -> None:
    planner = Planner([Candidate("edge", 100, edge_only=True), Candidate("c0", 50_000)])
    planner.seed_head("c0", 20.0, 0.0)  # edge-only's head never measured
    planner.observe_probe(0, 20.0, 0.0)
    planner.observe(Observation("c0", 50_000, 20.0, network_ms=60.0, hub_compute_ms=30.0, total_ms=111.0), 0.5)
    planner.observe_refused(1.5)
    assert planner.predict_ms("c0", 2.0) is not None  # the refusal's cost unknown: not every prediction lost
    decision = planner.choose(2.0)
    assert (decision.cut_id, decision.explored) == ("c0", False)


def test_a_choice_outside_the_budget_says_so() -> None:
    planner = Planner(
        [Candidate("edge", 100, edge_only=True), Candidate("c0", 50_000)], objective="bytes", budget_ms=10.0
    )
    planner.seed_head("edge", 200.0, 0.0)
    planner.seed_head("c0", 20.0, 0.0)
    planner.observe_probe(0, 20.0, 0.0)
    planner.observe(Observation("c0", 50_000, 20.0, network_ms=60.0, hub_compute_ms=30.0, total_ms=111.0), 0.5)
    decision = planner.choose(1.0)  # c0 takes ~111 ms, the device 200: neither within 10 ms
    assert (decision.cut_id, decision.reason) == ("c0", "none predicted within 10 ms: the fastest")


def test_a_cut_left_while_the_device_slowed_is_taken_again_soon_after_it_recovers() -> None:
    world = World(device=1.0, bandwidth_bit_s=20e6)  # the bottleneck (74 ms) beats the image (97 ms)
    assert world.oracle() == "bottleneck"
    planner = _planner(world)
    assert _drive(planner, world, 50)[-1] == "bottleneck"
    world.device = 2.0  # a few seconds of a slower device: the bottleneck's head 80 ms, the image now best
    assert world.oracle() == "input"
    assert _drive(planner, world, 30, start_s=5.0)[-1] == "input"
    world.device = 1.0  # the re-checks' waits doubled while it was slow: 8, 16, 32 requests
    after = _drive(planner, world, 60, start_s=8.0)
    assert after[-20:].count("bottleneck") >= 19  # within about as long as it was slow, not after 30 s stale


def test_a_cut_that_stays_slow_is_tried_again_ever_less_often() -> None:
    world = World(device=1.0, bandwidth_bit_s=20e6)
    planner = _planner(world)
    _drive(planner, world, 50)
    world.device = 2.0  # for good
    chosen = _drive(planner, world, 250, start_s=5.0)  # 25 s: nothing goes stale meanwhile
    rechecks = [index for index, cut in enumerate(chosen) if cut == "bottleneck" and index > 10]
    assert 2 <= len(rechecks) <= 5  # after 8, 16, 32, 64, 128 requests elsewhere: 8 + 16 + 32 + 64 = 120 < 250
    assert chosen[-1] == "input"


def test_a_stale_estimate_explored_starts_again_from_the_fresh_measurement() -> None:
    world = World(device=1.0, bandwidth_bit_s=20e6)  # the bottleneck 74 ms; the device 100 ms
    planner = _planner(world, explore=1.0)
    for _ in range(5):  # the device measured slower long ago: within half again the best, so worth refreshing
        planner.observe(Observation(cut_id="output", bytes_sent=0, edge_ms=105.0, answered_by_hub=False), 0.0)
    assert planner.predict_ms("output", 0.0) == pytest.approx(105.0)
    for index in range(40):
        now = 31.0 + index * 0.1  # every estimate of t=0 has gone stale (30 s)
        decision = planner.choose(now)
        planner.observe(world.run(decision.cut_id), now)
        if decision.cut_id == "output":
            assert decision.reason == "exploring output: its estimate is stale"
            break
    else:
        pytest.fail("the stale device estimate was never refreshed")
    assert planner.predict_ms("output", now) == pytest.approx(100.0)  # not the median of the old 105s and it

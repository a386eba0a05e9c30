"""What the planner adds to a transfer's prediction for stalls and outages on a clean link whose speed varies.

A link of 10 Mbit/s with a 20 ms round trip, no loss and no outage, whose
speed varies from one transfer to the next: each takes its size's time off
by a uniform draw of up to +-J (a shared or radio link). One transfer of N
bytes every 3 s, a ping every third; after 50 to learn, for the next 150:
the mean time they took beyond :meth:`LinkEstimator.predict_ms`, and the
mean the planner adds to it (``docs/planner.md``: the stalls' time per byte
times N, the outages' hold, and their share of the time on the wire). On
such a link the two should agree: a long transfer's slow half, held beyond
two retransmission waits (400 ms), is the link's noise, not an outage. The
draws are seeded: the figures repeat exactly.

    python bench/jittery_links.py [--transfers 200] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import statistics

from edge_agent._estimators import LinkEstimator

CASES = ((150_000, 0.2), (2_500_000, 0.25), (5_000_000, 0.2), (5_000_000, 0.3))  # (bytes, jitter)
RTT_MS = 20.0
BANDWIDTH_BIT_S = 10e6
LEARN = 50


def run_case(nbytes: int, jitter: float, *, transfers: int, seed: int) -> tuple[float, float]:
    """The mean excess over the prediction, and the mean the planner added for it, after the first ``LEARN``."""
    rng = random.Random(seed)  # noqa: S311 - a simulated link's draws
    link = LinkEstimator()
    link.observe_rtt(RTT_MS, 0.0)
    for index in range(5):  # 1 Mbit in 100 ms: the link's speed, known
        link.observe_probe(125_000, RTT_MS + 100.0, 1.0 + index)
    clean_ms = nbytes * 8 / BANDWIDTH_BIT_S * 1000
    excess, added = [], []
    now = 10.0
    for index in range(transfers):
        now += 3.0
        if index % 3 == 0:
            link.observe_rtt(RTT_MS, now - 1.0)
        took_ms = RTT_MS + clean_ms * (1 + rng.uniform(-jitter, jitter))
        predicted = link.predict_ms(nbytes, now)
        assert predicted is not None  # noqa: S101 - the link is known from the probes
        outages = link.outage_cost(now)
        on_the_wire = predicted - RTT_MS
        if index >= LEARN:
            excess.append(took_ms - predicted)
            added.append(link.tail_ms_per_byte(now) * nbytes + outages.held_ms + outages.share * on_the_wire)
        link.observe(nbytes, took_ms, now)
    return statistics.mean(excess), statistics.mean(added)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transfers", type=int, default=200, help="transfers per case, the first 50 to learn")
    parser.add_argument("--seed", type=int, default=1, help="the draws' seed (default 1)")
    args = parser.parse_args()
    print(f"$ python bench/jittery_links.py --transfers {args.transfers} --seed {args.seed}")
    print(f"10 Mbit/s, {RTT_MS:g} ms round trip; a transfer every 3 s; mean ms over transfers {LEARN + 1} on")
    print(f"{'bytes':>10} {'jitter':>7} {'took beyond':>12} {'added':>8} {'added/took':>11}")
    for nbytes, jitter in CASES:
        excess, added = run_case(nbytes, jitter, transfers=args.transfers, seed=args.seed)
        ratio = f"{added / excess:10.2f}x" if excess > 1.0 else f"{'-':>11}"
        print(f"{nbytes:>10,} {jitter:>6.0%} {excess:>12.1f} {added:>8.1f} {ratio}")


if __name__ == "__main__":
    main()

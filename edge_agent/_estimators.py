"""The planner's estimators: robust recent values, and a link's round trip and bandwidth.

Each is told the time (seconds, any monotonic clock) and never reads a clock
itself, so that the agent and a simulation on virtual time feed them alike.
"""

from __future__ import annotations

import collections
import dataclasses
import math

_FLOOR_MS = 0.05
"""A transfer time below this is within the clocks' noise: no bandwidth is learned from it."""
_CHANGE_AFTER = 2
"""Surprises in a row that mean the link changed."""


class Recent:
    """The median (or another quantile) of the last ``window`` samples: smooth, and robust to outliers.

    Args:
        window: How many samples count.
        max_age_s: Samples older than this no longer count (``None``: they always do).
    """

    __slots__ = ("_max_age_s", "_median", "_samples")

    def __init__(self, window: int = 5, *, max_age_s: float | None = None) -> None:
        self._samples: collections.deque[tuple[float, float]] = collections.deque(maxlen=window)
        self._max_age_s = max_age_s
        self._median: float | None = None

    def add(self, value: float, now_s: float) -> None:
        """One more sample, taken at ``now_s``."""
        self._samples.append((now_s, value))
        self._median = self.quantile(0.5)

    def clear(self) -> None:
        """Forget every sample (after a change the past no longer holds)."""
        self._samples.clear()
        self._median = None

    @property
    def value(self) -> float | None:
        """The median of the samples (whatever their age), or ``None`` before the first."""
        return self._median

    def quantile(self, q: float, now_s: float | None = None) -> float | None:
        """The ``q`` quantile (nearest rank) of the samples young enough at ``now_s``; ``None`` if there are none."""
        if now_s is None or self._max_age_s is None:
            values = [value for _, value in self._samples]
        else:
            values = [value for at, value in self._samples if now_s - at <= self._max_age_s]
        if not values:
            return None
        values.sort()
        return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]

    @property
    def count(self) -> int:
        """Samples held."""
        return len(self._samples)

    def age_s(self, now_s: float) -> float:
        """Seconds since the last sample (``inf`` before the first)."""
        return now_s - self._samples[-1][0] if self._samples else math.inf

    def samples(self) -> list[float]:
        """The samples held, oldest first."""
        return [value for _, value in self._samples]


@dataclasses.dataclass(frozen=True, slots=True)
class _Transfer:
    bits: float
    network_ms: float


class LinkEstimator:
    """A link's round trip (ms) and uplink bandwidth (bit/s), from requests' own sizes and times.

    A request's network time is ``rtt + bits / bandwidth`` (the reply is small
    and counted in the round trip). The round trip is the smallest time seen
    lately, from cheap probes (a message with no payload to speak of) and
    from requests (each an upper bound); the bandwidth is the median over
    recent requests of ``bits / (time - rtt)``, with today's ``rtt``. So one
    size of message and a probe now and then separate the two.

    When two requests in a row miss the prediction by more than ``change``,
    the link has changed: older requests are forgotten, the old round trip
    holds only until the next probe, and :meth:`wants_probe` says so. The
    estimate follows within a few requests.

    Args:
        window: Requests kept for the bandwidth.
        change: Relative error that, twice in a row, means the link changed.
        rtt_forget_s: Seconds after which a round trip sample no longer counts.
        probe_every_s: Seconds after which a new probe is wanted.
    """

    def __init__(
        self, *, window: int = 5, change: float = 0.4, rtt_forget_s: float = 30.0, probe_every_s: float = 10.0
    ) -> None:
        self._transfers: collections.deque[_Transfer] = collections.deque(maxlen=window)
        # (when, ms): probes' round trips, and requests' network times (each an upper bound of it)
        self._probe_rtts: collections.deque[tuple[float, float]] = collections.deque(maxlen=8)
        self._request_rtts: collections.deque[tuple[float, float]] = collections.deque(maxlen=8)
        self._provisional_rtt: float | None = None  # the old link's, until a probe measures the new one
        self._change = change
        self._rtt_forget_s = rtt_forget_s
        self._probe_every_s = probe_every_s
        self._probed_s = -math.inf
        self._surprises = 0
        self._cache_key: tuple[float, int] | None = None
        self._cache: tuple[float | None, float | None] = (None, None)
        self._version = 0

    def wants_probe(self, now_s: float) -> bool:
        """True when a probe's round trip would help: none lately, or the link just changed."""
        return now_s - self._probed_s >= self._probe_every_s

    def rtt_ms(self, now_s: float) -> float | None:
        """Estimated round trip, or ``None`` before anything was measured."""
        return self.estimate(now_s)[0]

    def bandwidth_bit_s(self, now_s: float) -> float | None:
        """Estimated uplink bandwidth, or ``None`` before a request showed it."""
        return self.estimate(now_s)[1]

    def estimate(self, now_s: float) -> tuple[float | None, float | None]:
        """``(rtt_ms, bandwidth_bit_s)`` now, each ``None`` while unknown."""
        key = (now_s, self._version)
        if key != self._cache_key:
            rtt = self._rtt(now_s)
            self._cache = (rtt, None if rtt is None else self._bandwidth(rtt))
            self._cache_key = key
        return self._cache

    def predict_ms(self, nbytes: int, now_s: float) -> float | None:
        """Network time of a request of ``nbytes``: ``None`` while the round trip is unknown."""
        rtt, bandwidth = self.estimate(now_s)
        if rtt is None:
            return None
        return rtt if bandwidth is None else rtt + nbytes * 8 / bandwidth * 1000

    def observe_rtt(self, ms: float, now_s: float) -> None:
        """A probe's round trip."""
        self._probe_rtts.append((now_s, ms))
        self._provisional_rtt = None
        self._probed_s = now_s
        self._version += 1

    def observe(self, nbytes: int, network_ms: float, now_s: float) -> None:
        """A request of ``nbytes`` whose network time (round trip, transfers) was ``network_ms``."""
        predicted = self.predict_ms(nbytes, now_s)
        surprised = predicted is not None and abs(network_ms - predicted) > self._change * max(predicted, 1.0)
        self._surprises = self._surprises + 1 if surprised else 0
        if self._surprises >= _CHANGE_AFTER:  # the link changed: its past no longer holds
            self._forget_link(now_s)
        self._request_rtts.append((now_s, network_ms))
        if nbytes > 0:
            self._transfers.append(_Transfer(bits=nbytes * 8, network_ms=network_ms))
        self._version += 1

    def _forget_link(self, now_s: float) -> None:
        last = self._transfers[-1] if self._transfers else None
        self._provisional_rtt = self._rtt(now_s)
        self._probe_rtts.clear()
        self._request_rtts.clear()
        self._transfers.clear()
        if last is not None:  # the first surprise belongs to the new link too
            self._transfers.append(last)
        self._surprises = 0
        self._probed_s = -math.inf

    def _rtt(self, now_s: float) -> float | None:
        recent = [ms for at, ms in (*self._probe_rtts, *self._request_rtts) if now_s - at <= self._rtt_forget_s]
        if self._provisional_rtt is not None:
            recent.append(self._provisional_rtt)
        return min(recent) if recent else None

    def _bandwidth(self, rtt: float) -> float | None:
        rates = sorted(
            transfer.bits / (transfer.network_ms - rtt) * 1000
            for transfer in self._transfers
            if transfer.network_ms - rtt > _FLOOR_MS
        )
        return rates[len(rates) // 2] if rates else None

"""The device's own queue: what a stream of requests waits for a device that runs one request at a time.

An agent runs its heads on one ONNX Runtime thread, first come, first served
(the simulation's devices too). While requests come one after the other (an
application that awaits each before the next) none ever waits. When they
come on their own clock (a camera, a sensor, many callers) and one arrives
while another still runs, it queues, and a cut that keeps the device busy
longer makes every request of the stream wait longer: a Raspberry Pi 3
running a 250 ms model at 2 requests a second is busy half the time, and
its requests wait 125 ms on average before they start.

:class:`DeviceQueue` watches the requests start and end, and predicts, for
a device time per request, the mean wait the stream would meet if every
request took that long: Kingman's formula for one server,

    wait = service x rho / (1 - rho) x (ca^2 + cs^2) / 2,   rho = service / mean interval

with ``ca^2`` the squared coefficient of variation of the intervals between
requests (1 for Poisson arrivals, 0 for a steady frame rate) and ``cs^2``
taken as 0 (a model's run time varies little): exact for Poisson arrivals,
and 0 for a steady rate the device keeps up with. It predicts no wait at
all until requests overlap (one starts while another is in flight): a
sequential caller's intervals are its own latencies, which say nothing
about a queue it can never form.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

from edge_agent._estimators import RecentShare

if TYPE_CHECKING:
    from collections.abc import Sequence

_WINDOW = 32
"""Intervals between requests, and requests' overlaps, that count."""
_AT_LEAST = 8
"""Intervals it takes to say how often and how bursty requests come."""
_IN_FLIGHT_S = 120.0
"""A request not reported ended after this long is taken for over (a caller that gave up on it)."""
_OVERLAP_MAX_AGE_S = 60.0
"""An overlap older than this no longer shows that requests come on their own clock."""
_RHO_CAP = 0.99
"""The busiest a device is taken to be: beyond it a queue grows without end; the wait stays finite but large."""


class DeviceQueue:
    """The requests' arrivals, and the mean wait a device that runs them one at a time would add.

    Args:
        window: Intervals between requests (and overlaps) that count.
        in_flight_s: Seconds after which a request not reported ended no
            longer counts as in flight.
    """

    __slots__ = ("_in_flight", "_in_flight_s", "_intervals", "_last_start_s", "_overlaps", "_sum", "_sum_sq")

    def __init__(self, window: int = _WINDOW, *, in_flight_s: float = _IN_FLIGHT_S) -> None:
        self._intervals: collections.deque[float] = collections.deque(maxlen=window)
        self._sum = 0.0
        self._sum_sq = 0.0
        self._overlaps = RecentShare(window, max_age_s=_OVERLAP_MAX_AGE_S)
        self._in_flight: collections.deque[float] = collections.deque()  # the start times of requests not ended
        self._in_flight_s = in_flight_s
        self._last_start_s: float | None = None

    def started(self, now_s: float) -> None:
        """A request starts now."""
        in_flight = self._in_flight
        while in_flight and now_s - in_flight[0] > self._in_flight_s:
            in_flight.popleft()
        self._overlaps.add(now_s, outcome=bool(in_flight))
        in_flight.append(now_s)
        if self._last_start_s is not None:
            self._add_interval(now_s - self._last_start_s)
        self._last_start_s = now_s

    def ended(self) -> None:
        """A request ended (answered, fallen back, or run on the device); one with none in flight is ignored."""
        if self._in_flight:
            self._in_flight.popleft()  # which one does not matter: only how many are out

    def overlapping(self, now_s: float) -> bool:
        """Some request of the last minute started while another was in flight: requests come on their own clock."""
        return self._overlaps.any_young(now_s)

    def wait_ms(self, service_ms: Sequence[float], now_s: float) -> list[float] | None:
        """The mean wait (ms) of a stream whose every request keeps the device ``service_ms`` busy (each of them).

        ``None`` while no wait can form or is known: no request overlapped
        another in the last minute, or fewer than 8 intervals are known.
        """
        if len(self._intervals) < _AT_LEAST or not self.overlapping(now_s):
            return None
        count = len(self._intervals)
        mean_s = self._sum / count
        if mean_s <= 0:
            return None
        variance = max(0.0, self._sum_sq / count - mean_s * mean_s)
        burstiness = variance / (mean_s * mean_s)  # ca^2
        rhos = [min(ms / (mean_s * 1000.0), _RHO_CAP) for ms in service_ms]  # min keeps a nan, as np.minimum
        return [ms * rho / (1.0 - rho) * (burstiness / 2.0) for ms, rho in zip(service_ms, rhos, strict=True)]

    def _add_interval(self, interval_s: float) -> None:
        intervals = self._intervals
        if len(intervals) == intervals.maxlen:
            oldest = intervals[0]
            self._sum -= oldest
            self._sum_sq -= oldest * oldest
        intervals.append(interval_s)
        self._sum += interval_s
        self._sum_sq += interval_s * interval_s

"""When an agent's requests begin: a Poisson stream whose rate follows a curve, between a start and a stop.

Sans I/O: :func:`arrivals` gives the times (seconds from the run's start) and
never sleeps; fleet mode waits for each on simulated time, an emulated agent
on the monotonic clock, so both modes make the same requests at the same
times. The stream draws from the agent's own named random stream
(``"<seed>/<agent>/arrivals"``), so adding an agent changes no other's.

The rate is a :class:`RateCurve`: piecewise linear between its points, held
at its first point's rate before it and at its last point's after it; two
points at the same time make a step. Times come by inversion: each gap is an
exponential draw of mean 1 spent against the integral of the rate, so the
stream is Poisson from its start (no request is added or left out at the
start, whatever the rate) and a stretch where the rate is zero has no
requests.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator


@dataclasses.dataclass(frozen=True, slots=True)
class RateCurve:
    """Requests per second over time: ``(t_s, rate_hz)`` points, linear between them.

    Attributes:
        points: At least one point; times from the run's start, not
            decreasing; rates not negative. Before the first point the rate
            is its rate, after the last the last one's.
    """

    points: tuple[tuple[float, float], ...]

    @classmethod
    def constant(cls, rate_hz: float) -> RateCurve:
        """The same rate throughout."""
        return cls(((0.0, rate_hz),))


@dataclasses.dataclass(frozen=True, slots=True)
class _Piece:
    """The rate going linearly from ``start_rate`` at ``start_s`` to ``end_rate`` at ``end_s``.

    The last piece never ends (``end_s`` infinite) and holds its rate:
    :func:`_constant` takes it over.
    """

    start_s: float
    end_s: float
    start_rate: float
    end_rate: float

    def rate_at(self, t_s: float) -> float:
        return self.start_rate + (self.end_rate - self.start_rate) * (t_s - self.start_s) / (self.end_s - self.start_s)

    def requests_from(self, t_s: float) -> float:
        """The expected requests from ``t_s`` to this piece's end (the rate's integral)."""
        return (self.rate_at(t_s) + self.end_rate) / 2 * (self.end_s - t_s)

    def time_for(self, t_s: float, requests: float) -> float:
        """How long after ``t_s`` the expected requests reach ``requests`` (no more than :meth:`requests_from`)."""
        rate = self.rate_at(t_s)
        slope = (self.end_rate - self.start_rate) / (self.end_s - self.start_s)
        # rate * d + slope / 2 * d**2 = requests, in the form that loses nothing when slope is about 0
        return 2 * requests / (rate + math.sqrt(max(0.0, rate * rate + 2 * slope * requests)))


def _pieces(curve: RateCurve) -> Iterator[_Piece]:
    """The curve as linear pieces from 0 s on, the last one open-ended (a step is no piece)."""
    first_t, first_rate = curve.points[0]
    if first_t > 0:
        yield _Piece(0.0, first_t, first_rate, first_rate)
    for (t0, r0), (t1, r1) in itertools.pairwise(curve.points):
        if t1 > t0:
            yield _Piece(t0, t1, r0, r1)
    last_t, last_rate = curve.points[-1]
    yield _Piece(max(last_t, 0.0), math.inf, last_rate, last_rate)


def arrivals(seed: int, agent: str, curve: RateCurve, *, start_s: float, stop_s: float) -> Iterator[float]:
    """The times of ``agent``'s requests from ``start_s`` until before ``stop_s``: Poisson at ``curve``'s rate.

    Args:
        seed: The scenario's seed.
        agent: The agent's name: its stream is ``"<seed>/<agent>/arrivals"``.
        curve: The rate over time.
        start_s: When the agent starts making requests (its group joins).
        stop_s: When it stops (its group leaves, or the run ends).
    """
    draws = random.Random(f"{seed}/{agent}/arrivals")  # noqa: S311 - a simulation's stream, not crypto
    pieces = (piece for piece in _pieces(curve) if piece.end_s > start_s)
    piece = next(pieces)  # the last piece never ends
    t_s, due = start_s, draws.expovariate(1.0)  # requests expected before the next one comes
    while t_s < stop_s:
        if math.isinf(piece.end_s):
            yield from _constant(piece.start_rate, t_s, due, draws, stop_s)
            return
        left = piece.requests_from(t_s)
        if left > 0 and due <= left:
            t_s += piece.time_for(t_s, due)
            if t_s < stop_s:
                yield t_s
            due = draws.expovariate(1.0)
        else:
            due -= left
            t_s, piece = piece.end_s, next(pieces)


def _constant(rate_hz: float, t_s: float, due: float, draws: random.Random, stop_s: float) -> Iterator[float]:
    """The times from ``t_s`` on at a rate that stays ``rate_hz`` (the last piece): each gap is ``due / rate``.

    What the general loop does there, without asking the piece twice a
    request (the rate of most scenarios is one number: this is all their
    arrivals).
    """
    if rate_hz <= 0:
        return  # the rate is zero from here on
    while True:
        t_s += due / rate_hz
        if t_s >= stop_s:
            return
        yield t_s
        due = draws.expovariate(1.0)

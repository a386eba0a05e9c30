"""The planner's estimators: robust recent values, and a link's round trip and bandwidth.

Each is told the time (seconds, any monotonic clock) and never reads a clock
itself, so that the agent and a simulation on virtual time feed them alike.
"""

from __future__ import annotations

import array
import bisect
import collections
import copy
import dataclasses
import itertools
import math
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Sequence

_FASTER_AFTER, _SLOWER_AFTER = 2, 3
"""Surprises in a row, faster or slower, that mean the link changed."""
_MAX_PROBE_BYTES = 1024 * 1024
"""The largest bandwidth ping; one still too short to measure shows at least its bits per ``min_transfer_ms``."""
_NOISE_MS = 2.0
"""What scheduling alone may add to or take from a round trip, besides the link's jitter."""
_REPLY_SHARE = 4
"""A request shows the uplink's bandwidth only if its reply is at most a quarter of what it sent."""
_TAIL_WINDOW = 32
"""Transfers whose time beyond their prediction makes the link's tail: a few stalls' worth on a lossy link."""
_TAIL_MAX_AGE_S = 60.0
"""A transfer older than this no longer counts in the tail."""
_MIN_RTO_MS = 200.0
"""TCP's least retransmission timeout (Linux's): what one lost segment makes a transfer wait at the least."""
_OUTAGE_AFTER = 2.0
"""A transfer slower than predicted by the link's noise and more than this many retransmission waits met an
outage, not a loss."""
_OUTAGE_WITHIN_S = 10.0
"""A link that seemed slower, then within this long faster again, was out: what showed it (and what came
meanwhile) was an outage; else it was slower, and none of that was."""
_OVERHEAD_WINDOW = 16
"""Requests whose residuals make the overhead: it seldom changes (the hub's I/O), a lossy link's stalls often come."""
_USUAL_AFTER = 8
"""Transfers it takes to say how much slower than predicted one in four of them is."""
_UNDO_AFTER, _UNDO_WITHIN = 2, 4
"""Transfers that, among the first few after a slower change, fit the link as it was before: the change is undone."""


class Recent:
    """The median (or another quantile) of the last ``window`` samples: smooth, and robust to outliers.

    The samples are also kept sorted, so that the median, read after every
    sample on a planner's path, costs a look-up rather than a sort.

    Args:
        window: How many samples count.
        max_age_s: Samples older than this no longer count (``None``: they always do).
    """

    __slots__ = ("_max_age_s", "_samples", "_sorted")

    def __init__(self, window: int = 5, *, max_age_s: float | None = None) -> None:
        self._samples: collections.deque[tuple[float, float]] = collections.deque(maxlen=window)
        self._sorted: list[float] = []  # the samples' values, in order
        self._max_age_s = max_age_s

    def add(self, value: float, now_s: float) -> None:
        """One more sample, taken at ``now_s`` (a NaN says nothing and is not kept)."""
        if value != value:  # noqa: PLR0124 - a NaN: math.isnan's test, without a call
            return
        samples, ordered = self._samples, self._sorted
        if len(samples) == samples.maxlen:
            del ordered[bisect.bisect_left(ordered, samples[0][1])]
        samples.append((now_s, value))
        bisect.insort(ordered, value)

    def clear(self) -> None:
        """Forget every sample (after a change the past no longer holds)."""
        self._samples.clear()
        self._sorted.clear()

    @property
    def value(self) -> float | None:
        """The median of the samples (whatever their age), or ``None`` before the first."""
        values = self._sorted
        return values[(len(values) - 1) // 2] if values else None  # the nearest rank of 0.5

    def quantile(self, q: float, now_s: float | None = None) -> float | None:
        """The ``q`` quantile (nearest rank) of the samples young enough at ``now_s``; ``None`` if there are none."""
        return _nearest_rank(self.young(now_s), q)

    def young(self, now_s: float | None) -> list[float]:
        """The values of the samples young enough at ``now_s`` (all of them with ``None``), sorted."""
        if now_s is None or self._max_age_s is None or not self._samples:
            return self._sorted
        if now_s - self._samples[0][0] <= self._max_age_s:  # the oldest is young: all are
            return self._sorted
        return sorted(value for at, value in self._samples if now_s - at <= self._max_age_s)

    def timed(self, now_s: float) -> Sequence[tuple[float, float]]:
        """The samples young enough at ``now_s`` as ``(when, value)``, oldest first (not to be changed).

        The samples must have come in time order: the young ones are then the
        latest, counted from the end, so that old samples are never read
        (a fleet's planners ask while their memory is cold).
        """
        samples, max_age_s = self._samples, self._max_age_s
        if max_age_s is None or not samples or now_s - samples[0][0] <= max_age_s:
            return samples  # all young: no copy
        first = len(samples)
        while first and now_s - samples[first - 1][0] <= max_age_s:
            first -= 1
        return list(itertools.islice(samples, first, None))

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


def merged_quantile(q: float, now_s: float, window: int, *recents: Recent) -> float | None:
    """The ``q`` quantile (nearest rank) of the last ``window`` samples of several :class:`Recent` taken together.

    As one window fed by them all would hold them: the ``window`` latest
    samples by time, those young enough at ``now_s`` (by each one's own
    ``max_age_s``). Samples must have come in time order within each.
    """
    held = [recent for recent in recents if recent.count]
    if len(held) == 1:
        return held[0].quantile(q, now_s)  # the others empty: its own window, its sorted values
    return _nearest_rank(sorted(_latest(now_s, window, held)), q)


def merged_mean(now_s: float, window: int, *recents: Recent) -> float | None:
    """The mean of the same samples as :func:`merged_quantile` takes; ``None`` with none."""
    values = _latest(now_s, window, recents)
    return math.fsum(values) / len(values) if values else None  # statistics.fmean's sum, without its checks


def _latest(now_s: float, window: int, recents: Sequence[Recent]) -> list[float]:
    """The values of the ``window`` latest samples of ``recents`` young enough at ``now_s`` (in no set order)."""
    merged: list[tuple[float, float]] = []
    held = 0  # recents with samples, young or not
    for recent in recents:
        if recent.count:
            held += 1
            merged += recent.timed(now_s)
    if held > 1 and len(merged) > window:  # which are the latest (one alone is in time order)
        merged.sort()
    return [value for _, value in merged[-window:]]


def _nearest_rank(values: list[float], q: float) -> float | None:
    """The ``q`` quantile of sorted ``values`` by nearest rank, ``None`` of none."""
    if not values:
        return None
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


class _Transfer(NamedTuple):  # NamedTuples: made on every request, at a third of a frozen dataclass's cost
    bits: float
    ms: float  # the whole round trip
    request: bool  # a request (with its overhead), or a ping


@dataclasses.dataclass(frozen=True, slots=True)
class _Surprise:
    bits: float
    ms: float
    request: bool
    predicted: float
    shows_uplink: bool

    @property
    def slower(self) -> bool:
        return self.ms > self.predicted


class _Sent(NamedTuple):
    """A transfer (a request, or a bandwidth ping) as :meth:`LinkEstimator._observe` took it."""

    bits: float
    ms: float
    now_s: float
    request: bool
    reply_bits: float

    @property
    def shows_uplink(self) -> bool:
        """Whether it shows the uplink: its reply is small next to what it sent."""
        return _shows_uplink(self.bits, self.reply_bits)


def _shows_uplink(bits: float, reply_bits: float) -> bool:
    """Whether a transfer of ``bits`` shows the uplink: its reply is small next to what it sent."""
    return reply_bits * _REPLY_SHARE <= bits


@dataclasses.dataclass(frozen=True, slots=True)
class _Ping:
    """A round-trip ping as :meth:`LinkEstimator.observe_rtt` took it."""

    ms: float
    now_s: float


_Event = _Sent | _Ping


@dataclasses.dataclass(slots=True)
class _Undo:
    """A slower change that may yet be undone: the link as it was before it, and what came since."""

    before: LinkEstimator
    since: list[_Event] = dataclasses.field(default_factory=list)  # to be learnt again, should it be undone
    transfers: int = 0  # transfers since the change
    fits: int = 0  # of those, the ones that fit the link before it


_STALLED = _Surprise(bits=0.0, ms=0.0, request=False, predicted=0.0, shows_uplink=False)
"""A transfer slower than the link's noise allows, by no more than its usual stall: a stall, not a change.
It counts in the tail and nowhere else (a stalled transfer's rate would read as a slower link)."""


def _loss_wait_ms(rtt_ms: float | None) -> float:
    """What a lost segment makes a transfer wait: TCP's least retransmission timeout, or two round trips.

    Loss makes a transfer wait out a retransmission now and then, the more
    often the more packets it has: a stall, counted per byte. A transfer
    held beyond the link's noise and two such waits met an outage instead
    (the link carrying nothing for a while: a handover, a tunnel), which
    holds a small transfer as long as a large one. Counted per byte, one
    1 s outage priced the camera's image out for a minute (it stalled one
    request, a ping and the next request of a 150 KB image, made the image
    1.2x the cost of a 10 KB cut, and the planner sent the cut, whose few
    bytes left the outage ever larger per byte, for 14 s): :class:`_Outages`
    counts outages by the time the link was out.
    """
    return max(_MIN_RTO_MS, 2 * (rtt_ms or 0.0))


def _typical_overhead_ms(residuals: Sequence[float]) -> float:
    """The overhead requests' ``residuals`` show: their lower quartile, from the second on (0 before).

    Jitter and a loss's wait only ever add to a residual (they are the
    tail's); and one request that waited out a loss, taken alone, would be
    every request's overhead until more came, which none do once the device
    runs everything.
    """
    if len(residuals) < 2:  # noqa: PLR2004 - a second one confirms it
        return 0.0
    return sorted(residuals)[(len(residuals) - 1) // 4]


class RecentShare:
    """The share of the last ``window`` outcomes that were true (a refusal rate, say).

    Args:
        window: How many outcomes count.
        max_age_s: Outcomes older than this no longer count.
    """

    __slots__ = ("_max_age_s", "_outcomes", "_true_at")

    def __init__(self, window: int, *, max_age_s: float) -> None:
        self._outcomes: collections.deque[tuple[float, bool]] = collections.deque(maxlen=window)
        self._max_age_s = max_age_s
        # when the true outcomes in the window came, oldest first: none, and the share is 0 without a look (the
        # usual case); a few, and whether one is young is a look at those alone
        self._true_at: collections.deque[float] = collections.deque()

    def add(self, now_s: float, *, outcome: bool) -> None:
        """One more outcome, at ``now_s``."""
        if len(self._outcomes) == self._outcomes.maxlen and self._outcomes[0][1]:
            self._true_at.popleft()  # the oldest outcome leaves the window: the oldest true one
        self._outcomes.append((now_s, outcome))
        if outcome:
            self._true_at.append(now_s)

    def share(self, now_s: float) -> float:
        """The share of true outcomes among those young enough (0 with none)."""
        if not self._true_at:
            return 0.0
        young = [outcome for at_s, outcome in self._outcomes if now_s - at_s <= self._max_age_s]
        return sum(young) / len(young) if young else 0.0

    def any_young(self, now_s: float) -> bool:
        """Whether a true outcome is young enough: ``share(now_s) > 0``, looking at the true outcomes only."""
        return any(now_s - at_s <= self._max_age_s for at_s in self._true_at)


class _Estimate(NamedTuple):
    """A link's estimates as of the samples' ``version``, good from ``from_s`` while ``oldest_s`` is young.

    Its round trip (and ``below``, ``above``) as of the round trips' ``rtt_version``.
    """

    version: int
    rtt_version: int
    from_s: float
    oldest_s: float  # the oldest round trip counted as young (inf with none): they count while it does
    rtt: float | None  # the median (low) of the round trips counted, the provisional one with them
    bandwidth: float | None
    below: float  # how far the fastest round trip counted is below rtt (the provisional one left out)
    above: float  # how far the slowest is above it


class _Excesses:
    """Recent transfers' time beyond their prediction: their stalls' mean per byte (kept as running sums), quantiles.

    A transfer's excess within the link's noise and two retransmission waits
    (:func:`_loss_wait_ms`: a loss, or two) is a stall, which loss makes more
    likely the more packets a transfer has: counted per byte
    (:meth:`per_byte`). A transfer held longer met an outage, the link
    carrying nothing for a while, which holds a small transfer as long as a
    large one: none of its excess is a stall, nor that of any transfer that
    ended within one retransmission wait of it, before or after (the outage
    released them together, those that began late in it with less to wait). :meth:`add` says which it was, for
    :class:`_Outages`; the quantiles count both kinds.

    Transfers come in time order; the last ``window`` count, those within
    ``max_age_s`` of the time asked about: so the old ones, if any, come
    first. Their times, excesses, held times and sizes are kept in arrays of
    doubles side by side, so that the young ones' sums are a C loop over a
    slice of contiguous memory (a fleet's planners ask while it is cold: as
    floats of their own, the 32 transfers' values were 64 objects to fetch).
    Sizes are whole bits, exact as doubles.
    """

    __slots__ = ("_at", "_bits", "_bits_sum", "_held", "_max_age_s", "_ms", "_ms_sum", "_released_s", "_window")

    def __init__(self, window: int, max_age_s: float) -> None:
        self._at = array.array("d")  # when each transfer came
        self._ms = array.array("d")  # its excess, a stall's (0 if it met an outage)
        self._held = array.array("d")  # its excess, an outage's (0 if it did not)
        self._bits = array.array("d")  # its size
        self._window = window
        self._max_age_s = max_age_s
        self._ms_sum = 0.0
        self._bits_sum = 0.0
        self._released_s = -math.inf  # when the last transfer an outage held ended

    def add(self, now_s: float, ms: float, bits: float, stall_ms: float, noise_ms: float) -> bool:
        """A transfer of ``bits`` took ``ms`` beyond its prediction (negative: less).

        Args:
            now_s: When it ended.
            ms: Its excess.
            bits: Its size.
            stall_ms: A loss's wait.
            noise_ms: How far beyond its prediction the link's noise may take it:
                without it, a 4 s transfer 20 % slow was held 800 ms, priced
                as an outage at four times what such transfers cost.

        Returns:
            Whether an outage held it.
        """
        stall_s = stall_ms / 1000.0
        if ms > noise_ms + _OUTAGE_AFTER * stall_ms:  # an outage: those that just ended were held by it too
            self._released_s = now_s
            self._count_as_held(since_s=now_s - stall_s)
        held_ms = 0.0
        outage = now_s - self._released_s <= stall_s
        if outage:
            ms, held_ms = 0.0, max(ms, 0.0)
        at = self._at
        while at and now_s - at[0] > self._max_age_s:
            self._drop_oldest()
        if len(at) == self._window:
            self._drop_oldest()
        at.append(now_s)
        self._ms.append(ms)
        self._held.append(held_ms)
        self._bits.append(bits)
        self._ms_sum += ms
        self._bits_sum += bits
        return outage

    def drop_latest(self, count: int) -> None:
        """Forget the ``count`` latest transfers, and any outage the latest of them showed."""
        for _ in range(min(count, len(self._at))):
            if self._at.pop() >= self._released_s:  # what follows is no longer released with it
                self._released_s = -math.inf
            self._ms_sum -= self._ms.pop()
            self._held.pop()
            self._bits_sum -= self._bits.pop()

    def clear(self) -> None:
        """Forget every transfer."""
        del self._at[:], self._ms[:], self._held[:], self._bits[:]
        self._ms_sum = self._bits_sum = 0.0
        self._released_s = -math.inf

    def _count_as_held(self, since_s: float) -> None:
        """The stalls of the transfers that ended at ``since_s`` or later were an outage's: no stalls."""
        index = len(self._at) - 1
        while index >= 0 and self._at[index] >= since_s:
            ms = self._ms[index]
            if ms > 0:
                self._ms[index], self._held[index] = 0.0, self._held[index] + ms
                self._ms_sum -= ms
            index -= 1

    def per_byte(self, now_s: float) -> float:
        """The young transfers' excess, summed, per byte they sent (at least 0; 0 with none).

        A question changes nothing: asked at any time, later or earlier, it
        counts the transfers young then.
        """
        first = self._first_young(now_s)
        if first == 0 and self._at:  # all young: the running sums
            ms, bits = self._ms_sum, self._bits_sum
        else:  # summed afresh, oldest first, as the running sums are not
            ms, bits = sum(self._ms[first:]), sum(self._bits[first:])
        return max(0.0, ms / bits * 8) if bits > 0 else 0.0

    def quantile(self, q: float, now_s: float, *, at_least: int, most_ms: float) -> float:
        """The ``q`` quantile of the young transfers' excess, each at most ``most_ms`` (0 with fewer than ``at_least``).

        A stall's excess or an outage's alike (one of them is 0).
        """
        first = self._first_young(now_s)
        ordered = sorted(min(ms + held, most_ms) for ms, held in zip(self._ms[first:], self._held[first:], strict=True))
        if len(ordered) < at_least:
            return 0.0
        return ordered[int(len(ordered) * q)]

    def interval_s(self, now_s: float) -> float:
        """The mean time between the young transfers (0 with fewer than two)."""
        first = self._first_young(now_s)
        count = len(self._at) - first
        return (self._at[-1] - self._at[first]) / (count - 1) if count > 1 else 0.0

    def _first_young(self, now_s: float) -> int:
        """The index of the first transfer young at ``now_s`` (the count of them all if none is): a binary search."""
        max_age_s = self._max_age_s
        # in time order each transfer's youth, False (old) then True, is sorted: the first True
        return bisect.bisect_left(self._at, x=True, key=lambda at: now_s - at <= max_age_s)

    def _drop_oldest(self) -> None:
        del self._at[0]
        self._ms_sum -= self._ms.pop(0)
        del self._held[0]
        self._bits_sum -= self._bits.pop(0)
        if not self._at:
            self._ms_sum = self._bits_sum = 0.0  # no drift left behind


class _Outages:
    """The link's recent outages: how long each held what was in flight, and what that costs a transfer on average.

    An outage is known from the transfers it released (:class:`_Excesses`
    says which): those released within one retransmission wait of each
    other are one outage, as long as the longest hold among them (the
    transfer begun earliest in it) and half the mean interval between
    transfers more (that one began, on average, so long after the outage
    did: at a request a second, a 1 s outage held the first one 0.6 s on
    average, which priced it at about a third of its cost). Over the last
    ``max_age_s`` (``W``), outages of ``D_i`` ms cost a transfer begun at a
    random time ``sum(D_i^2) / 2W`` on average (the chance of beginning in
    one, times half of it), and one in flight for ``T`` ms
    ``T x sum(D_i) / W`` more (the chance that one begins meanwhile, times
    its length): the time the link was out, not how many transfers saw it,
    so pings sent at once after a surprise, more often while the link
    misbehaves, weigh nothing extra.
    """

    __slots__ = ("_max_age_s", "_releases")

    def __init__(self, max_age_s: float) -> None:
        self._releases: list[_Release] = []  # in time order
        self._max_age_s = max_age_s

    def add(self, release: _Release) -> None:
        """An outage released a transfer (the latest so far)."""
        self._releases.append(release)
        if release.end_s - self._releases[0].end_s > self._max_age_s:
            self._releases = self._young(self._releases, release.end_s)

    def drop_since(self, since_s: float) -> list[_Release]:
        """Forget the releases at ``since_s`` or later, and return them."""
        kept = [release for release in self._releases if release.end_s < since_s]
        dropped = self._releases[len(kept) :]
        self._releases = kept
        return dropped

    def restore(self, releases: list[_Release]) -> None:
        """Count again releases :meth:`drop_since` returned."""
        self._releases = sorted([*self._releases, *releases])

    def cost(self, now_s: float) -> OutageCost:
        """What the outages of the last ``max_age_s`` cost a transfer begun now (none with none lately)."""
        if not self._releases:
            return _NO_OUTAGES
        lengths = self._lengths_ms(now_s)
        return OutageCost(
            held_ms=sum(ms * ms for ms in lengths) / (2000.0 * self._max_age_s),
            share=sum(lengths) / (1000.0 * self._max_age_s),
        )

    def _lengths_ms(self, now_s: float) -> list[float]:
        """Each young outage's length: its releases' longest hold."""
        lengths: list[float] = []
        last_s = -math.inf
        for release in self._young(self._releases, now_s):
            if lengths and release.end_s - last_s <= release.stall_s:  # released with the one before: the same
                lengths[-1] = max(lengths[-1], release.held_ms)
            else:
                lengths.append(release.held_ms)
            last_s = release.end_s
        return lengths

    def _young(self, releases: list[_Release], now_s: float) -> list[_Release]:
        return [release for release in releases if now_s - release.end_s <= self._max_age_s]


class OutageCost(NamedTuple):
    """What a link's recent outages cost a transfer on average.

    Attributes:
        held_ms: How long they hold one begun at a random time, whatever its size.
        share: The share of the time they took: what one in flight loses of its time on the wire.
    """

    held_ms: float
    share: float


_NO_OUTAGES = OutageCost(held_ms=0.0, share=0.0)


class _Release(NamedTuple):
    """A transfer an outage held: when it ended, for how long beyond its prediction, and a loss's wait then."""

    end_s: float
    held_ms: float
    stall_s: float


class LinkEstimator:
    """A link's round trip, per-request overhead and uplink bandwidth, from probes and requests.

    A request's network time is modelled as ``rtt + overhead + bits / bandwidth``:

    - ``rtt``: the median round trip of recent pings (no payload to speak
      of): what a request meets on a jittery link, not its luckiest case;
    - ``bandwidth``: the upper quartile (the fourth of the last five) of
      recent ``bits / (time - rtt)`` of padded pings, and of requests whose
      transfer took long enough to measure (at least ``min_transfer_ms``);
      pings are sized to take that long. Loss and jitter only ever slow a
      transfer down, so the faster ones show the link; what the others
      lose is the tail, below (a transfer slower by the link's usual stall
      is no bandwidth sample at all: where most large transfers stall,
      their rate would be the upper quartile);
    - ``overhead``: what a request's round trip costs beyond a ping's of its
      size (the hub decoding it, queueing it to a worker thread, encoding the
      reply): the lower quartile of recent requests' residuals, from the
      second (jitter and a loss's wait only ever add to one: those are the
      tail's).

    That predicts a transfer that meets no loss. A lossy link's
    retransmissions make some transfers far slower (a lost packet waits for
    a timeout of 200 ms or more), and a stream of requests pays the mean:
    :meth:`tail_ms_per_byte` is what the last transfers took beyond their
    prediction, on average, per byte sent (each packet is a chance of loss),
    for the planner to add, of the transfers that waited no more than the
    link's noise and two retransmission timeouts beyond it. Held longer, a
    transfer met an outage, the link carrying nothing for a while:
    :meth:`outage_cost` is what the last minute's outages cost a transfer on
    average (an outage holds a small transfer as long as a large one).

    When transfers in a row (requests or pings) miss their prediction the
    same way by more than the link's noise allows (``change`` of the
    predicted time beyond the round trip, plus how far recent pings spread
    on that side of it, plus, for a slower one, what one transfer in four
    lately took beyond its prediction: a lossy link's usual stall), the
    link has changed: two faster, or three slower (two stalls in a row are
    common on a lossy link). Bandwidth samples are then forgotten (the surprising transfers
    seed the new bandwidth if they were long enough), the old round trip
    holds until the next ping, or two if the first is far longer (on a
    lossy link one ping may stall), and :meth:`wants_probe` says so; the
    tail is kept after a slower change (it may have been stalls after all),
    forgotten after a faster one. And if the first transfers after a slower
    change fit the link as it was before (within its noise, two of the first
    four), the change is undone: the estimates go back to what they were, the
    surprising transfers stay in the tail as the stalls they were, and what
    came since is learnt again. Without that, the clean transfers after
    three stalls in a row (now and then, on a lossy link) made a faster
    change, which forgot every stall seen.

    Args:
        window: Samples kept for the bandwidth.
        change: Relative error of the transfer (and overhead) that, two
            (faster) or three (slower) times in a row, means the link changed.
        rtt_forget_s: Seconds after which a round trip sample no longer
            counts (unless it is the last one: a stale round trip beats none).
        probe_every_s: Seconds after which a new round-trip ping is wanted.
        min_transfer_ms: A transfer shorter than this shows the bandwidth too
            poorly (clock and scheduling noise) to count.

    Raises:
        ValueError: ``min_transfer_ms`` is not above 0.
    """

    # Slots: read on every decision, request and ping; a fleet holds thousands of estimators, their memory cold.
    __slots__ = (
        "_beyond",
        "_cache",
        "_change",
        "_doubted",
        "_min_transfer_ms",
        "_outages",
        "_overhead_ms",
        "_overheads",
        "_probe_every_s",
        "_probed_s",
        "_provisional_rtt",
        "_rtt_forget_s",
        "_rtt_in_doubt",
        "_rtt_version",
        "_rtts",
        "_short_probe_bytes",
        "_surprised_s",
        "_surprises",
        "_transfers",
        "_undo",
        "_version",
    )

    def __init__(
        self,
        *,
        window: int = 5,
        change: float = 0.4,
        rtt_forget_s: float = 30.0,
        probe_every_s: float = 10.0,
        min_transfer_ms: float = 4.0,
    ) -> None:
        if not min_transfer_ms > 0:  # a rate is bits over a transfer's time: never over none
            msg = f"min_transfer_ms must be more than 0, not {min_transfer_ms}"
            raise ValueError(msg)
        self._transfers: collections.deque[_Transfer] = collections.deque(maxlen=window)
        self._rtts: collections.deque[tuple[float, float]] = collections.deque(maxlen=8)  # (when, ms) of pings
        self._overheads: collections.deque[float] = collections.deque(maxlen=_OVERHEAD_WINDOW)
        self._overhead_ms = 0.0  # _typical_overhead_ms(_overheads), kept in step
        self._beyond = _Excesses(_TAIL_WINDOW, _TAIL_MAX_AGE_S)  # the tail, and the usual stall
        self._outages = _Outages(_TAIL_MAX_AGE_S)
        self._doubted: tuple[float, list[_Release]] | None = None  # since a slower change: outages, or the link?
        self._provisional_rtt: float | None = None  # the old link's, until pings measure the new one
        self._rtt_in_doubt = False  # the new link's first ping was far longer: a loss's wait, or the link?
        self._change = change
        self._rtt_forget_s = rtt_forget_s
        self._probe_every_s = probe_every_s
        self._min_transfer_ms = min_transfer_ms
        self._probed_s = -math.inf
        self._surprises: list[_Surprise] = []  # transfers in a row off their prediction, the same way
        self._surprised_s = -math.inf  # when the first of them came
        self._short_probe_bytes = 0  # the last bandwidth ping, if it was too short to count
        self._version = 0  # bumped by every change to the samples
        self._rtt_version = 0  # bumped by every change to the round trips (_rtts, _provisional_rtt) too
        self._undo: _Undo | None = None  # the last slower change, while it may be undone
        self._cache = _Estimate(
            version=-1,
            rtt_version=-1,
            from_s=math.inf,
            oldest_s=math.inf,
            rtt=None,
            bandwidth=None,
            below=0.0,
            above=0.0,
        )

    def wants_probe(self, now_s: float) -> bool:
        """True when a round-trip ping would help: none lately, or the link just changed."""
        return now_s - self._probed_s >= self._probe_every_s

    @property
    def wants_rtt(self) -> bool:
        """True when the round trip is in doubt (the link changed, or a transfer beat it): ping it first."""
        in_doubt = self._probed_s == -math.inf and bool(self._rtts or self._provisional_rtt is not None)
        return in_doubt or self._rtt_in_doubt

    def rtt_ms(self, now_s: float) -> float | None:
        """Estimated round trip, or ``None`` before a ping was answered."""
        return self.estimate(now_s)[0]

    def bandwidth_bit_s(self, now_s: float) -> float | None:
        """Estimated uplink bandwidth, or ``None`` before anything showed it."""
        return self.estimate(now_s)[1]

    @property
    def overhead_ms(self) -> float:
        """What a request's round trip costs beyond a ping's of its size (0 until measured)."""
        return self._overhead_ms

    def tail_ms_per_byte(self, now_s: float) -> float:
        """What a transfer takes on average beyond :meth:`predict_ms`, per byte it sends (0 with no excess seen).

        The recent transfers' (requests' and bandwidth pings') time beyond
        their prediction, summed, per byte they sent: times a transfer's
        size, their mean excess where they were all of that size. At least
        0: a link whose transfers are as often faster as slower has no tail.
        """
        return self._beyond.per_byte(now_s)

    def outage_cost(self, now_s: float) -> OutageCost:
        """What the last minute's outages cost a transfer begun now on average (none with none lately).

        A link that carries nothing for a while (a handover, a tunnel) holds
        whatever is in flight until it carries again, a small transfer as
        long as a large one (:class:`_Outages`); a transfer that takes time
        loses the outages' share of it too.
        """
        return self._outages.cost(now_s)

    def estimate(self, now_s: float) -> tuple[float | None, float | None]:
        """``(rtt_ms, bandwidth_bit_s)`` now, each ``None`` while unknown."""
        cache = self._current(now_s)
        return cache.rtt, cache.bandwidth

    def _current(self, now_s: float) -> _Estimate:
        """The estimates at ``now_s``, worked out again only when a sample came or a round trip aged out.

        Between samples the estimates change only when a round trip sample
        turns older than ``rtt_forget_s``: they hold until the oldest counted
        one does. A request's sample changes the bandwidth alone (the round
        trip comes from pings), so only that is worked out again then.
        """
        cache = self._cache
        young_as_counted = cache.from_s <= now_s and (
            math.isinf(cache.oldest_s) or now_s - cache.oldest_s <= self._rtt_forget_s
        )
        if young_as_counted and cache.version == self._version:
            return cache
        if young_as_counted and cache.rtt_version == self._rtt_version:  # the same round trips, young alike
            bandwidth = self._bandwidth(cache.rtt)  # built whole: NamedTuple._replace costs 2.5 times as much
            rtt, below, above = cache.rtt, cache.below, cache.above
            self._cache = _Estimate(
                self._version, cache.rtt_version, cache.from_s, cache.oldest_s, rtt, bandwidth, below, above
            )
            return self._cache
        forget_s = self._rtt_forget_s
        young = [(at, ms) for at, ms in self._rtts if now_s - at <= forget_s]
        measured = [ms for _, ms in young] or [ms for _, ms in self._rtts][-1:]  # stale beats none
        counted = measured if self._provisional_rtt is None else [*measured, self._provisional_rtt]
        counted.sort()
        rtt = counted[(len(counted) - 1) // 2] if counted else None  # the low median
        below = above = 0.0  # no ping since a change: the provisional round trip alone has no spread
        if rtt is not None and measured:
            below, above = max(0.0, rtt - min(measured)), max(0.0, max(measured) - rtt)
        oldest_s = min([at for at, _ in young]) if young else math.inf
        bandwidth = self._bandwidth(rtt)
        self._cache = _Estimate(self._version, self._rtt_version, now_s, oldest_s, rtt, bandwidth, below, above)
        return self._cache

    def _bandwidth(self, rtt: float | None) -> float | None:
        """The upper quartile of the transfers' rates with the round trip ``rtt`` (``None`` with none)."""
        rates = [] if rtt is None else self._rates(rtt)
        rates.sort()
        return rates[len(rates) * 3 // 4] if rates else None

    def _rates(self, rtt: float) -> list[float]:
        """Bits per second of each transfer long enough to show it, with today's round trip and overhead."""
        overhead, at_least = self._overhead_ms, self._min_transfer_ms
        return [
            bits / span * 1000
            for bits, ms, request in self._transfers
            if (span := ms - rtt - (overhead if request else 0.0)) >= at_least
        ]

    def predict_ms(self, nbytes: int, now_s: float, *, request: bool = True) -> float | None:
        """Network time of a request (or a ping) of ``nbytes``: ``None`` while the link is unknown."""
        return self._predict_ms(self._current(now_s), nbytes, request=request)

    def _predict_ms(self, estimate: _Estimate, nbytes: int, *, request: bool) -> float | None:
        """:meth:`predict_ms` with the estimates at hand."""
        rtt, bandwidth = estimate.rtt, estimate.bandwidth
        if rtt is None or bandwidth is None:
            return None
        return rtt + (self._overhead_ms if request else 0.0) + nbytes * 8 / bandwidth * 1000

    def probe_bytes(self, target_ms: float, now_s: float) -> int:
        """The padding of a bandwidth ping: about ``target_ms`` of transfer (at least ``min_transfer_ms``).

        While the bandwidth is unknown, or the last ping was too short to
        count, the size grows fourfold from 16 KiB.
        """
        bandwidth = self.bandwidth_bit_s(now_s)
        if self._short_probe_bytes:
            return min(self._short_probe_bytes * 4, _MAX_PROBE_BYTES)
        if bandwidth is None:
            return 16 * 1024
        return int(bandwidth * max(target_ms, self._min_transfer_ms * 2) / 8000)

    def observe_rtt(self, ms: float, now_s: float) -> None:
        """A round-trip ping (no payload).

        The first ping after a change replaces the old round trip, unless it
        is far longer (by ``change``, and 2 ms): that one may have waited out
        a loss, so the old round trip holds until a second ping.
        """
        if self._undo is not None:
            self._undo.since.append(_Ping(ms, now_s))
            if len(self._undo.since) > 2 * _UNDO_WITHIN:  # pings alone, while the device runs everything
                self._undo = None
        self._rtts.append((now_s, ms))
        provisional = self._provisional_rtt
        if provisional is not None and not self._rtt_in_doubt and ms > provisional * (1 + self._change) + _NOISE_MS:
            self._rtt_in_doubt = True  # the median of it and the old one is the old one, till the next ping
        else:
            self._provisional_rtt, self._rtt_in_doubt = None, False
        self._probed_s = now_s
        self._rtts_changed()

    @property
    def unsettled(self) -> bool:
        """True while the last request or ping missed its prediction: one more would show a change."""
        return bool(self._surprises)

    def observe_probe(self, nbytes: int, ms: float, now_s: float) -> None:
        """A bandwidth ping: ``nbytes`` of padding there, a small answer back, in ``ms``."""
        self._observe(nbytes * 8, ms, now_s, request=False)

    def observe(self, nbytes: int, network_ms: float, now_s: float, *, reply_bytes: int = 0) -> None:
        """A request of ``nbytes`` whose network time (round trip, transfers, hub I/O) was ``network_ms``.

        ``reply_bytes``: what the answer brought back. A request whose reply
        is large next to what it sent (more than a quarter) does not show the
        uplink: the reply's time down is in ``network_ms`` too (a detector's
        raw outputs, 110 KB). It shows the overhead every request pays
        instead, as a request too short to time does.
        """
        self._observe(nbytes * 8, network_ms, now_s, request=True, reply_bits=reply_bytes * 8)

    def _observe(self, bits: float, ms: float, now_s: float, *, request: bool, reply_bits: float = 0.0) -> None:
        if self._undo is not None and self._undoes_change(self._undo, _Sent(bits, ms, now_s, request, reply_bits)):
            return
        shows_uplink = _shows_uplink(bits, reply_bits)
        estimate = self._current(now_s)  # it holds till _learn: the tail and the surprises are no part of it
        predicted = self._predict_ms(estimate, int(bits // 8), request=request)
        surprise = None
        if predicted is not None:
            surprise = self._surprise(estimate, bits, ms, predicted, now_s, request=request, shows_uplink=shows_uplink)
            if bits > 0:
                excess, stall_ms = ms - predicted, _loss_wait_ms(estimate.rtt)
                noise_ms = self._noise_ms(estimate, predicted) + estimate.above  # as far as a surprise's, slower
                if self._beyond.add(now_s, excess, bits, stall_ms, noise_ms):
                    # it began, on average, half an interval between transfers after the outage did
                    lead_ms = min(500.0 * self._beyond.interval_s(now_s), excess)
                    self._outage_released(_Release(now_s, max(excess + lead_ms, 0.0), stall_ms / 1000.0))
            if surprise is _STALLED:  # in the tail now; its rate is the stall's, not the link's
                self._surprises.clear()
                return
        if surprise and self._surprises and self._surprises[-1].slower != surprise.slower:
            self._surprises.clear()  # one slower, one faster: noise, not a change
        if surprise:
            if not self._surprises:
                self._surprised_s = now_s
            self._surprises.append(surprise)
            if len(self._surprises) >= (_SLOWER_AFTER if surprise.slower else _FASTER_AFTER):  # the link changed
                self._forget_link(now_s)
                return
        else:
            self._surprises.clear()
        self._learn(estimate, bits, ms, now_s, request=request, shows_uplink=shows_uplink)

    def _surprise(
        self,
        estimate: _Estimate,
        bits: float,
        ms: float,
        predicted: float,
        now_s: float,
        *,
        request: bool,
        shows_uplink: bool,
    ) -> _Surprise | None:
        """The transfer, if it missed its ``predicted`` time by more than the link's noise allows.

        Allowed: ``change`` of the predicted time beyond the round trip (the
        transfer, and a request's overhead), plus 2 ms of scheduling noise,
        plus how far recent pings spread on the side it missed by: faster,
        the fastest ping's lead on the round trip; slower, the slowest ping's
        lag (one ping that waited out a loss must not make a faster link
        pass for noise), and the usual stall (:meth:`_usual_excess_ms`): a
        transfer slower than the noise allows but within the usual stall is
        :data:`_STALLED`, no surprise. A small ping that comes back far too
        fast shows a faster link, though too short to measure it.
        """
        allowed = self._noise_ms(estimate, predicted)
        missed_by = ms - predicted
        if -(allowed + estimate.below) <= missed_by <= allowed + estimate.above:
            return None
        if 0 < missed_by <= allowed + estimate.above + self._usual_excess_ms(now_s):  # as stalls often make it
            return _STALLED
        return _Surprise(bits=bits, ms=ms, request=request, predicted=predicted, shows_uplink=shows_uplink)

    def _noise_ms(self, estimate: _Estimate, predicted: float) -> float:
        """How far the link's noise may move a transfer ``predicted`` to take so long.

        ``change`` of its time beyond the round trip (the transfer, and a
        request's overhead), plus 2 ms of scheduling noise.
        """
        return self._change * (predicted - (estimate.rtt or 0.0)) + _NOISE_MS

    def _learn(
        self, estimate: _Estimate, bits: float, ms: float, now_s: float, *, request: bool, shows_uplink: bool
    ) -> None:
        """Learn from a transfer; ``estimate``: the estimates at ``now_s`` before it."""
        rtt, bandwidth = estimate.rtt, estimate.bandwidth
        if rtt is None:
            return
        if ms < rtt - estimate.below - _NOISE_MS:  # faster than any round trip: those queued behind bytes
            self._rtts.clear()
            self._rtts.append((now_s, ms))  # an upper bound, until a ping measures it afresh
            self._provisional_rtt, self._rtt_in_doubt = None, False
            self._probed_s = -math.inf
            self._rtts_changed()
            rtt, bandwidth = self.estimate(now_s)
            assert rtt is not None  # noqa: S101 - just set
        long_enough = ms - rtt - (self._overhead_ms if request else 0.0) >= self._min_transfer_ms
        if not request:
            self._short_probe_bytes = 0 if long_enough else int(bits // 8)
            if not long_enough and bits // 8 >= _MAX_PROBE_BYTES:  # the largest ping is too short: a lower bound
                self._short_probe_bytes = 0
                self._transfers.append(_Transfer(bits, rtt + self._min_transfer_ms, request=False))
        if bits > 0 and long_enough and shows_uplink:
            self._transfers.append(_Transfer(bits, ms, request))  # by position: a third faster
        elif request and bandwidth is not None:  # too short, or its reply too large
            self._overheads.append(max(0.0, ms - rtt - bits / bandwidth * 1000))
            self._overhead_ms = _typical_overhead_ms(self._overheads)
        self._version += 1

    def _undoes_change(self, undo: _Undo, sent: _Sent) -> bool:
        """Weigh ``sent`` against the link before the last slower change; ``True`` once it undid the change.

        A transfer that fits the old link within its noise counts for it; a
        slower one counts for neither (a stall, or the slower link); a faster
        one confirms that the link changed, as does the change's fifth
        transfer: the old link is let go.
        """
        undo.since.append(sent)
        undo.transfers += 1
        before = undo.before
        estimate = before._current(sent.now_s)  # noqa: SLF001 - another estimator of this class
        predicted = before._predict_ms(estimate, int(sent.bits // 8), request=sent.request)  # noqa: SLF001
        surprise: _Surprise | None = _STALLED  # no prediction: neutral
        if predicted is not None:
            surprise = before._surprise(  # noqa: SLF001
                estimate,
                sent.bits,
                sent.ms,
                predicted,
                sent.now_s,
                request=sent.request,
                shows_uplink=sent.shows_uplink,
            )
        faster = surprise is not None and surprise is not _STALLED and not surprise.slower
        if faster or undo.transfers > _UNDO_WITHIN:
            self._undo = None
            return False
        undo.fits += surprise is None
        if undo.fits < _UNDO_AFTER:
            return False
        version, rtt_version = self._version, self._rtt_version
        for name in self.__slots__:  # the link as it was (no undo pending), its tail with the stalls
            setattr(self, name, getattr(before, name))
        self._version = max(version, self._version) + 1  # no estimate cached before the change holds
        self._rtt_version = max(rtt_version, self._rtt_version) + 1
        for event in undo.since:  # learnt again, on the old link
            if isinstance(event, _Ping):
                self.observe_rtt(event.ms, event.now_s)
            else:
                self._observe(event.bits, event.ms, event.now_s, request=event.request, reply_bits=event.reply_bits)
        return True

    def _forget_link(self, now_s: float) -> None:
        surprises, self._surprises = self._surprises, []
        self._undo = None
        if surprises[-1].slower:  # kept, should the next transfers show the old link again
            self._undo = _Undo(copy.deepcopy(self))
        self._provisional_rtt = self._rtt(now_s)
        self._rtt_in_doubt = False
        self._rtts.clear()
        self._transfers.clear()
        if surprises[-1].slower:  # a loss's stall may pass for a slower link: the tail seen so far still holds
            self._beyond.drop_latest(sum(surprise.bits > 0 for surprise in surprises))  # but not what showed it
            # nor is what showed it an outage, nor what comes while the new link settles, unless the link is
            # soon as fast as before
            doubted = [*self._in_doubt(now_s), *self._outages.drop_since(self._surprised_s)]
            self._doubted = (now_s, [release for release in doubted if now_s - release.end_s <= _TAIL_MAX_AGE_S])
        else:  # a faster link: the slowness seen so far was the old link's
            self._beyond.clear()
            self._outages.restore(self._in_doubt(now_s))  # slower, then soon as fast again: it was out
            self._doubted = None
        self._probed_s = -math.inf
        self._rtts_changed()
        for surprise in surprises:  # they belong to the new link
            estimate = self._current(now_s)  # afresh: each one learnt changes it
            self._learn(
                estimate,
                surprise.bits,
                surprise.ms,
                now_s,
                request=surprise.request,
                shows_uplink=surprise.shows_uplink,
            )

    def _outage_released(self, release: _Release) -> None:
        """An outage held a transfer: count it, or while a slower link may explain it, keep it in doubt."""
        if self._doubted is not None and release.end_s - self._doubted[0] <= _OUTAGE_WITHIN_S:
            self._doubted[1].append(release)
        else:
            self._outages.add(release)

    def _in_doubt(self, now_s: float) -> list[_Release]:
        """The outages a slower link may explain, while the last slower change is recent enough to be undone."""
        if self._doubted is not None and now_s - self._doubted[0] <= _OUTAGE_WITHIN_S:
            return self._doubted[1]
        return []

    def _rtts_changed(self) -> None:
        """Say that the round trips changed (and so the samples): no estimate cached before holds."""
        self._rtt_version += 1
        self._version += 1

    def _usual_excess_ms(self, now_s: float) -> float:
        """The usual stall: how much slower than predicted one in four recent transfers was, or more (0 with few).

        On a lossy link whose transfers stall often, a retransmission's wait;
        on a clean one, 0: its transfers are as often faster as slower.
        """
        most_ms = _loss_wait_ms(self._rtt(now_s))
        return max(0.0, self._beyond.quantile(0.75, now_s, at_least=_USUAL_AFTER, most_ms=most_ms))

    def _rtt(self, now_s: float) -> float | None:
        return self._current(now_s).rtt

"""The split planner: measurements in, the cut to use out. No I/O, no clock of its own.

For every candidate cut the planner predicts the request's end-to-end time,

    device queue + head (on this device) + round trip + bytes x ((1 + out) / bandwidth + stalls) + outages
    + hub queue + tail + decode

(edge-only is the whole model on the device and nothing else), and picks the
cut with the lowest prediction, or under another objective the fewest bytes,
the least device compute or the least device energy (:mod:`edge_agent._energy`)
among the cuts that fit a latency budget, or the lowest latency plus energy
at a price in ms per joule. Every
estimate comes from what requests already measure (:class:`Observation`),
from cheap probes (:meth:`Planner.probe`), and from the hubs' reported
profiles; nothing is assumed about the device, the link or the hub.

- **Device**: per cut, the median of the last head times (head and encode);
  a warm-up seeds them, and :meth:`Planner.export` / :meth:`Planner.restore`
  keep them across restarts.
- **Hub**: per cut, the median of the last tail times this agent saw, else
  the hub's reported profile, else the part of the model after the cut as
  this device runs it, divided by how much faster the hub has been. The
  queue is the hub's whatever the cut: the mean of the waits replies and
  statuses reported in the last 10 s, none if there are none (a high
  quantile where a budget must be met).
- **Link**: :class:`~edge_agent._estimators.LinkEstimator`: a transfer that
  meets no loss; ``stalls``, the mean time per byte that lossy
  transfers lately took beyond that (retransmission waits); and
  ``outages``, what the last minute's outages (the link carrying nothing for
  a while) hold a transfer on average, whatever its size, and ``out``, the
  share of the minute they took (a transfer in flight loses that share of
  its time on the wire to them): the planner predicts the mean a stream of
  requests pays, not the typical request.
- **Device queue**: :class:`~edge_agent._device_queue.DeviceQueue`: the
  mean wait before the head runs that a stream of requests at the cut would
  meet on a device running one request at a time, once requests overlap
  (none while each comes after the last has ended).

Against flapping, the planner keeps its current cut while that is predicted
within ``hysteresis`` of the best, the overhead every candidate shares left
out of the comparison (a device whose requests queue behind each other has
a large one, and within 5% of it every cut would be kept). Now and then
(at most ``explore`` of the requests) it tries a cut whose estimate rests on
a guess or has gone stale, if that cut could plausibly win; a cut it left because its own
times rose is tried again after 8 requests, then ever less often, so that a slowdown that passed does
not keep it away until its estimate goes stale. The arithmetic runs over the
candidates as plain lists: a model has a handful of them (resnet18 four, with
codecs a dozen), on which numpy's fixed cost a call outweighed the work.
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
from typing import TYPE_CHECKING, Literal

import numpy as np

from edge_agent._device_queue import DeviceQueue
from edge_agent._estimators import LinkEstimator, Recent, RecentShare, merged_mean, merged_quantile
from edge_agent._hub_reports import QUEUE_MAX_AGE_S, QUEUE_WINDOW, HubReports

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from edge_agent._energy import EnergyModel

Objective = Literal["latency", "bytes", "edge", "energy", "latency+energy"]
"""What the planner minimises: predicted latency; bytes sent or device compute (under a budget);
device energy (under a budget if one is given); or latency plus energy at the device's price of a joule."""
_NEEDS_BUDGET: frozenset[Objective] = frozenset({"bytes", "edge"})
_NEEDS_ENERGY: frozenset[Objective] = frozenset({"energy", "latency+energy"})
_COSTS_IN_MS: frozenset[Objective] = frozenset({"latency", "latency+energy"})
"""Objectives whose cost holds the predicted ms, and so the overhead every candidate shares."""

_PLAUSIBLE = 1.5
"""A cut is worth exploring when predicted within this factor of the best."""
_PROBE_TRANSFER_MS = (10.0, 25.0)
"""A bandwidth probe is sized to take the round trip on the estimated link, within these bounds:
long enough to show a change, at most 5% of the link at one probe per 0.5 s."""
_PROBE_BYTES = (2_048, 1024 * 1024)  # the second is the estimator's largest ping too
"""Smallest and largest bandwidth probe."""
_REFUSALS_WINDOW = 16
"""The hub's last answers that tell how often it refuses ``overloaded``."""
_BACKOFF_S = (1.0, 30.0)
"""After a request no hub answered, the device runs everything itself for the first figure,
doubled after each further one, up to the second."""
_RECHECK_AFTER = (8, 128)
"""A cut left because its own times rose is tried again after the first count of decisions, then after twice as
many each time it is still not the best, up to the second: a slowdown that passed is noticed within a few
requests, and a cut that stays slow costs at most one request in 8, then fewer."""
_TELLING_REST = 0.2
"""A tail tells how much faster the hub is when at least this share of the model (on the device) follows its cut:
after a late cut that rest is the difference of two close head times, noise as often as not (negative, even)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Candidate:
    """A cut, with a codec, the planner may choose.

    Attributes:
        id: The cut's id.
        bytes: What a request at this cut sends (for edge-only: what would cross).
        edge_only: Runs the whole model on the device; nothing is sent.
        codec: How the request encodes its tensors; one cut may be a
            candidate with several codecs (their bytes and encoding costs differ).
    """

    id: str
    bytes: int
    edge_only: bool = False
    codec: str = "raw"

    @property
    def label(self) -> str:
        """``id``, or ``id@codec`` for a codec other than raw: unique among a planner's candidates."""
        return _label(self.id, self.codec)


@dataclasses.dataclass(frozen=True, slots=True)
class Observation:
    """What one request at one cut measured (the fields of an ``InferenceResult``), in ms.

    ``answered_by_hub`` is false for edge-only runs and local fallbacks: those
    say nothing about the link or the hub. ``total_ms`` (if known) teaches the
    planner what the parts leave out: the agent's own overhead around them.
    ``device_queue_ms`` is the time the request waited for the device before
    its head ran (other requests' runs): the planner predicts that wait
    itself, per cut, so it is not overhead.
    """

    cut_id: str
    bytes_sent: int
    edge_ms: float
    codec: str = "raw"
    bytes_received: int = 0
    encode_ms: float = 0.0
    network_ms: float = 0.0
    hub_queue_ms: float = 0.0
    hub_compute_ms: float = 0.0
    decode_ms: float = 0.0
    total_ms: float = math.nan
    answered_by_hub: bool = True
    device_queue_ms: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """The planner's choice for one request.

    Attributes:
        cut_id: The cut to use.
        predicted_ms: The predicted total time (``nan`` while it cannot be predicted).
        reason: Why this cut, in a few words.
        explored: The cut was tried to refresh its estimate, not for being best.
        codec: How to encode the request.
        predicted_j: The device energy predicted for the request, with an
            energy model (``nan`` without one, or while it cannot be predicted).
    """

    cut_id: str
    predicted_ms: float
    reason: str
    explored: bool = False
    codec: str = "raw"
    predicted_j: float = math.nan


class Planner:
    """Chooses the cut of every request from what requests measure.

    Args:
        candidates: The cuts to choose from, edge-only and cloud-only included.
        objective: ``"latency"`` (default); ``"bytes"`` / ``"edge"`` under
            ``budget_ms``; ``"energy"`` (under ``budget_ms`` if given) or
            ``"latency+energy"``, both with ``energy``.
        budget_ms: The latency a cut must be predicted to stay within (with
            the hub's queue at its 90th percentile) under ``"bytes"``,
            ``"edge"`` and ``"energy"``.
        energy: The device's compute power and radio: decisions then predict
            joules (:attr:`Decision.predicted_j`) whatever the objective.
        hysteresis: Keep the current cut while it is predicted within this
            fraction of the best (the overhead every cut shares left out).
        explore: Largest fraction of requests spent refreshing other cuts' estimates.
        stale_s: A cut's estimate older than this may be refreshed by exploring.
        probe_every_s: Seconds between probes while no request measures the link.
        seed: Seed of the exploration draws.
        hubs: What the hubs' statuses report (:attr:`hubs`): a view of its
            own by default; planners of one model hearing the same hubs may share one.
    """

    # Slots: with more than 30 attributes an instance's dict shares no keys with its class's (CPython), so each
    # planner held a 2 KB dict of its own that every attribute read probed; among a thousand planners (a fleet,
    # whose planners' memory is cold by their next request) a prediction took twice as long.
    __slots__ = (
        "_answered",
        "_backoff_began_s",
        "_budget_ms",
        "_by_cut",
        "_bytes",
        "_bytes_known",
        "_chosen_own_ms",
        "_current",
        "_cut_of",
        "_decisions",
        "_decode",
        "_device_queue",
        "_edge_only",
        "_energy",
        "_explorations",
        "_explore",
        "_full_edge",
        "_head",
        "_heads",
        "_hysteresis",
        "_index",
        "_intervals",
        "_last_decision_s",
        "_last_probe_s",
        "_last_transfer_s",
        "_next_recheck",
        "_objective",
        "_one_codec_per_cut",
        "_overhead",
        "_parts_version",
        "_probe_every_s",
        "_queue",
        "_recheck_after",
        "_recheck_at",
        "_refreshed_s",
        "_refusals",
        "_remote",
        "_remote_after_s",
        "_reported_tail",
        "_reports_seen",
        "_restart",
        "_rng",
        "_seed",
        "_stale_s",
        "_tail",
        "_tails",
        "_tails_cache",
        "_trial_s",
        "_unanswered",
        "candidates",
        "hubs",
        "link",
    )

    def __init__(
        self,
        candidates: Sequence[Candidate],
        *,
        objective: Objective = "latency",
        budget_ms: float | None = None,
        energy: EnergyModel | None = None,
        hysteresis: float = 0.05,
        explore: float = 0.02,
        stale_s: float = 30.0,
        probe_every_s: float = 0.5,
        seed: int = 0,
        hubs: HubReports | None = None,
    ) -> None:
        if not candidates:
            msg = "a planner needs at least one candidate cut"
            raise ValueError(msg)
        if objective in _NEEDS_BUDGET and budget_ms is None:
            msg = f"objective {objective!r} needs a latency budget (budget_ms)"
            raise ValueError(msg)
        if objective in _NEEDS_ENERGY and energy is None:
            msg = f"objective {objective!r} needs the device's energy model (energy)"
            raise ValueError(msg)
        if len({candidate.label for candidate in candidates}) != len(candidates):
            msg = "candidates must be unique by cut and codec"
            raise ValueError(msg)
        self.candidates = tuple(candidates)
        self._index = {candidate.label: index for index, candidate in enumerate(self.candidates)}
        self._by_cut: dict[str, list[int]] = {}
        for index, candidate in enumerate(self.candidates):
            self._by_cut.setdefault(candidate.id, []).append(index)
        cut_ids = list(self._by_cut)
        self._cut_of = [cut_ids.index(candidate.id) for candidate in self.candidates]
        count = len(self.candidates)
        self._edge_only = tuple(candidate.edge_only for candidate in self.candidates)
        self._remote = tuple(not edge_only for edge_only in self._edge_only)
        self._bytes = [float(candidate.bytes) for candidate in self.candidates]
        self._bytes_known = [False] * count  # sent by a request, or measured before first use
        self._heads = [Recent() for _ in range(count)]
        self._tails = [Recent() for _ in range(count)]
        self._head = [math.nan] * count  # the medians of _heads, kept in step
        self._tail = [math.nan] * count  # the medians of _tails
        self.hubs = HubReports() if hubs is None else hubs
        """What the hubs' statuses report: their tail times by cut and their queue waits."""
        # self.hubs' tail times by candidate, as of _reports_seen; edge-only's is none: no tail is left for a hub
        self._reported_tail = [0.0 if edge_only else math.nan for edge_only in self._edge_only]
        self._reports_seen = -1
        self._parts_version = 0  # bumped whenever a value of _head or _tail changes
        self._tails_cache: tuple[int, int, list[float]] | None = None  # (_parts_version, hubs.version, estimates)
        self._one_codec_per_cut = len(self._by_cut) == count
        self._refreshed_s = [-math.inf] * count  # when a request last measured the cut
        self._restart = [False] * count  # the next measurement starts the cut's windows again (a stale estimate)
        self._recheck_at = [math.inf] * count  # the decision at which a cut left as it slowed is tried again
        self._recheck_after = [_RECHECK_AFTER[0]] * count
        self._next_recheck = math.inf  # the least of _recheck_at
        self._chosen_own_ms = math.nan  # the current cut's own times (head and tail) when it was chosen
        self._full_edge = next((i for i, candidate in enumerate(self.candidates) if candidate.edge_only), None)
        self._objective = objective
        self._budget_ms = budget_ms
        self._energy = energy
        self._intervals = Recent()  # between decisions: how long the radio idles after a transfer
        self._device_queue = DeviceQueue()
        self._last_decision_s = -math.inf
        self._hysteresis = hysteresis
        self._explore = explore
        self._stale_s = stale_s
        self._probe_every_s = probe_every_s
        self._seed = seed
        self._rng: random.Random | None = None  # made at the first draw (_draw)
        self._decode = Recent()
        self._overhead = Recent()  # the request's total beyond its measured parts
        self._queue = Recent(QUEUE_WINDOW, max_age_s=QUEUE_MAX_AGE_S)  # replies' waits (the hub's, whatever the cut)
        self._refusals = RecentShare(_REFUSALS_WINDOW, max_age_s=QUEUE_MAX_AGE_S)  # of requests a hub answered
        self.link = LinkEstimator()
        self._last_transfer_s = -math.inf
        self._last_probe_s = -math.inf
        self._current: int | None = None
        self._answered = False
        self._unanswered = 0
        self._remote_after_s = -math.inf
        self._backoff_began_s = -math.inf
        self._trial_s: float | None = None  # when the one request after a back-off went to a hub
        self._decisions = 0
        self._explorations = 0

    @property
    def explorations(self) -> int:
        """Decisions so far that explored rather than exploited."""
        return self._explorations

    # --- measurements in -----------------------------------------------------------------

    def seed_head(self, cut_id: str, ms: float, now_s: float, *, codec: str | None = None) -> None:
        """A head time measured outside requests (the warm-up): for every codec of the cut, or one."""
        indices = self._by_cut[cut_id] if codec is None else [self._index[_label(cut_id, codec)]]
        for index in indices:
            self._heads[index].add(ms, now_s)
            self._refresh(self._head, self._heads, index)

    def _refresh(self, medians: list[float], windows: list[Recent], index: int) -> None:
        """Keep ``medians[index]`` (``_head`` or ``_tail``) the median of ``windows[index]``; say so when it changed."""
        value = windows[index].value
        if value is None:
            value = math.nan
        if value != medians[index]:  # nan != nan: a first sample counts as a change
            medians[index] = value
            self._parts_version += 1

    def observe(self, observation: Observation, now_s: float) -> None:
        """Learn from one finished request (unknown cuts and codecs are ignored)."""
        self._device_queue.ended()
        index = self._index.get(_label(observation.cut_id, observation.codec))
        if index is None:
            return
        restart, edge_only, answered = self._restart[index], self._edge_only[index], observation.answered_by_hub
        if restart:  # an estimate explored as stale: what it rested on no longer holds
            self._restart[index] = False
            self._heads[index].clear()
        self._heads[index].add(observation.edge_ms + observation.encode_ms, now_s)  # its encoding included
        self._refresh(self._head, self._heads, index)
        if not math.isnan(observation.total_ms) and (answered or edge_only):
            parts = observation.device_queue_ms + observation.edge_ms + observation.encode_ms
            if not edge_only:  # as sum() adds them, but for the sign of a zero, which max(0.0, ...) takes off
                parts += (
                    observation.network_ms
                    + observation.hub_queue_ms
                    + observation.hub_compute_ms
                    + observation.decode_ms
                )
            self._overhead.add(max(0.0, observation.total_ms - parts), now_s)
        if not answered or edge_only:
            if edge_only:
                self._refreshed_s[index] = now_s
            return
        self._refreshed_s[index] = now_s
        self._bytes[index] = float(observation.bytes_sent)  # what goes on the wire, headers included
        self._bytes_known[index] = True
        first = self._guessed(index)  # its first answer: a hub that loads tails on first use loaded this one
        if restart:
            self._tails[index].clear()
        self._tails[index].add(observation.hub_compute_ms, now_s)
        self._refresh(self._tail, self._tails, index)
        if not first:  # a reply's queue time counts the wait for a load: not what the next request meets
            self._queue.add(observation.hub_queue_ms, now_s)
        self._refusals.add(now_s, outcome=False)
        self._decode.add(observation.decode_ms, now_s)
        self.link.observe(observation.bytes_sent, observation.network_ms, now_s, reply_bytes=observation.bytes_received)
        self._last_transfer_s = now_s
        self._answered = True
        self._unanswered = 0
        self._trial_s = None

    def observe_abandoned(self) -> None:
        """A request :meth:`choose` chose ended with nothing to observe (refused for good, or its caller gave up)."""
        self._device_queue.ended()

    def bytes_of(self, label: str) -> int:
        """What a request at the candidate ``label`` (``cut`` or ``cut@codec``) sends: measured, else estimated."""
        return int(self._bytes[self._index[label]])

    def unmeasured_codecs(self, cut_id: str) -> list[str]:
        """The codecs at ``cut_id`` whose bytes are still the estimate made before any was encoded."""
        return [self.candidates[index].codec for index in self._by_cut.get(cut_id, ()) if not self._bytes_known[index]]

    def seed_bytes(self, cut_id: str, codec: str, nbytes: int) -> None:
        """What a request at ``cut_id`` with ``codec`` sends, measured by encoding a real input before first use.

        An image codec's size depends on the image (a camera's frame: a
        tenth of its pixels' bytes; noise: all of them), so no estimate made
        before one is seen can stand in for it.
        """
        index = self._index[_label(cut_id, codec)]
        self._bytes[index] = float(nbytes)
        self._bytes_known[index] = True

    def observe_unanswered(self, now_s: float, sent_s: float | None = None) -> None:
        """A request no hub answered in time, or answered with a failure: back off to the device.

        With an edge-only candidate, the next requests run on the device for
        1 s; then one request tries a hub while the others stay on the device
        (a circuit breaker's half-open state). If that one goes unanswered too
        the back-off doubles, up to 30 s; the first answered request ends it.
        A request sent (at ``sent_s``) before the back-off began failed with
        the others of its time and does not lengthen it: after a 5 s outage
        the hub is tried again within seconds, not after 30.
        """
        if sent_s is not None and sent_s < self._backoff_began_s:
            return
        self._unanswered += 1
        self._trial_s = None
        backoff = min(_BACKOFF_S[0] * 2 ** (self._unanswered - 1), _BACKOFF_S[1])
        self._remote_after_s = now_s + backoff
        self._backoff_began_s = now_s

    def observe_refused(self, now_s: float) -> None:
        """A hub answered at once that it was ``overloaded`` (the device ran the tail).

        Not a back-off: the hub is there and answers, and the next request may
        find room. What it teaches is how often a request sent now is
        refused; a remote candidate's prediction weighs that share of its
        requests as a round trip and the rest of the model on the device
        (:meth:`predictions`). An answer, even this one, ends a back-off.
        """
        self._refusals.add(now_s, outcome=True)
        self._unanswered = 0
        self._trial_s = None

    def probe(self, now_s: float) -> int | None:
        """The padding bytes of a ping to send now, or ``None`` when none is needed.

        ``0`` is a round-trip ping: wanted first, then every 10 s, and at
        once after the link changed or a transfer came back faster than the
        round trip (which was then measured behind other bytes). A positive size is a bandwidth ping, wanted while
        the bandwidth is unknown, while the last request or ping missed its
        prediction (the next one confirms or dismisses a change), and while no
        request has measured the link lately (the device runs everything
        itself): sized to take about a round trip (10 to 25 ms) on the link as
        estimated, so that a change shows at once, at a cost of 2 to 5% of the
        link while it lasts. At most one per ``probe_every_s`` unless urgent
        (nothing known, or a change to confirm).
        """
        rtt, bandwidth = self.link.estimate(now_s)
        urgent = rtt is None or bandwidth is None or self.link.unsettled or self.link.wants_rtt
        if now_s - self._last_probe_s < self._probe_every_s and not urgent:
            return None
        idle = now_s - self._last_transfer_s >= self._probe_every_s
        if rtt is None or self.link.wants_rtt:
            nbytes = 0
        elif bandwidth is None or idle or self.link.unsettled:
            target_ms = min(max(rtt, _PROBE_TRANSFER_MS[0]), _PROBE_TRANSFER_MS[1])
            nbytes = min(max(self.link.probe_bytes(target_ms, now_s), _PROBE_BYTES[0]), _PROBE_BYTES[1])
        elif self.link.wants_probe(now_s):
            nbytes = 0
        else:
            return None
        self._last_probe_s = now_s
        return nbytes

    def observe_probe(self, nbytes: int, ms: float, now_s: float) -> None:
        """A ping's round trip: ``nbytes`` of padding there, a small answer back, in ``ms``."""
        if nbytes == 0:
            self.link.observe_rtt(ms, now_s)
        else:
            self.link.observe_probe(nbytes, ms, now_s)

    def observe_hub(
        self, now_s: float, *, tail_ms: Mapping[str, float] | None = None, queue_ms: float | None = None
    ) -> None:
        """What a hub reports of itself (its status): tail times by cut, and its recent queue wait.

        Told to :attr:`hubs`, so every planner sharing the view learns it.
        """
        self.hubs.report(now_s, tail_ms=tail_ms, queue_ms=queue_ms)

    # --- predictions -------------------------------------------------------------------------

    def predictions(self, now_s: float, *, queue_quantile: float | None = None) -> np.ndarray:
        """Predicted total ms of a request at each candidate (``nan`` where something is unknown).

        With the hub's mean queue wait, what a stream of requests pays on
        average (a busy hub's waits are skewed: their median is well below
        it), or with its ``queue_quantile`` where a budget must be met.
        """
        return np.array(self._predicted(now_s, queue_quantile))

    def _predicted(self, now_s: float, queue_quantile: float | None = None) -> list[float]:
        """:meth:`predictions`, as a list."""
        head = self._head
        overhead = self._overhead.value or 0.0
        rtt, bandwidth = self.link.estimate(now_s)
        if rtt is None or bandwidth is None:
            predicted = [
                ms + overhead if edge_only else math.nan for ms, edge_only in zip(head, self._edge_only, strict=True)
            ]
        else:
            queue = (
                merged_mean(now_s, QUEUE_WINDOW, self._queue, self.hubs.queue)
                if queue_quantile is None
                else merged_quantile(queue_quantile, now_s, QUEUE_WINDOW, self._queue, self.hubs.queue)
            ) or 0.0
            outages = self.link.outage_cost(now_s)  # what they hold a transfer, and take of its time on the wire
            shared = rtt + self.link.overhead_ms + outages.held_ms + queue + (self._decode.value or 0.0)  # every cut's
            per_byte = 8000.0 / bandwidth * (1.0 + outages.share) + self.link.tail_ms_per_byte(now_s)
            parts = zip(head, self._tail_estimates(), self._bytes, self._edge_only, strict=True)
            refused = self._refusals.share(now_s)
            whole = math.nan if self._full_edge is None else head[self._full_edge]  # the model on the device
            if refused and not math.isnan(whole):  # a refusal: a round trip, then the device
                predicted = [
                    ms + overhead
                    if edge_only
                    # max keeps a nan, as np.maximum
                    else (1.0 - refused) * (ms + tail + nbytes * per_byte + shared)
                    + refused * (ms + rtt + max(whole - ms, 0.0))
                    + overhead
                    for ms, tail, nbytes, edge_only in parts
                ]
            else:
                predicted = [
                    ms + overhead if edge_only else ms + tail + nbytes * per_byte + shared + overhead
                    for ms, tail, nbytes, edge_only in parts
                ]
        waits = self._device_queue.wait_ms(head, now_s)
        return predicted if waits is None else [ms + wait for ms, wait in zip(predicted, waits, strict=True)]

    def energy_mj(self, now_s: float) -> np.ndarray:
        """Predicted device energy (mJ) of a request at each candidate (``nan`` where unknown, or without a model).

        The head's compute at the model's power, and for a cut that sends,
        the radio's cost of the bytes at the estimated bandwidth and its tail
        until the next request (the median time between decisions).
        """
        if self._energy is None:
            return np.full(len(self._bytes), np.nan)
        _, bandwidth = self.link.estimate(now_s)
        nbytes = np.array(self._bytes)
        transfer_ms = nbytes * (8000.0 / bandwidth) if bandwidth else np.full(len(nbytes), np.nan)
        sending = self._energy.radio.transfer_mj(nbytes, transfer_ms, self._intervals.value)
        compute = self._energy.compute_w * np.array(self._head)
        return np.where(self._edge_only, compute, compute + sending)

    def predict_ms(self, cut_id: str, now_s: float, *, codec: str = "raw") -> float | None:
        """Predicted total time of a request at ``cut_id`` with ``codec``, or ``None`` while something is unknown."""
        value = self._predicted(now_s)[self._index[_label(cut_id, codec)]]
        return None if math.isnan(value) else value

    def _tail_estimates(self) -> list[float]:
        """Each candidate's hub tail time: measured, else reported, else worked out (kept till a part changes)."""
        cache = self._tails_cache
        if cache is not None and cache[0] == self._parts_version and cache[1] == self.hubs.version:
            return cache[2]
        if self._reports_seen != self.hubs.version:
            for cut_id, ms in self.hubs.tail_ms.items():
                for index in self._by_cut.get(cut_id, ()):
                    self._reported_tail[index] = ms
            self._reports_seen = self.hubs.version
        known = zip(self._tail, self._reported_tail, strict=True)
        tail = self._worked_out_tails([reported if math.isnan(ms) else ms for ms, reported in known])
        self._tails_cache = (self._parts_version, self.hubs.version, tail)
        return tail

    def _worked_out_tails(self, tail: list[float]) -> list[float]:
        """``tail`` with the unknown ones as the rest of the model on this device, over how much faster the hub is.

        How much faster: the median over the known tails (measured or reported)
        whose cut leaves at least ``_TELLING_REST`` of the model. Where every
        known tail is of a later cut, the hub's speed is not known, and an
        unknown tail is taken as no time at all: a cut that would win on a fast
        enough hub is then tried once (its tail measured from then on), where
        a guess from a late cut's sliver of the model could price it out for good.
        """
        if self._full_edge is None or not any(map(math.isnan, tail)):
            return tail
        # What the device would spend after each cut: its compute alone, the head of the cut's cheapest
        # codec (an int8+zstd head's encoding can outlast the little compute left after a late cut).
        if self._one_codec_per_cut:
            least = [math.inf if math.isnan(ms) else ms for ms in self._head]
        else:
            by_cut = [math.inf] * len(self._by_cut)
            for cut, ms in zip(self._cut_of, self._head, strict=True):
                by_cut[cut] = min(by_cut[cut], ms)  # a nan never wins: a cut with no head measured stays inf
            least = [by_cut[cut] for cut in self._cut_of]
        whole = self._head[self._full_edge]
        rest = [whole - ms for ms in least]
        telling = whole * _TELLING_REST  # nan where the whole model is not timed yet: no tail tells, none is guessed
        # how much faster the hub runs, where a tail is known (nan > 0 is false) and enough model is left after it
        speedups = [left / ms for left, ms in zip(rest, tail, strict=True) if ms > 0 and left >= telling]
        if not speedups:
            hub_timed = any(remote and ms == ms for remote, ms in zip(self._remote, tail, strict=True))  # noqa: PLR0124
            if math.isnan(whole) or not hub_timed:  # no tail known yet: learning the hub comes first
                return tail
            return [0.0 if math.isnan(ms) else ms for ms in tail]
        speedup = statistics.median(speedups)
        return [max(left, 0.0) / speedup if math.isnan(ms) else ms for left, ms in zip(rest, tail, strict=True)]

    # --- the decision ----------------------------------------------------------------------------

    def choose(self, now_s: float) -> Decision:
        """The cut for the next request."""
        self._decisions += 1
        if self._energy is not None and now_s > self._last_decision_s:  # the radio's idle time: energy's alone
            self._intervals.add((now_s - self._last_decision_s) * 1000.0, now_s)
        self._last_decision_s = now_s
        self._device_queue.started(now_s)
        decision = self._decide(now_s)
        if self._unanswered and self._trial_s is None:
            chosen = self.candidates[self._index[_label(decision.cut_id, decision.codec)]]
            if not chosen.edge_only:
                self._trial_s = now_s  # the one request that tries a hub after a back-off
        return decision

    def _decide(self, now_s: float) -> Decision:
        predicted = self._predicted(now_s)
        known = [ms == ms for ms in predicted]  # noqa: PLR0124 - false for a nan alone
        backing_off = self._backing_off(now_s)
        if backing_off is not None and self._full_edge is not None:
            return self._settle(self._full_edge, predicted, backing_off, now_s)
        if not self._answered:  # no hub has answered: learn the link and the hub
            unknown_remote = [remote and not is_known for remote, is_known in zip(self._remote, known, strict=True)]
            if any(unknown_remote):
                index = _argmin_where(self._bytes, unknown_remote)
                why = f"learning the link and the hub with {self.candidates[index].label}"
                return self._settle(index, predicted, why, now_s, explored=True)
        if not any(known):
            return self._settle(0, predicted, "nothing measured yet", now_s, explored=True)
        cost = self._cost(predicted, now_s)
        ranking = [ms if ms == ms else math.inf for ms in predicted]  # noqa: PLR0124 - unknown (nan) last
        best, allowed = self._best(_argmin(ranking), predicted, cost, known, now_s)
        explored = self._exploration(predicted, cost, known, best, now_s)
        if explored is not None:
            index, why = explored
            return self._settle(index, predicted, why, now_s, explored=True)
        current = self._current
        if current is not None and current != best and known[current]:
            common = (self._overhead.value or 0.0) if self._objective in _COSTS_IN_MS else 0.0
            within = cost[current] - common <= (cost[best] - common) * (1 + self._hysteresis)
            if within and self._fits(current, now_s):
                why = f"kept {self.candidates[current].label}: within {self._hysteresis:.0%} of the best"
                return self._settle(current, predicted, why, now_s)
        return self._settle(best, predicted, self._why(best, ranking, cost, known, allowed=allowed), now_s)

    def _backing_off(self, now_s: float) -> str | None:
        """Why requests stay on the device after unanswered ones, or ``None`` when they need not."""
        if not self._unanswered:
            return None
        left = self._remote_after_s - now_s
        if left > 0:
            return f"no hub answered lately: on the device for {left:.1f} s more"
        if self._trial_s is not None and now_s - self._trial_s < _BACKOFF_S[1]:
            return "no hub answered lately: on the device until the request trying one is answered"
        return None

    def _cost(self, predicted: list[float], now_s: float) -> list[float]:
        """What the objective minimises, per candidate (``nan`` where unknown)."""
        if self._objective == "bytes":
            return [
                0.0 if edge_only else nbytes for nbytes, edge_only in zip(self._bytes, self._edge_only, strict=True)
            ]
        if self._objective == "edge":
            return self._head
        if self._objective in _NEEDS_ENERGY:
            joules: list[float] = (self.energy_mj(now_s) / 1000.0).tolist()
            if self._objective == "energy":
                return joules
            assert self._energy is not None  # noqa: S101 - checked at construction
            price = self._energy.ms_per_joule
            return [ms + price * j for ms, j in zip(predicted, joules, strict=True)]
        return predicted

    def _best(
        self, fastest: int, predicted: list[float], cost: list[float], known: list[bool], now_s: float
    ) -> tuple[int, bool]:
        """The candidate the objective picks, and whether the objective allows it (``fastest``: the fastest).

        Where no candidate's cost is known within the budget, the fastest,
        which the objective does not allow.
        """
        if self._objective == "latency":
            return fastest, True
        usable = [is_known and not math.isnan(value) for is_known, value in zip(known, cost, strict=True)]
        if self._budget_ms is not None:
            budget = self._budget_ms
            within = self._predicted(now_s, queue_quantile=0.9)
            usable = [use and ms <= budget for use, ms in zip(usable, within, strict=True)]
        if not any(usable):
            return fastest, False
        lowest = min(value for value, use in zip(cost, usable, strict=True) if use)
        ties = [use and value == lowest for use, value in zip(usable, cost, strict=True)]
        return _argmin_where(predicted, ties), True

    def _fits(self, index: int, now_s: float) -> bool:
        if self._objective == "latency" or self._budget_ms is None:
            return True
        return self._predicted(now_s, queue_quantile=0.9)[index] <= self._budget_ms

    def _why(self, best: int, ranking: list[float], cost: list[float], known: list[bool], *, allowed: bool) -> str:
        """Why ``best``, in a few words; ``ranking``: the predicted ms, ``inf`` where unknown.

        ``allowed``: the objective allows ``best``; else it is the fastest, none being allowed.
        """
        within = "" if self._budget_ms is None else f" within {self._budget_ms:.0f} ms"
        if not allowed:
            return f"none predicted{within}: the fastest" if within else "no cost predicted yet: the fastest"
        if self._objective == "energy":
            return f"least predicted device energy ({cost[best]:.3g} J){within}"
        if self._objective == "latency+energy":
            assert self._energy is not None  # noqa: S101 - checked at construction
            return f"lowest ms + {self._energy.ms_per_joule:g} ms/J x energy ({cost[best]:.1f})"
        if self._objective != "latency":
            what = "bytes" if self._objective == "bytes" else "device ms"
            return f"fewest {what}{within}"
        runner_up = _argmin_but(ranking, best)  # best is the fastest: the objective is latency
        next_one = "" if runner_up is None or not known[runner_up] else f", next {self.candidates[runner_up].label}"
        return f"lowest predicted latency{next_one}"

    def _exploration(
        self, predicted: list[float], cost: list[float], known: list[bool], best: int, now_s: float
    ) -> tuple[int, str] | None:
        """A cut worth refreshing: its estimate is a guess or stale, and it could plausibly beat the best.

        Plausibly: within half again the best's milliseconds, or with an
        energy objective, its joules (a cut faster than the best that costs
        three times its energy is not worth a request).
        """
        basis = cost if self._objective in _NEEDS_ENERGY else predicted
        plausible = basis[best] * _PLAUSIBLE
        if self._decisions >= self._next_recheck:
            recheck = self._due_recheck(basis, plausible, known, best)
            if recheck is not None:
                return recheck, f"re-checking {self.candidates[recheck].label}: left as its own times rose"
        if self._explorations + 1 > self._explore * self._decisions:  # never over budget, not even early
            return None
        worth = [  # the cheap tests first: most candidates fail the plausible one, which a nan fails too
            basis[index] <= plausible
            and index != best
            and known[index]
            and (self._guessed(index) or now_s - self._refreshed_s[index] > self._stale_s)
            for index in range(len(basis))
        ]
        if not any(worth) or self._draw() >= max(self._explore, 0.25):
            return None
        index = _argmin_where(basis, worth)
        if self._guessed(index):
            return index, f"exploring {self.candidates[index].label}: its estimate is a guess"
        self._restart[index] = True
        return index, f"exploring {self.candidates[index].label}: its estimate is stale"

    def _due_recheck(self, basis: list[float], plausible: float, known: list[bool], best: int) -> int | None:
        """The cut left as it slowed to try again now, if one is due and could plausibly win; the others wait longer.

        Each due cut is put off by twice its last wait (up to ``_RECHECK_AFTER[1]``), tried or not.
        """
        due = [at <= self._decisions for at in self._recheck_at]
        worth = [
            is_due and index != best and known[index] and basis[index] <= plausible for index, is_due in enumerate(due)
        ]
        for index, is_due in enumerate(due):
            if is_due:
                self._recheck_after[index] = min(2 * self._recheck_after[index], _RECHECK_AFTER[1])
                self._recheck_at[index] = self._decisions + self._recheck_after[index]
        self._next_recheck = min(self._recheck_at)
        if not any(worth):
            return None
        index = _argmin_where(basis, worth)
        self._restart[index] = True
        return index

    def _draw(self) -> float:
        """The next exploration draw, from a generator seeded at the first draw.

        The same draws as one seeded at the start: seeding costs 5 µs, a
        fleet of 10,000 planners 50 ms, and most planners never draw.
        """
        if self._rng is None:
            self._rng = random.Random(self._seed)  # noqa: S311 - exploration, not crypto
        return self._rng.random()

    def _guessed(self, index: int) -> bool:
        """The candidate's tail time is a guess: no request of its own measured it."""
        return self._remote[index] and math.isnan(self._tail[index])

    def _settle(
        self, index: int, predicted: list[float], reason: str, now_s: float, *, explored: bool = False
    ) -> Decision:
        if explored:
            self._explorations += 1
        elif index != self._current:
            self._switch(index)
        candidate = self.candidates[index]
        joules = math.nan if self._energy is None else float(self.energy_mj(now_s)[index]) / 1000.0
        return Decision(
            candidate.id, predicted[index], reason, explored, candidate.codec, joules
        )  # by position: faster

    def _switch(self, index: int) -> None:
        """Make ``index`` the current cut; the cut it replaces is tried again later if it was left as it slowed."""
        tail = self._tail_estimates()
        left = self._current
        if left is not None and self._head[left] + tail[left] > self._chosen_own_ms * (1 + self._hysteresis):
            self._recheck_at[left] = self._decisions + self._recheck_after[left]
        self._recheck_at[index] = math.inf  # chosen again: its times hold, and the next slowdown starts afresh
        self._recheck_after[index] = _RECHECK_AFTER[0]
        self._next_recheck = min(self._recheck_at)
        self._current = index
        self._chosen_own_ms = self._head[index] + tail[index]

    # --- persistence ----------------------------------------------------------------------------

    def export(self) -> dict[str, list[float]]:
        """The device's head times by candidate label (``cut`` or ``cut@codec``), kept across restarts (JSON-ready)."""
        return {
            candidate.label: recent.samples()
            for candidate, recent in zip(self.candidates, self._heads, strict=True)
            if recent.count
        }

    def restore(self, heads: Mapping[str, Sequence[float]], now_s: float) -> None:
        """Seed head times exported by an earlier run on this device (unknown labels ignored)."""
        for label, samples in heads.items():
            index = self._index.get(label)
            if index is not None:
                for ms in samples:
                    self._heads[index].add(float(ms), now_s)
                self._refresh(self._head, self._heads, index)


def _label(cut_id: str, codec: str) -> str:
    return cut_id if codec == "raw" else f"{cut_id}@{codec}"


def _argmin(values: list[float]) -> int:
    """Index of the smallest of ``values`` (the first on ties; none of them a nan), as ``np.argmin``."""
    return values.index(min(values))


def _argmin_where(values: Sequence[float], mask: Sequence[bool]) -> int:
    """Index of the smallest of ``values`` where ``mask`` holds (the first on ties; none of them a nan)."""
    return _argmin([value if use else math.inf for value, use in zip(values, mask, strict=True)])


def _argmin_but(values: list[float], skipped: int) -> int | None:
    """Index of the smallest of ``values`` but the one at ``skipped`` (the first on ties; ``None`` with no other)."""
    rest = values[:skipped] + values[skipped + 1 :]
    if not rest:
        return None
    index = _argmin(rest)
    return index if index < skipped else index + 1

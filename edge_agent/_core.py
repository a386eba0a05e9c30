"""The agent's loop, written once: events in, commands out, no I/O.

:class:`AgentCore` holds what an agent decides and learns, told the time with
every event: the cut and codec of each request (the :class:`Planner` with
``cut="auto"``, else the fixed cut), what a finished request, a ping's answer
and a hub's status teach the planner, which pings to send, and what a
request does with the hub's answer or its silence (:class:`Request`: the
deadline, the hub's errors, the local fallback). It never sleeps, reads a
clock or touches a socket, as h11's ``Connection`` does not: two drivers
carry its commands out, :class:`~edge_agent.EdgeAgent` on asyncio and MQTT
and the simulation's fleet mode as SimPy processes on simulated time, so a
behaviour fixed here is fixed in both.

Events, and the commands they return:

- :meth:`AgentCore.warmed_up`, :meth:`AgentCore.restore`: head times measured
  outside requests (the warm-up's segment times; an earlier run's, saved).
- :meth:`AgentCore.start`: before the first request; a :class:`SendPing` or
  ``None``. The start is over once :attr:`AgentCore.starting` is false.
- :meth:`AgentCore.request`: a request is to be made; a :class:`Request`
  whose ``decision`` says where it runs. Its own events
  (:meth:`Request.sent`, :meth:`Request.refused`, :meth:`Request.unusable`,
  :meth:`Request.timed_out`) return what to do next: :class:`SendAgain`,
  :class:`SendNew`, :class:`FallBack` or :class:`GiveUp`.
- :meth:`AgentCore.finished`: the request's result; a :class:`SendPing` or ``None``.
  :meth:`AgentCore.abandoned` instead when it ended without one (a
  :class:`GiveUp`, an error, its caller cancelled).
- :meth:`AgentCore.ping_answered`, :meth:`AgentCore.ping_lost`: what became
  of the last ping; the next :class:`SendPing` of its chain, or ``None``.
- :meth:`AgentCore.hub_status`: a hub's status.

One ping chain is out at a time: a driver reports each ping it was told to
send as answered (with its round trip) or lost (after its ``timeout_s``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from edge_agent._planner import Decision, Observation
from edge_agent._results import Timeouts
from protocol import RAW_CODEC, ErrorCode, data_bytes_exact

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from edge_agent._planner import Planner
    from edge_agent._results import InferenceResult
    from protocol import NodeStatus

PING_TIMEOUT_S = 2.0
"""A ping unanswered this long is a measurement missed."""
_PING_FOLLOW_UPS = 3
"""Pings a ping may chain when each wants another at once (a change to confirm, a ping too short)."""
_START_PINGS = 4
_START_PINGS_S = 2.0
"""At start, up to this many pings within this many seconds: the link is known before the first request."""
_FALLBACK_CODES = frozenset(
    {
        ErrorCode.OVERLOADED,
        ErrorCode.DEADLINE_EXCEEDED,
        ErrorCode.INTERNAL,
        ErrorCode.SHUTTING_DOWN,
        ErrorCode.LOADING,
        ErrorCode.LOAD_REFUSED,
    }
)
"""Hub errors after which the local tail gives the same answer the hub would have."""
_LOADING_RETRY_S = 0.5
"""Pause before a new request to a hub that answered ``loading``."""
_NO_REPLY = "no reply within the deadline"
"""The reason of a fallback after the hub's silence."""
_CLOCK_SLACK_S = 1e-6
"""A timer due at the deadline may fire this much before it (float rounding of ``now + (deadline - now)``)."""
SEGMENT_TIMES_EVERY = 8
"""An agent that runs edge-only on a fused session times the chain's segments on every this many
edge-only requests of its planner's: the heads of the cuts on the way stay fresh, for a fraction of
what the chain's boundaries cost."""


@dataclasses.dataclass(frozen=True, slots=True)
class SendPing:
    """Send a ping with ``nbytes`` of padding; report it answered or lost (after ``timeout_s``)."""

    nbytes: int
    timeout_s: float = PING_TIMEOUT_S


@dataclasses.dataclass(frozen=True, slots=True)
class SendAgain:
    """Publish the same request again (same id); the deadline stands."""


@dataclasses.dataclass(frozen=True, slots=True)
class SendNew:
    """At ``at_s``, send the same tensors as a new request (a new id), then report :meth:`Request.sent`."""

    at_s: float


@dataclasses.dataclass(frozen=True, slots=True)
class FallBack:
    """Run the tail on the device (or fail, when this agent cannot): the hub will not answer."""

    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class GiveUp:
    """Fail the request: the hub refused it for a reason the device's tail cannot help with."""

    reason: str


Step = SendAgain | SendNew | FallBack | GiveUp
"""What a request does next, after the hub's answer or silence."""


class Request:
    """One request's life in the core: where it runs, its deadline, what the hub's answer or silence means.

    Made by :meth:`AgentCore.request`; report :meth:`sent` when the request
    is ready to go, then one of :meth:`refused`, :meth:`unusable` or
    :meth:`timed_out` (at :attr:`deadline_s`) unless a usable answer came.

    Attributes:
        decision: Where to run it, with which codec, and why.
        planned: The planner chose the cut, so the result teaches it.
        time_segments: The planner wants the head times of the cuts on the
            way: run the head through the chain, timing each segment (a
            split's head is a stretch of the chain anyway; an edge-only
            request is, one in :data:`SEGMENT_TIMES_EVERY`, where the agent
            otherwise runs edge-only on a fused session).
        started_s: When it was made.
        sent_s: When it was last sent (``nan`` before).
        deadline_s: When to stop waiting for the hub's answer (``nan`` before it is sent).
    """

    def __init__(
        self, decision: Decision, started_s: float, timeouts: Timeouts, *, planned: bool, time_segments: bool = False
    ) -> None:
        self.decision = decision
        self.planned = planned
        self.time_segments = time_segments
        self.started_s = started_s
        self.sent_s = math.nan
        self.deadline_s = math.nan
        self._timeouts = timeouts
        self._loading_until_s = math.nan
        self._can_fall_back = True
        self.overloaded = False
        """The hub answered ``overloaded`` (the hub is there, and full)."""

    def sent(self, now_s: float, *, can_fall_back: bool) -> None:
        """The request (or its renewal after :class:`SendNew`) is ready to publish: its deadline starts now.

        ``can_fall_back``: this agent may and can run the tail itself.
        """
        if math.isnan(self._loading_until_s):
            self._loading_until_s = now_s + self._timeouts.load
        self.sent_s = now_s
        self.deadline_s = now_s + self._timeouts.request
        self._can_fall_back = can_fall_back

    def refused(self, code: str, message: str, now_s: float) -> Step:
        """The hub answered with an error."""
        if code == ErrorCode.SHUTTING_DOWN and now_s < self.deadline_s:
            return SendAgain()  # the stopping hub has left the group: another replica takes it
        if code == ErrorCode.LOADING and not self._can_fall_back and now_s < self._loading_until_s:
            return SendNew(now_s + _LOADING_RETRY_S)  # the old deadline has passed at the hub: a new id
        if code in _FALLBACK_CODES:
            self.overloaded = code == ErrorCode.OVERLOADED
            return FallBack(f"hub {code}: {message}")
        return GiveUp(message)

    def unusable(self, reason: str) -> Step:
        """An answer came that cannot be used (``reason``: why)."""
        return FallBack(reason)

    def timed_out(self, now_s: float) -> Step:
        """No answer by :attr:`deadline_s`.

        Raises:
            RuntimeError: It is not :attr:`deadline_s` yet (a driver that
                gives up early would fall back before the runtime does).
        """
        if not now_s >= self.deadline_s - _CLOCK_SLACK_S:
            msg = f"a request timed out at {now_s:.6f}, before its deadline {self.deadline_s:.6f}"
            raise RuntimeError(msg)
        return FallBack(_NO_REPLY)


@dataclasses.dataclass(slots=True)
class _Chain:
    """The pings out: the one in flight, and how many more it may chain."""

    nbytes: int
    follow_ups: int


class AgentCore:
    """An agent's decisions and what it learns, sans I/O (see the module docstring).

    Args:
        planner: The planner that chooses each request's cut (``cut="auto"``);
            ``None`` with a fixed ``cut``.
        cut: The fixed cut, without a planner.
        codec: The codec of the fixed cut, and of any cut the caller asks for.
        chain: The planner's cut ids in the order of the model's chain, from
            cloud-only to edge-only: what segment times add up to.
        model_sha256: The model's identity, to find its tail times in hub statuses.
        timeouts: The request deadline and how long to wait for a loading model.

    Raises:
        ValueError: Neither or both of ``planner`` and ``cut``, or a planner without a chain.
    """

    def __init__(
        self,
        *,
        planner: Planner | None = None,
        cut: str | None = None,
        codec: str = RAW_CODEC,
        chain: Sequence[str] = (),
        model_sha256: str = "",
        timeouts: Timeouts | None = None,
    ) -> None:
        if (planner is None) == (cut is None):
            msg = "an agent core takes a planner or a fixed cut, not both"
            raise ValueError(msg)
        if planner is not None and not chain:
            msg = "a planner needs the chain's cut ids, to turn segment times into head times"
            raise ValueError(msg)
        self._planner = planner
        self._fixed = None if cut is None else Decision(cut, math.nan, "fixed cut", codec=codec)
        self._codec = codec
        self._chain = tuple(chain)
        self._model_sha256 = model_sha256
        self._timeouts = timeouts or Timeouts()
        self._pings: _Chain | None = None
        self._start_until_s = math.nan
        self._start_pings = 0
        self._edge_only_requests = 0  # the planner's, to time the chain's segments on one in SEGMENT_TIMES_EVERY

    @property
    def planner(self) -> Planner | None:
        """The planner (``None`` for a fixed cut), to inspect: feed it through the core's events."""
        return self._planner

    # --- head times measured outside requests -----------------------------------------------

    def warmed_up(self, runs: Sequence[Sequence[float]], now_s: float, *, edge_only_ms: Sequence[float] = ()) -> None:
        """The warm-up's runs of the whole chain, each as its segments' ms: every candidate's head time.

        The first cut (cloud-only) runs nothing on the device. ``edge_only_ms``:
        runs of the whole model on a fused session, where edge-only runs on
        one: edge-only's head time then, not the chain's.
        """
        if self._planner is None:
            return
        self._planner.seed_head(self._chain[0], 0.0, now_s)
        for segment_ms in runs:
            self._note_segments(segment_ms[:-1] if edge_only_ms else segment_ms, now_s)
        for ms in edge_only_ms:
            self._planner.seed_head(self._chain[-1], ms, now_s)

    def restore(self, heads: Mapping[str, Sequence[float]], now_s: float) -> None:
        """Head times saved by an earlier run on this device (:meth:`head_times`)."""
        if self._planner is not None:
            self._planner.restore(heads, now_s)

    def share_link(self, other: AgentCore) -> None:
        """Take ``other``'s link estimates (round trip, bandwidth): the same device and hub, another input size."""
        if self._planner is not None and other.planner is not None:
            self._planner.link = other.planner.link

    def to_size(self) -> dict[str, list[str]]:
        """The cuts, in chain order, and codecs at each whose bytes the planner wants measured on a real input.

        What a compressor or an image codec sends depends on the values
        (a camera's frame takes a tenth of its pixels' bytes as a JPEG,
        noise all of them; a trained network's activations compress
        otherwise than a random input's), so no estimate made before a real
        input is seen can stand in for it. Before the first request that
        would choose on such estimates, the caller runs the chain once on
        that request's inputs, encodes what crosses each cut listed here
        with each of its codecs, and reports every size (:meth:`sized`).
        Empty for a fixed cut and once every such size is known.
        """
        if self._planner is None:
            return {}
        wanted: dict[str, list[str]] = {}
        for cut_id in self._chain:
            codecs = [codec for codec in self._planner.unmeasured_codecs(cut_id) if not data_bytes_exact(codec)]
            if codecs:
                wanted[cut_id] = codecs
        return wanted

    def sized(self, cut_id: str, codec: str, nbytes: int) -> None:
        """A request at ``cut_id`` with ``codec`` would send ``nbytes`` (see :meth:`to_size`)."""
        if self._planner is not None:
            self._planner.seed_bytes(cut_id, codec, nbytes)

    def head_times(self) -> dict[str, list[float]]:
        """The device's head times by candidate, to keep for the next run (JSON-ready)."""
        return {} if self._planner is None else self._planner.export()

    # --- the start --------------------------------------------------------------------------

    @property
    def starting(self) -> bool:
        """The start's pings are not over yet."""
        return not math.isnan(self._start_until_s)

    def start(self, now_s: float) -> SendPing | None:
        """Before the first request: the pings the planner wants (round trip, bandwidth), up to 4 within 2 s.

        With a ping out already, none now: the start's pings follow when its answer (or loss) is reported.
        """
        if self._planner is None:
            return None
        self._start_until_s = now_s + _START_PINGS_S
        self._start_pings = _START_PINGS
        return None if self._pings is not None else self._next_start_ping(now_s)

    def _next_start_ping(self, now_s: float) -> SendPing | None:
        assert self._planner is not None  # noqa: S101 - only a planner starts
        nbytes = None
        if self._start_pings > 0 and now_s < self._start_until_s:
            nbytes = self._planner.probe(now_s)
        if nbytes is None:
            self._start_until_s = math.nan
            return None
        self._start_pings -= 1
        return self._send_ping(nbytes, follow_ups=0)

    # --- requests ---------------------------------------------------------------------------

    def request(self, now_s: float, *, cut: str | None = None, codec: str | None = None) -> Request:
        """A request is to be made now: where it runs (``cut``, and ``codec``: where the caller asks, not the planner).

        A ``codec`` without a ``cut`` is ignored: the planner's choice comes with its own.
        """
        if cut is not None:
            decision = Decision(cut, math.nan, "asked for by the caller", codec=codec or self._codec)
        elif self._fixed is not None:
            decision = self._fixed
        else:
            assert self._planner is not None  # noqa: S101 - a planner or a fixed cut, checked at the start
            decision = self._planner.choose(now_s)
        planned = cut is None and self._planner is not None
        return Request(
            decision, now_s, self._timeouts, planned=planned, time_segments=planned and self._time_segments(decision)
        )

    def _time_segments(self, decision: Decision) -> bool:
        """Whether the planner's request at ``decision`` times the chain's segments (``Request.time_segments``)."""
        if decision.cut_id != self._chain[-1]:
            return True  # a split's head: a stretch of the chain
        self._edge_only_requests += 1
        return self._edge_only_requests % SEGMENT_TIMES_EVERY == 0

    def finished(
        self, request: Request, result: InferenceResult, now_s: float, *, segment_ms: Sequence[float] = ()
    ) -> SendPing | None:
        """What a finished request measured (``segment_ms``: its head's segments, when a chain ran it).

        A fallback tells the planner no hub answered: it backs off to the
        device; one after an ``overloaded`` answer, how often the hub
        refuses. Then the ping the planner wants, if any and none is out (a
        ping never delays a request).
        """
        planner = self._planner
        if planner is None or not request.planned:
            return None
        if segment_ms:  # the last segment ends at the cut: the observation has it
            self._note_segments(segment_ms[:-1], now_s)
        timings = result.timings
        if request.overloaded:
            planner.observe_refused(now_s)
        elif result.fallback is not None:
            planner.observe_unanswered(now_s, sent_s=request.started_s)
        planner.observe(
            Observation(
                cut_id=result.cut_id,
                codec=request.decision.codec,  # the candidate's: its label is what the planner learns under
                bytes_sent=result.bytes_sent,
                bytes_received=result.bytes_received,
                edge_ms=timings.edge_ms,
                encode_ms=timings.encode_ms,
                network_ms=timings.network_ms,
                hub_queue_ms=timings.hub_queue_ms,
                hub_compute_ms=timings.hub_compute_ms,
                decode_ms=timings.decode_ms,
                total_ms=timings.total_ms,
                answered_by_hub=result.hub_id is not None and result.fallback is None,
                device_queue_ms=timings.device_queue_ms,
            ),
            now_s,
        )
        if self._pings is not None:
            return None
        nbytes = planner.probe(now_s)
        return None if nbytes is None else self._send_ping(nbytes, follow_ups=_PING_FOLLOW_UPS)

    def abandoned(self, request: Request) -> None:
        """The request ended without a result to learn from (the hub refused it for good, or its caller gave up)."""
        if self._planner is not None and request.planned:
            self._planner.observe_abandoned()

    # --- pings ------------------------------------------------------------------------------

    def ping_answered(self, rtt_ms: float, now_s: float) -> SendPing | None:
        """The last ping came back after ``rtt_ms``; then, while the planner urgently wants more, the next one.

        A ping that missed its prediction wants another at once (to confirm a
        change or dismiss it), as does one too short to show the bandwidth:
        up to 3 of them, so a change shows within a few round trips even when
        requests are rare.
        """
        chain = self._ping_out()
        assert self._planner is not None  # noqa: S101 - only a planner pings
        self._planner.observe_probe(chain.nbytes, rtt_ms, now_s)
        if chain.follow_ups > 0:
            wanted = self._planner.probe(now_s)  # so soon after a ping: only if urgent
            if wanted is not None:
                return self._send_ping(wanted, follow_ups=chain.follow_ups - 1)
        return self._next_start_ping(now_s) if self.starting else None

    def ping_lost(self, now_s: float) -> SendPing | None:
        """The last ping went unanswered for its ``timeout_s``: a measurement missed, and its chain ends."""
        self._ping_out()
        return self._next_start_ping(now_s) if self.starting else None

    def ping_abandoned(self) -> None:
        """The ping out will never be reported (its sender was stopped): its chain ends, and no other follows."""
        if self._pings is not None:
            self._ping_out()

    def _send_ping(self, nbytes: int, *, follow_ups: int) -> SendPing:
        self._pings = _Chain(nbytes, follow_ups)
        return SendPing(nbytes)

    def _ping_out(self) -> _Chain:
        if self._pings is None:
            msg = "no ping is out"
            raise RuntimeError(msg)
        chain, self._pings = self._pings, None
        return chain

    # --- the hubs ---------------------------------------------------------------------------

    def hub_status(self, status: NodeStatus, now_s: float) -> None:
        """A hub's status: its tail times for this model, and its queue wait (online hubs only)."""
        if self._planner is not None:
            self._planner.hubs.hear(status, self._model_sha256, now_s)

    def _note_segments(self, segment_ms: Sequence[float], now_s: float) -> None:
        """Segment times of a run from the start of the chain: the head time of each cut they reach."""
        assert self._planner is not None  # noqa: S101 - callers check
        elapsed = 0.0
        for cut_id, ms in zip(self._chain[1:], segment_ms, strict=False):
            elapsed += ms
            self._planner.seed_head(cut_id, elapsed, now_s)

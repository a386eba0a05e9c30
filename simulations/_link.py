"""The link model: what a direction of a network link does to the bytes it carries, told the time.

Like Mahimahi's queues, the model owns no timer: it is told when a chunk of
bytes enters and says when the chunk comes out. The asyncio proxy
(:mod:`simulations._proxy`) feeds it ``loop.time()``; a discrete-event fleet
can feed it simulated time. Both then share one tested model.

A direction (``up``: agent to broker, ``down``: broker to agent) is, in order:

- **rate**: a fixed rate, or a :class:`~simulations._traces.RateTrace`; the
  link serialises one chunk after another, so a chunk leaves when the link is
  free and its bits have been sent (a token bucket at the byte level with no
  burst: the bucket's debt carries over from chunk to chunk);
- **delay**: the one-way propagation delay;
- **jitter**: an extra delay per chunk, drawn from a normal distribution
  (``jitter_s`` is its standard deviation; negative draws count as zero) or
  from measured samples; chunks never overtake each other, as TCP keeps byte
  order, so jitter delays bytes but never reorders them;
- **loss**: a TCP proxy cannot drop packets (TCP recovers them on the fast
  side), so a lost segment is modelled by what it costs a TCP stream: the
  retransmission timeout, during which nothing behind it is delivered.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simulations._traces import RateTrace

SEGMENT_BYTES = 1448
"""A TCP segment's payload on a 1500-byte MTU link (what a loss costs is counted per segment)."""

SLICE_S = 0.01
"""Largest slice of a chunk, in seconds at the link's current rate (toxiproxy slices by 100 ms):
a 4 MB message then trickles out instead of arriving as one late burst."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DirectionSpec:
    """One direction of a link. Every field carries its unit.

    Attributes:
        rate_bit_s: Capacity in bits per second; ``None``: unlimited.
        trace: Capacity over time; when set, ``rate_bit_s`` is ignored.
        delay_s: One-way propagation delay.
        jitter_s: Standard deviation of an extra per-chunk delay.
        jitter_samples_s: Measured extra delays to draw from instead
            (e.g. one-way halves of RTT samples above their minimum).
        loss: Probability that a segment is lost.
        rto_s: What a lost segment delays the stream by (TCP's minimum RTO
            is 200 ms on Linux).
        queue_bytes: Most bytes the link holds in flight before the sender is
            pushed back (the proxy stops reading); ``None``: no limit.
    """

    rate_bit_s: float | None = None
    trace: RateTrace | None = None
    delay_s: float = 0.0
    jitter_s: float = 0.0
    jitter_samples_s: tuple[float, ...] = ()
    loss: float = 0.0
    rto_s: float = 0.2
    queue_bytes: int | None = None

    def __post_init__(self) -> None:
        checks = {
            "rate_bit_s": self.rate_bit_s is None or self.rate_bit_s > 0,
            "delay_s": self.delay_s >= 0,
            "jitter_s": self.jitter_s >= 0,
            "jitter_samples_s": all(sample >= 0 for sample in self.jitter_samples_s),
            "loss": 0 <= self.loss < 1,
            "rto_s": self.rto_s >= 0,
            "queue_bytes": self.queue_bytes is None or self.queue_bytes > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            msg = f"invalid link direction: {', '.join(bad)} out of range in {self!r}"
            raise ValueError(msg)

    def rate_at(self, t_s: float) -> float:
        """Capacity at time ``t_s`` (``math.inf`` when unlimited)."""
        if self.trace is not None:
            return self.trace.rate_at(t_s)
        return math.inf if self.rate_bit_s is None else self.rate_bit_s


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LinkSpec:
    """A link between an agent and its broker: two directions, and where its figures come from.

    Attributes:
        name: How users ask for it (``3g-bus``, ``wifi``, ``5mbit-40ms``).
        up: Agent to broker (requests).
        down: Broker to agent (replies).
        source: Where the figures come from: a trace and its paper, or why a
            fixed figure is typical.
    """

    name: str
    up: DirectionSpec
    down: DirectionSpec
    source: str = ""


class Direction:
    """The state of one direction of one connection: when each chunk leaves.

    Fresh per connection, so that one :class:`DirectionSpec` serves them all.
    The spec may be swapped between chunks (:attr:`spec`): the chunk in hand
    keeps the times it was given.

    Args:
        spec: What the direction does.
        rng: Where jitter and loss draw from (one stream per direction, derived
            from the scenario's seed by the caller), or the seed of that
            stream, to be made on the first draw (a direction without
            jitter or loss never pays for one); :attr:`rng` may be swapped
            between chunks too.
        start_s: The time the connection opened: a trace plays from here.
    """

    def __init__(self, spec: DirectionSpec, rng: random.Random | str, *, start_s: float = 0.0) -> None:
        self.spec = spec
        if isinstance(rng, str):
            self._seed = rng
        else:
            self.rng = rng
        self._start_s = start_s
        self._free_at_s = start_s
        self._last_out_s = start_s

    @functools.cached_property
    def rng(self) -> random.Random:
        """Where jitter and loss draw from: the stream of the seed given, made on the first draw."""
        return random.Random(self._seed)  # noqa: S311 - link draws, not crypto

    def rewind(self, now_s: float, trace_s: float) -> None:
        """From ``now_s`` on, play the trace as from ``trace_s`` seconds into it (chunks in hand keep their times)."""
        self._start_s = now_s - trace_s

    def slices(self, now_s: float, data: bytes) -> list[bytes]:
        """``data`` cut into pieces of at most :data:`SLICE_S` at the current rate (at least a segment)."""
        rate = self.spec.rate_at(now_s - self._start_s)
        if math.isinf(rate) or rate <= 0:
            return [data]
        size = max(SEGMENT_BYTES, int(rate * SLICE_S / 8))
        return [data[start : start + size] for start in range(0, len(data), size)]

    def departure(self, now_s: float, nbytes: int) -> float:
        """When a chunk of ``nbytes`` that enters at ``now_s`` comes out at the far end."""
        spec = self.spec
        sent_s = self._serialised(max(now_s, self._free_at_s), nbytes)
        self._free_at_s = sent_s
        out_s = sent_s + spec.delay_s
        if spec.jitter_s or spec.jitter_samples_s:  # else no draw: adding 0.0 would change nothing
            out_s += self._jitter()
        if spec.loss:
            out_s += self._loss_penalty(nbytes)
        self._last_out_s = max(out_s, self._last_out_s)  # bytes keep their order
        return self._last_out_s

    def _serialised(self, start_s: float, nbytes: int) -> float:
        bits = nbytes * 8
        trace = self.spec.trace
        if trace is not None:
            into = start_s - self._start_s
            return self._start_s + trace.time_to_send(into, bits)
        if self.spec.rate_bit_s is None:
            return start_s
        return start_s + bits / self.spec.rate_bit_s

    def _jitter(self) -> float:
        if self.spec.jitter_samples_s:
            return self.rng.choice(self.spec.jitter_samples_s)
        return max(0.0, self.rng.gauss(0.0, self.spec.jitter_s))

    def _loss_penalty(self, nbytes: int) -> float:
        segments = max(1, math.ceil(nbytes / SEGMENT_BYTES))
        survived = (1 - self.spec.loss) ** segments
        return self.spec.rto_s if self.rng.random() >= survived else 0.0

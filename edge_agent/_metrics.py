"""An agent's Prometheus metrics, on a registry of its own (docs/runtime.md, "Metrics and health").

The names follow the hub's (``edgecut_hub_*``): requests by model, cut, codec
and outcome; the measured and the predicted time of each as histograms, so
that a fleet's p95 and the planner's error can be read across devices; bytes
sent. What the agent estimates (the link's round trip and bandwidth) and its
broker connection are read from it when scraped, through an
:class:`AgentState` snapshot. Labels take only what the agent itself chose
(its model, the cut and codec it ran), never text from a reply: no hub can
make new series.

Each agent has its own :class:`~prometheus_client.CollectorRegistry`: agents
in one process (a fleet's tests, a gateway) do not clash.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from protocol.errors import EdgecutError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Iterator

    from prometheus_client.metrics_core import Metric

    from edge_agent._results import InferenceResult

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The content type of :meth:`AgentMetrics.exposition`: Prometheus's text format."""
SUCCESS = "success"
"""The ``outcome`` of a request the hub answered (or that ran on the device at the edge-only cut)."""
FALLBACK = "fallback"
"""The ``outcome`` of a request whose tail ran on the device after the hub could not answer."""
DURATION_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Histogram buckets in seconds: a small model's millisecond to a slow link's seconds."""

_PREFIX = "edgecut_agent_"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AgentState:
    """What an agent estimates and holds, at one moment (read on its event loop).

    Attributes:
        model: The model's name.
        connected: Whether its broker connection is up.
        rtt_s: The link's estimated round trip, if known (``cut="auto"`` measures it).
        bandwidth_bit_s: The link's estimated bandwidth, if known.
    """

    model: str
    connected: bool
    rtt_s: float | None = None
    bandwidth_bit_s: float | None = None


class _StateCollector:
    """Gauges read from the agents at each scrape."""

    def __init__(self, states: Callable[[], Iterable[AgentState]]) -> None:
        self._states = states

    def collect(self) -> Iterator[Metric]:
        states = tuple(self._states())
        connected = GaugeMetricFamily(
            _PREFIX + "broker_connected", "1 while the broker connection is up (every model's, in a service)."
        )
        connected.add_metric([], 1.0 if all(state.connected for state in states) else 0.0)
        yield connected
        rtt = GaugeMetricFamily(
            _PREFIX + "link_rtt_seconds", "The link's estimated round trip (auto cut only).", labels=["model"]
        )
        bandwidth = GaugeMetricFamily(
            _PREFIX + "link_bandwidth_bits_per_second",
            "The link's estimated bandwidth (auto cut only).",
            labels=["model"],
        )
        for state in states:
            if state.rtt_s is not None:
                rtt.add_metric([state.model], state.rtt_s)
            if state.bandwidth_bit_s is not None:
                bandwidth.add_metric([state.model], state.bandwidth_bit_s)
        yield rtt
        yield bandwidth


class AgentMetrics:
    """An agent's metrics: what it records per request, and what it reads from the agent when scraped.

    Args:
        states: Reads the :class:`AgentState` of each agent it counts for
            (one, or a service's several); called at each scrape, on the
            agents' event loop.
    """

    def __init__(self, states: Callable[[], Iterable[AgentState]]) -> None:
        self.registry = CollectorRegistry()
        """The agent's own registry."""
        self._requests = Counter(
            _PREFIX + "requests",
            "Requests finished, by model, cut, codec and outcome (success, fallback, or the error that ended it).",
            ["model", "cut", "codec", "outcome"],
            registry=self.registry,
        )
        self._duration = Histogram(
            _PREFIX + "request_duration_seconds",
            "Time a request took, measured end to end on the device.",
            ["model", "cut"],
            buckets=DURATION_BUCKETS_S,
            registry=self.registry,
        )
        self._predicted = Histogram(
            _PREFIX + "predicted_duration_seconds",
            "Time the planner predicted for a request it chose a cut for (auto cut only).",
            ["model", "cut"],
            buckets=DURATION_BUCKETS_S,
            registry=self.registry,
        )
        self._sent = Counter(
            _PREFIX + "sent_bytes",
            "Bytes of requests sent to hubs (each request's first send), by model, cut and codec.",
            ["model", "cut", "codec"],
            registry=self.registry,
        )
        self.registry.register(_StateCollector(states))

    async def record(self, model: str, cut: str, codec: str, request: Awaitable[InferenceResult]) -> InferenceResult:
        """Await ``request`` and count what it ended in: :meth:`finished`, or :meth:`failed` and re-raised."""
        try:
            result = await request
        except EdgecutError as exc:
            self.failed(model, cut, codec, type(exc).__name__)
            raise
        self.finished(model, result)
        return result

    def finished(self, model: str, result: InferenceResult) -> None:
        """A request finished with ``result``: its outcome, times and bytes."""
        outcome = FALLBACK if result.fallback is not None else SUCCESS
        self._requests.labels(model, result.cut_id, result.codec, outcome).inc()
        self._duration.labels(model, result.cut_id).observe(result.timings.total_ms / 1000)
        if not math.isnan(result.predicted_ms):
            self._predicted.labels(model, result.cut_id).observe(result.predicted_ms / 1000)
        if result.bytes_sent:
            self._sent.labels(model, result.cut_id, result.codec).inc(result.bytes_sent)

    def failed(self, model: str, cut: str, codec: str, error: str) -> None:
        """A request ended in an error (``error``: the exception's class name, e.g. ``RequestTimeoutError``)."""
        self._requests.labels(model, cut, codec, error).inc()

    def exposition(self) -> bytes:
        """The metrics in Prometheus's text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)

"""A hub's Prometheus metrics, on a registry of its own (docs/runtime.md, "Metrics and health").

Names and labels follow Prometheus's conventions and Triton's choices:
requests by model, cut and outcome; queue and compute times as histograms,
so that a fleet can aggregate p95 and p99 across replicas; gauges of what the
hub holds now. Labels name only what the hub itself serves, never a value a
sender chooses (see :meth:`HubMetrics.failed`), so no client can make new
series.

The request path records three things, each an increment and at most two
histogram observations: a request whose tail ran (:meth:`HubMetrics.ran`), a
tail run and the batch it took (:meth:`HubMetrics.batch`), and an error reply
(:meth:`HubMetrics.failed`). Everything else the hub already
counts or holds (replies published, pings, repeats, its queue, tails and
connections) is read from it when scraped, through a :class:`HubState`
snapshot, and costs nothing between scrapes.

Each hub has its own :class:`~prometheus_client.CollectorRegistry`, never
the process-wide one: hubs in one process (tests) do not clash.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from prometheus_client.metrics_core import Metric

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The content type of :meth:`HubMetrics.exposition`: Prometheus's text format."""
SUCCESS = "success"
"""The ``outcome`` of a request whose tail ran; any other outcome is an error code."""
DURATION_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Histogram buckets in seconds: a small tail's fraction of a millisecond to a queue's seconds."""
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
"""Histogram buckets of batch sizes (rows, or requests, per tail run)."""

_PREFIX = "edgecut_hub_"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HubState:
    """What a hub holds and has counted, at one moment (read on its event loop).

    Attributes:
        queue_depth: Requests accepted and not yet answered.
        queue_bytes: Bytes those requests hold (as counted against ``max_queue_bytes``).
        tails_loaded: Tails loaded and ready to run.
        tails_loading: Tails being loaded.
        connected: Broker connection name to whether it is connected now.
        replies_sent: Replies published (successes and errors, repeats of earlier replies included).
        pings_answered: Pings answered.
        pings_dropped: Pings dropped unanswered (past a budget, or malformed).
        repeats: Requests received again under an id that was running or answered.
        providers: Each model loaded: its sha256 to its name and the ONNX
            Runtime execution providers its sessions run on.
    """

    queue_depth: int
    queue_bytes: int
    tails_loaded: int
    tails_loading: int
    connected: Mapping[str, bool]
    replies_sent: int
    pings_answered: int
    pings_dropped: int
    repeats: int
    providers: Mapping[str, tuple[str, tuple[str, ...]]] = dataclasses.field(default_factory=dict)


class _StateCollector:
    """The metrics read from a :class:`HubState` at each scrape."""

    def __init__(self, state: Callable[[], HubState]) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        state = self._state()
        yield GaugeMetricFamily(_PREFIX + "queue_depth", "Requests accepted and not yet answered.", state.queue_depth)
        yield GaugeMetricFamily(_PREFIX + "queue_bytes", "Bytes the requests accepted hold.", state.queue_bytes)
        yield GaugeMetricFamily(_PREFIX + "tails_loaded", "Tails loaded and ready to run.", state.tails_loaded)
        yield GaugeMetricFamily(_PREFIX + "tails_loading", "Tails being loaded.", state.tails_loading)
        connected = GaugeMetricFamily(
            _PREFIX + "broker_connected", "1 while the connection to the broker is up.", labels=["connection"]
        )
        for name, up in state.connected.items():
            connected.add_metric([name], 1.0 if up else 0.0)
        yield connected
        yield CounterMetricFamily(_PREFIX + "replies_sent", "Replies published.", state.replies_sent)
        pings = CounterMetricFamily(_PREFIX + "pings", "Pings answered or dropped.", labels=["outcome"])
        pings.add_metric(["answered"], state.pings_answered)
        pings.add_metric(["dropped"], state.pings_dropped)
        yield pings
        yield CounterMetricFamily(
            _PREFIX + "repeated_requests", "Requests received again under an id seen lately.", state.repeats
        )
        provider = GaugeMetricFamily(
            _PREFIX + "model_provider",
            "1 for each ONNX Runtime execution provider a loaded model runs on.",
            labels=["model", "provider"],
        )
        for model, providers in sorted({(name, p) for name, ps in state.providers.values() for p in ps}):
            provider.add_metric([model, providers], 1.0)
        yield provider


class HubMetrics:
    """A hub's metrics: what it records as it serves, and what it reads from the hub when scraped.

    Args:
        state: Reads the hub's :class:`HubState`; called at each scrape, on the hub's event loop.
    """

    def __init__(self, state: Callable[[], HubState]) -> None:
        self.registry = CollectorRegistry()
        """The hub's own registry."""
        self._requests = Counter(
            _PREFIX + "requests",
            "Requests answered, by model, cut and outcome (success, or the error code of the reply).",
            ["model", "cut", "outcome"],
            registry=self.registry,
        )
        self._queue = Histogram(
            _PREFIX + "queue_duration_seconds",
            "Time a request waited before its tail ran (its tail's first load aside).",
            ["model"],
            buckets=DURATION_BUCKETS_S,
            registry=self.registry,
        )
        self._compute = Histogram(
            _PREFIX + "compute_duration_seconds",
            "Time a tail took to run.",
            ["model", "cut"],
            buckets=DURATION_BUCKETS_S,
            registry=self.registry,
        )
        self._batch_rows = Histogram(
            _PREFIX + "batch_size",
            "Size of the batch axis in each tail run: the rows of every request it ran together (dynamic batching).",
            ["model", "cut"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self._batch_requests = Histogram(
            _PREFIX + "batch_requests",
            "Requests each tail run answered (1 for a request that ran alone).",
            ["model", "cut"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(state))

    def ran(self, model: str, cut: str, *, queue_s: float, compute_s: float) -> None:
        """A request's tail ran: one success, and its queue and compute times."""
        self._requests.labels(model, cut, SUCCESS).inc()
        self._queue.labels(model).observe(queue_s)
        self._compute.labels(model, cut).observe(compute_s)

    def batch(self, model: str, cut: str, *, rows: int, requests: int) -> None:
        """A tail ran once, for ``requests`` requests with ``rows`` rows together."""
        self._batch_rows.labels(model, cut).observe(rows)
        self._batch_requests.labels(model, cut).observe(requests)

    def failed(self, model: str, cut: str, code: str) -> None:
        """A request was answered with error ``code``.

        Args:
            model: The model's name as the hub knows it, or ``""`` when the
                hub holds no tail of the request's model at its cut (an
                unknown model or cut, a tail not loaded yet, a request it
                could not read): then ``cut`` is ``""`` too.
            cut: The request's cut, or ``""``.
            code: The error code.
        """
        self._requests.labels(model, cut, code).inc()

    def exposition(self) -> bytes:
        """Every metric in Prometheus's text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)

"""Hub configuration: cheap to build, checked early."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import socket
from typing import TYPE_CHECKING

from cloud_hub._catalog import parse_preload
from models import check_providers
from protocol import (
    BLOCK_ENVELOPE_BYTES,
    DEFAULT_BLOCK_BYTES,
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_BLOCK_BYTES,
    MIN_BLOCK_BYTES,
    Topics,
)
from protocol.errors import ConfigError
from protocol.http import parse_address
from protocol.mqtt import BrokerURL

if TYPE_CHECKING:
    from pathlib import Path

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
DEFAULT_GROUP = "edgecut-hubs"


_COUNTS = (
    "workers",
    "max_queue",
    "max_queue_bytes",
    "max_queue_per_agent",
    "max_batch",
    "max_batch_size",
    "max_sessions",
    "max_extra_cuts",
    "max_message_bytes",
)
_DURATIONS = ("status_interval", "grace", "connect_timeout", "repeat_window")
_MAX_BATCH_DELAY_MS = 10_000.0
_RATES = ("loads_per_agent_minute", "loads_per_minute", "pings_per_agent_s", "pings_per_s")


def default_hub_id() -> str:
    """``hub-<host>-<pid>``, with characters MQTT topics cannot carry replaced."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40]
    return f"hub-{host}-{os.getpid()}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class HubConfig:
    """Everything a :class:`~cloud_hub.Hub` needs to know.

    Attributes:
        broker: Broker URL, ``mqtt://[user:pass@]host:port`` or ``mqtts://``.
        models_dir: Directory with split directories (``manifest.json`` +
            ``tail.onnx``) and/or full ``.onnx`` models; searched recursively.
        use_zoo: Also serve the built-in zoo models (built on first use).
        group: Shared-subscription group; hubs in one group split the requests.
        hub_id: This hub's id in replies and status; unique per broker.
        prefix: Topic prefix (see ``protocol.Topics``).
        workers: Tail runs at the same time (each a request, or a batch of
            requests of one tail): batches of different models run in
            parallel with more than one.
        threads: ONNX Runtime intra-op threads per run (``None``: all cores).
        max_queue: Requests accepted but not finished before new ones are
            answered ``overloaded`` straight away.
        max_queue_bytes: The same bound in bytes: what queued requests may
            hold in memory together, each counted as its payload or, when
            that is more, its tensors decoded (as they declare themselves,
            before anything is decoded). A request declaring more on its own
            is refused ``too_large``.
        max_queue_per_agent: The bound of ``max_queue`` for the requests of
            one agent: past it, that agent's requests are answered
            ``overloaded`` while others' are still taken. Queued requests
            are run one per agent in turn, so an agent that sends faster
            does not delay the others more.
        max_batch: Largest batch (the size of the model's batch axis: a symbolic first axis of its inputs) one
            request may carry; larger ones are refused ``bad_request``. The
            tail's working memory grows with it. Not to be confused with
            ``max_batch_size``, the bound of a batch the hub makes.
        max_batch_size: Dynamic batching: the largest batch (the size of the
            batch axis, all requests' rows together) the hub makes of queued
            requests for one tail, as Triton's ``max_batch_size``; 1 turns
            batching off. A request of more rows on its own (up to
            ``max_batch``) still runs, alone.
        max_batch_delay_ms: How long a worker waits for more requests to join
            a batch that has room; 0 (the default): it takes what is queued
            and never waits, so a lone request is not delayed.
        repeat_window: Seconds a request id is remembered after its reply, so
            that a request sent again is answered again, not run again.
        max_sessions: Tail sessions kept loaded (least recently used go first).
        max_message_bytes: Largest message accepted or sent.
        status_interval: Seconds between status publications (load reports).
        grace: Seconds a shutdown waits for accepted requests to finish.
        connect_timeout: Seconds :meth:`Hub.serve` waits for the first broker
            connection before it gives up (later losses are retried forever).
        preload: Tails to load before the hub goes online, as ``MODEL:CUT``
            (a zoo name, a manifest's model id or an ``.onnx`` file's stem),
            so that no request pays for loading them; they stay loaded.
        miss_ttl: Seconds a request for an unknown model or cut is remembered
            (repeats are refused at once), the least time between two
            scans of ``models_dir`` for new files, and (above 0) the time
            between two scans for versions to offer (``deliver_models``).
        http: ``HOST:PORT`` to serve ``/metrics``, ``/health/live`` and
            ``/health/ready`` on (``[::1]:8000`` for IPv6; port 0 picks a
            free one, see :attr:`Hub.http`); ``None`` (the default): no HTTP.
            Needs prometheus-client (``pip install 'edgecut[metrics]'``).
        deliver_models: Offer the segments and split directories under
            ``models_dir`` to agents, which fetch them in blocks
            (docs/protocol.md, section 9), on a broker connection of its own.
        block_size: Bytes per block of a delivered file (1 KiB to 1 MiB),
            below the broker's packet limit; ``None`` (the default): 128 KiB,
            or less to fit ``max_message_bytes`` (see :attr:`delivery_block_size`).
        providers: ONNX Runtime execution providers the tails run on, in
            order of preference: short names (``cuda``, ``tensorrt``,
            ``openvino``, ``coreml``, ``directml``, ``migraphx``, ``cpu``;
            ``models.PROVIDERS``) or ORT's own. Empty (the default) or
            ``("auto",)``: the best the installed onnxruntime has
            (``models.AUTO_ORDER``: every accelerator but TensorRT and CoreML,
            then the CPU). Unknown names are refused here; a provider the installed
            onnxruntime lacks makes :class:`~cloud_hub.Hub` raise
            ``ProviderUnavailableError`` when it is created.
    """

    broker: str = DEFAULT_BROKER
    models_dir: Path | None = None
    use_zoo: bool = True
    group: str = DEFAULT_GROUP
    hub_id: str = dataclasses.field(default_factory=default_hub_id)
    prefix: str = "edgecut"
    workers: int = 1
    threads: int | None = None
    max_queue: int = 64
    max_queue_bytes: int = 128 * 1024 * 1024
    max_queue_per_agent: int = 16
    max_batch: int = 32
    max_batch_size: int = 8
    max_batch_delay_ms: float = 0.0
    max_sessions: int = 8
    max_extra_cuts: int = 8
    load_on_demand: bool = True
    loads_per_agent_minute: float = 20.0
    loads_per_minute: float = 60.0
    pings_per_agent_s: float = 10.0
    pings_per_s: float = 500.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    status_interval: float = 5.0
    grace: float = 10.0
    connect_timeout: float = 10.0
    preload: tuple[str, ...] = ()
    miss_ttl: float = 10.0
    repeat_window: float = 60.0
    http: str | None = None
    deliver_models: bool = True
    block_size: int | None = None
    providers: tuple[str, ...] = ()

    @property
    def delivery_block_size(self) -> int:
        """Bytes per delivered block: ``block_size``, else 128 KiB or what fits ``max_message_bytes``."""
        if self.block_size is not None:
            return self.block_size
        return min(DEFAULT_BLOCK_BYTES, self.max_message_bytes - BLOCK_ENVELOPE_BYTES)

    def __post_init__(self) -> None:
        BrokerURL.parse(self.broker)
        try:
            Topics(self.prefix).status(self.hub_id)
            Topics(self.prefix).shared_requests(self.group)
            Topics(self.prefix).shared_pings(self.group)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        if self.models_dir is not None and not self.models_dir.is_dir():
            msg = f"models directory {self.models_dir} does not exist"
            raise ConfigError(msg)
        if self.models_dir is None and not self.use_zoo:
            msg = "nothing to serve: give a models directory or enable the zoo"
            raise ConfigError(msg)
        if not self.load_on_demand and not self.preload:
            msg = "nothing to serve: a hub that does not load on demand needs tails to preload"
            raise ConfigError(msg)
        for name in _COUNTS:
            if getattr(self, name) < 1:
                msg = f"{name} must be at least 1"
                raise ConfigError(msg)
        for name in _DURATIONS:
            if not getattr(self, name) > 0:
                msg = f"{name} must be more than 0 seconds"
                raise ConfigError(msg)
        for name in _RATES:
            if not getattr(self, name) > 0:
                msg = f"{name} must be more than 0"
                raise ConfigError(msg)
        if len(self.preload) > self.max_sessions:
            msg = f"{len(self.preload)} tails to preload, more than max_sessions ({self.max_sessions}) keeps loaded"
            raise ConfigError(msg)
        if not 0 <= self.max_batch_delay_ms <= _MAX_BATCH_DELAY_MS:
            msg = f"max_batch_delay_ms must be from 0 to {_MAX_BATCH_DELAY_MS:g}, not {self.max_batch_delay_ms}"
            raise ConfigError(msg)
        if not self.miss_ttl >= 0:
            msg = "miss_ttl must be 0 seconds or more"
            raise ConfigError(msg)
        if self.deliver_models and not (
            MIN_BLOCK_BYTES
            <= self.delivery_block_size
            <= min(MAX_BLOCK_BYTES, self.max_message_bytes - BLOCK_ENVELOPE_BYTES)
        ):
            msg = (
                f"block_size must be from {MIN_BLOCK_BYTES} to {MAX_BLOCK_BYTES} bytes and fit max_message_bytes "
                f"({self.max_message_bytes}) with its {BLOCK_ENVELOPE_BYTES}-byte envelope; or turn delivery off"
            )
            raise ConfigError(msg)
        for spec in self.preload:
            parse_preload(spec)
        check_providers(self.providers)
        if self.http is not None:
            self.http_address()  # checks it
            if importlib.util.find_spec("prometheus_client") is None:
                msg = "http needs prometheus-client: pip install 'edgecut[metrics]'"
                raise ConfigError(msg)

    def http_address(self) -> tuple[str, int] | None:
        """:attr:`http` as ``(host, port)``, or ``None`` when there is no HTTP endpoint.

        Raises:
            ConfigError: ``http`` is not ``HOST:PORT`` with a port from 0 to 65535.
        """
        return None if self.http is None else parse_address(self.http)

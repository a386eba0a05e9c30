"""The agent as a device service (``edgecut agent serve``): several models, a local API, a watched directory.

One process serves every configured model, each with an
:class:`~edge_agent.EdgeAgent` of its own (its own MQTT connection, as
``AGENT_ID-NAME``), all on one event loop. Its lifecycle:

1. the local HTTP API listens (live, not ready);
2. the models open (ONNX Runtime sessions, off the loop); the agents enter
   without waiting for the broker: **offline first**, a request made while the
   broker is away runs edge-only on the device, and each agent joins the
   broker whenever it appears;
3. ready: the watched directory is read, systemd hears ``READY=1`` and, with a
   watchdog, ``WATCHDOG=1`` at half its interval; a fetched model that
   follows new versions (``update``) switches to each one a hub publishes,
   between requests (:mod:`edge_agent._rollout`);
4. on :meth:`AgentService.request_shutdown` (the first SIGINT/SIGTERM):
   ``STOPPING=1``, new requests are answered 503, those under way get up to
   ``grace_s`` to finish, then everything stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent._agent import EdgeAgent
from edge_agent._api import KServeApi
from edge_agent._camera import open_camera, watch_camera
from edge_agent._energy import RADIOS, EnergyModel
from edge_agent._fetch import fetch_model
from edge_agent._kserve import InferRequest, infer_response, tensor_metadata
from edge_agent._model_cache import ModelCache
from edge_agent._notify import Notifier
from edge_agent._results import Timeouts
from edge_agent._rollout import ServedModel, Source, follow_versions
from edge_agent._watch import watch_directory
from models import EDGE_ONLY
from protocol.errors import ConfigError, ModelError, TransportError
from protocol.http import Endpoint, parse_address
from protocol.lifecycle import cancel_and_wait, raise_forcing, serve_until_signalled

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping

    import numpy as np

    from edge_agent._metrics import AgentState
    from edge_agent._results import InferenceResult
    from edge_agent._service_config import ModelConfig, ServiceConfig

logger = logging.getLogger("edgecut.agent")

_ANSWER_GRACE_S = 2.0
"""How long a shutdown waits, once the requests are done, for their answers to be encoded and written."""
OFFLINE_REASON = "no broker connection: ran on the device"
"""The ``reason`` of a result computed edge-only because the broker was away."""


def resolve_model(entry: ModelConfig) -> str | Path:
    """What a configured local model opens: an ``.onnx`` file, split or segments directory, else a zoo name.

    Loading the config made every path absolute. A fetched model
    (``fetch = true``) is resolved by :func:`fetch_configured` instead.
    """
    return Path(entry.model) if Path(entry.model).is_absolute() else entry.model


async def fetch_configured(
    entry: ModelConfig, config: ServiceConfig, *, agent_id: str | None = None, cache: ModelCache | None = None
) -> Path:
    """The directory of a fetched model (``fetch = true``): in ``state_dir``'s cache, from a hub unless held.

    With no broker or no hub offering it, the version held (the one asked
    for, else the most recently used), so a device starts offline on what
    it has. Without a version asked for, a version this device found bad
    (refused or rolled back) is passed over for the most recently used good
    one held.

    Args:
        entry: The model's table.
        config: The service's settings (broker, prefix, state directory).
        agent_id: Who fetches, in topics (under an ACL, its user name).
        cache: The cache (default: ``state_dir``'s ``models``).

    Raises:
        ModelError: No hub offers the model (or version) and the cache does not hold it.
        TransportError: The same, for want of a broker.
    """
    assert config.state_dir is not None  # noqa: S101 - the config's check
    cache = cache or ModelCache(config.state_dir / "models")
    try:
        fetched = await fetch_model(
            config.broker, entry.model, cache=cache, version=entry.version, prefix=config.prefix, agent_id=agent_id
        )
    except (ModelError, TransportError) as exc:
        held = await asyncio.to_thread(_held, cache, entry)
        if held is None:
            raise
        logger.warning("%s: serving version %s held here: %s", entry.name, held.name, exc)
        return held
    bad = await asyncio.to_thread(cache.bad, entry.model)
    if entry.version is None and fetched.name in bad:
        held = await asyncio.to_thread(_held, cache, entry, skip=bad.keys())
        if held is not None:
            logger.warning("%s: serving version %s, not %s: %s", entry.name, held.name, fetched.name, bad[fetched.name])
            return held
    return fetched


def _held(cache: ModelCache, entry: ModelConfig, skip: Collection[str] = ()) -> Path | None:
    """The version of a fetched model the cache holds: the one asked for, else the most recently used not skipped."""
    versions = [entry.version] if entry.version is not None else cache.versions(entry.model)
    held = (cache.path(entry.model, version) for version in versions if version not in skip)
    return next((path for path in held if path is not None), None)


class AgentService:
    """The configured models served locally over HTTP (KServe v2), and from a watched directory.

    Use :meth:`serve` (or :func:`run_service`, which adds signal handling).

    Args:
        config: What to serve (see :func:`load_service_config`).
        notifier: Tells systemd about readiness and liveness (default: from the environment).
        grace_s: How long a shutdown waits for requests under way.
    """

    def __init__(self, config: ServiceConfig, *, notifier: Notifier | None = None, grace_s: float = 10.0) -> None:
        self.config = config
        self._agent_id = config.agent_id or f"agent-{uuid.uuid4().hex[:8]}"
        self.served: dict[str, ServedModel] = {}
        """Each model by its name, with the agent serving it (once :meth:`serve` has opened them)."""
        self._cache = ModelCache(config.state_dir / "models") if config.state_dir is not None else None
        self._notifier = notifier or Notifier()
        self._grace_s = grace_s
        if importlib.util.find_spec("prometheus_client") is None:
            msg = "the agent service needs prometheus-client for /metrics: pip install 'edgecut[agent]'"
            raise ConfigError(msg)
        from edge_agent._metrics import CONTENT_TYPE, AgentMetrics  # noqa: PLC0415 - an optional extra

        self._metrics = AgentMetrics(self._states)
        self._last_cut: dict[str, str] = {}
        self._under_way = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._shutdown = asyncio.Event()
        host, port = parse_address(config.listen, "listen")
        self.http = Endpoint(
            host,
            port,
            exposition=self._metrics.exposition,
            content_type=CONTENT_TYPE,
            not_ready=self.not_ready,
            app=KServeApi(self),
            max_body_bytes=config.max_body_bytes,
        )
        """The local API; its ``address`` once serving (the port that port 0 picked)."""
        self.ready = asyncio.Event()
        """Set once every model is open and requests are taken."""

    @property
    def agents(self) -> dict[str, EdgeAgent]:
        """The agent serving each model's new requests now, by the model's name."""
        return {name: served.agent for name, served in self.served.items()}

    def request_shutdown(self) -> None:
        """Ask :meth:`serve` to finish the requests under way and stop."""
        self._shutdown.set()

    @property
    def is_shutting_down(self) -> bool:
        """True once a shutdown was requested."""
        return self._shutdown.is_set()

    def not_ready(self) -> str | None:
        """Why requests cannot be taken now, or ``None`` when they can."""
        if self.is_shutting_down:
            return "shutting down"
        return None if self.ready.is_set() else "the models are opening"

    async def serve(self) -> None:
        """Serve until :meth:`request_shutdown`, then drain and stop.

        Raises:
            ConfigError: The API's address cannot be listened on, or the watched directory is missing.
            ModelError: A model or cut is unknown.
        """
        watched = self.config.watch_dir
        if watched is not None and not await asyncio.to_thread(watched.is_dir):
            msg = f"watch_dir: {watched} is not a directory"
            raise ConfigError(msg)
        camera = None if self.config.camera is None else await asyncio.to_thread(open_camera, self.config.camera)
        self._notifier.notify("STATUS=opening the models")
        await self.http.start()  # first: live while the models open, and not ready
        try:
            async with contextlib.AsyncExitStack() as agents:
                for entry in self.config.models:
                    served = await self._open(entry)
                    agents.push_async_callback(served.aclose)
                    self.served[entry.name] = served
                    if entry.fetch and entry.update and entry.version is None:
                        following = self._start(self._follow(entry, served), f"{entry.name}.versions")
                        agents.push_async_callback(_stopped, following)
                watchdog = self._start(self._watchdog(), "watchdog") if self._notifier.watchdog_s else None
                watching = self._start(self._watch(watched), "watch") if watched is not None else None
                filming = self._start(self._camera(camera), "camera") if camera is not None else None
                try:
                    self.ready.set()
                    self._notifier.notify("READY=1", f"STATUS=serving {', '.join(self.agents)}")
                    logger.info("serving %s on http://%s:%d", ", ".join(self.agents), *(self.http.address or ("", 0)))
                    await self._until_shutdown(watching)
                    self._notifier.notify("STOPPING=1")
                    await _stopped(watching)  # a file under way gets its result at the next start
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._idle.wait(), self._grace_s)
                    await self.http.close(grace_s=_ANSWER_GRACE_S)  # the answers of the requests just finished
                finally:
                    await _stopped(watching)
                    await _stopped(filming)
                    await _stopped(watchdog)  # the last: the drain is watched too
        finally:
            self.ready.clear()
            await self.http.close()

    async def _open(self, entry: ModelConfig) -> ServedModel:
        """Model ``entry`` opened (fetched first, if it is a fetched one): its agent entered."""
        agent_id = f"{self._agent_id}-{entry.name}"
        if entry.fetch:
            model: str | Path = await fetch_configured(entry, self.config, agent_id=agent_id, cache=self._cache)
        else:
            model = resolve_model(entry)
        agent = await self._agent(entry, model, agent_id).__aenter__()
        cache = self._cache if entry.fetch else None
        served = ServedModel(
            entry.name,
            agent,
            trial_requests=entry.trial_requests,
            on_closed=self._unpin(entry),
            bad=await asyncio.to_thread(cache.bad, entry.model) if cache is not None else None,
            on_bad=(lambda version, why: cache.mark_bad(entry.model, version, why)) if cache is not None else None,
        )
        if cache is not None:
            cache.pin(entry.model, served.version)
        return served

    def _unpin(self, entry: ModelConfig) -> Callable[[str], None] | None:
        cache = self._cache
        if not entry.fetch or cache is None:
            return None
        return lambda version: cache.unpin(entry.model, version)

    async def _follow(self, entry: ModelConfig, served: ServedModel) -> None:
        assert self._cache is not None  # noqa: S101 - fetch needs state_dir: the config's check
        agent_id = f"{self._agent_id}-{entry.name}"
        source = Source(
            broker=self.config.broker,
            model=entry.model,
            cache=self._cache,
            prefix=self.config.prefix,
            agent_id=agent_id,
        )

        def open_version(
            directory: Path,
        ) -> EdgeAgent:  # its own client id beside the running one, silent till switched
            return self._agent(entry, directory, agent_id, client_id=f"{agent_id}.{directory.name}", announce=False)

        await follow_versions(served, source, open_version)

    def _agent(
        self,
        entry: ModelConfig,
        model: str | Path,
        agent_id: str,
        *,
        client_id: str | None = None,
        announce: bool = True,
    ) -> EdgeAgent:
        return EdgeAgent(
            self.config.broker,
            model=model,
            cut=entry.cut,
            agent_id=agent_id,
            prefix=self.config.prefix,
            timeouts=Timeouts(request=entry.timeout_s),
            fallback=entry.fallback,
            threads=entry.threads,
            objective=entry.objective,
            budget_ms=entry.budget_ms,
            energy=None
            if entry.device_watts is None
            else EnergyModel(entry.device_watts, RADIOS[entry.radio], ms_per_joule=entry.ms_per_joule),
            state_dir=self.config.state_dir,
            codec=entry.codecs,
            wait_for_broker=False,
            client_id=client_id,
            announce=announce,
        )

    @staticmethod
    def _start(loop: Coroutine[None, None, None], name: str) -> asyncio.Task[None]:
        return asyncio.create_task(loop, name=f"edgecut[service].{name}")

    async def _until_shutdown(self, watching: asyncio.Task[None] | None) -> None:
        """Wait for a shutdown request; the watched directory's loop failing (the directory gone) ends the service."""
        shutdown = asyncio.create_task(self._shutdown.wait(), name="edgecut[service].shutdown")
        try:
            await asyncio.wait([shutdown] + ([watching] if watching else []), return_when=asyncio.FIRST_COMPLETED)
        finally:
            shutdown.cancel()
        if watching is not None and watching.done() and not self.is_shutting_down:
            watching.result()  # it ends only by failing: raise its error

    async def infer(self, name: str, inputs: np.ndarray | Mapping[str, np.ndarray]) -> InferenceResult:
        """Run one request on model ``name``: split as configured, or edge-only while the broker is away.

        Raises:
            KeyError: No model is served as ``name``.
            RuntimeError: The service is not ready, or is shutting down.
            ValueError: The inputs do not fit the model.
            EdgecutError: As :meth:`EdgeAgent.infer` raises.
        """
        why = self.not_ready()
        if why is not None:
            raise RuntimeError(why)
        served = self.served[name]

        async def run(agent: EdgeAgent) -> InferenceResult:
            offline = not agent.connected
            cut = EDGE_ONLY if offline else None
            result = await self._metrics.record(name, cut or agent.cut, agent.codec, agent.infer(inputs, cut=cut))
            return dataclasses.replace(result, reason=OFFLINE_REASON) if offline else result

        self._under_way += 1
        self._idle.clear()
        try:
            result = await served.infer(run)
        finally:
            self._under_way -= 1
            if self._under_way == 0:
                self._idle.set()
        self._last_cut[name] = result.cut_id
        return result

    def describe(self, name: str) -> dict[str, Any]:
        """Model ``name``'s metadata: its tensors, and its cuts, current cut and link estimate (KServe ``parameters``).

        Raises:
            KeyError: No model is served as ``name``.
        """
        agent = self.agents[name]
        rtt_ms, bandwidth = agent.link_estimate()
        halves = agent.model
        return {
            "name": name,
            "versions": [self.version(name)],
            "platform": "onnxruntime_onnx",
            "inputs": [tensor_metadata(spec) for spec in agent.inputs],
            "outputs": [tensor_metadata(spec) for spec in halves.outputs],
            "parameters": {
                "model": halves.model_id,
                "cuts": [cut.id for cut in halves.cuts],
                "cut": agent.cut,
                "last_cut": self._last_cut.get(name),
                "connected": agent.connected,
                "link": {"rtt_ms": rtt_ms, "bandwidth_bit_s": bandwidth},
                "update": dataclasses.asdict(self.served[name].state()),
            },
        }

    def _states(self) -> list[AgentState]:
        from edge_agent._metrics import AgentState  # noqa: PLC0415 - an optional extra

        states = []
        for name, agent in self.agents.items():
            rtt_ms, bandwidth = agent.link_estimate()
            rtt_s = None if rtt_ms is None else rtt_ms / 1000
            states.append(AgentState(model=name, connected=agent.connected, rtt_s=rtt_s, bandwidth_bit_s=bandwidth))
        return states

    async def _watchdog(self) -> None:
        while self._notifier.watchdog_s is not None:
            self._notifier.notify("WATCHDOG=1")
            await asyncio.sleep(self._notifier.watchdog_s)

    def version(self, name: str) -> str:
        """The version of model ``name`` that new requests run on: the start of its SHA-256."""
        return self.served[name].version

    async def _watch(self, directory: Path) -> None:
        name = self.config.watch_model or self.config.models[0].name
        spec = self.agents[name].inputs[0]
        await watch_directory(
            directory, spec, self._answer(name), rate_hz=self.config.watch_rate_hz, queue=self.config.watch_queue
        )

    async def _camera(self, capture: Any) -> None:  # noqa: ANN401 - cv2.VideoCapture
        name = self.config.camera_model or self.config.models[0].name
        spec = self.agents[name].inputs[0]
        live = (self.config.camera or "").isdigit()
        rate_hz, results = self.config.camera_rate_hz, self.config.camera_results
        await watch_camera(capture, spec, self._answer(name), rate_hz=rate_hz, results=results, live=live)

    def _answer(self, name: str) -> Callable[[np.ndarray], Awaitable[dict[str, Any]]]:
        """What a local input (a watched file, a camera frame) gets from model ``name``: its KServe answer."""

        async def infer(array: np.ndarray) -> dict[str, Any]:
            result = await self.infer(name, array)
            return infer_response(name, result.model_version, InferRequest({}), result)

        return infer


async def _stopped(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` (if any) until it has ended: one cancel may not do (see :func:`cancel_and_wait`)."""
    if task is not None:
        await cancel_and_wait(task)


def run_service(config: ServiceConfig) -> None:
    """Serve ``config`` until SIGINT/SIGTERM: the first finishes requests under way, a second stops at once.

    After a forced stop the signal is raised again with the default handlers
    back: a second SIGINT ends in ``KeyboardInterrupt``, a second SIGTERM
    terminates the process.

    Raises:
        ConfigError: The API's address cannot be listened on, or the watched directory is missing.
        ModelError: A model or cut is unknown.
    """
    service = AgentService(config)
    raise_forcing(
        asyncio.run(
            serve_until_signalled(service, name="edgecut[service].serve", draining="requests under way", logger=logger)
        )
    )

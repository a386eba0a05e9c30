"""The edge agent: runs a model's head, sends the activations, gets the tail's answer.

::

    async with EdgeAgent("mqtt://127.0.0.1:1883", model="resnet18") as agent:
        result = await agent.infer(image)
        print(result.cut_id, result.reason, result.timings.total_ms, result.outputs["logits"].argmax())

By default (``cut="auto"``) the agent chooses every request's cut with the
planner (``docs/planner.md``); a fixed cut is one argument away. What the
agent decides and learns is its :class:`~edge_agent.AgentCore`'s, which
never touches I/O: this class carries the core's commands out on asyncio and
MQTT (the simulation's fleet mode carries them out on simulated time).

One request is one MQTT 5 publish to the agent's request topic, with the
ResponseTopic and CorrelationData properties set; the reply is matched by
request id. A request without a reply by its deadline runs the tail on the
device when the agent holds it (the result says so), else raises
:class:`RequestTimeoutError`; the same goes for a hub's ``overloaded``,
``deadline_exceeded`` and ``internal`` answers (:class:`HubError`) and for an
unusable reply (:class:`InvalidReplyError`). A publish that fails before the
deadline is tried again once reconnected, and requests published before a
connection loss are published again, with the same id.

The agent announces itself, retained, on ``<p>/v1/agents/<agent-id>``: online
with the version of the model it runs (docs/protocol.md, section 9.1), and
offline as its last will and when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import importlib.util
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Self

from edge_agent._adaptive import HeadTimes, auto_core
from edge_agent._announce import agent_status_payload, model_versions
from edge_agent._codecs import check_codec, request_codec, tensor_codecs
from edge_agent._core import PING_TIMEOUT_S, AgentCore, FallBack, GiveUp, Request, SendAgain, SendNew, SendPing
from edge_agent._halves import Halves, ModelHalves, shapes_of
from edge_agent._outbox import Outbox
from edge_agent._replies import read_reply
from edge_agent._results import (
    HubError,
    InferenceResult,
    InvalidReplyError,
    RequestTimeoutError,
    Timeouts,
    Timings,
)
from edge_agent._sizes import CoresBySize, size_key
from edge_agent._state import CarriedState
from models import EDGE_ONLY, run_timed
from protocol import (
    DEFAULT_MAX_MESSAGE_BYTES,
    RAW_CODEC,
    InferenceRequest,
    Ping,
    Topics,
    decode_status,
    encode_ping,
    encode_request,
    get_codec,
    version_of,
)
from protocol.errors import ConfigError, EdgecutError, ProtocolError, ShapesNotStatedError, TransportError
from protocol.http import Endpoint, parse_address
from protocol.lifecycle import cancel_and_wait
from protocol.mqtt import BrokerURL, Connection, Will

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Mapping, Sequence
    from pathlib import Path
    from types import TracebackType

    import numpy as np

    from edge_agent._core import Step
    from edge_agent._energy import EnergyModel
    from edge_agent._halves import SessionFactory
    from edge_agent._metrics import AgentMetrics, AgentState
    from edge_agent._planner import Objective
    from models import InputShapes, TensorSpec
    from protocol import InferenceReply, NodeStatus
    from protocol.mqtt import Incoming

logger = logging.getLogger("edgecut.agent")

AUTO = "auto"
_clock = time.perf_counter
"""The core's clock: the outbox's deadlines are on it too."""
_READ_OFF_LOOP_BYTES = 1024 * 1024
"""A reply larger than this is decoded in a thread (a 16 MiB one takes about 8 ms to read)."""
_MAX_LOGGED_TOPICS = 64
"""Status topics whose ignored statuses are logged (once each); past them, quietly ignored."""


class EdgeAgent:
    """Split inference from the device's side.

    Use it as ``async with EdgeAgent(...) as agent``. Leaving the block while
    requests are under way ends them before the connection closes: those
    waiting for a hub's reply stop waiting and run the tail on the device
    (``TransportError`` without a fallback), those computing on the device
    finish, within ``timeouts.request`` in all; a request after that raises
    ``TransportError``.

    Args:
        broker: Broker URL, ``mqtt://[user:pass@]host:port[?qos=0|1]`` or ``mqtts://``.
        model: A zoo model name, an ``.onnx`` file (both split on the device,
            which needs ``onnx``), or a split directory (``head.onnx`` +
            ``manifest.json``, optionally ``tail.onnx`` for fallback).
        cut: ``"auto"`` (default): the planner chooses each request's cut
            among the model's candidate cuts, for the lowest predicted latency
            (``docs/planner.md``); this needs a chain, so a full model or a
            segments directory (a single-cut split directory has one cut to
            use). Or a fixed cut: an id from ``edgecut models cuts``.
        agent_id: This agent's id in topics; unique per broker. ``None``: the
            broker URL's user name if it has one (the identity a broker ACL
            checks), else a random id.
        timeouts: Connect and request timeouts.
        fallback: Run the tail on the device when the hub does not answer in
            time (needs the tail: a full model or a split directory with it).
        prefix: Topic prefix (see ``protocol.Topics``).
        threads: ONNX Runtime intra-op threads (``None``: all cores).
        max_message_bytes: Largest request the agent will send.
        session_factory: Creates every ONNX Runtime session the agent runs
            (heads and fallback tails) as ``factory(model_bytes, threads)``;
            ``None``: :class:`models.Session`. The hook for changing how the
            device computes, e.g. an emulated slower device.
        objective: With ``cut="auto"``: ``"latency"`` (default), or
            ``"bytes"`` / ``"edge"`` (fewest bytes sent, least device compute)
            among the cuts predicted to fit ``budget_ms``, or ``"energy"`` /
            ``"latency+energy"`` (least device energy, within ``budget_ms``
            if given; or milliseconds plus joules at ``energy``'s price).
        budget_ms: The latency budget of the ``"bytes"``, ``"edge"`` and ``"energy"`` objectives.
        energy: With ``cut="auto"``: the device's compute power and radio
            (:class:`EnergyModel`), needed by the energy objectives; results
            then carry the predicted joules whatever the objective.
        state_dir: With ``cut="auto"``: where to keep this device's head times
            across restarts (one file per model); ``None`` keeps nothing.
        codec: How requests encode their tensors (``docs/protocol.md``
            section 3.2.1): ``"raw"`` (default), ``"fp16"``, ``"int8"``,
            ``"int8-channel"``, ``"jpeg"``, ``"png"``, ``"zstd"``, ``"lz4"``
            or a lossy one ``+zstd`` / ``+lz4``; or a list of them, an
            allow-list among which ``cut="auto"`` chooses per request, trading
            bytes against encoding time (a fixed cut uses the first, which
            must apply to a tensor that crosses it: else entering the agent
            raises ``ConfigError``). Lossy codecs change the answer a little:
            allow only those whose loss ``edgecut models accuracy`` shows you
            accept. A result's ``codec`` names what was really sent.
        input_shapes: For a model with dynamic sizes (a detector's height
            and width), the shape of each input it will be sent at, e.g.
            ``{"images": (1, 3, 640, 640)}``: what the cuts' bytes are
            counted and the warm-up of ``cut="auto"`` runs at; a batch axis
            may be left out. Without them, a model whose sizes neither it
            nor its metadata fixes is opened at the first request's shapes
            (that request pays for splitting and warming up), and
            :attr:`model` is available from then on.
        carry_state: For a recurrent model, each state input's name to the
            output that holds its next value, e.g. ``{"state": "stateN"}``:
            every request gets the state the last answer returned (zeros
            before the first; :meth:`reset_state` starts over), so callers
            pass only the other inputs. Meant for requests one at a time.
        http: ``HOST:PORT`` to serve ``/metrics`` (Prometheus text format),
            ``/health/live`` and ``/health/ready`` on while the agent is
            entered (port 0 picks a free one, see :attr:`http`); ``None``
            (the default): no HTTP. Needs prometheus-client (``pip install
            'edgecut[metrics]'``).
        wait_for_broker: Entering waits up to ``timeouts.connect`` for the
            broker and fails without it (the default). ``False``: entering
            does not wait, the connection is made whenever the broker
            appears, and :attr:`connected` says whether it is up (a service
            that must start offline runs its requests edge-only meanwhile).
        client_id: The MQTT client id (default: ``agent_id``): two agents
            of one id at once (a new version opened beside the one serving)
            need ids of their own.
        announce: Publish the agent's status, retained (online with the
            version it runs on connecting, offline on leaving). ``False``:
            silent, for a version checked beside another agent of the same
            id that announces; :meth:`announce` hands the status over. Both
            leave the same last will.

    Raises:
        ValueError: A codec is not a registered one, or the list is empty.
        ConfigError: ``http`` is not ``HOST:PORT``, or prometheus-client is missing.
    """

    def __init__(
        self,
        broker: str | BrokerURL,
        *,
        model: str | Path = "resnet18",
        cut: str = AUTO,
        agent_id: str | None = None,
        timeouts: Timeouts | None = None,
        fallback: bool = True,
        prefix: str = "edgecut",
        threads: int | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        session_factory: SessionFactory | None = None,
        objective: Objective = "latency",
        budget_ms: float | None = None,
        energy: EnergyModel | None = None,
        state_dir: Path | None = None,
        codec: str | Sequence[str] = RAW_CODEC,
        input_shapes: InputShapes | None = None,
        carry_state: Mapping[str, str] | None = None,
        http: str | None = None,
        wait_for_broker: bool = True,
        client_id: str | None = None,
        announce: bool = True,
    ) -> None:
        self.url = BrokerURL.parse(broker)
        self.codecs: tuple[str, ...] = (codec,) if isinstance(codec, str) else tuple(dict.fromkeys(codec))
        if not self.codecs:
            msg = "codec: give a codec or a non-empty list of them"
            raise ValueError(msg)
        for name in self.codecs:
            get_codec(name)  # unknown names fail here, not on the first request
        self.codec = self.codecs[0]
        # Under the ACL of docs/security.md an agent may publish only on the topic of its user name.
        self.agent_id = agent_id or self.url.username or f"agent-{uuid.uuid4().hex[:12]}"
        self.topics = Topics(prefix)
        self._status_prefix = self.topics.all_status().removesuffix("+")
        self._model = model
        self._default_cut = cut
        self.timeouts = timeouts or Timeouts()
        self._fallback = fallback
        self._wait_for_broker = wait_for_broker
        self._threads = threads
        self._session_factory = session_factory
        self._input_shapes = input_shapes
        self._carry_state = carry_state
        self._state: CarriedState | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"edgecut[{self.agent_id}].ort")
        self._connection = Connection(
            self.url,
            client_id=client_id or self.agent_id,
            subscriptions=[(self.topics.response(self.agent_id), 1), (self.topics.all_status(), 1)],
            on_message=self._on_message,
            on_connect=self._on_connect,
            max_message_bytes=max_message_bytes,
        )
        self._outbox = Outbox(
            self._connection,
            request_topic=self.topics.request(self.agent_id),
            ping_topic=self.topics.ping(self.agent_id),
            response_topic=self.topics.response(self.agent_id),
            qos=self.url.qos,
            retry_s=self.timeouts.retry,
        )
        self._announcing = announce
        self._halves: ModelHalves | None = None
        self._core: AgentCore | None = None
        self._head_times: HeadTimes | None = None
        self._objective: Objective = objective
        self._budget_ms = budget_ms
        self._energy = energy
        self._state_dir = state_dir
        self._probing: set[asyncio.Task[None]] = set()  # ping chains under way
        self._entered = False
        self._closing = False
        self._in_flight = 0  # infer() calls under way
        self._idle = asyncio.Event()  # none is
        self._idle.set()
        self._sizes: CoresBySize | None = None  # with cut="auto": a core per input size
        self._open_inputs: tuple[TensorSpec, ...] | None = None  # set while the model waits for a request's sizes
        self._opening = asyncio.Lock()
        self._ignored_status_topics: set[str] = set()
        self._metrics: AgentMetrics | None = None
        self.http: Endpoint | None = None
        """Metrics and health over HTTP (``http``): its ``address`` once the agent is entered."""
        if http is not None:
            self._metrics, self.http = self._endpoint(http)

    def _on_message(self, incoming: Incoming) -> None:
        if incoming.topic.startswith(self._status_prefix):
            status = self._hub_status(incoming)
            if status is None:
                return
            self._outbox.on_status(status)
            if self._core is not None:
                self._core.hub_status(status, _clock())
            return
        self._outbox.on_reply(incoming)

    def _hub_status(self, incoming: Incoming) -> NodeStatus | None:
        """The hub status ``incoming`` carries, or ``None`` when it is not one a hub published.

        Like an agent's, a hub's identity is its topic (docs/protocol.md,
        section 1.3): a status counts only when it names the node of its
        topic and says it is a hub. Under the ACL of ``edgecut acl`` only hub
        users publish status; anything else is ignored, and logged once per topic.
        """
        try:
            status = decode_status(incoming.payload)
            node = self.topics.node_of_status(incoming.topic)
        except (ProtocolError, ValueError) as exc:
            why = f"undecodable: {exc}"
        else:
            if status.node_id == node and status.role == "hub":
                return status
            why = f"it names {status.role} {status.node_id!r}, not hub {node!r} of its topic"
        if incoming.topic not in self._ignored_status_topics and len(self._ignored_status_topics) < _MAX_LOGGED_TOPICS:
            self._ignored_status_topics.add(incoming.topic)
            logger.warning("ignored a status on %s: %s", incoming.topic, why)
        return None

    def _endpoint(self, address: str) -> tuple[AgentMetrics, Endpoint]:
        """The agent's metrics and the HTTP endpoint serving them on ``address``."""
        host, port = parse_address(address)
        if importlib.util.find_spec("prometheus_client") is None:
            msg = "http needs prometheus-client: pip install 'edgecut[metrics]'"
            raise ConfigError(msg)
        from edge_agent._metrics import CONTENT_TYPE, AgentMetrics  # noqa: PLC0415 - an optional extra

        metrics = AgentMetrics(lambda: (self._metrics_state(),))
        endpoint = Endpoint(
            host, port, exposition=metrics.exposition, content_type=CONTENT_TYPE, not_ready=self._not_ready
        )
        return metrics, endpoint

    def _metrics_state(self) -> AgentState:
        from edge_agent._metrics import AgentState  # noqa: PLC0415 - an optional extra

        rtt_ms, bandwidth = self.link_estimate()
        return AgentState(
            model=self._model_name,
            connected=self.connected,
            rtt_s=None if rtt_ms is None else rtt_ms / 1000,
            bandwidth_bit_s=bandwidth,
        )

    @property
    def connected(self) -> bool:
        """Whether the broker connection is up now."""
        return self._connection.is_connected

    async def wait_connected(self, timeout_s: float | None = None) -> None:
        """Wait until the broker connection is up (for an agent entered with ``wait_for_broker=False``).

        Raises:
            TransportError: Not connected within ``timeout_s`` seconds (default: ``timeouts.connect``).
        """
        await self._connection.wait_connected(self.timeouts.connect if timeout_s is None else timeout_s)

    def link_estimate(self) -> tuple[float | None, float | None]:
        """The link's estimated round trip in ms and bandwidth in bit/s, each ``None`` until measured.

        Only ``cut="auto"`` measures the link (with its requests and pings).
        """
        planner = self._core.planner if self._core is not None else None
        return planner.link.estimate(_clock()) if planner is not None else (None, None)

    @property
    def _model_name(self) -> str:
        """The model's name as metrics label it: its id once open, what was asked for before."""
        return self._halves.model_id if self._halves is not None else str(self._model)

    def _not_ready(self) -> str | None:
        """Why the agent cannot take requests now (``/health/ready``), or ``None`` when it can."""
        if not self._connection.is_connected:
            return f"not connected to the broker at {self.url}"
        if self._halves is None and self._open_inputs is None:
            return f"{self._model} is not open yet"
        return None

    @property
    def model(self) -> ModelHalves:
        """The halves this agent holds (available once entered, or after the first request for open sizes)."""
        if self._halves is None:
            raise RuntimeError(self._not_open())
        return self._halves

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """The model's inputs as declared (once entered; also before a model with open sizes opens)."""
        if self._halves is None and self._open_inputs is not None:
            return self._open_inputs
        return self.model.inputs

    @property
    def cut(self) -> str:
        """The cut used when :meth:`infer` is given none: ``"auto"`` while the planner chooses."""
        if self._default_cut == AUTO and self.core.planner is None:
            return self.model.cuts[0].id  # a single-cut split directory: its one cut
        return self._default_cut

    @property
    def core(self) -> AgentCore:
        """What this agent decides and learns: the planner behind ``cut="auto"`` (available once entered)."""
        if self._core is None:
            raise RuntimeError(self._not_open())
        return self._core

    def _not_open(self) -> str:
        if self._open_inputs is not None:
            return "the model's input sizes are open: it opens at the first request's (or give input_shapes)"
        return "use the agent inside 'async with EdgeAgent(...)'"

    async def __aenter__(self) -> Self:
        if self._entered:
            msg = "an EdgeAgent is not re-entrant"
            raise RuntimeError(msg)
        self._entered = True
        loop = asyncio.get_running_loop()
        try:
            if self.http is not None:  # first: live while the model opens, and not ready
                await self.http.start()
            try:
                self._halves = await loop.run_in_executor(self._executor, self._open_model, self._input_shapes)
            except ShapesNotStatedError as exc:
                if self._input_shapes is not None:
                    raise
                self._open_inputs = exc.inputs
                logger.info("%s leaves input sizes open: opening it at the first request's", self._model)
            self._connection.set_will(Will(self.topics.agent_status(self.agent_id), self._status_payload(online=False)))
            await self._connection.__aenter__()
            try:
                if self._wait_for_broker:
                    await self._connection.wait_connected(self.timeouts.connect)
                if self._core is not None and self.connected:
                    await self._pings(self._core, self._core.start(_clock()))  # the link known before any request
                elif self._core is not None:
                    self._probe(self._pings_once_connected())
            except BaseException:  # cancelled or failed while starting: no connection left running
                await self._connection.__aexit__(None, None, None)
                raise
        except BaseException:
            self._executor.shutdown(wait=False, cancel_futures=True)  # no thread left behind
            if self.http is not None:
                await self.http.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing = True
        self._outbox.close()  # requests waiting for a reply stop waiting: they fall back, or fail saying why
        with contextlib.suppress(TimeoutError):  # what runs on the device finishes, bounded by a deadline
            await asyncio.wait_for(self._idle.wait(), self.timeouts.request)
        if self._probing:
            if self.connected:
                await asyncio.wait(self._probing, timeout=PING_TIMEOUT_S)  # bounded: a ping has a timeout
            await asyncio.gather(*(cancel_and_wait(task) for task in list(self._probing)))  # else no broker came
        if self._announcing and self._connection.is_connected:  # a goodbye: a clean disconnect sends no last will
            with contextlib.suppress(TransportError):
                await self._publish_status(online=False)
        await self._connection.__aexit__(exc_type, exc, tb)
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self.http is not None:
            await self.http.close()
        if self._head_times is not None and self._sizes is not None:
            halves = self.model
            fused = halves.holds_full_model and halves.loaded(EDGE_ONLY, fused=True) is not None
            self._head_times.save(self._sizes.first, edge_only_fused=fused)  # the size they were restored at

    async def _on_connect(self) -> None:
        await self._outbox.on_connect()
        if self._announcing:
            with contextlib.suppress(TransportError):  # only an announcement: the requests go on without it
                await self._publish_status(online=True)

    async def announce(self, *, announcing: bool = True) -> None:
        """Start announcing this agent's status (published now when connected), or stop (``announcing=False``).

        An agent that stops announcing leaves without a goodbye, so the
        status of another agent of its id (a newer version) stands.
        """
        self._announcing = announcing
        if announcing and self.connected:
            with contextlib.suppress(TransportError):
                await self._publish_status(online=True)

    async def _publish_status(self, *, online: bool) -> None:
        """Announce, retained, whether the agent is online and the version of the model it runs."""
        topic = self.topics.agent_status(self.agent_id)
        await self._connection.publish(topic, self._status_payload(online=online), qos=1, retain=True, timeout=1.0)

    def _status_payload(self, *, online: bool) -> bytes:
        halves = self._halves
        models = model_versions(halves.model_id, halves.model_sha256) if halves is not None else {}
        return agent_status_payload(self.agent_id, online=online, models=models)

    def _open_model(self, shapes: InputShapes | None) -> ModelHalves:
        halves = ModelHalves.open(
            self._model,
            threads=self._threads,
            session_factory=self._session_factory,
            input_shapes=shapes,
            codecs=self.codecs,
        )
        if self._carry_state:
            self._state = CarriedState(self._carry_state, halves.inputs, halves.outputs)
        if self._default_cut == AUTO and halves.candidates:
            if self._state_dir is not None:
                self._head_times = HeadTimes(self._state_dir, halves.model_sha256, halves.input_shapes)
            self._core = self._auto_core(halves, halves.input_shapes, self._head_times)
            self._sizes = CoresBySize(size_key(halves.input_shapes), self._core)
            for candidate in halves.candidates:  # load now: the first request should not pay for it
                halves.halves(candidate.id)
        else:
            cut = halves.cuts[0].id if self._default_cut == AUTO else self._default_cut
            self._core = AgentCore(cut=cut, codec=self.codec, timeouts=self.timeouts)
            fixed = halves.halves(cut, fused=True)  # no chain to switch along: no boundary inside either half
            if cut != EDGE_ONLY:  # edge-only sends nothing
                check_codec(self.codec, cut, fixed.manifest.crossing)
        return halves

    def _auto_core(
        self, halves: ModelHalves, shapes: Mapping[str, tuple[int, ...]], saved: HeadTimes | None = None
    ) -> AgentCore:
        return auto_core(
            halves,
            _clock(),
            objective=self._objective,
            budget_ms=self._budget_ms,
            energy=self._energy,
            codecs=self.codecs,
            timeouts=self.timeouts,
            saved=saved,
            shapes=shapes,
        )

    async def infer(
        self, inputs: np.ndarray | Mapping[str, np.ndarray], *, cut: str | None = None, codec: str | None = None
    ) -> InferenceResult:
        """Run one inference across the cut.

        Args:
            inputs: One array for a single-input model (a missing batch axis
                is added), or arrays by input name.
            cut: Use this cut instead of the agent's own.
            codec: With ``cut``, send with this codec (default: the
                agent's first), as the planner's choices do (``cut@codec``).

        Raises:
            ValueError: The inputs do not fit the model, or ``codec`` is
                unknown or comes without a ``cut``.
            ModelError: The cut is unknown.
            HubError: The hub answered with an error and no fallback applied.
            InvalidReplyError: The reply could not be used and no fallback applied.
            RequestTimeoutError: No reply in time and no fallback possible.
        """
        if codec is not None:
            if cut is None:
                msg = f"codec {codec!r}: give it with a cut (the agent's own choice comes with its codec)"
                raise ValueError(msg)
            get_codec(codec)
        if self._closing:
            msg = f"agent {self.agent_id} is closing: it takes no new requests"
            raise TransportError(msg)
        self._in_flight += 1
        self._idle.clear()
        try:
            if self._metrics is None:
                return await self._infer(inputs, cut, codec)
            return await self._metrics.record(
                self._model_name, cut or self._default_cut, codec or self.codec, self._infer(inputs, cut, codec)
            )
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def _infer(
        self, inputs: np.ndarray | Mapping[str, np.ndarray], cut: str | None, codec: str | None
    ) -> InferenceResult:
        started = _clock()
        loop = asyncio.get_running_loop()
        if self._halves is None:
            await self._open_at(inputs)
        if self._state is not None:
            inputs = self._state.fill(inputs)
        feeds = self.model.feeds(inputs)
        if self._sizes is not None and cut is None:
            await self._size_of({name: array.shape for name, array in feeds.items()})
        core = self.core  # the request's, whatever another request's size makes current meanwhile
        if cut is None and (wanted := core.to_size()):
            await loop.run_in_executor(self._executor, self._size_inputs, core, feeds, wanted)
        request = core.request(started, cut=cut, codec=codec)
        try:
            result, segment_ms = await self._run(request, feeds, started)
        except BaseException:
            core.abandoned(request)
            raise
        decision = request.decision
        result = dataclasses.replace(
            result,
            predicted_ms=decision.predicted_ms,
            predicted_j=decision.predicted_j,
            reason=decision.reason,
            model_version=version_of(self.model.model_sha256),
        )
        if self._state is not None:
            self._state.keep(result.outputs)
        ping = core.finished(request, result, _clock(), segment_ms=segment_ms)
        if ping is not None:
            self._probe(self._pings(core, ping))
        return result

    def _probe(self, pings: Coroutine[Any, Any, None]) -> None:
        """Run a chain of pings beside the requests; the close waits for it (or stops it)."""
        task = asyncio.create_task(pings, name=f"edgecut[{self.agent_id}].probe")
        self._probing.add(task)
        task.add_done_callback(self._probing.discard)

    async def _run(
        self, request: Request, feeds: dict[str, np.ndarray], started: float
    ) -> tuple[InferenceResult, list[float]]:
        """Carry ``request`` out where its decision says: its result, and its head's segment times."""
        loop = asyncio.get_running_loop()
        decision = request.decision
        # fused halves where they are loaded (a fixed cut's; auto's edge-only where the warm-up kept them),
        # unless the core wants the chain's segment times from this run
        halves = None if request.time_segments else self.model.loaded(decision.cut_id, fused=True)
        halves = halves or self.model.loaded(decision.cut_id)
        if halves is None:  # the first use of this cut: loading blocks, so it runs off the loop
            halves = await loop.run_in_executor(self._executor, self.model.halves, decision.cut_id)
        if decision.cut_id == EDGE_ONLY:
            outputs, edge_ms, segment_ms = await loop.run_in_executor(self._executor, run_timed, halves.head, feeds)
            total_ms = _ms_since(started)
            timings = Timings(edge_ms=edge_ms, total_ms=total_ms, device_queue_ms=max(0.0, total_ms - edge_ms))
            return InferenceResult(outputs=outputs, cut_id=decision.cut_id, timings=timings), segment_ms
        args = (halves, feeds, uuid.uuid4().hex, decision.codec)
        if halves.head is None and decision.codec == RAW_CODEC:  # nothing to run, one copy: a hop costs more
            sent = self._head_and_encode(*args)
        else:
            sent = await loop.run_in_executor(self._executor, self._head_and_encode, *args)
        return await self._exchange(request, halves, sent, started), sent.segment_ms

    async def _open_at(self, inputs: np.ndarray | Mapping[str, np.ndarray]) -> None:
        """Open a model whose sizes were left open at the shapes of the first request's ``inputs``."""
        async with self._opening:
            if self._halves is not None or self._open_inputs is None:
                return
            shapes = shapes_of(inputs, self._open_inputs, carried=frozenset(self._carry_state or ()))
            loop = asyncio.get_running_loop()
            self._halves = await loop.run_in_executor(self._executor, self._open_model, shapes)
            await self._pings(self.core, self.core.start(_clock()))

    async def _size_of(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """Make the core of a request's input ``shapes`` the current one; a size not seen lately gets one warmed up."""
        sizes = self._sizes
        assert sizes is not None  # noqa: S101 - only cut="auto" keeps cores by size
        key = size_key(shapes)
        if key == sizes.key:
            return
        async with self._opening:
            core = sizes.use(key)
            if core is None:
                logger.info("requests now come at %s: warming up at this size", shapes)
                loop = asyncio.get_running_loop()
                core = await loop.run_in_executor(self._executor, self._auto_core, self.model, shapes)
                core.share_link(self.core)
                sizes.add(key, core)
            self._core = core

    def reset_state(self) -> None:
        """Start the carried state over (``carry_state``): the next request gets zeros."""
        if self._state is not None:
            self._state.reset()

    async def _pings_once_connected(self) -> None:
        """The start's pings, sent once the broker appears (an agent entered without it)."""
        await self._connection.wait_connected()
        await self._pings(self.core, self.core.start(_clock()))

    async def _pings(self, core: AgentCore, ping: SendPing | None) -> None:
        """Send ``core``'s ping, then each next one it asks for, reporting every answer or loss to it.

        To the core that asked, whichever input size's core is current by
        then; stopped on the way (cancelled), the chain ends there.
        """
        while ping is not None:
            message = Ping(request_id=f"probe-{uuid.uuid4().hex}", sent_at=time.time(), padding=bytes(ping.nbytes))
            try:
                ms = await self._outbox.probe(message.request_id, encode_ping(message), ping.timeout_s)
            except BaseException:
                core.ping_abandoned()
                raise
            ping = core.ping_lost(_clock()) if ms is None else core.ping_answered(ms, _clock())

    def _size_inputs(self, core: AgentCore, feeds: dict[str, np.ndarray], wanted: Mapping[str, Sequence[str]]) -> None:
        """Tell ``core`` what requests sending ``feeds`` would take at each cut with each codec (a worker thread).

        One run of the chain, as far as the last cut ``wanted`` (in chain
        order), encoding what crosses each cut on the way: sizes from the
        request's own input, never from random feeds.
        """
        chain = self.model.chain()
        at, tensors = chain.manifest.cut_ids[0], feeds
        for cut_id, codecs in wanted.items():
            tensors, at = chain.run(tensors, at, cut_id)[0], cut_id
            halves = self.model.halves(cut_id)
            for codec in codecs:
                core.sized(cut_id, codec, len(self._encode(halves, tensors, uuid.uuid4().hex, codec)[2]))

    def _head_and_encode(self, halves: Halves, feeds: dict[str, np.ndarray], request_id: str, codec: str) -> _Sent:
        """Head compute and request encoding, in one worker-thread hop."""
        started = time.perf_counter()
        activations, _, segment_ms = run_timed(halves.head, feeds) if halves.head is not None else (feeds, 0.0, [])
        edge_done = time.perf_counter()
        request, sent_as, payload = self._encode(halves, activations, request_id, codec)
        return _Sent(
            request=request,
            tensor_codecs=sent_as,
            payload=payload,
            head_started=started,
            edge_ms=(edge_done - started) * 1000,
            encode_ms=_ms_since(edge_done),
            segment_ms=segment_ms,
        )

    def _encode(
        self, halves: Halves, activations: Mapping[str, np.ndarray], request_id: str, codec: str
    ) -> tuple[InferenceRequest, dict[str, str], bytes]:
        """The request sending what crosses ``halves``' cut: the request, what each tensor goes as, its bytes."""
        tensors = {spec.name: activations[spec.name] for spec in halves.manifest.crossing}
        sent_as = tensor_codecs(codec, tensors)
        request = InferenceRequest(
            request_id=request_id,
            agent_id=self.agent_id,
            model_id=self.model.model_id,
            model_sha256=self.model.model_sha256,
            cut_id=halves.manifest.cut_id,
            tensors=tensors,
            sent_at=time.time(),
            deadline_ms=self.timeouts.request * 1000,
            tail_sha256=halves.manifest.tail_sha256,
            codec=request_codec(codec, sent_as.values()),
        )
        return request, sent_as, encode_request(request)

    async def _exchange(self, request: Request, halves: Halves, sent: _Sent, started: float) -> InferenceResult:
        """Publish the request and wait for its answer, doing what the core says after an error or silence."""
        can_fall_back = self._fallback and halves.tail is not None
        request.sent(_clock(), can_fall_back=can_fall_back)
        while True:
            request_id = sent.request.request_id
            error: Callable[[str], EdgecutError]
            try:
                raw = await self._outbox.send_and_wait(request_id, sent.payload, request.deadline_s)
            except ProtocolError as exc:  # over the connection's message limit: no hub will ever be sent it
                why = f"the request cannot be sent: {exc}"
                step, error = request.unusable(why), functools.partial(ProtocolError, code=exc.code)
            else:
                answer = await self._answer(raw, request, halves, sent, started)
                if isinstance(answer, InferenceResult):
                    return answer
                step, error, why = answer
            match step:
                case SendAgain():
                    logger.info("request %s: %s; sending it again", request_id, why)
                case SendNew(at_s=at_s):
                    logger.info("request %s: %s; sending a new one", request_id, why)
                    await asyncio.sleep(max(0.0, at_s - _clock()))
                    sent = self._renewed(sent)  # a new id and sent_at: the old deadline has passed at the hub
                    request.sent(_clock(), can_fall_back=can_fall_back)
                case FallBack(reason=reason):
                    return await self._fall_back(halves, sent, started, reason, error)
                case GiveUp(reason=reason):
                    raise error(reason)

    async def _answer(
        self, raw: bytes | None, request: Request, halves: Halves, sent: _Sent, started: float
    ) -> InferenceResult | tuple[Step, Callable[[str], EdgecutError], str]:
        """The result ``raw`` brings, or what the core says to do without one, the error to raise, and why."""
        if raw is None and self._closing:
            why = "the agent closed before a reply came"
            return request.unusable(why), TransportError, why
        if raw is None:
            return request.timed_out(_clock()), RequestTimeoutError, "no reply before the deadline"
        round_trip_ms = (_clock() - request.sent_s) * 1000
        decode_started = _clock()
        if len(raw) > _READ_OFF_LOOP_BYTES:  # decoding a large reply would hold up pings and statuses
            reply, why = await asyncio.to_thread(read_reply, raw, sent.request, halves.manifest)
        else:  # a thread hop costs more than reading a few logits
            reply, why = read_reply(raw, sent.request, halves.manifest)
        if reply is None:
            return request.unusable(why), InvalidReplyError, why
        if reply.error is None:
            return self._result(reply, sent, started, round_trip_ms, _ms_since(decode_started), received=len(raw))
        step = request.refused(reply.error.code, reply.error.message, _clock())
        error = functools.partial(HubError, reply.error.code, hub_id=reply.hub_id)
        return step, error, f"hub {reply.hub_id} answered {reply.error.code}: {reply.error.message}"

    def _renewed(self, sent: _Sent) -> _Sent:
        """The same tensors as a new request: a new id, sent now."""
        request = dataclasses.replace(sent.request, request_id=uuid.uuid4().hex, sent_at=time.time())
        return dataclasses.replace(sent, request=request, payload=encode_request(request))

    def _result(
        self,
        reply: InferenceReply,
        sent: _Sent,
        started: float,
        round_trip_ms: float,
        decode_ms: float,
        *,
        received: int,
    ) -> InferenceResult:
        timings = Timings(
            edge_ms=sent.edge_ms,
            encode_ms=sent.encode_ms,
            network_ms=max(0.0, round_trip_ms - reply.queue_ms - reply.compute_ms),
            hub_queue_ms=reply.queue_ms,
            hub_compute_ms=reply.compute_ms,
            decode_ms=decode_ms,
            total_ms=_ms_since(started),
            device_queue_ms=sent.queue_ms(started),
        )
        return InferenceResult(
            outputs=dict(reply.outputs),
            cut_id=sent.request.cut_id,
            timings=timings,
            bytes_sent=len(sent.payload),
            bytes_received=received,
            request_id=sent.request.request_id,
            codec=sent.request.codec,
            tensor_codecs=sent.tensor_codecs,
            hub_id=reply.hub_id,
            hub_batch_size=reply.batch_size,
        )

    async def _fall_back(
        self, halves: Halves, sent: _Sent, started: float, reason: str, error: Callable[[str], EdgecutError]
    ) -> InferenceResult:
        """Run the tail on the device, or raise ``error(message)`` when this agent cannot."""
        if not self._fallback or halves.tail is None:
            what = "fallback is off" if not self._fallback else "this agent does not hold the tail"
            msg = f"request {sent.request.request_id} at cut {sent.request.cut_id!r}: {reason}, and {what}"
            raise error(msg)
        logger.warning("request %s: %s; running the tail on the device", sent.request.request_id, reason)
        loop = asyncio.get_running_loop()
        outputs, tail_ms, _ = await loop.run_in_executor(self._executor, run_timed, halves.tail, sent.request.tensors)
        timings = Timings(
            edge_ms=sent.edge_ms,
            encode_ms=sent.encode_ms,
            fallback_ms=tail_ms,
            total_ms=_ms_since(started),
            device_queue_ms=sent.queue_ms(started),
        )
        return InferenceResult(
            outputs=outputs,
            cut_id=sent.request.cut_id,
            timings=timings,
            bytes_sent=len(sent.payload),
            request_id=sent.request.request_id,
            codec=sent.request.codec,
            tensor_codecs=sent.tensor_codecs,
            fallback=reason,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class _Sent:
    request: InferenceRequest
    tensor_codecs: dict[str, str]
    payload: bytes
    head_started: float  # the clock when the head began: what the request waited before is the device's queue
    edge_ms: float
    encode_ms: float
    segment_ms: list[float]

    def queue_ms(self, started: float) -> float:
        """What the request, made at ``started``, waited before its head ran."""
        return max(0.0, (self.head_started - started) * 1000)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000

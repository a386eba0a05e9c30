"""The hub: takes inference requests off MQTT, runs tails, replies.

Life cycle, as in uvicorn: :meth:`Hub.serve` starts up (broker connection,
shared subscription, online status), serves until :meth:`Hub.request_shutdown`
(or SIGINT/SIGTERM under :func:`run_hub`), then shuts down: it unsubscribes so
the broker sends new requests to other replicas, lets accepted requests finish
within the grace period, publishes its offline status and disconnects.

Every accepted request gets exactly one reply: outputs with hub timings, or a
structured error. Nothing a client sends can stop the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.metadata
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from cloud_hub._store import TailStore, TailUnavailableError
from models import tensors_mismatch
from protocol import (
    MAX_ID_LENGTH,
    ErrorCode,
    InferenceReply,
    InferenceRequest,
    NodeStatus,
    ReplyError,
    Topics,
    decode_request,
    encode_reply,
    encode_status,
    peek_request_id,
)
from protocol.errors import EdgecutError, ProtocolError, TransportError
from protocol.mqtt import Connection, Incoming, Will

if TYPE_CHECKING:
    from cloud_hub._config import HubConfig
    from cloud_hub._store import Tail

logger = logging.getLogger("edgecut.hub")

_UNKNOWN_REQUEST_ID = "unknown"


def _installed_version() -> str:
    try:
        return importlib.metadata.version("edgecut")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return ""


_VERSION = _installed_version()


@dataclasses.dataclass(slots=True)
class _Job:
    """One accepted request, from receipt to reply."""

    incoming: Incoming
    reply_topic: str
    received: float
    request: InferenceRequest | None = None

    @property
    def request_id(self) -> str:
        if self.request is not None:
            return self.request.request_id
        if self.incoming.correlation:
            return self.incoming.correlation.decode("utf-8", "replace")[:MAX_ID_LENGTH]
        return peek_request_id(self.incoming.payload) or _UNKNOWN_REQUEST_ID


class Hub:
    """A cloud hub serving tails of split models over MQTT.

    Args:
        config: What to serve and how; see :class:`HubConfig`.
    """

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self.topics = Topics(config.prefix)
        self._executor = ThreadPoolExecutor(config.workers, thread_name_prefix=f"edgecut[{config.hub_id}].ort")
        self.store = TailStore(
            models_dir=config.models_dir,
            use_zoo=config.use_zoo,
            max_sessions=config.max_sessions,
            threads=config.threads,
            executor=self._executor,
            miss_ttl_s=config.miss_ttl,
        )
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._rejections: set[asyncio.Task[None]] = set()
        self._accepting = True
        self._shutdown = asyncio.Event()
        self._stopped = asyncio.Event()
        self._connection = Connection(
            config.broker,
            client_id=config.hub_id,
            subscriptions=[(self.topics.shared_requests(config.group), 1)],
            on_message=self._accept,
            on_connect=self._publish_status,
            will=Will(self.topics.status(config.hub_id), self._status_payload("offline")),
            max_message_bytes=config.max_message_bytes,
        )
        self.replies_sent = 0
        """Replies published so far (successes and errors)."""
        self.ready = asyncio.Event()
        """Set once the hub is connected and subscribed."""

    @property
    def queue_depth(self) -> int:
        """Requests accepted and not yet replied to."""
        return self._in_flight

    @property
    def is_shutting_down(self) -> bool:
        """True once a shutdown was requested."""
        return self._shutdown.is_set()

    def request_shutdown(self) -> None:
        """Ask :meth:`serve` to stop gracefully."""
        self._shutdown.set()

    async def serve(self) -> None:
        """Serve until :meth:`request_shutdown`, then drain and disconnect.

        Raises:
            ModelError: A tail to preload is unknown.
            TransportError: The broker could not be reached within
                ``config.connect_timeout`` at start-up.
        """
        try:
            for spec in self.config.preload:  # before going online: no request waits for these
                tail = await self.store.preload(spec)
                logger.info("preloaded %s at cut %s", tail.manifest.model_id, tail.manifest.cut_id)
            async with self._connection:
                await self._connection.wait_connected(self.config.connect_timeout)
                self.ready.set()
                logger.info("%s serving on %s (group %s)", self.config.hub_id, self._connection.url, self.config.group)
                async with asyncio.TaskGroup() as tasks:
                    workers = [
                        tasks.create_task(self._work(), name=f"edgecut[{self.config.hub_id}].worker{i}")
                        for i in range(self.config.workers)
                    ]
                    tasks.create_task(self._report_load(), name=f"edgecut[{self.config.hub_id}].status")
                    try:
                        await self._shutdown.wait()
                        await self._drain()
                    finally:  # a forced stop (cancelled) too
                        # Loops also watch this event: on Python 3.11 a cancel landing inside aiomqtt's
                        # publish (asyncio.wait_for) can be swallowed (CPython gh-86296).
                        self._stopped.set()
                        for task in workers:
                            task.cancel()
                with contextlib.suppress(TransportError):
                    await self._publish_status("offline")
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _drain(self) -> None:
        self._accepting = False
        with contextlib.suppress(TransportError):
            await self._connection.unsubscribe(self.topics.shared_requests(self.config.group))
        try:
            await asyncio.wait_for(self._idle.wait(), self.config.grace)
        except TimeoutError:
            logger.warning("%d requests unfinished after the %.1f s grace period", self._in_flight, self.config.grace)

    def _accept(self, incoming: Incoming) -> None:
        try:
            agent_id = self.topics.agent_of_request(incoming.topic)
        except ValueError:
            logger.warning("dropped a request on %s: its topic names no valid agent to answer", incoming.topic)
            return
        # Identity comes from the topic (which broker ACLs can restrict), never from the payload
        # or the ResponseTopic property: a hub answers only on the sender's own response topic.
        job = _Job(incoming=incoming, reply_topic=self.topics.response(agent_id), received=time.perf_counter())
        self._in_flight += 1
        self._idle.clear()
        try:
            job.request = decode_request(incoming.payload, max_bytes=self.config.max_message_bytes)
        except ProtocolError as exc:
            self._reject_now(job, ReplyError(code=exc.code, message=str(exc)))
            return
        if job.request.agent_id != agent_id:
            message = f"the request names agent {job.request.agent_id!r} but was published by {agent_id!r}"
            self._reject_now(job, ReplyError(code=ErrorCode.AGENT_MISMATCH, message=message))
            return
        if not self._accepting or self._in_flight > self.config.max_queue:
            message = f"hub {self.config.hub_id} has {self._in_flight - 1} requests queued"
            self._reject_now(job, ReplyError(code=ErrorCode.OVERLOADED, message=message))
            return
        self._queue.put_nowait(job)

    def _reject_now(self, job: _Job, error: ReplyError) -> None:
        """Answer with an error at once, without queueing behind accepted work."""
        task = asyncio.create_task(self._reply(job, self._failure(job, error, queue_ms=0.0)))
        self._rejections.add(task)
        task.add_done_callback(self._rejections.discard)

    async def _work(self) -> None:
        while not self._stopped.is_set():
            job = await self._queue.get()
            try:
                await self._reply(job, await self._answer(job))
            except Exception:  # a worker must outlive any one request
                logger.exception("request %s: no reply could be sent", job.request_id)

    async def _answer(self, job: _Job) -> bytes:
        """Run the request and return the encoded reply; errors become error replies."""
        queue_ms = (time.perf_counter() - job.received) * 1000
        try:
            return await self._run(job, queue_ms)
        except _Rejected as exc:
            return self._failure(job, exc.error, queue_ms)
        except TailUnavailableError as exc:
            return self._failure(job, ReplyError(code=exc.code, message=str(exc)), queue_ms)
        except Exception as exc:
            logger.exception("request %s failed", job.request_id)
            error = ReplyError(code=ErrorCode.INTERNAL, message=f"{type(exc).__name__}: {exc}")
            return self._failure(job, error, queue_ms)

    async def _run(self, job: _Job, queue_ms: float) -> bytes:
        request = job.request
        if request is None:  # only decoded requests are queued
            msg = "a queued request has no body"
            raise RuntimeError(msg)
        if queue_ms > request.deadline_ms:
            msg = f"waited {queue_ms:.0f} ms in the hub queue, past the {request.deadline_ms:.0f} ms deadline"
            raise _Rejected(ReplyError(code=ErrorCode.DEADLINE_EXCEEDED, message=msg))
        tail = await self.store.get(request.model_id, request.model_sha256, request.cut_id)
        _check_tensors(request, tail)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._compute, tail, request, job.received)

    def _compute(self, tail: Tail, request: InferenceRequest, received: float) -> bytes:
        """Run the tail and encode the reply, in one worker-thread hop.

        ``queue_ms`` in the reply is all the hub's time before the tail runs:
        waiting in the queue, loading the tail on first use, the thread hop.
        """
        started = time.perf_counter()
        queue_ms = (started - received) * 1000
        outputs = tail.session.run(request.tensors)
        compute_ms = (time.perf_counter() - started) * 1000
        reply = InferenceReply(
            request_id=request.request_id,
            hub_id=self.config.hub_id,
            outputs=outputs,
            error=None,
            queue_ms=queue_ms,
            compute_ms=compute_ms,
            queue_depth=self._in_flight,
        )
        return encode_reply(reply)

    def _failure(self, job: _Job, error: ReplyError, queue_ms: float) -> bytes:
        if error.code != ErrorCode.OVERLOADED:
            logger.info("request %s refused: %s: %s", job.request_id, error.code, error.message)
        reply = InferenceReply.failure(
            job.request_id,
            self.config.hub_id,
            error.code,
            error.message,
            queue_ms=queue_ms,
            queue_depth=self._in_flight,
        )
        return encode_reply(reply)

    async def _reply(self, job: _Job, payload: bytes) -> None:
        """Publish a reply, waiting out a broker outage for as long as the request's deadline."""
        budget = job.request.deadline_ms / 1000 if job.request else self.config.grace
        remaining = max(0.1, budget - (time.perf_counter() - job.received))
        try:
            await self._connection.publish(
                job.reply_topic,
                payload,
                qos=min(job.incoming.qos, 1),
                correlation=job.incoming.correlation,
                timeout=remaining,
            )
            self.replies_sent += 1
        except EdgecutError as exc:
            logger.warning("reply to %s lost: %s", job.request_id, exc)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def _report_load(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._stopped.wait(), self.config.status_interval)
            except TimeoutError:
                pass
            else:
                return
            with contextlib.suppress(TransportError):
                await self._publish_status(timeout=self.config.status_interval)

    async def _publish_status(self, state: str = "online", *, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        payload = self._status_payload(state)
        topic = self.topics.status(self.config.hub_id)
        await self._connection.publish(topic, payload, qos=1, retain=True, timeout=timeout)

    def _status_payload(self, state: str) -> bytes:
        status = NodeStatus(
            node_id=self.config.hub_id,
            role="hub",
            state="online" if state == "online" else "offline",
            sent_at=time.time(),
            queue_depth=self._in_flight if state == "online" else 0,
            version=_VERSION,
        )
        return encode_status(status)


class _Rejected(Exception):  # noqa: N818 - control flow inside _answer, never escapes
    def __init__(self, error: ReplyError) -> None:
        super().__init__(error.message)
        self.error = error


def _check_tensors(request: InferenceRequest, tail: Tail) -> None:
    """Refuse tensors that are not exactly what the tail expects, naming the difference."""
    manifest = tail.manifest
    if request.tail_sha256 is not None and request.tail_sha256 != manifest.tail_sha256:
        msg = f"the agent's split of cut {request.cut_id!r} expects another tail than this hub's"
        raise _Rejected(ReplyError(code=ErrorCode.MODEL_MISMATCH, message=msg))
    why = tensors_mismatch(manifest.crossing, request.tensors)
    if why is not None:
        msg = f"cut {request.cut_id!r} {why}"
        raise _Rejected(ReplyError(code=ErrorCode.TENSOR_MISMATCH, message=msg))


def run_hub(config: HubConfig) -> None:
    """Serve ``config`` until SIGINT/SIGTERM: the first drains gracefully, a second forces.

    After a forced stop the signal is raised again with the default handlers
    back in place, as uvicorn does: a forcing SIGINT ends in
    ``KeyboardInterrupt`` (the CLI exits 130), a forcing SIGTERM terminates
    the process the way SIGTERM does.

    Raises:
        TransportError: The broker could not be reached at start-up.
    """
    forced = asyncio.run(serve_until_signalled(Hub(config)))
    if forced is not None:
        signal.raise_signal(forced)


async def serve_until_signalled(hub: Hub) -> signal.Signals | None:
    """Run ``hub.serve()`` with SIGINT/SIGTERM handlers installed for its duration.

    The first signal asks for a graceful shutdown; a second one stops the hub
    at once. The previous handlers are restored on return.

    Returns:
        The signal that forced the stop, or ``None`` after a graceful one.
    """
    loop = asyncio.get_running_loop()
    serving = asyncio.create_task(hub.serve(), name=f"edgecut[{hub.config.hub_id}].serve")
    forced: list[signal.Signals] = []
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal(signum: signal.Signals) -> None:
        if hub.is_shutting_down:
            logger.warning("second %s: stopping now", signum.name)
            forced.append(signum)
            serving.cancel()
            return
        logger.info("%s: finishing accepted requests (again to force)", signum.name)
        hub.request_shutdown()

    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await serving
    except asyncio.CancelledError:
        if not forced:  # cancelled from outside, not by a signal
            raise
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
    return forced[0] if forced else None

"""The hub: takes inference requests off MQTT, runs tails, replies.

Life cycle, as in uvicorn: :meth:`Hub.serve` starts up (preloads, broker
connection, shared subscription, online status), serves until
:meth:`Hub.request_shutdown` (or SIGINT/SIGTERM under :func:`run_hub`), then
shuts down: it unsubscribes so the broker sends new requests to other
replicas, lets accepted requests finish within the grace period, answers
those still waiting ``shutting_down`` (the agent sends them again, to another
replica), publishes its offline status and disconnects.

Every accepted request gets exactly one reply: outputs with hub timings, or a
structured error. A request sent again under the same id runs at most once
(:class:`~cloud_hub._jobs.RecentRequests`). What the hub holds is bounded by
its configuration. Nothing a client sends can stop the hub:

- a request is read on the event loop but its tensors are decoded only once
  their declared dtypes and shapes fit the cut and the hub's limits, in the
  worker thread that runs the tail;
- queued requests run one agent at a time in turn
  (:class:`~cloud_hub._fairness.FairQueue`), each agent within its own bound;
  those for one tail that are queued together run as one batch
  (:mod:`~cloud_hub._batching`), taken in the same turns;
- loads run on a thread of their own, within per-agent and overall budgets;
- pings are answered at once within per-agent and overall budgets, and
  dropped past them;
- replies go out from the event loop, never holding up a worker, and are
  published again on the next connection if the broker drops this one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from cloud_hub._admission import Admission
from cloud_hub._batching import Batcher, run_batch
from cloud_hub._delivery import ModelDelivery
from cloud_hub._execution import refusal
from cloud_hub._fairness import FairQueue
from cloud_hub._jobs import AgentClocks, Job, Ledger, RecentRequests
from cloud_hub._malloc import release_freed_memory
from cloud_hub._pings import PING_DROPPED, Pings
from cloud_hub._profile import LoadProfile
from cloud_hub._publishing import publish_until
from cloud_hub._status import status_payload
from cloud_hub._store import TailStore, TailUnavailableError
from protocol import (
    ErrorCode,
    InferenceReply,
    Ping,
    ReplyError,
    Topics,
    decode_incoming,
    encode_reply,
)
from protocol.errors import ProtocolError, TransportError
from protocol.http import Endpoint
from protocol.mqtt import Connection, Incoming, Will

if TYPE_CHECKING:
    import concurrent.futures
    from collections.abc import Coroutine, Iterator

    from cloud_hub._batching import Batch, Member, Outcome
    from cloud_hub._config import HubConfig
    from cloud_hub._execution import Ran
    from cloud_hub._metrics import HubMetrics, HubState
    from cloud_hub._store import Tail
    from protocol import EncodedRequest, InferenceRequest

logger = logging.getLogger("edgecut.hub")


_TRIM_AFTER_BYTES = 64 * 1024 * 1024
"""Give freed memory back to the OS once the hub is idle after taking in this many request bytes."""
_LOADING_MARGIN_S = 0.25
"""Time a ``loading`` answer keeps in hand to reach the agent before its deadline."""
_LOADING_MIN_WAIT_S = 0.01
"""A known miss or a quick load answers within this, whatever the deadline."""


_RUN_AGAIN_CODES = frozenset({ErrorCode.LOADING, ErrorCode.LOAD_REFUSED})
"""Answers a repeat of the request does not get again: it may run by then."""


class _Refused(Exception):  # noqa: N818 - control flow inside _start, never escapes
    def __init__(self, error: ReplyError) -> None:
        super().__init__(error.message)
        self.error = error


def _refuse_if(error: ReplyError | None) -> None:
    if error is not None:
        raise _Refused(error)


def _collected(task: asyncio.Task[Any]) -> None:
    """Done with a background load: its outcome (a tail, or a miss the store remembers) needs no one else."""
    if not task.cancelled():
        task.exception()


@contextlib.contextmanager
def _counting(what: str, job: Job) -> Iterator[None]:
    """Log what counting ``what`` of ``job`` raises, and go on: no request waits on its accounting for its answer."""
    try:
        yield
    except Exception:
        logger.exception("counting %s of request %s failed", what, job.request_id)


def _read(job: Job) -> EncodedRequest:
    if job.request is None:  # only requests read whole get this far
        msg = f"request {job.request_id} was not read"
        raise RuntimeError(msg)
    return job.request


class Hub:
    """A cloud hub serving tails of split models over MQTT.

    Args:
        config: What to serve and how; see :class:`HubConfig`.

    Raises:
        ProviderUnavailableError: ``config.providers`` names an execution
            provider the installed onnxruntime does not have.
    """

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self.topics = Topics(config.prefix)
        self._executor = ThreadPoolExecutor(config.workers, thread_name_prefix=f"edgecut[{config.hub_id}].ort")
        # Loads get a thread of their own: a load of seconds never holds up the tails of loaded models.
        self._loader = ThreadPoolExecutor(1, thread_name_prefix=f"edgecut[{config.hub_id}].load")
        self.store = TailStore(
            models_dir=config.models_dir,
            use_zoo=config.use_zoo,
            max_sessions=config.max_sessions,
            max_extra_cuts=config.max_extra_cuts,
            threads=config.threads,
            executor=self._loader,
            miss_ttl_s=config.miss_ttl,
            providers=config.providers,
        )
        self._queue: FairQueue[Job] = FairQueue()
        self._free_workers = config.workers
        self._jobs = Ledger(
            max_jobs=config.max_queue, max_bytes=config.max_queue_bytes, max_jobs_per_agent=config.max_queue_per_agent
        )
        self.refused: collections.Counter[str] = collections.Counter()
        """Requests refused and pings dropped since the hub started, by reason (the status reports them)."""
        self._recent = RecentRequests(
            max_entries=config.max_queue * 64, max_bytes=config.max_queue_bytes, ttl_s=config.repeat_window
        )
        self._clocks = AgentClocks()
        self._admission = Admission(config, self._jobs, self._clocks)
        self._limits = {"max_batch": config.max_batch, "max_reply_bytes": config.max_message_bytes}
        self._batcher = Batcher(
            queue=self._queue,
            store=self.store,
            admission=self._admission,
            max_batch_size=config.max_batch_size,
            max_batch_delay_s=config.max_batch_delay_ms / 1000,
            limits=self._limits,
        )
        self.profile = LoadProfile()
        """Recent queue waits and tail times, announced in the hub's status."""
        self._background: set[asyncio.Task[object]] = set()  # refusals, repeated replies, memory trims
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
        """Replies published so far (successes and errors, repeats of earlier replies included)."""
        self.pings = Pings(config, self.topics, self._admission, self._jobs, self.refused)
        """Pings: read on a connection of their own, answered or dropped."""
        self.delivery: ModelDelivery | None = None
        """Model delivery (``config.deliver_models``, with a models directory): offers and blocks, on a connection
        of its own."""
        if config.deliver_models and config.models_dir is not None:
            self.delivery = ModelDelivery(
                config.broker,
                node_id=config.hub_id,
                models_dir=config.models_dir,
                prefix=config.prefix,
                block_size=config.delivery_block_size,
                max_message_bytes=config.max_message_bytes,
                rescan_s=config.miss_ttl or None,
                on_change=lambda _models: self.store.models_changed(),
            )
        self.tails_run = 0
        """Requests whose tail ran here."""
        self.repeats = 0
        """Requests received again under an id that was running or answered here."""
        self.ready = asyncio.Event()
        """Set once the hub is connected and subscribed."""
        self._metrics: HubMetrics | None = None
        self.http: Endpoint | None = None
        """Metrics and health over HTTP (``config.http``): its ``address`` once :meth:`serve` has started it."""
        address = config.http_address()
        if address is not None:
            from cloud_hub._metrics import CONTENT_TYPE, HubMetrics  # noqa: PLC0415 - prometheus-client is optional

            self._metrics = HubMetrics(self._state)
            self.http = Endpoint(
                *address, exposition=self._metrics.exposition, content_type=CONTENT_TYPE, not_ready=self._not_ready
            )

    @property
    def queue_depth(self) -> int:
        """Requests accepted and not yet replied to."""
        return len(self._jobs)

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
            if self.http is not None:  # first: live while it preloads and connects, and not ready
                await self.http.start()
            for spec in self.config.preload:  # before going online: no request waits for these
                tail = await self.store.preload(spec)
                logger.info("preloaded %s at cut %s", tail.manifest.model_id, tail.manifest.cut_id)
            async with self._connection, self.pings.connection, self.delivery or contextlib.nullcontext():
                await self._connection.wait_connected(self.config.connect_timeout)
                await self.pings.connection.wait_connected(self.config.connect_timeout)
                self.ready.set()
                logger.info("%s serving on %s (group %s)", self.config.hub_id, self._connection.url, self.config.group)
                await self._serve_until_shutdown()
                with contextlib.suppress(TransportError):
                    await self._publish_status("offline")
        finally:
            if self.http is not None:
                await self.http.close()
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._loader.shutdown(wait=False, cancel_futures=True)
            self.store.close()

    async def _serve_until_shutdown(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._report_load(), name=f"edgecut[{self.config.hub_id}].status")
            try:
                await self._shutdown.wait()
                await self._drain()
            finally:  # a forced stop (cancelled) too: no run starts after this
                # Loops also watch this event: on Python 3.11 a cancel landing inside aiomqtt's
                # publish (asyncio.wait_for) can be swallowed (CPython gh-86296).
                self._stopped.set()

    async def _drain(self) -> None:
        self._accepting = False
        with contextlib.suppress(TransportError):
            await self._connection.unsubscribe(self.topics.shared_requests(self.config.group))
        with contextlib.suppress(TransportError):
            await self.pings.connection.unsubscribe(self.topics.shared_pings(self.config.group))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._jobs.idle.wait(), self.config.grace)
            return
        self._stopped.set()  # no run starts now: a run ending while these answers go out would start another
        left = list(self._jobs)
        logger.warning("%d requests unfinished after the %.1f s grace period: not run", len(left), self.config.grace)
        message = f"hub {self.config.hub_id} stopped before running the request; send it again"
        error = ReplyError(code=ErrorCode.SHUTTING_DOWN, message=message)
        await asyncio.gather(*(self._reply(job, self._failure(job, error)) for job in left if not job.answered))

    def _accept(self, incoming: Incoming) -> None:
        try:
            agent_id = self.topics.agent_of_request(incoming.topic)
        except ValueError:
            logger.warning("dropped a request on %s: its topic names no valid agent to answer", incoming.topic)
            return
        # Identity comes from the topic (which broker ACLs can restrict), never from the payload
        # or the ResponseTopic property: a hub answers only on the sender's own response topic.
        job = Job(incoming=incoming, agent_id=agent_id, reply_topic=self.topics.response(agent_id))
        try:
            message = decode_incoming(incoming.payload, max_bytes=self.config.max_message_bytes)
        except ProtocolError as exc:
            self._refuse_now(job, ReplyError(code=exc.code, message=str(exc)))
            return
        if isinstance(message, Ping):
            self.pings.drop(job, "a ping on a request topic: pings go on the agent's ping topic")
            return
        job.request = message  # read and checked; its tensors are decoded only once they fit the cut
        if self._is_repeat(job):
            return
        self._clocks.note(agent_id, message.header.sent_at, job.received_at)
        error = self._admission.request_error(job, message, accepting=self._accepting) or self._misfit(message)
        if error is not None:
            self._refuse_now(job, error)
            return
        self._jobs.hold(job)
        self._recent.start((agent_id, job.request_id))
        self._queue.put(agent_id, job)
        self._dispatch()

    def _misfit(self, request: EncodedRequest) -> ReplyError | None:
        """Why ``request`` cannot run on its tail, if that is loaded: refused on receipt, never queued."""
        header = request.header
        tail = self.store.ready_now(header.model_sha256, header.cut_id, pinned=header.tail_sha256 is not None)
        if tail is None:
            return None  # checked once its tail is loaded
        return refusal(request, tail, **self._limits)

    def _is_repeat(self, job: Job) -> bool:
        """Handle a request id seen lately: dropped while the first runs, else answered again as before."""
        recent = self._recent.lookup((job.agent_id, job.request_id))
        if recent is None:
            return False
        self.repeats += 1
        if recent.reply is None:
            logger.info("request %s of %s: already running, repeat dropped", job.request_id, job.agent_id)
        else:
            logger.info("request %s of %s: answered before, reply sent again", job.request_id, job.agent_id)
            self._jobs.hold(job, size=len(job.incoming.payload))
            self._spawn(self._reply(job, recent.reply))
        return True

    def _refuse_now(self, job: Job, error: ReplyError) -> None:
        """Answer with an error at once, without queueing behind accepted work."""
        self._jobs.hold(job, size=len(job.incoming.payload))  # never decoded: what it declares takes nothing
        self._spawn(self._reply(job, self._failure(job, error)))

    def _spawn(self, coroutine: Coroutine[Any, Any, object]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _dispatch(self) -> None:
        """Start queued requests in turn while a worker is free: called when one is queued and when a run ends.

        Called from the message callback itself, a request reaches its worker
        thread without waiting for a task of the loop to wake.
        """
        while self._free_workers and self._queue and not self._stopped.is_set():
            if self._start(self._queue.pop()):
                self._free_workers -= 1

    def _start(self, job: Job) -> bool:
        """Start running ``job`` and what batches with it; ``True`` when that takes a worker until :meth:`_ran`.

        A request refused now is answered at once, one whose tail must load
        waits for it off the workers: neither takes a worker.
        """
        try:
            batch = self._batch_for(job)
        except _Refused as exc:
            job.repeatable = exc.error.code not in _RUN_AGAIN_CODES
            error = exc.error
        except (TailUnavailableError, ProtocolError) as exc:
            error = ReplyError(code=exc.code, message=str(exc))
        except Exception as exc:  # the hub must outlive any one request
            logger.exception("request %s failed", job.request_id)
            error = ReplyError(code=ErrorCode.INTERNAL, message=f"{type(exc).__name__}: {exc}")
        else:
            if batch is None:
                return False
            if self._batcher.delay_s:
                self._spawn(self._fill_then_run(batch))
            else:
                self._run(batch)
            return True
        self._spawn(self._reply(job, self._failure(job, error)))
        return False

    def _batch_for(self, job: Job) -> Batch | None:
        """The batch ``job`` runs in, its tail ready; ``None`` while the tail loads (``job`` waits for it)."""
        request = _read(job)
        _refuse_if(self._admission.staleness(job, request.header))
        tail = self._ready_tail(job, request.header)
        if tail is None:
            self._spawn(self._load_for(job))
            return None
        _refuse_if(refusal(request, tail, **self._limits))
        return self._batcher.take(job, request, tail)

    async def _fill_then_run(self, batch: Batch) -> None:
        try:
            await self._batcher.fill(batch)
        finally:  # the batch runs with what joined it, even if the wait broke off
            if not self._stopped.is_set():
                self._run(batch)

    def _run(self, batch: Batch) -> None:
        """Run ``batch`` in a worker thread; :meth:`_ran` sends the replies the moment the thread is done."""
        loop = asyncio.get_running_loop()
        self.tails_run += len(batch.members)
        run = self._executor.submit(run_batch, batch, hub_id=self.config.hub_id, queue_depth=len(self._jobs))

        def ran(done: concurrent.futures.Future[list[Outcome]]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed while it ran: the hub is gone, none waits
                loop.call_soon_threadsafe(self._ran, batch, done)

        run.add_done_callback(ran)

    def _ran(self, batch: Batch, run: concurrent.futures.Future[list[Outcome]]) -> None:
        """On the loop: send every member's reply (each its own error), count the run, free its worker."""
        if run.cancelled():  # the hub is stopping: its drain answers what never ran
            return
        try:
            self._answer_members(batch, run)
        finally:  # whatever went wrong, the worker is free again
            self._free_workers += 1
            self._dispatch()

    def _answer_members(self, batch: Batch, run: concurrent.futures.Future[list[Outcome]]) -> None:
        try:
            outcomes: list[Outcome] = run.result()
        except Exception as exc:  # run_batch answers each member itself: never, but no member may go unanswered
            logger.exception("a batch of %d requests failed", len(batch.members))
            outcomes = [ReplyError(code=ErrorCode.INTERNAL, message=f"{type(exc).__name__}: {exc}")] * len(
                batch.members
            )
        for member, outcome in zip(batch.members, outcomes, strict=True):
            if member.job.answered:  # answered shutting_down while it ran: the grace period ran out
                continue
            try:
                self._answer_member(batch.tail, member, outcome)
            except Exception as exc:  # its reply could not be made: it gets an error, the others their replies
                logger.exception("answering request %s failed", member.job.request_id)
                error = ReplyError(code=ErrorCode.INTERNAL, message=f"{type(exc).__name__}: {exc}")
                self._spawn(self._reply(member.job, self._failure(member.job, error)))
        if self._metrics is not None:
            model, cut = batch.tail.manifest.model_id, batch.members[0].request.header.cut_id
            with _counting("the batch", batch.members[0].job):
                self._metrics.batch(model, cut, rows=batch.rows, requests=len(batch.members))

    def _answer_member(self, tail: Tail, member: Member, outcome: Outcome) -> None:
        """Send one member of a batch its reply, then count its run (a count that fails is logged)."""
        answer = outcome if isinstance(outcome, ReplyError) else self._too_large(outcome) or outcome
        if isinstance(answer, ReplyError):
            self._spawn(self._reply(member.job, self._failure(member.job, answer)))
            return
        self._spawn(self._reply(member.job, answer.reply))
        with _counting("the run", member.job):
            self._note_ran(member.job, tail, member.request, answer)

    def _too_large(self, ran: Ran) -> ReplyError | None:
        """``too_large`` when the run's reply is over the message limit, which no publish would carry.

        Outputs whose size the data decides (a detector's boxes) are what
        :func:`~cloud_hub._execution.refusal` could not bound before the run.
        """
        limit = self.config.max_message_bytes
        if len(ran.reply) <= limit:
            return None
        msg = f"the reply takes {len(ran.reply):,} bytes, more than the {limit:,} byte limit (max_message_bytes)"
        return ReplyError(code=ErrorCode.TOO_LARGE, message=msg)

    def _note_ran(self, job: Job, tail: Tail, request: EncodedRequest, ran: Ran) -> None:
        """Count a request whose tail ran, in the load profile and the metrics."""
        queue_ms = max(0.0, ran.queue_ms - job.load_ms)
        self.profile.note_wait(queue_ms, time.monotonic())
        for cut_id, ms in (ran.tail_ms or {request.header.cut_id: ran.compute_ms}).items():
            self.profile.note_tail(request.header.model_sha256, cut_id, ms)
        if self._metrics is not None:
            model, cut = tail.manifest.model_id, request.header.cut_id
            self._metrics.ran(model, cut, queue_s=queue_ms / 1000, compute_s=ran.compute_ms / 1000)

    def _ready_tail(self, job: Job, request: InferenceRequest) -> Tail | None:
        """The request's tail if it is ready now; ``None`` if it must be loaded (within the load budgets).

        Raises:
            _Refused: ``load_refused``: the load it needs is past a budget,
                or the hub serves only what it preloaded.
        """
        sha, cut_id = request.model_sha256, request.cut_id
        ready = self.store.ready_now(sha, cut_id, pinned=request.tail_sha256 is not None)
        if ready is not None:
            return ready
        starts_a_load = not (self.store.is_loading(sha, cut_id) or self.store.is_missed(request.model_id, sha, cut_id))
        if starts_a_load:  # else it waits for a load under way, or is refused at once: it starts nothing
            _refuse_if(self._admission.load_refusal(job.agent_id, request))
        return None

    async def _load_for(self, job: Job) -> None:
        """Wait for the tail of ``job`` off the workers, as long as its deadline allows; then queue it again.

        The workers go on with loaded models meanwhile. If the load is not
        done in time, the request is answered ``loading``; the load goes on,
        and the agent's next request finds it done.
        """
        request = _read(job).header
        started = time.perf_counter()
        getting: asyncio.Task[Tail] = asyncio.create_task(
            self.store.ready(
                request.model_id, request.model_sha256, request.cut_id, pinned=request.tail_sha256 is not None
            )
        )
        left_s = request.deadline_ms / 1000 - (started - job.received) - _LOADING_MARGIN_S
        done, _ = await asyncio.wait({getting}, timeout=max(left_s, _LOADING_MIN_WAIT_S))
        if getting in done:
            try:
                getting.result()
            except TailUnavailableError as exc:
                await self._reply(job, self._failure(job, ReplyError(code=exc.code, message=str(exc))))
                return
            except Exception as exc:
                logger.exception("loading for request %s failed", job.request_id)
                error = ReplyError(code=ErrorCode.INTERNAL, message=f"{type(exc).__name__}: {exc}")
                await self._reply(job, self._failure(job, error))
                return
            job.load_ms += (time.perf_counter() - started) * 1000  # a tail's first use, not the queue
            self._queue.put(job.agent_id, job)  # its tail is ready now
            self._dispatch()
            return
        self._background.add(getting)  # the load goes on; its outcome (a tail, or a miss) is the store's
        getting.add_done_callback(self._background.discard)
        getting.add_done_callback(_collected)
        since = self.store.loading_since(request.model_sha256, request.cut_id)
        so_far = f" ({time.monotonic() - since:.1f} s so far)" if since is not None else ""
        msg = f"{request.model_id} at cut {request.cut_id!r} is loading on this hub{so_far}; send a new request soon"
        job.repeatable = False
        await self._reply(job, self._failure(job, ReplyError(code=ErrorCode.LOADING, message=msg)))

    def _failure(self, job: Job, error: ReplyError) -> bytes:
        with _counting("the refusal", job):
            self.refused[error.code] += 1
            if self._metrics is not None:
                self._metrics.failed(*self._labels(job), error.code)
        if error.code not in {ErrorCode.OVERLOADED, ErrorCode.SHUTTING_DOWN}:
            logger.info("request %s refused: %s: %s", job.request_id, error.code, error.message)
        reply = InferenceReply.failure(
            job.request_id,
            self.config.hub_id,
            error.code,
            error.message,
            queue_ms=(time.perf_counter() - job.received) * 1000,
            queue_depth=len(self._jobs),
        )
        return encode_reply(reply)

    async def _reply(self, job: Job, payload: bytes) -> None:
        """Publish the one reply of ``job``: again on the next connection if this one drops, until its deadline."""
        if job.answered:
            return
        job.answered = True
        # A repeat gets this same reply, unless it said "loading": then a repeat runs again.
        self._recent.finish((job.agent_id, job.request_id), payload if job.repeatable else None)
        budget_s = job.request.header.deadline_ms / 1000 if job.request else self.config.grace
        try:
            published = await publish_until(
                self._connection,
                job.reply_topic,
                payload,
                qos=min(job.incoming.qos, 1),
                correlation=job.incoming.correlation,
                deadline=job.received + budget_s,
            )
            self.replies_sent += published
        finally:
            self._release(job)

    def _release(self, job: Job) -> None:
        """Forget ``job``; after a burst of large requests, give the memory back."""
        self._jobs.release(job)
        if self._jobs.idle.is_set():
            burst = self._jobs.bytes_since_idle >= _TRIM_AFTER_BYTES
            self._jobs.bytes_since_idle = 0
            if burst:
                self._spawn(asyncio.to_thread(release_freed_memory))

    def _labels(self, job: Job) -> tuple[str, str]:
        """The model and cut of ``job`` as metrics label them: only a tail the hub holds, else empty."""
        if job.request is None:
            return "", ""
        header = job.request.header
        model = self.store.model_name(header.model_sha256, header.cut_id)
        return ("", "") if model is None else (model, header.cut_id)

    def _not_ready(self) -> str | None:
        """Why the hub cannot take requests now (``/health/ready``), or ``None`` when it can.

        It can once its requests' connection is up (which it opens after its
        preloads), and so from before its online status goes out.
        """
        if self.is_shutting_down:
            return "shutting down: finishing accepted requests"
        if self._connection.is_connected:
            return None
        if self.ready.is_set():
            return "reconnecting to the broker"
        return "starting: preloading tails or connecting to the broker"

    def _state(self) -> HubState:
        """What the hub holds and has counted now, for a metrics scrape."""
        from cloud_hub._metrics import HubState  # noqa: PLC0415 - prometheus-client is an optional extra

        return HubState(
            queue_depth=len(self._jobs),
            queue_bytes=self._jobs.bytes,
            tails_loaded=len(self.store),
            tails_loading=self.store.loading_count,
            connected={"requests": self._connection.is_connected, "pings": self.pings.connection.is_connected},
            replies_sent=self.replies_sent,
            pings_answered=self.pings.answered,
            pings_dropped=self.refused[PING_DROPPED],
            repeats=self.repeats,
            providers=self.store.loaded_providers(),
        )

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
        return status_payload(
            self.config.hub_id,
            online=state == "online",
            held=len(self._jobs),
            profile=self.profile,
            store=self.store,
            refused=self.refused,
        )

"""What a hub holds on to: accepted requests, recent answers, and how far each agent's clock is off.

Every bound here comes from the hub's configuration, never from what a sender
chooses: the requests in flight are bounded in count and in bytes, the recent
answers kept for repeats in count, bytes and age, the clocks in agents.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from protocol import MAX_ID_LENGTH, peek_request_id

if TYPE_CHECKING:
    from collections.abc import Iterator

    from protocol import EncodedRequest
    from protocol.mqtt import Incoming

_UNKNOWN_REQUEST_ID = "unknown"


@dataclasses.dataclass(slots=True, eq=False)
class Job:
    """One accepted request, from receipt to its one reply.

    Attributes:
        incoming: The message as it arrived.
        agent_id: The sender, from the request topic (never from the payload).
        reply_topic: That agent's response topic: the only place the reply goes.
        received: ``time.perf_counter()`` at receipt.
        received_at: ``time.time()`` at receipt, to compare with the agent's ``sent_at``.
        request: The request as read (its tensors not decoded yet); ``None``
            when it could not be read, or for a ping.
        answered: Set when the reply goes out; any later answer is dropped.
        repeatable: Whether a repeat of this id gets this job's reply (not after ``loading``: it runs again).
        load_ms: Time it waited for its tail to load (its first use), which is not queueing.
    """

    incoming: Incoming
    agent_id: str
    reply_topic: str
    received: float = dataclasses.field(default_factory=time.perf_counter)
    received_at: float = dataclasses.field(default_factory=time.time)
    request: EncodedRequest | None = None
    answered: bool = False
    repeatable: bool = True
    load_ms: float = 0.0

    @property
    def size(self) -> int:
        """Bytes counted against the hub's byte bound while the job is held.

        The payload, or what its tensors take once decoded when that is more
        (a compressed request): the memory running it may need, as declared
        before anything is decoded.
        """
        declared = self.request.nbytes if self.request is not None else 0
        return max(len(self.incoming.payload), declared)

    @property
    def request_id(self) -> str:
        """The request's id, or the best guess from CorrelationData or the raw payload."""
        if self.request is not None:
            return self.request.header.request_id
        if self.incoming.correlation:
            return self.incoming.correlation.decode("utf-8", "replace")[:MAX_ID_LENGTH]
        return peek_request_id(self.incoming.payload) or _UNKNOWN_REQUEST_ID


class Ledger:
    """The jobs a hub holds, bounded in count, in bytes, and per agent: in count, and to half the bytes.

    Args:
        max_jobs: Most jobs held at once.
        max_bytes: Most bytes held at once (see :attr:`Job.size`); one
            agent's jobs may hold half of them.
        max_jobs_per_agent: Most jobs of one agent held at once.
    """

    def __init__(self, *, max_jobs: int, max_bytes: int, max_jobs_per_agent: int) -> None:
        self._max_jobs = max_jobs
        self._max_bytes = max_bytes
        self._max_per_agent = max_jobs_per_agent
        self._jobs: dict[Job, int] = {}  # a job, and the bytes it was held with
        self._per_agent: collections.Counter[str] = collections.Counter()
        self._agent_bytes: collections.Counter[str] = collections.Counter()
        self._bytes = 0
        self.bytes_since_idle = 0
        """Payload bytes taken in since the ledger was last empty."""
        self.idle = asyncio.Event()
        """Set while no job is held."""
        self.idle.set()

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[Job]:
        return iter(list(self._jobs))

    def __contains__(self, job: object) -> bool:
        return job in self._jobs

    def hold(self, job: Job, *, size: int | None = None) -> None:
        """Count ``job`` as held, whatever the bounds (it will be answered, if only with an error).

        Args:
            job: The job.
            size: The bytes it holds, if not :attr:`Job.size` (a job refused
                on receipt holds its payload only: it is never decoded).
        """
        if job in self._jobs:
            return
        size = job.size if size is None else size
        self._jobs[job] = size
        self._per_agent[job.agent_id] += 1
        self._agent_bytes[job.agent_id] += size
        self._bytes += size
        self.bytes_since_idle += size
        self.idle.clear()

    def over_bounds(self, job: Job) -> str | None:
        """Why holding ``job`` would exceed a bound (held already: why it does), or ``None``."""
        held = job in self._jobs
        more, size = (0, 0) if held else (1, job.size)
        jobs = len(self._jobs) + more
        if jobs > self._max_jobs:
            return f"{jobs - 1} requests queued (max_queue {self._max_jobs})"
        agent = job.agent_id
        agent_jobs = self._per_agent[agent] + more
        if agent_jobs > self._max_per_agent:
            return f"{agent_jobs - 1} requests of agent {agent} queued (max_queue_per_agent {self._max_per_agent})"
        agent_bytes = self._agent_bytes[agent] + size
        if agent_bytes > self.max_bytes_per_agent:
            return f"{agent_bytes:,} bytes of requests of agent {agent} queued (half of max_queue_bytes)"
        total = self._bytes + size
        if total > self._max_bytes:
            return f"{total:,} bytes of requests queued (max_queue_bytes {self._max_bytes:,})"
        return None

    @property
    def bytes(self) -> int:
        """Bytes the jobs held hold (see :meth:`hold`)."""
        return self._bytes

    @property
    def max_bytes_per_agent(self) -> int:
        """The bytes one agent's jobs may hold: half of the bound for all of them."""
        return self._max_bytes // 2

    def release(self, job: Job) -> None:
        """Forget ``job`` (answered, or given up)."""
        size = self._jobs.pop(job, None)
        if size is not None:
            self._bytes -= size
            self._per_agent[job.agent_id] -= 1
            self._agent_bytes[job.agent_id] -= size
            if not self._per_agent[job.agent_id]:
                del self._per_agent[job.agent_id]
                del self._agent_bytes[job.agent_id]
        if not self._jobs:
            self.idle.set()


@dataclasses.dataclass(slots=True)
class _Recent:
    reply: bytes | None  # None while the request runs
    expires: float


class RecentRequests:
    """The (agent, request id) pairs a hub is running or has answered lately.

    A request sent again (after a lost connection, or by an agent's retry)
    must not run the tail twice: while the first runs, the repeat is dropped;
    once it is answered, the repeat gets the same reply again. Entries go after
    ``ttl_s``, and the oldest first when over ``max_entries`` or ``max_bytes``
    of kept replies; a repeat that comes later runs as a new request.

    Args:
        max_entries: Most pairs remembered.
        max_bytes: Most reply bytes kept.
        ttl_s: How long a pair is remembered after its reply.
    """

    def __init__(self, *, max_entries: int, max_bytes: int, ttl_s: float) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._ttl_s = ttl_s
        self._entries: OrderedDict[tuple[str, str], _Recent] = OrderedDict()
        self._bytes = 0

    def lookup(self, key: tuple[str, str]) -> _Recent | None:
        """What is known of ``key``: running (``reply is None``), answered, or nothing."""
        entry = self._entries.get(key)
        if entry is not None and entry.reply is not None and time.monotonic() > entry.expires:
            self._drop(key)
            return None
        return entry

    def start(self, key: tuple[str, str]) -> None:
        """``key`` is running."""
        self._entries[key] = _Recent(reply=None, expires=float("inf"))
        self._trim()

    def finish(self, key: tuple[str, str], reply: bytes | None) -> None:
        """``key``, running, is answered with ``reply`` (``None``: forget it, it may run again)."""
        entry = self._entries.get(key)
        if entry is None or entry.reply is not None:  # only a running request finishes
            return
        if reply is None:
            self._drop(key)
            return
        self._entries[key] = _Recent(reply=reply, expires=time.monotonic() + self._ttl_s)
        self._entries.move_to_end(key)
        self._bytes += len(reply)
        self._trim()

    def _trim(self) -> None:
        while len(self._entries) > self._max_entries:
            self._drop(next(iter(self._entries)))
        if self._bytes > self._max_bytes:  # only answered entries hold bytes: the oldest of those go
            for key in [key for key, entry in self._entries.items() if entry.reply is not None]:
                self._drop(key)
                if self._bytes <= self._max_bytes:
                    break

    def _drop(self, key: tuple[str, str]) -> None:
        entry = self._entries.pop(key)
        if entry.reply is not None:
            self._bytes -= len(entry.reply)


class AgentClocks:
    """How far each agent's clock is from the hub's, to tell how old a request really is.

    For every request the hub notes ``received_at - sent_at``: the agent's
    clock offset plus the time in transit. The smallest value seen is the
    offset plus the quickest transit, so ``now - sent_at - smallest`` is how
    long a request has been on its way beyond the quickest one, whatever the
    clocks say, and it counts time a stalled hub did not notice. The smallest
    value creeps up by ``drift`` seconds per second, so that a clock that is
    set back is trusted again within minutes. The first request of an agent
    has no history: its age is taken as zero.

    Args:
        max_agents: Most agents remembered (the least recently heard go first).
        drift: Seconds per second the remembered offset relaxes.
    """

    def __init__(self, *, max_agents: int = 10_000, drift: float = 1e-3) -> None:
        self._max_agents = max_agents
        self._drift = drift
        self._offsets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def note(self, agent_id: str, sent_at: float, received_at: float) -> None:
        """Learn from one request's send and receive times."""
        observed = received_at - sent_at
        known = self._offsets.pop(agent_id, None)
        if known is not None:
            offset, noted_at = known
            observed = min(observed, offset + self._drift * max(0.0, received_at - noted_at))
        self._offsets[agent_id] = (observed, received_at)
        if len(self._offsets) > self._max_agents:
            self._offsets.popitem(last=False)

    def age_s(self, agent_id: str, sent_at: float, now: float) -> float:
        """Seconds the request has been on its way beyond the agent's quickest, as of ``now``."""
        known = self._offsets.get(agent_id)
        if known is None:
            return 0.0
        return max(0.0, now - sent_at - known[0])

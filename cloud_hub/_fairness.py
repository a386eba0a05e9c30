"""Sharing a hub between agents: a queue that takes them in turn, and budgets per agent.

No agent can take more than its share by sending faster: the queue serves
the agents that have requests waiting one request at a time, in turn (round
robin), so an agent's request waits for at most one request of every other
agent, however many they queue; and rate budgets (pings per second, loads of
new tails per minute) are kept per agent, as token buckets, and overall. An
agent is who the topic says it is (docs/protocol.md, section 1.3).

Everything here is told the time (``now_s``, a monotonic clock in seconds) and
is bounded: the agents remembered, and the requests queued by the hub's ledger.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections import OrderedDict
from typing import Generic, TypeVar

_T = TypeVar("_T")

_MAX_AGENTS_REMEMBERED = 10_000
"""Most agents whose budgets are kept; the least recently heard go first (their buckets refill anyway)."""


class FairQueue(Generic[_T]):
    """Items queued per sender, taken one per sender in turn.

    Unbounded by itself: the hub's ledger bounds what it accepts.
    """

    def __init__(self) -> None:
        self._queues: OrderedDict[str, collections.deque[_T]] = OrderedDict()
        self._count = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def __len__(self) -> int:
        return self._count

    def put(self, sender: str, item: _T) -> None:
        """Queue ``item`` behind ``sender``'s earlier ones."""
        queue = self._queues.get(sender)
        if queue is None:
            queue = self._queues[sender] = collections.deque()
        queue.append(item)
        self._count += 1
        self._wake_next()

    async def get(self) -> _T:
        """The oldest item of the sender whose turn it is, waiting for one if none is queued."""
        while not self._count:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and self._count:
                    self._wake_next()  # pass on a wake-up this cancelled getter took
                raise
        return self.get_nowait()

    def get_nowait(self) -> _T:
        """Like :meth:`get`, without waiting.

        Raises:
            asyncio.QueueEmpty: Nothing is queued.
        """
        if not self._count:
            raise asyncio.QueueEmpty
        sender, queue = next(iter(self._queues.items()))
        item = queue.popleft()
        self._count -= 1
        if queue:
            self._queues.move_to_end(sender)  # its next item waits for every other sender's
        else:
            del self._queues[sender]
        return item

    def _wake_next(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


@dataclasses.dataclass(slots=True)
class _Bucket:
    tokens: float
    at_s: float


class RateBudget:
    """A token bucket per agent, and one for all agents together.

    An event of an agent is allowed when both its own bucket and the shared
    one hold a token; each refills at its rate up to its burst.

    Args:
        per_agent: Events per second one agent may have, on average.
        per_agent_burst: Events one agent may have at once.
        overall: Events per second all agents together may have.
        overall_burst: Events all agents together may have at once.
    """

    def __init__(self, *, per_agent: float, per_agent_burst: float, overall: float, overall_burst: float) -> None:
        self._rate = per_agent
        self._burst = per_agent_burst
        self._overall_rate = overall
        self._overall_burst = overall_burst
        self._overall = _Bucket(overall_burst, 0.0)
        self._agents: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, agent_id: str, now_s: float) -> str | None:
        """Spend one of ``agent_id``'s tokens; ``None`` when allowed, else which budget is spent."""
        bucket = self._agents.pop(agent_id, None) or _Bucket(self._burst, now_s)
        self._agents[agent_id] = bucket  # most recently heard last
        if len(self._agents) > _MAX_AGENTS_REMEMBERED:
            self._agents.popitem(last=False)
        _refill(bucket, self._rate, self._burst, now_s)
        _refill(self._overall, self._overall_rate, self._overall_burst, now_s)
        if bucket.tokens < 1:
            return "agent"
        if self._overall.tokens < 1:
            return "overall"
        bucket.tokens -= 1
        self._overall.tokens -= 1
        return None


def _refill(bucket: _Bucket, rate: float, burst: float, now_s: float) -> None:
    elapsed = max(0.0, now_s - bucket.at_s)
    bucket.tokens = min(burst, bucket.tokens + elapsed * rate)
    bucket.at_s = now_s

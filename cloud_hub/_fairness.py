"""Sharing a hub between agents: a queue that takes them in turn, and budgets per agent.

No agent can take more than its share by sending faster: the queue serves
the agents that have requests waiting one request at a time, in turn, so an
agent's request waits for at most one request of every other agent (and the
one in service), however many they queue; and rate budgets (pings per second, loads of
new tails per minute) are kept per agent, as token buckets, and overall. An
agent is who the topic says it is (docs/protocol.md, section 1.3).

Everything here is told the time (``now_s``, a monotonic clock in seconds) and
is bounded: the agents remembered, and the requests queued by the hub's ledger.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import itertools
from collections import OrderedDict
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Iterator

_T = TypeVar("_T")

_MAX_AGENTS_REMEMBERED = 10_000
"""Most agents whose budgets are kept; the least recently heard go first (their buckets refill anyway)."""


class FairQueue(Generic[_T]):
    """Items queued per sender, taken one per sender in turn (start-time fair queuing).

    Each item gets a start tag: the later of the virtual time (the tag of the
    item taken last) and its sender's previous item's tag plus one. Items are
    taken in tag order, ties in arrival order. So senders with items waiting
    are served in turn, one item each; a sender that arrives while another's
    backlog runs goes next, right after the item in service; and a sender
    gains nothing by queueing more, nor loses its turn by having been idle.

    Unbounded by itself: the hub's ledger bounds what it accepts.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, _T]] = []  # (start tag, arrival, item)
        self._next_tag: dict[str, int] = {}  # sender -> the start tag of its next item, at the least
        self._virtual = 0
        self._arrivals = itertools.count()
        self._claimers: list[Callable[[_T], bool]] = []  # claim_arrivals
        self._watchers: list[asyncio.Future[None]] = []  # claim_arrivals

    def __len__(self) -> int:
        return len(self._heap)

    def put(self, sender: str, item: _T) -> None:
        """Queue ``item`` behind ``sender``'s earlier ones."""
        tag = max(self._virtual, self._next_tag.get(sender, 0))
        self._next_tag[sender] = tag + 1
        for claimer in self._claimers:  # a batch being filled takes it at once, as if queued and taken
            if claimer(item):
                self._virtual = max(self._virtual, tag)
                return
        heapq.heappush(self._heap, (tag, next(self._arrivals), item))
        for watcher in self._watchers:
            if not watcher.done():
                watcher.set_result(None)

    def pop(self) -> _T:
        """Take the item whose turn it is.

        Raises:
            IndexError: Nothing is queued.
        """
        if not self._heap:
            msg = "pop from an empty fair queue"
            raise IndexError(msg)
        tag, _, item = heapq.heappop(self._heap)
        self._virtual = tag
        if len(self._next_tag) > _MAX_AGENTS_REMEMBERED:  # senders at or behind the virtual time add nothing
            self._next_tag = {sender: t for sender, t in self._next_tag.items() if t > self._virtual}
        return item

    def queued(self, limit: int) -> list[tuple[int, _T]]:
        """Up to ``limit`` queued items with their start tags (their rounds), in the order they would be taken."""
        if len(self._heap) <= limit:
            return [(tag, item) for tag, _, item in sorted(self._heap)]
        return [(tag, item) for tag, _, item in heapq.nsmallest(limit, self._heap)]

    def take(self, items: list[_T]) -> None:
        """Take queued ``items`` out of turn: they run together with the item just taken (a batch).

        The virtual time moves on to the latest of their tags, as if they had
        been taken one by one; items passed over keep their tags.
        """
        taken = {id(item) for item in items}
        kept = [entry for entry in self._heap if id(entry[2]) not in taken]
        tags = [entry[0] for entry in self._heap if id(entry[2]) in taken]
        if tags:
            self._heap = kept
            heapq.heapify(self._heap)
            self._virtual = max(self._virtual, *tags)

    @contextlib.contextmanager
    def claim_arrivals(self, claimer: Callable[[_T], bool], queued: asyncio.Future[None]) -> Iterator[None]:
        """Within the block, offer every item put to ``claimer`` first, and resolve ``queued`` once one is queued.

        An item ``claimer`` takes (it returns ``True``) is never queued: it is
        taken the moment it is put, before it could start alone. Only
        while nothing is queued is that fair, so a batch being filled claims
        arrivals only until something is queued (``queued``).
        """
        self._claimers.append(claimer)
        self._watchers.append(queued)
        try:
            yield
        finally:
            self._claimers.remove(claimer)
            self._watchers.remove(queued)


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

"""What hubs say of themselves in their statuses, for one model: a view many planners may share.

A hub's retained status carries its tail time per cut of each model it
holds and its recent queue wait. Every agent of a model that listens to the
same hubs hears the same statuses at the same time, so what they teach does
not belong to one planner: a :class:`HubReports` holds it, and each
:class:`~edge_agent.Planner` reads it (its own replies' queue waits beside
it). An agent has one of its own; a simulated fleet of a thousand agents
gives every planner of a model the same one, and a status is then one
call, not one per agent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent._estimators import Recent

if TYPE_CHECKING:
    from collections.abc import Mapping

    from protocol import NodeStatus

QUEUE_MAX_AGE_S = 10.0
"""A queue wait older than this says nothing of the queue now (hubs report theirs every few seconds)."""
QUEUE_WINDOW = 8
"""The latest queue waits that count, of replies and statuses together (a planner keeps its replies')."""


class HubReports:
    """The hubs' reported tail times by cut (the latest of each) and their recent queue waits.

    Attributes:
        queue: The queue waits of the last statuses (ms, at most 10 s old).
        version: Bumped whenever a reported tail time changes (readers keep copies).
    """

    def __init__(self) -> None:
        self.tail_ms: dict[str, float] = {}
        """The latest tail time each cut was reported with."""
        self.queue = Recent(QUEUE_WINDOW, max_age_s=QUEUE_MAX_AGE_S)
        self.version = 0

    def hear(self, status: NodeStatus, model_sha256: str, now_s: float) -> None:
        """A status heard at ``now_s``: an online hub's tail times for the model ``model_sha256``, and its wait."""
        if status.role != "hub" or status.state != "online":
            return
        self.report(now_s, tail_ms=status.tail_ms.get(model_sha256), queue_ms=status.queue_wait_ms)

    def report(
        self, now_s: float, *, tail_ms: Mapping[str, float] | None = None, queue_ms: float | None = None
    ) -> None:
        """Tail times by cut (those not named keep theirs), and a queue wait, reported at ``now_s``."""
        for cut_id, ms in (tail_ms or {}).items():
            if self.tail_ms.get(cut_id) != ms:
                self.tail_ms[cut_id] = ms
                self.version += 1
        if queue_ms is not None:
            self.queue.add(queue_ms, now_s)

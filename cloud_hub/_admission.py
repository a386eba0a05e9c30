"""What a hub lets in, and when: the rules, kept apart from carrying them out.

Each rule looks at what a request or ping declares and at what the hub holds,
never at anything decoded, and says why not (or nothing):

- on receipt, a request: its agent is its topic's, the hub is taking
  requests, its tensors would fit in the hub decoded, and the hub's queue
  bounds (overall and this agent's) leave room for it;
- on receipt, a ping: at most ``MAX_PING_PADDING`` of padding, a bound on
  answers in flight, room in the queue bounds, and the ping budgets;
- before a load starts: the hub loads on demand, and the sender's and all
  agents' load budgets allow it;
- when a worker takes a request, and before its tail runs: its age.

docs/protocol.md, section 6.5, lists them for a second implementation.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from cloud_hub._fairness import RateBudget
from protocol import MAX_PING_PADDING, ErrorCode, ReplyError

if TYPE_CHECKING:
    from cloud_hub._config import HubConfig
    from cloud_hub._jobs import AgentClocks, Job, Ledger
    from protocol import EncodedRequest, InferenceRequest, Ping

MAX_PONGS = 64
"""Ping answers in flight at once; a ping past this gets none (the agent's probe times out)."""


class Admission:
    """A hub's rules of admission, over its ledger and its agents' clocks.

    Args:
        config: The hub's limits and budgets.
        jobs: What the hub holds.
        clocks: The agents' clock offsets, to tell a request's age.
    """

    def __init__(self, config: HubConfig, jobs: Ledger, clocks: AgentClocks) -> None:
        self._config = config
        self._jobs = jobs
        self._clocks = clocks
        self._loads = RateBudget(
            per_agent=config.loads_per_agent_minute / 60,
            per_agent_burst=config.loads_per_agent_minute,
            overall=config.loads_per_minute / 60,
            overall_burst=config.loads_per_minute,
        )
        self._pings = RateBudget(
            per_agent=config.pings_per_agent_s,
            per_agent_burst=2 * config.pings_per_agent_s,
            overall=config.pings_per_s,
            overall_burst=2 * config.pings_per_s,
        )

    def request_error(self, job: Job, request: EncodedRequest, *, accepting: bool) -> ReplyError | None:
        """Why ``job`` is refused on receipt (before it is held), or ``None``."""
        if request.header.agent_id != job.agent_id:
            message = f"the request names agent {request.header.agent_id!r} but was published by {job.agent_id!r}"
            return ReplyError(code=ErrorCode.AGENT_MISMATCH, message=message)
        if not accepting:
            message = f"hub {self._config.hub_id} is shutting down; send it again"
            return ReplyError(code=ErrorCode.SHUTTING_DOWN, message=message)
        if request.nbytes > self._jobs.max_bytes_per_agent:
            message = (
                f"its tensors take {request.nbytes:,} bytes decoded, more than this hub holds for one agent"
                f" ({self._jobs.max_bytes_per_agent:,}: half of max_queue_bytes)"
            )
            return ReplyError(code=ErrorCode.TOO_LARGE, message=message)
        full = self._jobs.over_bounds(job)
        if full is not None:
            return ReplyError(code=ErrorCode.OVERLOADED, message=f"hub {self._config.hub_id} has {full}")
        return None

    def ping_refusal(self, job: Job, ping: Ping, *, in_flight: int) -> str | None:
        """Why the ping ``job`` is dropped (before it is held), or ``None`` to answer it now."""
        if len(ping.padding) > MAX_PING_PADDING:
            return f"{len(ping.padding):,} bytes of padding, more than {MAX_PING_PADDING:,}"
        if in_flight >= MAX_PONGS:
            return f"{in_flight} answers in flight"
        if self._jobs.over_bounds(job) is not None:
            return "the hub is full"
        spent = self._pings.take(job.agent_id, time.monotonic())
        if spent is not None:
            return f"past the {'agent' if spent == 'agent' else 'hub'}'s ping rate"
        return None

    def load_refusal(self, agent_id: str, request: InferenceRequest) -> ReplyError | None:
        """Why the load ``request`` would start is refused (``load_refused``), or ``None`` to start it."""
        what = f"{request.model_id} at cut {request.cut_id!r}"
        config = self._config
        if not config.load_on_demand:
            msg = f"this hub serves only the tails it preloaded, not {what}"
        else:
            spent = self._loads.take(agent_id, time.monotonic())
            if spent is None:
                return None
            if spent == "agent":
                msg = (
                    f"agent {agent_id} started {config.loads_per_agent_minute:g} loads lately, as many as this"
                    f" hub allows an agent per minute (loads_per_agent_minute); not loading {what} now"
                )
            else:
                msg = (
                    f"agents started {config.loads_per_minute:g} loads lately, as many as this hub allows per"
                    f" minute (loads_per_minute); not loading {what} now"
                )
        return ReplyError(code=ErrorCode.LOAD_REFUSED, message=msg)

    def staleness(self, job: Job, request: InferenceRequest) -> ReplyError | None:
        """``deadline_exceeded`` for a request nobody waits for any more (judged by the agent's clock), or ``None``."""
        waited_ms = (time.perf_counter() - job.received) * 1000
        age_ms = max(waited_ms, self._clocks.age_s(job.agent_id, request.sent_at, time.time()) * 1000)
        if age_ms <= request.deadline_ms:
            return None
        msg = f"{age_ms:.0f} ms old (waited {waited_ms:.0f} ms here), past its {request.deadline_ms:.0f} ms deadline"
        return ReplyError(code=ErrorCode.DEADLINE_EXCEEDED, message=msg)

"""A hub's answers to pings: on a broker connection of their own, within the ping budgets.

Agents publish pings on ``<p>/v1/ping/<agent-id>``, not on their request
topics (docs/protocol.md, section 3.5), and a hub reads them on a second
connection that tells the broker it takes no message over a ping's size
(MQTT 5 Maximum Packet Size). So a flood of pings waits on its own socket
while requests keep theirs, and an oversized ping never reaches the hub.
A ping is answered at once, or dropped unanswered by the admission rules
(:meth:`cloud_hub._admission.Admission.ping_refusal`); the status counts the
dropped ones.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from cloud_hub._jobs import Job
from protocol import MAX_PING_PADDING, InferenceReply, decode_ping, encode_reply
from protocol.errors import EdgecutError, ProtocolError
from protocol.mqtt import Connection

if TYPE_CHECKING:
    import collections

    from cloud_hub._admission import Admission
    from cloud_hub._config import HubConfig
    from cloud_hub._jobs import Ledger
    from protocol import Ping, Topics
    from protocol.mqtt import Incoming

logger = logging.getLogger("edgecut.hub")

PING_DROPPED = "ping_dropped"
"""The reason a status counts pings dropped under (not an error code: a dropped ping gets no answer)."""
_PING_ENVELOPE_BYTES = 1024
"""A ping's message besides its padding, with room to spare."""


class Pings:
    """Reads pings on their own connection and answers them, or drops them.

    Args:
        config: The hub's configuration (broker, id, group, grace).
        topics: The hub's topics.
        admission: The rules that say which pings are dropped.
        jobs: The hub's ledger: a ping is held like a request while its answer goes out.
        refused: The hub's refusal counts, where dropped pings are counted.
    """

    def __init__(
        self,
        config: HubConfig,
        topics: Topics,
        admission: Admission,
        jobs: Ledger,
        refused: collections.Counter[str],
    ) -> None:
        self._config = config
        self._topics = topics
        self._admission = admission
        self._jobs = jobs
        self._refused = refused
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.answered = 0
        """Pings answered so far."""
        self.connection = Connection(
            config.broker,
            client_id=f"{config.hub_id}.pings",
            subscriptions=[(topics.shared_pings(config.group), 0)],
            on_message=self._accept,
            max_message_bytes=MAX_PING_PADDING + _PING_ENVELOPE_BYTES,
        )

    def drop(self, job: Job, why: str) -> None:
        """Drop a ping unanswered, counted."""
        self._refused[PING_DROPPED] += 1
        logger.debug("ping %s of %s dropped: %s", job.request_id, job.agent_id, why)

    def answer(self, job: Job, ping: Ping) -> None:
        """Answer ``ping`` at once if the rules allow; else drop it."""
        why = self._admission.ping_refusal(job, ping, in_flight=self._in_flight)
        if why is not None:
            self.drop(job, why)
            return
        self._jobs.hold(job)
        reply = InferenceReply(
            request_id=ping.request_id,
            hub_id=self._config.hub_id,
            outputs={},
            error=None,
            queue_ms=0.0,
            compute_ms=0.0,
            queue_depth=len(self._jobs) - 1,  # the others
        )
        self._in_flight += 1
        task = asyncio.create_task(self._publish(job, encode_reply(reply)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _accept(self, incoming: Incoming) -> None:
        try:
            agent_id = self._topics.agent_of_ping(incoming.topic)
        except ValueError:
            logger.debug("dropped a ping on %s: its topic names no valid agent", incoming.topic)
            return
        job = Job(incoming=incoming, agent_id=agent_id, reply_topic=self._topics.response(agent_id))
        try:
            ping = decode_ping(incoming.payload, max_bytes=MAX_PING_PADDING + _PING_ENVELOPE_BYTES)
        except ProtocolError as exc:
            self.drop(job, str(exc))  # a ping is never answered with an error: that would cost as much
            return
        self.answer(job, ping)

    async def _publish(self, job: Job, payload: bytes) -> None:
        try:
            await self.connection.publish(
                job.reply_topic, payload, qos=0, correlation=job.incoming.correlation, timeout=self._config.grace
            )
            self.answered += 1
        except EdgecutError as exc:
            logger.debug("pong to %s lost: %s", job.agent_id, exc)
        finally:
            self._in_flight -= 1
            self._jobs.release(job)

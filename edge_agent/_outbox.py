"""An agent's requests on the wire: published, published again when they may be lost, matched to replies.

A request is published again, under the same id, when

- a publish failed (the connection was down): as soon as it is back;
- the agent reconnected after it was published (the broker may have lost it),
  and again when the first hub announces itself online after that reconnect
  (after a broker restart, a request published before any hub has
  resubscribed reaches nobody);
- a hub's status turns offline (its last will: it may have died holding it);
- no reply came within ``retry_s`` (a hub may have stalled with it);
- the caller asks, e.g. after a hub answered ``shutting_down``.

Hubs run a repeated id at most once and answer a repeat with the reply they
sent before (docs/protocol.md, section 6.2), so publishing again costs at most
a second run on another replica, never a second result: the first reply
settles the request and later ones are ignored.

Nothing here enforces the deadline by cancelling: each publish gets the time
left as its own timeout, and a request waits for its reply on a future that
a timer sets, which cancels nothing (on Python 3.11 a cancel landing inside
aiomqtt's publish can be swallowed, CPython gh-86296, and the deadline with
it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import TYPE_CHECKING

from protocol import peek_request_id
from protocol.errors import ProtocolError, TransportError

if TYPE_CHECKING:
    from protocol import NodeStatus
    from protocol.mqtt import Connection, Incoming, QoS

logger = logging.getLogger("edgecut.agent")

_REPUBLISH_PAUSE_S = 0.05
"""Pause between attempts to publish while the broker connection is down."""


@dataclasses.dataclass(slots=True)
class Pending:
    """A request waiting for its reply."""

    payload: bytes
    deadline: float
    reply: asyncio.Future[bytes]
    published: bool = False
    wake: asyncio.Future[None] | None = None
    """Set to wake the request's loop: its reply came, it is to be published again, or its wait is over."""
    round: int = 0
    """Counts calls of :meth:`publish_again`: a publish in flight meanwhile does not count."""

    def publish_again(self) -> None:
        """Publish this request again as soon as its loop wakes, and wake it.

        A publish in flight when this is called may reach the broker before
        the reason for publishing again (a hub resubscribing, say): it leaves
        the request unpublished, so the loop publishes once more.
        """
        self.round += 1
        self.published = False
        self.wake_up()

    def wake_up(self) -> None:
        """Wake the request's loop, if it waits."""
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)


class Outbox:
    """Publishes an agent's requests and hands each its first reply.

    Args:
        connection: The agent's broker connection; its ``on_message`` must
            call :meth:`on_reply` for replies and :meth:`on_status` for hub
            statuses, and its ``on_connect`` :meth:`on_connect`.
        request_topic: Where requests go.
        ping_topic: Where pings go.
        response_topic: Where this agent reads replies (its ResponseTopic).
        qos: QoS of requests.
        retry_s: Publish a request again when it is unanswered this long;
            ``None`` never.
    """

    def __init__(
        self,
        connection: Connection,
        *,
        request_topic: str,
        ping_topic: str,
        response_topic: str,
        qos: QoS,
        retry_s: float | None,
    ) -> None:
        self._connection = connection
        self._request_topic = request_topic
        self._ping_topic = ping_topic
        self._response_topic = response_topic
        self._qos = qos
        self._retry_s = retry_s
        self.pending: dict[str, Pending] = {}
        """Requests waiting for a reply, by id."""
        self.publishes = 0
        """Requests published, first sends and repeats alike."""
        self._awaiting_hub = False
        self._probes: dict[str, asyncio.Future[bytes]] = {}
        self._closed = False

    async def send_and_wait(self, request_id: str, payload: bytes, deadline: float) -> bytes | None:
        """Publish the request (again when it may be lost) and return its first reply; ``None`` at ``deadline``.

        ``None`` at once, too, once the outbox is closed (:meth:`close`).

        Args:
            request_id: The request's id, also its CorrelationData.
            payload: The encoded request.
            deadline: ``time.perf_counter()`` value after which nobody waits.
        """
        loop = asyncio.get_running_loop()
        pending = Pending(payload, deadline, loop.create_future())
        self.pending[request_id] = pending
        try:
            while (left := deadline - time.perf_counter()) > 0:
                if pending.reply.done():  # also one that came while a publish, failing since, was in flight
                    return pending.reply.result()
                if self._closed:
                    return None
                if not pending.published:
                    await self._try_publish(request_id, pending, left)
                    continue
                await self._wait(pending, left if self._retry_s is None else min(left, self._retry_s))
                if pending.published and self._retry_s is not None and deadline > time.perf_counter():
                    logger.info("request %s: no reply within %.1f s, publishing it again", request_id, self._retry_s)
                    pending.published = False
            return None
        finally:
            del self.pending[request_id]

    @staticmethod
    async def _wait(pending: Pending, timeout: float) -> None:  # noqa: ASYNC109
        """Wait up to ``timeout`` for the reply or a reason to publish again.

        One future that the reply, a nudge or a timer sets, awaited directly:
        the reply wakes the request on the next loop iteration, where
        :func:`asyncio.wait` would take two.
        """
        if pending.reply.done():
            return
        loop = asyncio.get_running_loop()
        pending.wake = wake = loop.create_future()
        timer = loop.call_later(timeout, pending.wake_up)
        try:
            await wake
        finally:
            timer.cancel()

    async def _try_publish(self, request_id: str, pending: Pending, left: float) -> None:
        try:
            await self._publish(request_id, pending, timeout=left)
        except TransportError as exc:
            logger.info("request %s: publish failed, trying again until the deadline: %s", request_id, exc)
            await asyncio.sleep(min(_REPUBLISH_PAUSE_S, left))

    async def _publish(self, request_id: str, pending: Pending, *, timeout: float) -> None:  # noqa: ASYNC109
        round_at_start = pending.round
        await self._connection.publish(
            self._request_topic,
            pending.payload,
            qos=self._qos,
            response_topic=self._response_topic,
            correlation=request_id.encode(),
            expiry_s=timeout,
            timeout=timeout,
        )
        pending.published = pending.round == round_at_start
        self.publishes += 1

    async def probe(self, probe_id: str, payload: bytes, timeout: float) -> float | None:  # noqa: ASYNC109
        """Publish a ping once (QoS 0) and return its round trip in ms; ``None`` if unanswered in ``timeout``.

        A probe is never published again: a lost one is only a measurement missed.
        """
        future = asyncio.get_running_loop().create_future()
        self._probes[probe_id] = future
        started = time.perf_counter()
        try:
            await self._connection.publish(
                self._ping_topic,
                payload,
                qos=0,
                response_topic=self._response_topic,
                correlation=probe_id.encode(),
                expiry_s=timeout,
                timeout=timeout,
            )
            await asyncio.wait([future], timeout=max(0.0, timeout - (time.perf_counter() - started)))
        except (TransportError, ProtocolError) as exc:  # no connection, or padding over the message limit
            logger.debug("probe %s not sent: %s", probe_id, exc)
            return None
        finally:
            del self._probes[probe_id]
        return (time.perf_counter() - started) * 1000 if future.done() else None

    def on_reply(self, incoming: Incoming) -> None:
        """Settle the request a reply answers; ignore replies to nothing pending (late, repeated, stray)."""
        if incoming.correlation:
            request_id = incoming.correlation.decode("utf-8", "replace")
        else:  # a hub that dropped the CorrelationData: the reply's own id says which
            request_id = peek_request_id(incoming.payload) or ""
        probe = self._probes.get(request_id)
        if probe is not None:
            if not probe.done():
                probe.set_result(incoming.payload)
            return
        pending = self.pending.get(request_id)
        if pending is None or pending.reply.done():
            logger.debug("ignored a reply to %r: not waiting for it (late or duplicate)", request_id)
            return
        pending.reply.set_result(incoming.payload)
        pending.wake_up()

    def close(self) -> None:
        """Stop waiting: every request waiting for a reply, now or later, gets ``None`` at once."""
        self._closed = True
        for pending in self.pending.values():
            pending.wake_up()

    async def on_connect(self) -> None:
        """After each connect its connection counted: after a reconnect, publish again what is unanswered (same ids).

        A hub may have lost those too (it reconnects with us when the broker
        restarts), so they go once more when the next hub says it is online.
        The first connect lost nothing: a hub's status heard then (retained
        statuses come in while the agent still subscribes, before this runs)
        must not publish the first requests twice.
        """
        if self._connection.connects <= 1:
            return
        self._awaiting_hub = True
        self._publish_unanswered_again("the agent reconnected")

    def on_status(self, status: NodeStatus) -> None:
        """React to a hub's status: online after our reconnect, or offline (it may have held requests)."""
        if status.role != "hub":
            return
        if status.state == "offline":
            self._publish_unanswered_again(f"hub {status.node_id} went offline")
        elif self._awaiting_hub:
            self._awaiting_hub = False
            self._publish_unanswered_again(f"hub {status.node_id} is online")

    def _publish_unanswered_again(self, why: str) -> None:
        for request_id, pending in self.pending.items():
            if not pending.reply.done():  # published, or being published: again
                logger.info("request %s: %s; publishing it again", request_id, why)
                pending.publish_again()

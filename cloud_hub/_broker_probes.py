"""The probes behind ``edgecut broker-check``: each tests one thing edgecut relies on.

Every probe acts through real MQTT 5 clients (:class:`~protocol.mqtt.Connection`)
on topics under one random prefix, waits at most its timeout for each step
and sends a bounded number of messages, so it never disturbs a live deployment
and never hangs. A probe returns a :class:`BrokerCheck`; what the broker got
wrong is an outcome, not an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Literal, TypeVar

from protocol import DEFAULT_MAX_MESSAGE_BYTES, Topics
from protocol.errors import TransportError
from protocol.mqtt import Backoff, BrokerURL, Connection, Incoming, Will

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

_T = TypeVar("_T")

Outcome = Literal["pass", "fail", "unsupported"]

_UNSUPPORTED_PROTOCOL = frozenset({0x01, 0x84})  # MQTT 3.1.1's and MQTT 5's "unacceptable protocol version"
HUBS = ("hub-a", "hub-b")
AGENT = "agent"
# A probe's connections retry quickly: a broker that refuses one attempt is seen within the timeout.
_BACKOFF = Backoff(initial=0.05, maximum=0.5)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BrokerCheck:
    """One thing edgecut relies on, as a broker did it.

    Attributes:
        name: What was checked, e.g. ``"shared_subscriptions"``.
        outcome: ``"pass"``, ``"fail"``, or ``"unsupported"`` (an optional
            feature the broker does not offer).
        required: edgecut needs it: anything but a pass fails the broker.
        figure: What was measured, in words, e.g. ``"11/9 of 20 requests, 0 lost"``.
        data: The same figures for scripts.
    """

    name: str
    outcome: Outcome
    required: bool
    figure: str
    data: dict[str, object] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """It passed, or edgecut can do without it."""
        return self.outcome == "pass" or not self.required


def failed(name: str, *, required: bool, error: Exception) -> BrokerCheck:
    """The check ``name`` could not be carried out: ``error`` says why."""
    return BrokerCheck(name=name, outcome="fail", required=required, figure=f"error: {error}")


class BrokerProbes:
    """The probes, run against one broker under one random topic prefix.

    Args:
        url: The broker.
        timeout_s: The most any one step waits (a connection, a delivery, a batch of replies).
    """

    def __init__(self, url: BrokerURL, *, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.run_id = uuid.uuid4().hex[:8]
        self.topics = Topics(prefix=f"edgecut-check/{self.run_id}")

    async def mqtt5(self) -> BrokerCheck:
        """Whether the broker accepts an MQTT 5 connection; what its CONNACK advertises.

        Raises:
            TransportError: The connection failed for another reason than the
                protocol version (refused credentials, TLS, no answer).
        """
        connection = self.connection("hello")
        async with connection:
            try:
                await connection.wait_connected(self.timeout_s)
            except TransportError:
                connack = connection.connack
                if connack is None or connack.reason_code not in _UNSUPPORTED_PROTOCOL:
                    raise
                return BrokerCheck(name="mqtt5", outcome="fail", required=True, figure=f"refused: {connack.reason}")
        connack = connection.connack
        properties = connack.properties if connack is not None else {}
        advertised = ", ".join(f"{key} {value}" for key, value in sorted(properties.items()))
        figure = "CONNACK protocol 5" + (f" ({advertised})" if advertised else "")
        return BrokerCheck(name="mqtt5", outcome="pass", required=True, figure=figure, data={"connack": properties})

    async def requests(self, count: int) -> tuple[BrokerCheck, BrokerCheck]:
        """Requests from an agent shared across two hubs, and the hubs' replies.

        The agent publishes ``count`` requests, each with a ResponseTopic and
        binary CorrelationData, to the hubs' shared subscription; each hub that
        gets one answers on its ResponseTopic with its CorrelationData.

        Returns:
            The shared-subscription check (how the requests split) and the
            response-topic check (how many replies came back intact).
        """
        qos = self.url.qos
        arrived: asyncio.Queue[tuple[str, Incoming]] = asyncio.Queue()
        replies: asyncio.Queue[Incoming] = asyncio.Queue()
        shared = [(self.topics.shared_requests(f"edgecut-check-{self.run_id}"), qos)]
        correlations = [os.urandom(16) for _ in range(count)]
        reply_topic = self.topics.response(AGENT)

        async with contextlib.AsyncExitStack() as stack:
            hubs = {
                hub: await stack.enter_async_context(self.connected(self.connection(hub, shared, tagged(arrived, hub))))
                for hub in HUBS
            }
            agent = await stack.enter_async_context(
                self.connected(self.connection(AGENT, [(reply_topic, qos)], replies.put_nowait))
            )
            for index, correlation in enumerate(correlations):
                await agent.publish(
                    self.topics.request(AGENT),
                    str(index).encode(),
                    qos=qos,
                    response_topic=reply_topic,
                    correlation=correlation,
                    timeout=self.timeout_s,
                )
            received = await take(arrived, count, self.timeout_s)
            for hub, request in received:
                if request.response_topic is not None:
                    await hubs[hub].publish(
                        request.response_topic,
                        request.payload,
                        qos=qos,
                        correlation=request.correlation,
                        timeout=self.timeout_s,
                    )
            answered = await take(replies, len(received), self.timeout_s)
        return _shared_check(count, received), _response_check(count, received, answered, correlations, reply_topic)

    async def retained(self) -> BrokerCheck:
        """Whether a retained status reaches a client that subscribes after it was published."""
        topic = self.topics.status(HUBS[0])
        payload = f"online {self.run_id}".encode()
        inbox: asyncio.Queue[Incoming] = asyncio.Queue()
        async with self.connected(self.connection(HUBS[0])) as hub:
            await hub.publish(topic, payload, qos=1, retain=True, timeout=self.timeout_s)
            try:
                async with self.connected(self.connection("late-agent", [(topic, 1)], inbox.put_nowait)):
                    got = await take(inbox, 1, self.timeout_s)
            finally:  # leave nothing retained behind
                await hub.publish(topic, b"", qos=1, retain=True, timeout=self.timeout_s)
        if got and got[0].payload == payload:
            return BrokerCheck(name="retained", outcome="pass", required=True, figure="a later subscriber got it")
        return BrokerCheck(name="retained", outcome="fail", required=True, figure="a later subscriber got nothing")

    async def last_will(self) -> BrokerCheck:
        """Whether the broker publishes the will of a client that drops its socket without DISCONNECT."""
        topic = self.topics.status(HUBS[1])
        inbox: asyncio.Queue[Incoming] = asyncio.Queue()
        async with self.connected(self.connection(AGENT, [(topic, 1)], inbox.put_nowait)):
            will = Will(topic, b"offline", retain=False)
            async with self.connected(self.connection(HUBS[1], will=will)) as hub:
                await hub.abort(self.timeout_s)
            got = await take(inbox, 1, self.timeout_s)
        if got:
            return BrokerCheck(
                name="last_will", outcome="pass", required=True, figure="published when the socket dropped"
            )
        figure = f"nothing within {self.timeout_s:g} s of the socket dropping"
        return BrokerCheck(name="last_will", outcome="fail", required=True, figure=figure)

    async def deliverable(self, size: int, probe: int, receiver: asyncio.Queue[Incoming]) -> bool:
        """Whether one message of ``size`` bytes, published on a connection of its own, reaches ``receiver``.

        ``receiver`` must be subscribed to :meth:`size_topics`.
        """
        topic = f"{self.topics.prefix}/size/{probe}"
        try:
            async with self.connected(self.connection(f"sizer-{probe}", max_message_bytes=size)) as sender:
                await sender.publish(topic, bytes(size), qos=1, timeout=self.timeout_s)
        except TransportError:  # brokers drop the connection of a client that sends too much
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.timeout_s):
                while True:  # a late delivery of an earlier probe is not this one
                    message = await receiver.get()
                    if message.topic == topic:
                        return len(message.payload) == size
        return False

    def size_topics(self) -> str:
        """The filter that :meth:`deliverable`'s messages match."""
        return f"{self.topics.prefix}/size/+"

    @contextlib.asynccontextmanager
    async def receiver(self, role: str, topic: str, max_message_bytes: int) -> AsyncIterator[asyncio.Queue[Incoming]]:
        """A connected client subscribed to ``topic`` at QoS 1, taking messages up to ``max_message_bytes``."""
        inbox: asyncio.Queue[Incoming] = asyncio.Queue()
        async with self.connected(
            self.connection(role, [(topic, 1)], inbox.put_nowait, max_message_bytes=max_message_bytes)
        ):
            yield inbox

    @contextlib.asynccontextmanager
    async def connected(self, connection: Connection) -> AsyncIterator[Connection]:
        """``connection``, entered and connected (within the timeout)."""
        async with connection:
            await connection.wait_connected(self.timeout_s)
            yield connection

    def connection(
        self,
        role: str,
        subscriptions: Sequence[tuple[str, int]] = (),
        on_message: Callable[[Incoming], None] | None = None,
        *,
        will: Will | None = None,
        session_expiry_s: int = 0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> Connection:
        """A client of this check in ``role`` (its client id says the check's run and the role)."""
        return Connection(
            self.url,
            client_id=self._client_id(role),
            subscriptions=subscriptions,
            on_message=on_message,
            will=will,
            session_expiry_s=session_expiry_s,
            max_message_bytes=max_message_bytes,
            backoff=_BACKOFF,
        )

    def _client_id(self, role: str) -> str:
        return f"edgecut-check-{self.run_id}-{role}"


async def take(queue: asyncio.Queue[_T], count: int, timeout_s: float) -> list[_T]:
    """Up to ``count`` items from ``queue``, as many as come within ``timeout_s``."""
    taken: list[_T] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while len(taken) < count:
                taken.append(await queue.get())
    return taken


def tagged(queue: asyncio.Queue[tuple[str, Incoming]], hub: str) -> Callable[[Incoming], None]:
    """A message handler that queues each message with ``hub``, the client that got it."""
    return lambda message: queue.put_nowait((hub, message))


def _shared_check(count: int, received: Sequence[tuple[str, Incoming]]) -> BrokerCheck:
    per_hub = Counter(hub for hub, _ in received)
    split = [per_hub[hub] for hub in HUBS]
    unique = len({message.payload for _, message in received})
    lost, repeated = count - unique, len(received) - unique
    spread = all(split) and not lost and not repeated
    figure = f"{'/'.join(map(str, split))} of {count} requests, {lost} lost" + (
        f", {repeated} delivered twice" if repeated else ""
    )
    data: dict[str, object] = {"split": split, "requests": count, "lost": lost, "repeated": repeated}
    return BrokerCheck(
        name="shared_subscriptions", outcome="pass" if spread else "fail", required=True, figure=figure, data=data
    )


def _response_check(
    count: int,
    received: Sequence[tuple[str, Incoming]],
    answered: Sequence[Incoming],
    correlations: Sequence[bytes],
    reply_topic: str,
) -> BrokerCheck:
    topic_intact = sum(message.response_topic == reply_topic for _, message in received)
    intact = sum(
        reply.payload.isdigit()
        and int(reply.payload) < len(correlations)
        and reply.correlation == correlations[int(reply.payload)]
        for reply in answered
    )
    good = bool(received) and topic_intact == len(received) and intact == len(received)
    figure = f"{intact}/{len(received)} replies with intact CorrelationData, {topic_intact} ResponseTopics intact"
    data: dict[str, object] = {"requests": count, "delivered": len(received), "replies_intact": intact}
    return BrokerCheck(
        name="response_topic", outcome="pass" if good else "fail", required=True, figure=figure, data=data
    )

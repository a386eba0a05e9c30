"""The MQTT 5 connection of agents and hubs: the one module that imports aiomqtt.

:class:`Connection` keeps one broker connection alive for as long as its
``async with`` block runs: it connects, subscribes, hands every message to a
callback, and on any loss reconnects with capped, jittered exponential backoff.
aiomqtt's errors become :class:`~protocol.errors.TransportError` here and
nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import socket
import threading
from typing import TYPE_CHECKING, Any, Self

import aiomqtt
from paho.mqtt.client import MQTT_ERR_SUCCESS
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol._codes import ErrorCode
from protocol._lifecycle import cancel_and_wait
from protocol._limits import DEFAULT_MAX_MESSAGE_BYTES, PACKET_OVERHEAD_BYTES
from protocol._url import BrokerURL
from protocol.errors import ProtocolError, TransportError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
    from types import TracebackType

    from paho.mqtt.client import MQTTMessage

logger = logging.getLogger("edgecut.mqtt")

# Neither paho nor aiomqtt disables Nagle's algorithm; with it on, small
# request/reply round trips take 44-88 ms instead of ~1 ms (see docs/broker.md).
_TCP_NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
ACKS_AT_ONCE = hasattr(socket, "TCP_QUICKACK")
"""Whether this platform lets a connection acknowledge what it reads at once (Linux's TCP_QUICKACK), which a
broker with Nagle's algorithm on needs for small messages at QoS 1 (docs/broker.md)."""
_CANCEL_AGAIN_AFTER_S = 0.1
_CONNECT_TIMEOUT_S = 10
_PENDING_CALLS_WARNING = 1024
"""aiomqtt logs a warning past this many publishes awaiting the broker's acknowledgement. Its default, 10, fires
on every burst of a hub's batched replies; what is in flight is bounded by edgecut's own settings (a hub's
``max_queue``), so only a far larger number says something is wrong."""


@dataclasses.dataclass(frozen=True, slots=True)
class Incoming:
    """A message received from the broker.

    Attributes:
        topic: The topic it was published to.
        payload: Its bytes.
        qos: The QoS it was delivered with.
        response_topic: MQTT 5 ResponseTopic property, if set.
        correlation: MQTT 5 CorrelationData property, if set.
    """

    topic: str
    payload: bytes
    qos: int
    response_topic: str | None = None
    correlation: bytes | None = None

    @classmethod
    def from_paho(cls, message: MQTTMessage) -> Incoming:
        """Copy what edgecut needs out of a message as paho (under aiomqtt) reads it."""
        props = message.properties
        return cls(
            topic=message.topic,
            payload=bytes(message.payload),
            qos=message.qos,
            response_topic=getattr(props, "ResponseTopic", None),
            correlation=getattr(props, "CorrelationData", None),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Connack:
    """The broker's answer to a connection attempt (its CONNACK packet).

    Attributes:
        accepted: The broker took the connection.
        reason: Its reason code's name, e.g. ``"Success"`` or ``"Unsupported protocol version"``.
        reason_code: The reason code (MQTT 5: 0 success, 0x84 unsupported protocol version, 0x86 bad user
            name or password, ...).
        session_present: The broker resumed a session it kept for this client id.
        properties: The CONNACK's MQTT 5 properties under paho's names, e.g. ``MaximumPacketSize``.
    """

    accepted: bool
    reason: str
    reason_code: int
    session_present: bool = False
    properties: dict[str, object] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_paho(cls, flags: Any, reason_code: Any, properties: Properties | None) -> Connack:  # noqa: ANN401
        """Copy paho's ``on_connect`` arguments (``ConnectFlags``, ``ReasonCode``, ``Properties``)."""
        return cls(
            accepted=not reason_code.is_failure,
            reason=str(reason_code),
            reason_code=int(reason_code.value),
            session_present=bool(getattr(flags, "session_present", False)),
            properties=properties.json() if properties is not None else {},  # type: ignore[no-untyped-call]
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Will:
    """What the broker publishes for us if the connection dies without a goodbye."""

    topic: str
    payload: bytes
    retain: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with jitter between reconnect attempts.

    The default cap, 2 s, bounds how long a client stays away after a broker
    restart: a 2 s outage costs at most ~4 s, inside a 5 s request deadline
    (``bench/soak.py``). The jitter (each pause drawn from the upper half of
    its ceiling) spreads a fleet's reconnects over that time.
    """

    initial: float = 0.1
    maximum: float = 2.0
    factor: float = 2.0

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """Yield the pause before each next attempt, forever, drawn from ``rng`` (default: the shared one)."""
        draw = rng.uniform if rng is not None else random.uniform
        ceiling = self.initial
        while True:
            yield draw(ceiling / 2, ceiling)
            ceiling = min(self.maximum, ceiling * self.factor)


class Connection:
    """A supervised MQTT 5 connection that reconnects until it is closed.

    Args:
        url: The broker.
        client_id: MQTT client identifier, unique per broker.
        subscriptions: ``(topic filter, qos)`` pairs, (re)subscribed on every connect.
        on_message: Called on the event loop for each message; it must not block.
        on_connect: Awaited after every (re)connect, once subscribed; it may publish.
        will: Last will, set on every connect.
        max_message_bytes: Largest payload :meth:`publish` sends; brokers drop
            the connection on larger ones, so they are refused here first.
            Also the largest this client receives: it tells the broker so
            (MQTT 5 Maximum Packet Size, with room for the topic and
            properties), and the broker drops larger messages for it instead
            of delivering them: a flood of huge messages never reaches it.
        backoff: Pauses between reconnect attempts.
        keepalive: MQTT keepalive in seconds (how fast a dead broker is noticed).
        session_expiry_s: Seconds the broker keeps this client's session (its
            subscriptions and the QoS 1 messages queued for it) after the
            connection ends. Above 0, every connect resumes the session kept
            for ``client_id`` (clean start off); 0, the default, starts clean.
    """

    def __init__(
        self,
        url: BrokerURL | str,
        *,
        client_id: str,
        subscriptions: Sequence[tuple[str, int]] = (),
        on_message: Callable[[Incoming], None] | None = None,
        on_connect: Callable[[], Awaitable[None]] | None = None,
        will: Will | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        backoff: Backoff | None = None,
        keepalive: int = 10,
        session_expiry_s: int = 0,
    ) -> None:
        self.url = BrokerURL.parse(url)
        self.client_id = client_id
        self._subscriptions = tuple(subscriptions)
        self._on_message = on_message
        self._on_connect = on_connect
        self._will = will
        self._max_message_bytes = max_message_bytes
        self._backoff = backoff or Backoff()
        self._keepalive = keepalive
        self._session_expiry_s = session_expiry_s
        self._tls = self.url.tls_context()
        self._session: _Session | None = None
        self._connected = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._connecting: _Session | None = None
        self._last_error: BaseException | None = None
        self.connects = 0
        """How many times a connection was made (1 + reconnects)."""
        self.connack: Connack | None = None
        """The broker's answer to the latest attempt that got one (``None`` before any)."""

    @property
    def is_connected(self) -> bool:
        """True while a broker connection is up."""
        return self._connected.is_set()

    def set_will(self, will: Will | None) -> None:
        """Register ``will`` as the last will from the next connect on (a broker keeps the one it got then)."""
        self._will = will

    async def __aenter__(self) -> Self:
        if self._supervisor is not None:
            msg = "a Connection is not re-entrant"
            raise RuntimeError(msg)
        self._supervisor = asyncio.create_task(self._supervise(), name=f"edgecut[{self.client_id}].mqtt")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is None:
            return
        try:
            await cancel_and_wait(supervisor, again_after=_CANCEL_AGAIN_AFTER_S)  # one cancel may not do (gh-86296)
        finally:  # the supervisor has ended, even where this exit was cancelled meanwhile
            if not supervisor.cancelled() and supervisor.exception() is not None:
                logger.warning("%s: connection supervisor ended with %r", self.client_id, supervisor.exception())
            if self._connecting is not None:
                await self._connecting.close_abandoned()

    async def abort(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - like wait_connected
        """Drop the connection without a DISCONNECT, as a crash or a lost link does, and stop.

        The broker publishes the last will, if one was set. Waits up to
        ``timeout`` seconds for the client to see its socket closed.
        """
        session = self._session
        if session is not None:
            session.drop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.closed.wait(), timeout)
        await self.__aexit__(None, None, None)

    async def wait_connected(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - like aiomqtt
        """Wait until the broker connection is up.

        Raises:
            TransportError: Not connected within ``timeout`` seconds.
        """
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError as exc:
            reason = f": {self._last_error}" if self._last_error else ""
            msg = f"no connection to the broker at {self.url} within {timeout:.1f} s{reason}"
            raise TransportError(msg) from exc

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int,
        retain: bool = False,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        expiry_s: float | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - like aiomqtt's publish
    ) -> None:
        """Publish one message, waiting up to ``timeout`` for a connection.

        Raises:
            ProtocolError: The payload is over ``max_message_bytes``.
            TransportError: No connection in time, or the publish failed.
        """
        if len(payload) > self._max_message_bytes:
            msg = f"{len(payload)} byte message exceeds the {self._max_message_bytes} byte limit"
            raise ProtocolError(msg, code=ErrorCode.TOO_LARGE)
        if not self._connected.is_set():  # wait_for costs a loop iteration even when already set
            await self.wait_connected(timeout)
        session = self._session
        if session is None:  # lost between the wake-up and now
            msg = f"connection to {self.url} lost"
            raise TransportError(msg)
        properties = _publish_properties(response_topic, correlation, expiry_s)
        try:
            await session.client.publish(topic, payload, qos=qos, retain=retain, properties=properties, timeout=timeout)
        except aiomqtt.MqttError as exc:
            msg = f"publish to {topic!r} on {self.url} failed: {exc}"
            raise TransportError(msg) from exc
        if session.lost:  # woken by the loss, not by the broker's acknowledgement
            msg = f"publish to {topic!r} on {self.url} failed: the connection was lost before the broker confirmed it"
            raise TransportError(msg)

    async def unsubscribe(self, topic: str) -> None:
        """Stop receiving ``topic``, now and after reconnects.

        Raises:
            TransportError: The broker did not confirm.
        """
        self._subscriptions = tuple(sub for sub in self._subscriptions if sub[0] != topic)
        session = self._session
        if session is None:
            return
        try:
            await session.client.unsubscribe(topic)
        except aiomqtt.MqttError as exc:
            msg = f"unsubscribe from {topic!r} on {self.url} failed: {exc}"
            raise TransportError(msg) from exc

    async def _supervise(self) -> None:
        delays = self._backoff.delays()
        while True:
            try:
                await self._serve_one_connection()
            except (aiomqtt.MqttError, TransportError) as exc:
                # The first failure since the last connection is a warning; the retries after it (every 2 s
                # for as long as a device is offline) are debug, so that hours offline do not flood the journal.
                level = logging.WARNING if self._last_error is None else logging.DEBUG
                self._last_error = exc
                logger.log(level, "%s: broker connection to %s lost or refused: %s", self.client_id, self.url, exc)
            except Exception as exc:  # e.g. a failing on_connect: reconnect rather than die
                self._last_error = exc
                logger.exception("%s: connection to %s failed", self.client_id, self.url)
            finally:
                self._connected.clear()
                self._session = None
            if self._last_error is None:  # a clean session end resets the backoff
                delays = self._backoff.delays()
            await asyncio.sleep(next(delays))

    async def _serve_one_connection(self) -> None:
        session = self._new_session()
        self._connecting = session
        async with session.connected() as client:
            for topic, qos in self._subscriptions:
                await client.subscribe(topic, qos=qos)
            self._session = session
            self._last_error = None
            self.connects += 1
            self._connected.set()
            logger.info("%s: connected to %s", self.client_id, self.url)
            if self._on_connect is not None:
                await self._on_connect()
            async for _ in client.messages:  # messages go to _dispatch as they are read: this waits for the loss
                pass

    def _dispatch(self, message: MQTTMessage) -> None:
        if self._on_message is None:
            return
        try:
            self._on_message(Incoming.from_paho(message))
        except Exception:  # a bad message must never take the connection down
            logger.exception("%s: handler failed on a message from %s", self.client_id, message.topic)

    def _new_session(self) -> _Session:
        will = None
        if self._will is not None:
            will = aiomqtt.Will(self._will.topic, self._will.payload, qos=1, retain=self._will.retain)
        client = aiomqtt.Client(
            self.url.host,
            self.url.port,
            username=self.url.username,
            password=self.url.password,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=will,
            keepalive=self._keepalive,
            timeout=_CONNECT_TIMEOUT_S,
            tls_context=self._tls,
            tls_insecure=self.url.insecure if self._tls is not None else None,
            socket_options=(_TCP_NODELAY,),
            properties=self._connect_properties(),
            clean_start=self._session_expiry_s == 0,
        )
        client.pending_calls_threshold = _PENDING_CALLS_WARNING
        return _Session(client, self._dispatch, self._on_connack)

    def _on_connack(self, connack: Connack) -> None:
        self.connack = connack

    def _connect_properties(self) -> Properties:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.MaximumPacketSize = self._max_message_bytes + PACKET_OVERHEAD_BYTES
        if self._session_expiry_s:
            properties.SessionExpiryInterval = self._session_expiry_s
        return properties


class _Session:
    """One broker connection's client, and whether that connection is lost.

    aiomqtt 2.5 handles a lost connection in two ways that cost a client its
    timeouts, which this works around through its private attributes (pinned
    below 3.0; aiomqtt has no public hook for either):

    - it ignores a disconnect before the broker's CONNACK
      (``Client._on_disconnect`` returns early), so an attempt whose socket
      something accepts and closes (a proxy or load balancer in front of a
      broker that is restarting) waits out the whole 10 s connect timeout;
    - a QoS 1 publish waiting for the broker's PUBACK when the connection
      drops waits out its whole timeout (a request's deadline), although no
      acknowledgement can come on a dead connection.

    Here both end when the socket closes: the attempt fails, and every
    publish waiting for an acknowledgement wakes and, seeing :attr:`lost`,
    fails, to be published again on the next connection.

    Received messages go to ``on_message`` as paho reads them, not through
    aiomqtt's queue and message objects: a third less work per message, and
    no backlog in memory under a flood (what is not read yet waits in the
    socket and the broker).

    A publish on the loop's thread goes to the socket at once, as far as the
    socket takes it, rather than as aiomqtt has it: a writer registered
    through ``call_soon_threadsafe``, two loop iterations and a wake-up of
    the loop later. What the socket does not take at once goes through
    aiomqtt's writer as before.
    """

    def __init__(
        self,
        client: aiomqtt.Client,
        on_message: Callable[[MQTTMessage], None],
        on_connack: Callable[[Connack], None],
    ) -> None:
        self.client = client
        self.lost = False
        self.closed = asyncio.Event()
        self._attempt: asyncio.Future[aiomqtt.Client] | None = None
        self._entered = False
        paho = client._client  # noqa: SLF001
        self._handler = paho.on_disconnect
        self._connect_handler = paho.on_connect
        self._on_connack = on_connack
        paho.on_disconnect = self._on_disconnect
        paho.on_connect = self._on_connect
        paho.on_message = lambda _client, _userdata, message: on_message(message)
        self._register_write = client._on_socket_register_write  # noqa: SLF001 - aiomqtt's, for what is left
        self._loop_thread = threading.get_ident()
        self._writing = False
        paho.on_socket_register_write = self._write_now
        acknowledge_reads_at_once(paho)

    @contextlib.asynccontextmanager
    async def connected(self) -> AsyncIterator[aiomqtt.Client]:
        """Connect, and disconnect on the way out, like ``async with client``, but safe to cancel.

        aiomqtt connects in an executor thread, which a cancel does not stop:
        the socket the thread goes on to open would be left to the garbage
        collector. Here the attempt runs on when cancelled, for
        :meth:`close_abandoned` to close.
        """
        self._attempt = asyncio.ensure_future(self.client.__aenter__())
        try:
            await asyncio.shield(self._attempt)
        except aiomqtt.MqttError:
            self._close_socket()  # aiomqtt leaves it open when the CONNACK does not come in time
            raise
        self._entered = True
        try:
            yield self.client
        except BaseException as exc:  # aiomqtt's exit never suppresses
            await self.client.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        else:
            await self.client.__aexit__(None, None, None)

    async def close_abandoned(self) -> None:
        """Let an attempt that :meth:`connected` gave up on when cancelled end, then close its connection.

        A connected one says goodbye (DISCONNECT, no last will); the socket of
        one that failed or is stuck is closed.
        """
        attempt = self._attempt
        if attempt is None or self._entered:
            return
        await asyncio.wait([attempt], timeout=_CONNECT_TIMEOUT_S + _CANCEL_AGAIN_AFTER_S)
        if attempt.done() and not attempt.cancelled() and attempt.exception() is None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self.client.__aexit__(None, None, None)
            return
        attempt.cancel()
        self._close_socket()

    def _close_socket(self) -> None:
        self.client._client._sock_close()  # noqa: SLF001 - paho's, which also unregisters it from aiomqtt's loop

    def drop(self) -> None:
        """Close the socket without a DISCONNECT: to the broker, the client died."""
        sock = self.client._client.socket()  # noqa: SLF001
        if isinstance(sock, socket.socket):  # TLS sockets are ones too
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

    def _write_now(self, client: Any, userdata: Any, sock: Any) -> None:  # noqa: ANN401 - paho's callback arguments
        """Write what paho queued now; leave to aiomqtt's writer what the socket does not take, and any error.

        Not from another thread (paho's connect runs in an executor), not
        inside this write, and not inside a paho callback (a PUBACK queued
        while a message is read), where paho itself never writes at once. A
        failed write is left to aiomqtt's writer too, which meets it on the
        next iteration and disconnects: by then a publish waiting for its
        acknowledgement is registered to be woken by the loss.
        """
        in_callback = client._in_callback_mutex  # noqa: SLF001
        if self._writing or threading.get_ident() != self._loop_thread or not in_callback.acquire(blocking=False):
            self._register_write(client, userdata, sock)
            return
        in_callback.release()
        self._writing = True
        try:
            written = client._packet_write() == MQTT_ERR_SUCCESS  # noqa: SLF001
        except Exception:  # noqa: BLE001 - whatever it was, aiomqtt's writer meets it again
            written = False
        finally:
            self._writing = False
        if written and not client.want_write():
            client._call_socket_unregister_write()  # noqa: SLF001 - paho's own bookkeeping: nothing left to write
        else:
            self._register_write(client, userdata, sock)

    def _on_connect(self, *args: Any) -> None:  # noqa: ANN401 - paho's callback arguments, passed on
        _client, _userdata, flags, reason_code, *properties = args
        self._on_connack(Connack.from_paho(flags, reason_code, properties[0] if properties else None))
        if self._connect_handler is not None:
            self._connect_handler(*args)

    def _on_disconnect(self, *args: Any) -> None:  # noqa: ANN401 - paho's callback arguments, passed on
        client = self.client
        connecting = client._connected  # noqa: SLF001
        if not connecting.done():
            connecting.set_exception(aiomqtt.MqttError("the connection closed before the broker's CONNACK"))
        self.lost = True
        self.closed.set()
        for confirmation in client._pending_publishes.values():  # noqa: SLF001
            confirmation.set()  # the publish wakes, sees ``lost`` and fails at once
        if self._handler is not None:
            self._handler(*args)


def acknowledge_now(sock: socket.socket) -> None:
    """Have the kernel acknowledge what ``sock`` has read at once, not up to 40 ms later (where :data:`ACKS_AT_ONCE`).

    TCP_QUICKACK turns the delay off, but the kernel turns it on again on its
    own: call this after every read (one system call).
    """
    if ACKS_AT_ONCE:
        with contextlib.suppress(OSError):  # closed meanwhile
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def acknowledge_reads_at_once(paho: Any) -> None:  # noqa: ANN401 - paho's client
    """Have the kernel acknowledge what a paho client reads at once, after every read (:func:`acknowledge_now`).

    A broker that leaves Nagle's algorithm on (rumqttd, the embedded default,
    does) holds the rest of a message it forwards until its first segment is
    acknowledged, and Linux delays the acknowledgements of a connection that
    also sends: a 20 KB JPEG request reached the hub ~30 ms late behind an
    emulated link, and a small QoS 1 message ~44 ms late on loopback
    (``bench/broker_link.py``). Every :class:`Connection` does it; a bare
    aiomqtt client (``aiomqtt.Client._client``) can be given it too.
    """
    if not ACKS_AT_ONCE:
        return
    read = paho.loop_read

    def loop_read(*args: Any, **kwargs: Any) -> int:  # noqa: ANN401 - paho's arguments, passed on
        code: int = read(*args, **kwargs)
        sock = paho.socket()
        if isinstance(sock, socket.socket):  # TLS sockets are ones too; None once the read closed it
            acknowledge_now(sock)
        return code

    paho.loop_read = loop_read


def _publish_properties(
    response_topic: str | None, correlation: bytes | None, expiry_s: float | None
) -> Properties | None:
    if response_topic is None and correlation is None and expiry_s is None:
        return None
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if response_topic is not None:
        properties.ResponseTopic = response_topic
    if correlation is not None:
        properties.CorrelationData = correlation
    if expiry_s is not None:
        properties.MessageExpiryInterval = max(1, math.ceil(expiry_s))
    return properties

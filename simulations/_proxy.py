"""A user-space TCP proxy that shapes each connection like a network link (no root, works in CI).

An agent connects to the proxy instead of its broker; the proxy connects to
the broker and carries the bytes both ways, each direction through its own
:class:`~simulations._link.Direction`. A chunk read at time ``t`` is written
out at the time the model gives, in order, sliced so that a large message
trickles out at the link's rate. When a direction holds ``queue_bytes`` in
flight, the proxy stops reading from the sender and TCP's flow control pushes
back on it. During an outage (:meth:`LinkProxy.cut_off`) nothing comes
out: what is read waits, as TCP would retransmit it, and goes once the link
is back.

Both sockets of a connection have TCP_NODELAY set, and acknowledge what the
proxy reads at once (TCP_QUICKACK after every read, as edgecut's own clients
do: a broker that leaves Nagle's algorithm on would otherwise wait up to
40 ms for the proxy's acknowledgement): the proxy adds only the delays it
models (docs/emulation.md, *Fidelity, measured*: `bench/links.py`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import socket
from typing import TYPE_CHECKING, Self
from urllib.parse import urlsplit, urlunsplit

from protocol.mqtt import acknowledge_now
from simulations._link import Direction, DirectionSpec, LinkSpec

if TYPE_CHECKING:
    from types import TracebackType

logger = logging.getLogger("edgecut.sim.link")

_READ_BYTES = 256 * 1024
_TIMER_RESOLUTION_S = 0.001
"""asyncio's epoll waits in whole milliseconds, rounded up: a shorter sleep lasts a millisecond. A slice
due sooner goes now (at most 1 ms early, its successors' times unchanged) rather than up to 1 ms late."""


class LinkProxy:
    """Listens on ``host:port`` and relays every connection to ``upstream`` through the link ``spec``.

    Args:
        spec: The link; :meth:`set_spec` changes it while running.
        upstream: ``(host, port)`` of the broker.
        host: Address to listen on.
        port: Port to listen on; 0 picks a free one.
        seed: Seed of the jitter and loss draws (each connection and direction
            gets its own stream, derived from it by name).
    """

    def __init__(
        self, spec: LinkSpec, *, upstream: tuple[str, int], host: str = "127.0.0.1", port: int = 0, seed: int = 0
    ) -> None:
        self.spec = spec
        self._upstream = upstream
        self._host = host
        self._port = port
        self._seed: int | str = seed
        self._server: asyncio.Server | None = None
        self._relays: dict[int, tuple[Direction, Direction]] = {}  # by connection number
        self._open: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._passing = asyncio.Event()
        self._passing.set()
        self.connections = 0
        """Connections accepted so far."""

    @property
    def port(self) -> int:
        """The port the proxy listens on (once started)."""
        if self._server is None:
            msg = "the proxy is not running"
            raise RuntimeError(msg)
        return int(self._server.sockets[0].getsockname()[1])

    def url_for(self, broker: str) -> str:
        """The broker URL ``broker`` with its host and port replaced by the proxy's; user and options kept."""
        parts = urlsplit(broker)
        user = parts.netloc.rpartition("@")[0]
        netloc = f"{user}@{self._host}:{self.port}" if user else f"{self._host}:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def set_spec(self, spec: LinkSpec) -> None:
        """Shape every connection, open ones included, with ``spec`` from their next chunk on."""
        self.spec = spec
        for up, down in self._relays.values():
            up.spec, down.spec = spec.up, spec.down

    def reseed(self, seed: int | str) -> None:
        """Draw every connection's jitter and loss afresh from ``seed``, from its next chunk on.

        Policies compared one after another, each after the same ``seed``,
        meet the same luck on the link (common random numbers): what differs
        between their times is theirs, not the draws'.
        """
        self._seed = seed
        for number, (up, down) in self._relays.items():
            up.rng, down.rng = _draws(seed, number)

    def rewind(self, trace_s: float) -> None:
        """Play every connection's trace from ``trace_s`` seconds into it, as of now.

        Policies compared one after another, each after the same rewind,
        meet the same rates, as :meth:`reseed` gives them the same jitter
        and loss: on a trace that stalls for a second, no policy is judged by
        whether its turn met the stall. Without a trace, nothing changes.
        """
        now = asyncio.get_running_loop().time()
        for up, down in self._relays.values():
            up.rewind(now, trace_s)
            down.rewind(now, trace_s)

    def cut_off(self) -> None:
        """Start an outage: every connection holds what it reads until :meth:`restore`."""
        self._passing.clear()

    def restore(self) -> None:
        """End an outage: what was held goes out, then everything as before."""
        self._passing.set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, self._host, self._port)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._open):  # ends both pumps of every connection
            writer.transport.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.connections += 1
        number = self.connections
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._upstream)
        except OSError as exc:
            logger.warning("connection %d: upstream %s:%d refused: %s", number, *self._upstream, exc)
            client_writer.close()
            if task is not None:
                self._tasks.discard(task)
            return
        now = asyncio.get_running_loop().time()
        up_draws, down_draws = _draws(self._seed, number)
        relay = (
            Direction(self.spec.up, up_draws, start_s=now),
            Direction(self.spec.down, down_draws, start_s=now),
        )
        self._relays[number] = relay
        writers = (client_writer, upstream_writer)
        self._open.update(writers)
        for writer in writers:
            _nodelay(writer)
        try:
            await asyncio.gather(
                _pump(client_reader, client_writer.get_extra_info("socket"), upstream_writer, relay[0], self._passing),
                _pump(
                    upstream_reader, upstream_writer.get_extra_info("socket"), client_writer, relay[1], self._passing
                ),
            )
        finally:
            del self._relays[number]
            self._open.difference_update(writers)
            for writer in writers:
                writer.close()
            for writer in writers:
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            if task is not None:
                self._tasks.discard(task)


def _draws(seed: int | str, number: int) -> tuple[random.Random, random.Random]:
    """Connection ``number``'s jitter and loss streams, up and down, derived from ``seed`` by name."""
    up = random.Random(f"{seed}/{number}/up")  # noqa: S311 - emulation, not crypto
    down = random.Random(f"{seed}/{number}/down")  # noqa: S311
    return up, down


async def _pump(
    reader: asyncio.StreamReader,
    read_socket: socket.socket | None,
    writer: asyncio.StreamWriter,
    direction: Direction,
    passing: asyncio.Event,
) -> None:
    """Carry one direction: read, ask the model when each slice comes out, write it then (or after an outage).

    ``read_socket``: the socket ``reader`` reads, which acknowledges each read at once.
    """
    loop = asyncio.get_running_loop()
    queue: collections.deque[tuple[float, bytes]] = collections.deque()
    held = _Held(direction.spec)
    arrived = asyncio.Event()
    done_reading = False

    async def read() -> None:
        nonlocal done_reading
        try:
            while data := await reader.read(_READ_BYTES):
                if read_socket is not None:
                    acknowledge_now(read_socket)
                now = loop.time()
                for piece in direction.slices(now, data):
                    queue.append((direction.departure(now, len(piece)), piece))
                    held.add(len(piece))
                arrived.set()
                await held.room()
        except (ConnectionError, OSError):
            pass
        finally:
            done_reading = True
            arrived.set()

    reading = asyncio.create_task(read())
    try:
        while queue or not done_reading:
            if not queue:
                arrived.clear()
                await arrived.wait()
                continue
            due, piece = queue.popleft()
            delay = due - loop.time()
            if delay > _TIMER_RESOLUTION_S:
                await asyncio.sleep(delay)
            await passing.wait()
            writer.write(piece)
            held.remove(len(piece))
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading


class _Held:
    """Bytes a direction holds in flight, and the wait for room below its queue limit."""

    def __init__(self, spec: DirectionSpec) -> None:
        self._limit = spec.queue_bytes
        self._bytes = 0
        self._room = asyncio.Event()
        self._room.set()

    def add(self, nbytes: int) -> None:
        self._bytes += nbytes
        if self._limit is not None and self._bytes >= self._limit:
            self._room.clear()

    def remove(self, nbytes: int) -> None:
        self._bytes -= nbytes
        if self._limit is None or self._bytes < self._limit:
            self._room.set()

    async def room(self) -> None:
        await self._room.wait()


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

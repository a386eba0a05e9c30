"""The HTTP endpoint of a hub or an agent: ``/metrics``, ``/health/live`` and ``/health/ready``.

A small asyncio server on the node's own event loop, rather than
prometheus-client's ``start_http_server`` (a thread of its own), because:

- what it reports (a hub's queue and tails, an agent's requests and link
  estimates, connections, readiness) is the event loop's state; read on the
  loop it needs no locks and is never caught changing (a thread iterating a
  dict that the loop resizes fails, or sees half an update);
- ``/health/live`` then answers only while the loop does: a node whose loop is
  stuck is not alive, and says so by not answering;
- what it costs the loop is bounded: reading one request head of at most
  :data:`MAX_HEAD_BYTES` (no body is read) and rendering the metrics (well
  under a millisecond for a few models); every read and write is awaited,
  never blocking, and every exchange ends within :data:`EXCHANGE_TIMEOUT_S`.

Only ``GET`` and ``HEAD`` of the three paths are served, one request per
connection (``Connection: close``). Anything else gets its status (400, 404,
405, 431) or, for a connection that sends too little too slowly or arrives
past :data:`MAX_CONNECTIONS`, is closed: bad input never reaches the node.
What ``/metrics`` renders is the caller's (prometheus-client's text format
for hubs and agents); this module imports no metrics library.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http
import logging
from typing import TYPE_CHECKING

from protocol.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger("edgecut.http")

MAX_HEAD_BYTES = 8192
"""The most a request line and its headers may take; more is answered 431."""
EXCHANGE_TIMEOUT_S = 5.0
"""Seconds one connection may take to send its request and take the answer, before it is closed."""
MAX_CONNECTIONS = 32
"""Connections served at once; more are closed unanswered."""

_TEXT = "text/plain; charset=utf-8"
_MAX_PORT = 65535
_METHODS = frozenset({b"GET", b"HEAD"})


@dataclasses.dataclass(frozen=True, slots=True)
class _Response:
    status: http.HTTPStatus
    body: bytes
    content_type: str = _TEXT

    def encode(self, *, head_only: bool = False) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status.value} {self.status.phrase}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Connection: close",
        ]
        if self.status == http.HTTPStatus.METHOD_NOT_ALLOWED:
            lines.append("Allow: GET, HEAD")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
        return head if head_only else head + self.body


def _plain(status: http.HTTPStatus, text: str) -> _Response:
    return _Response(status, (text + "\n").encode())


def parse_address(address: str, setting: str = "http") -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8000`` for IPv6) as ``(host, port)``.

    Raises:
        ConfigError: Not ``HOST:PORT`` with a port from 0 to 65535; the
            message names ``setting``.
    """
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or int(port) > _MAX_PORT:
        msg = f"{setting} must be HOST:PORT (such as 0.0.0.0:8000, or port 0 for a free one), not {address!r}"
        raise ConfigError(msg)
    return host, int(port)


class Endpoint:
    """Serves a node's metrics and health over HTTP while started.

    Args:
        host: Address to listen on.
        port: TCP port; 0 picks a free one (see :attr:`address`).
        exposition: Renders the metrics (called on the event loop at each scrape).
        content_type: The content type of what ``exposition`` renders.
        not_ready: Why the node cannot serve now, or ``None`` when it can.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        exposition: Callable[[], bytes],
        content_type: str,
        not_ready: Callable[[], str | None],
    ) -> None:
        self._host = host
        self._port = port
        self._exposition = exposition
        self._content_type = content_type
        self._not_ready = not_ready
        self._server: asyncio.Server | None = None
        self._exchanges: set[asyncio.Task[object]] = set()
        self.address: tuple[str, int] | None = None
        """The address it listens on, once started (the port that port 0 picked)."""
        self.listening = asyncio.Event()
        """Set once it listens."""

    async def start(self) -> None:
        """Listen.

        Raises:
            ConfigError: The address cannot be listened on (taken, or not this machine's).
        """
        try:
            self._server = await asyncio.start_server(self._exchange, self._host, self._port, limit=MAX_HEAD_BYTES)
        except OSError as exc:
            msg = f"cannot serve HTTP on {self._host}:{self._port}: {exc.strerror or exc}"
            raise ConfigError(msg) from exc
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = (host, port)
        self.listening.set()
        logger.info("metrics and health on http://%s:%d", host, port)

    async def close(self) -> None:
        """Stop listening and end the exchanges under way. Safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in self._exchanges:
            task.cancel()
        await asyncio.gather(*self._exchanges, return_exceptions=True)
        await server.wait_closed()
        self.listening.clear()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or len(self._exchanges) >= MAX_CONNECTIONS:
            await _close(writer)
            return
        self._exchanges.add(task)
        try:
            async with asyncio.timeout(EXCHANGE_TIMEOUT_S):
                answer = await self._answer(reader)
                if answer is not None:
                    writer.write(answer)
                    await writer.drain()
        except (ConnectionError, TimeoutError):
            pass  # the client went away, or was too slow: nothing to answer
        finally:
            self._exchanges.discard(task)
            await _close(writer)

    async def _answer(self, reader: asyncio.StreamReader) -> bytes | None:
        """The encoded answer to the request ``reader`` brings; ``None`` if it closed before a whole one."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError:
            return _plain(http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large").encode()
        return self._respond(head).encode(head_only=head.startswith(b"HEAD "))

    def _respond(self, head: bytes) -> _Response:
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[1].startswith(b"/") or not parts[2].startswith(b"HTTP/1."):  # noqa: PLR2004 - method, target, version
            return _plain(http.HTTPStatus.BAD_REQUEST, "bad request line")
        method, target, _ = parts
        if method not in _METHODS:
            return _plain(http.HTTPStatus.METHOD_NOT_ALLOWED, "only GET and HEAD")
        return self._route(target.split(b"?", 1)[0])

    def _route(self, path: bytes) -> _Response:
        if path == b"/health/live":
            return _plain(http.HTTPStatus.OK, "live")
        if path == b"/health/ready":
            why = self._not_ready()
            if why is not None:
                return _plain(http.HTTPStatus.SERVICE_UNAVAILABLE, why)
            return _plain(http.HTTPStatus.OK, "ready")
        if path == b"/metrics":
            try:
                body = self._exposition()
            except Exception:  # a scrape must never take the node down
                logger.exception("rendering the metrics failed")
                return _plain(http.HTTPStatus.INTERNAL_SERVER_ERROR, "rendering the metrics failed")
            return _Response(http.HTTPStatus.OK, body, self._content_type)
        return _plain(http.HTTPStatus.NOT_FOUND, "not found: try /metrics, /health/live or /health/ready")


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, TimeoutError):
        async with asyncio.timeout(EXCHANGE_TIMEOUT_S):
            await writer.wait_closed()

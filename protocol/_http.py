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

Its own paths answer ``GET`` and ``HEAD``; anything else goes to the
caller's ``app``, if given (the agent service's KServe API), which may also
take ``POST`` with a body of at most the ``max_body_bytes`` the caller
configures, stated by ``Content-Length`` (a larger one is answered 413
before a byte of it is read; chunked bodies are answered 411). One request
per connection (``Connection: close``). Anything else gets its status (400,
404, 405, 411, 413, 431; with an app, as ``{"error": "..."}``) or, for a connection that sends too little too
slowly or arrives past :data:`MAX_CONNECTIONS`, is closed: bad input never
reaches the node. Reading a request and writing its answer each end within
:data:`EXCHANGE_TIMEOUT_S`; what the app takes in between is the app's to
bound. What ``/metrics`` renders is the caller's (prometheus-client's text
format for hubs and agents); this module imports no metrics library.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http
import json
import logging
from typing import TYPE_CHECKING

from protocol._lifecycle import cancel_and_wait
from protocol.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

logger = logging.getLogger("edgecut.http")

MAX_HEAD_BYTES = 8192
"""The most a request line and its headers may take; more is answered 431."""
EXCHANGE_TIMEOUT_S = 5.0
"""Seconds one connection may take to send its request and take the answer, before it is closed."""
MAX_CONNECTIONS = 32
"""Connections served at once; more are closed unanswered."""
LINGER_S = 1.0
"""How long, after its answer, a connection's unread bytes are taken before it is closed."""
LINGER_BYTES = 16 * 1024 * 1024
"""The most unread bytes taken after an answer."""

_TEXT = "text/plain; charset=utf-8"
_MAX_PORT = 65535
_READ_ONLY = frozenset({"GET", "HEAD"})


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request, read whole.

    Attributes:
        method: ``GET``, ``HEAD`` or ``POST``.
        path: The target without its query, e.g. ``/v2/models/tiny/infer``.
        headers: Header values by lower-case name.
        body: The body (empty but for ``POST``).
    """

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = b""


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    """One HTTP answer.

    Attributes:
        status: Its status.
        body: Its body.
        content_type: The body's content type.
        allow: The methods a 405 names.
    """

    status: http.HTTPStatus
    body: bytes
    content_type: str = _TEXT
    allow: str = "GET, HEAD"

    def encode(self, *, head_only: bool = False) -> bytes:
        """The answer as bytes on the wire (``head_only``: for a ``HEAD`` request)."""
        lines = [
            f"HTTP/1.1 {self.status.value} {self.status.phrase}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Connection: close",
        ]
        if self.status == http.HTTPStatus.METHOD_NOT_ALLOWED:
            lines.append(f"Allow: {self.allow}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
        return head if head_only else head + self.body


def _plain(status: http.HTTPStatus, text: str) -> Response:
    return Response(status, (text + "\n").encode())


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
    """Serves a node's metrics and health over HTTP while started, and the caller's ``app`` beside them.

    Args:
        host: Address to listen on.
        port: TCP port; 0 picks a free one (see :attr:`address`).
        exposition: Renders the metrics (called on the event loop at each scrape).
        content_type: The content type of what ``exposition`` renders.
        not_ready: Why the node cannot serve now, or ``None`` when it can.
        app: Answers the requests the endpoint's own paths do not (``None``
            from it: 404); called on the event loop, one task per connection.
        max_body_bytes: The largest request body taken (``POST``, only with
            an ``app``); 0 takes none.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        exposition: Callable[[], bytes],
        content_type: str,
        not_ready: Callable[[], str | None],
        app: Callable[[Request], Awaitable[Response | None]] | None = None,
        max_body_bytes: int = 0,
    ) -> None:
        self._host = host
        self._port = port
        self._exposition = exposition
        self._content_type = content_type
        self._not_ready = not_ready
        self._app = app
        self._max_body_bytes = max_body_bytes if app is not None else 0
        self._methods = _READ_ONLY | ({"POST"} if app is not None else set())
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
        logger.info("HTTP on http://%s:%d", host, port)

    async def close(self, grace_s: float = 0.0) -> None:
        """Stop listening; end the exchanges under way, after up to ``grace_s`` to finish. Safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        if self._exchanges and grace_s > 0:
            await asyncio.wait(self._exchanges, timeout=grace_s)
        await asyncio.gather(*(cancel_and_wait(task) for task in list(self._exchanges)))
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
                request = await self._read(reader, writer)
            if request is None:
                return
            answer = request if isinstance(request, Response) else await self._respond(request)
            async with asyncio.timeout(EXCHANGE_TIMEOUT_S):
                writer.write(answer.encode(head_only=isinstance(request, Request) and request.method == "HEAD"))
                await writer.drain()
            await _linger(reader, writer)
        except (ConnectionError, TimeoutError):
            pass  # the client went away, or was too slow: nothing to answer
        finally:
            self._exchanges.discard(task)
            await _close(writer)

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Request | Response | None:
        """The request ``reader`` brings, the error answer to it, or ``None`` if it closed before a whole one."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError:
            return self._refusal(http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large")
        request = self._parse(head)
        if isinstance(request, Response) or request.method != "POST":
            return request
        return await self._read_body(reader, writer, request)

    async def _read_body(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: Request
    ) -> Request | Response | None:
        """``request`` with its body, the error answer to it, or ``None`` if it closed before the whole body.

        A client that asks ``Expect: 100-continue`` (curl, for bodies over
        1 MiB) is told to send the body once its size is known to be taken;
        one refused gets its 413 without having sent it.
        """
        if "chunked" in request.headers.get("transfer-encoding", ""):
            return self._refusal(http.HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length, not chunked")
        length = request.headers.get("content-length", "0")
        if not length.isdigit():
            return self._refusal(http.HTTPStatus.BAD_REQUEST, f"bad Content-Length {length!r}")
        if int(length) > self._max_body_bytes:
            why = f"a {length} byte body is over this endpoint's limit of {self._max_body_bytes} bytes"
            return self._refusal(http.HTTPStatus.REQUEST_ENTITY_TOO_LARGE, why)
        if request.headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        try:
            body = await reader.readexactly(int(length))
        except asyncio.IncompleteReadError:
            return None
        return dataclasses.replace(request, body=body)

    def _parse(self, head: bytes) -> Request | Response:
        line, *fields = head.removesuffix(b"\r\n\r\n").split(b"\r\n")
        parts = line.split(b" ")
        if len(parts) != 3 or not parts[1].startswith(b"/") or not parts[2].startswith(b"HTTP/1."):  # noqa: PLR2004 - method, target, version
            return self._refusal(http.HTTPStatus.BAD_REQUEST, "bad request line")
        method = parts[0].decode("ascii", "replace")
        if method not in self._methods:
            response = self._refusal(http.HTTPStatus.METHOD_NOT_ALLOWED, f"only {', '.join(sorted(self._methods))}")
            return dataclasses.replace(response, allow=", ".join(sorted(self._methods)))
        headers = {}
        for field in fields:
            name, colon, value = field.partition(b":")
            if not colon or not name.strip():
                return self._refusal(http.HTTPStatus.BAD_REQUEST, "bad header line")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        path = parts[1].split(b"?", 1)[0].decode("utf-8", "replace")
        return Request(method, path, headers)

    async def _respond(self, request: Request) -> Response:
        if request.method in _READ_ONLY:
            own = self._route(request.path)
            if own is not None:
                return own
        try:
            answer = await self._app(request) if self._app is not None else None
        except Exception:  # a bad request must never take the node down
            logger.exception("answering %s %s failed", request.method, request.path)
            return self._refusal(http.HTTPStatus.INTERNAL_SERVER_ERROR, "answering the request failed")
        if answer is None:
            return self._refusal(http.HTTPStatus.NOT_FOUND, "not found: try /metrics, /health/live or /health/ready")
        return answer

    def _refusal(self, status: http.HTTPStatus, text: str) -> Response:
        """An error answer: plain text, or ``{"error": text}`` where an app's callers expect JSON (KServe's form)."""
        if self._app is None:
            return _plain(status, text)
        return Response(status, json.dumps({"error": text}).encode(), "application/json")

    def _route(self, path: str) -> Response | None:
        if path == "/health/live":
            return _plain(http.HTTPStatus.OK, "live")
        if path == "/health/ready":
            why = self._not_ready()
            if why is not None:
                return _plain(http.HTTPStatus.SERVICE_UNAVAILABLE, why)
            return _plain(http.HTTPStatus.OK, "ready")
        if path == "/metrics":
            try:
                body = self._exposition()
            except Exception:  # a scrape must never take the node down
                logger.exception("rendering the metrics failed")
                return _plain(http.HTTPStatus.INTERNAL_SERVER_ERROR, "rendering the metrics failed")
            return Response(http.HTTPStatus.OK, body, self._content_type)
        return None


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then take what the client still sends (a refused body), for a moment and a bounded amount.

    Closing a socket with unread bytes resets the connection, and a client
    still sending a body the endpoint refused could lose the answer (a 413)
    to the reset. A client that read its answer closes, which ends this at once.
    """
    if not writer.can_write_eof():
        return
    writer.write_eof()
    left = LINGER_BYTES
    with contextlib.suppress(ConnectionError, TimeoutError):
        async with asyncio.timeout(LINGER_S):
            while left > 0 and (chunk := await reader.read(min(left, 65536))):
                left -= len(chunk)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, TimeoutError):
        async with asyncio.timeout(EXCHANGE_TIMEOUT_S):
            await writer.wait_closed()

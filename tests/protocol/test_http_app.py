"""``protocol.http.Endpoint`` with an app beside its own paths: bodies bounded, refusals as JSON, over raw sockets."""

from __future__ import annotations

import asyncio
import http
import json
import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest

from protocol.http import Endpoint, Request, Response
from tests._support import http_exchange

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

LIMIT = 1000


class Echo:
    """An app that answers with what it was sent, and fails on ``/boom``."""

    def __init__(self) -> None:
        self.seen: list[Request] = []

    async def __call__(self, request: Request) -> Response | None:
        self.seen.append(request)
        if request.path == "/boom":
            msg = "the app failed"
            raise RuntimeError(msg)
        if request.path != "/echo":
            return None
        return Response(http.HTTPStatus.OK, request.body, "application/octet-stream")


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[Endpoint, Echo]]:
    app = Echo()
    server = Endpoint(
        "127.0.0.1",
        0,
        exposition=lambda: b"metric 1\n",
        content_type="text/plain",
        not_ready=lambda: None,
        app=app,
        max_body_bytes=LIMIT,
    )
    await server.start()
    try:
        yield server, app
    finally:
        await server.close()


def _address(server: Endpoint) -> tuple[str, int]:
    assert server.address is not None
    return server.address


async def test_a_post_body_reaches_the_app_and_its_own_paths_still_answer(endpoint: tuple[Endpoint, Echo]) -> None:
    server, app = endpoint
    body = bytes(range(256)) * 3
    raw = b"POST /echo?x=1 HTTP/1.1\r\nContent-Length: %d\r\nX-Thing: a:b\r\n\r\n" % len(body) + body
    status, headers, answer = await http_exchange(_address(server), raw)
    assert (status, answer) == (200, body)
    assert headers["content-type"] == "application/octet-stream"
    assert (app.seen[0].method, app.seen[0].path, app.seen[0].headers["x-thing"]) == ("POST", "/echo", "a:b")
    assert (await http_exchange(_address(server), b"GET /metrics HTTP/1.1\r\n\r\n"))[2] == b"metric 1\n"


async def test_a_body_over_the_limit_is_refused_before_it_is_sent(endpoint: tuple[Endpoint, Echo]) -> None:
    server, app = endpoint
    # Only the head: the answer comes without a byte of the body, so none was waited for.
    status, _, answer = await http_exchange(_address(server), b"POST /echo HTTP/1.1\r\nContent-Length: 1001\r\n\r\n")
    assert status == 413
    assert json.loads(answer) == {"error": "a 1001 byte body is over this endpoint's limit of 1000 bytes"}
    assert app.seen == []


async def test_a_client_that_sends_the_refused_body_anyway_still_gets_its_413(endpoint: tuple[Endpoint, Echo]) -> None:
    server, app = endpoint
    body = b"x" * 500_000  # more than the socket buffers hold: unread, it would reset the connection
    for _ in range(3):
        raw = b"POST /echo HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        assert (await http_exchange(_address(server), raw))[0] == 413
    assert app.seen == []


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
        (b"POST /echo HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"PUT /echo HTTP/1.1\r\n\r\n", 405),
        (b"GET /nothing HTTP/1.1\r\n\r\n", 404),
        (b"GET /boom HTTP/1.1\r\n\r\n", 500),
    ],
)
async def test_refusals_are_json_errors_and_the_endpoint_keeps_serving(
    endpoint: tuple[Endpoint, Echo], head: bytes, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = endpoint
    got, headers, answer = await http_exchange(_address(server), head)
    assert got == status
    assert set(json.loads(answer)) == {"error"}
    if status == 405:
        assert headers["allow"] == "GET, HEAD, POST"
    if status == 500:
        assert "answering GET /boom failed" in caplog.text
    assert (await http_exchange(_address(server), b"POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nok"))[2] == b"ok"


async def test_without_an_app_post_is_not_allowed_and_errors_stay_plain_text() -> None:
    server = Endpoint("127.0.0.1", 0, exposition=lambda: b"", content_type="text/plain", not_ready=lambda: None)
    await server.start()
    try:
        status, headers, answer = await http_exchange(
            _address(server), b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
        )
    finally:
        await server.close()
    assert (status, headers["allow"]) == (405, "GET, HEAD")
    assert headers["content-type"].startswith("text/plain")
    assert answer == b"only GET, HEAD\n"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed here")
async def test_curl_gets_100_continue_for_a_large_body_and_413_without_sending_one(
    endpoint: tuple[Endpoint, Echo], tmp_path: Path
) -> None:
    server, app = endpoint
    host, port = _address(server)
    small, large = tmp_path / "small", tmp_path / "large"
    small.write_bytes(b"x" * LIMIT)
    large.write_bytes(b"x" * 2_000_000)  # over 1 MiB: curl asks Expect: 100-continue

    async def curl(path: Path) -> str:
        process = await asyncio.create_subprocess_exec(
            "curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_upload}", "--data-binary", f"@{path}",
            "-H", "Expect: 100-continue", f"http://{host}:{port}/echo", stdout=subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(), 30)
        return out.decode()

    assert await curl(small) == f"200 {LIMIT}"
    status, uploaded = (await curl(large)).split()
    assert status == "413"
    assert int(uploaded) < 2_000_000
    assert [request.body for request in app.seen] == [b"x" * LIMIT]

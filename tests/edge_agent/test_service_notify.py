"""systemd's notify protocol against a real unix datagram socket, and the unit file under systemd-analyze."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from edge_agent import AgentService, ModelConfig, ServiceConfig
from edge_agent._notify import Notifier
from tests._support import TINY, until

if TYPE_CHECKING:
    from collections.abc import Iterator

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "edgecut-agent.service"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
"""Absent on machines without systemd (macOS, most containers): the unit's checks are skipped there."""


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    """A datagram socket bound where ``$NOTIFY_SOCKET`` will point, as systemd's is."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)  # noqa: FBT003 - socket's own API
    try:
        yield sock
    finally:
        sock.close()


def _received(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def test_a_notifier_sends_each_call_as_one_datagram(notify_socket: socket.socket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.getsockname()})
    assert notifier.notify("READY=1", "STATUS=serving tiny")
    assert notifier.notify("STOPPING=1")
    assert _received(notify_socket) == ["READY=1\nSTATUS=serving tiny", "STOPPING=1"]


def test_an_abstract_socket_name_starts_with_an_at_sign() -> None:
    name = f"edgecut-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).notify("READY=1")
        assert sock.recv(4096) == b"READY=1"


def test_outside_systemd_nothing_is_sent_and_a_dead_socket_is_not_fatal(tmp_path: Path) -> None:
    assert not Notifier({}).notify("READY=1")
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody")}).notify("READY=1")


@pytest.mark.parametrize(
    ("environ", "interval_s"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_the_watchdog_is_pinged_at_half_its_interval(environ: dict[str, str], interval_s: float | None) -> None:
    assert Notifier(environ).watchdog_s == interval_s


async def test_the_service_notifies_ready_watchdog_and_stopping(notify_socket: socket.socket, prefix: str) -> None:
    environ = {"NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "40000"}  # a ping every 20 ms
    config = ServiceConfig(
        models=(ModelConfig(name=TINY, model=TINY, threads=1),),
        broker="mqtt://127.0.0.1:9",  # none there: the service starts offline
        prefix=prefix,
        listen="127.0.0.1:0",
    )
    service = AgentService(config, notifier=Notifier(environ))
    serving = asyncio.create_task(service.serve())
    seen: list[str] = []

    def watchdog_pings() -> int:
        seen.extend(_received(notify_socket))
        return seen.count("WATCHDOG=1")

    await until(lambda: watchdog_pings() >= 3, "three watchdog pings")
    service.request_shutdown()
    await asyncio.wait_for(serving, 30)
    seen.extend(_received(notify_socket))
    ready = next(i for i, message in enumerate(seen) if message.startswith("READY=1"))
    assert seen[ready] == f"READY=1\nSTATUS=serving {TINY}"
    assert seen[0].startswith("STATUS=")  # before READY=1: it says what it is doing
    assert "STOPPING=1" in seen[ready:]
    assert seen.index("WATCHDOG=1") > ready


def _installed_edgecut() -> str | None:
    return shutil.which("edgecut", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here")
def test_the_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """The unit as shipped, but for ExecStart's path: verify checks the command exists, so this machine's."""
    edgecut = _installed_edgecut()
    assert edgecut is not None
    text = UNIT.read_text()
    assert "ExecStart=/opt/edgecut/bin/edgecut agent serve --config /etc/edgecut/agent.toml" in text
    assert SYSTEMD_ANALYZE is not None
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace("/opt/edgecut/bin/edgecut", edgecut))
    result = subprocess.run(  # noqa: S603 - a fixed command on our own file
        [SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for setting in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "RestartPreventExitStatus=3 4"):
        assert setting in text


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here")
def test_systemd_analyze_verify_does_fail_on_a_broken_unit(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("Type=notify", "Type=notifyy"))
    result = subprocess.run(  # noqa: S603 - a fixed command on our own file
        [SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True, check=False, timeout=60
    )
    assert "notifyy" in result.stdout + result.stderr

"""`edgecut hub` as a process: SIGTERM drains and says goodbye; a dead broker is a clear exit code."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cloud_hub import free_port
from edgecut._exit import ExitCode
from protocol import Topics, decode_status
from protocol.mqtt import Connection, Incoming
from tests._support import until

pytestmark = pytest.mark.broker


def _hub(broker: str, *options: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "edgecut", "hub", "--broker", broker, "--threads", "1", *options]
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True)  # noqa: S603 - our own CLI


async def _statuses(url: str, topic: str, queue: asyncio.Queue[Incoming]) -> Connection:
    connection = Connection(
        url, client_id=f"watch-{id(queue)}", subscriptions=[(topic, 1)], on_message=queue.put_nowait
    )
    await connection.__aenter__()
    await connection.wait_connected(10)
    return connection


async def test_sigterm_stops_the_hub_cleanly_with_an_offline_status(broker_url: str, prefix: str) -> None:
    topics = Topics(prefix)
    received: asyncio.Queue[Incoming] = asyncio.Queue()
    watcher = await _statuses(broker_url, topics.status("term-hub"), received)
    hub = _hub(broker_url, "--prefix", prefix, "--hub-id", "term-hub")
    try:
        online = decode_status((await asyncio.wait_for(received.get(), 60)).payload)
        assert online.state == "online"
        hub.send_signal(signal.SIGTERM)
        offline = decode_status((await asyncio.wait_for(received.get(), 30)).payload)
        assert offline.state == "offline"
        _, stderr = await asyncio.to_thread(hub.communicate, timeout=30)
    finally:
        hub.kill()
        await watcher.__aexit__(None, None, None)
    assert hub.returncode == ExitCode.OK, stderr


def test_unreachable_broker_exits_with_the_transport_code() -> None:
    hub = _hub(f"mqtt://127.0.0.1:{free_port()}", "--connect-timeout", "0.5")
    _, stderr = hub.communicate(timeout=60)
    assert hub.returncode == ExitCode.TRANSPORT
    assert "no connection to the broker" in stderr
    assert "within 0.5 s" in stderr


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid``, from /proc."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                children.add(int(stat.parent.name))
    return children


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
async def test_a_killed_hub_leaves_no_process_behind(broker_url: str, prefix: str) -> None:
    """The child that splits models exits with the hub, even one killed by SIGKILL, which tells it nothing."""
    topics = Topics(prefix)
    received: asyncio.Queue[Incoming] = asyncio.Queue()
    watcher = await _statuses(broker_url, topics.status("killed-hub"), received)
    hub = _hub(broker_url, "--prefix", prefix, "--hub-id", "killed-hub", "--preload", "tiny:input")
    try:
        await asyncio.wait_for(received.get(), 60)  # online: the preload split the model in the child
        splitters = _children(hub.pid)
        assert splitters  # the pool's worker (and the spawn context's resource tracker)
        hub.kill()
        hub.wait(10)
        await until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in splitters), "the children to exit")
    finally:
        hub.kill()
        hub.communicate(timeout=10)
        await watcher.__aexit__(None, None, None)

"""A hub in its own process (``edgecut hub``), and waiting for hubs to say they are online.

For the demo, the benchmarks and emulated fleets: a hub that shares no
interpreter, GIL or event loop with the agents measuring it.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING, Self

from protocol import Topics, decode_status
from protocol.mqtt import Connection

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from pathlib import Path
    from types import TracebackType

    from protocol.mqtt import Incoming

_STOP_TIMEOUT_S = 30.0


class HubProcess:
    """``edgecut hub`` as a child process; a context manager that starts and stops it.

    Args:
        broker: The broker's URL.
        prefix: The topic prefix.
        hub_id: The hub's id.
        options: Further ``edgecut hub`` options (``["--workers", "2"]``).
        quiet: Send the hub's own output nowhere.
        log: Append the hub's output and log to this file instead (``quiet`` aside).
    """

    def __init__(
        self,
        broker: str,
        *,
        prefix: str,
        hub_id: str,
        options: Sequence[str] = (),
        quiet: bool = False,
        log: Path | None = None,
    ) -> None:
        self.hub_id = hub_id
        self._command = [sys.executable, "-m", "edgecut", "hub", "--broker", broker, "--prefix", prefix]
        self._command += ["--hub-id", hub_id, *options]
        self._quiet = quiet
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The hub process's id while it runs (``None`` before start() and after kill() or stop())."""
        return None if self._process is None else self._process.pid

    @property
    def exit_code(self) -> int | None:
        """The status of a hub that exited by itself; ``None`` while it runs, and before start() or after kill()."""
        return None if self._process is None else self._process.poll()

    def start(self) -> None:
        """Start the hub (again, after :meth:`kill`)."""
        if self.log is not None:
            with self.log.open("ab") as log:  # the child keeps its own handle
                self._process = subprocess.Popen(  # noqa: S603
                    self._command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
                )
            return
        output = subprocess.DEVNULL if self._quiet else None
        self._process = subprocess.Popen(self._command, stdin=subprocess.DEVNULL, stdout=output)  # noqa: S603

    def kill(self) -> None:
        """Kill the hub at once (SIGKILL), as a crash would."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(_STOP_TIMEOUT_S)
            self._process = None

    def pause(self) -> None:
        """Hang the hub (SIGSTOP), as a stuck process would: it holds its connection and requests, silent."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused hub go on (SIGCONT)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the hub gracefully (SIGTERM), killing it if it does not stop within 30 s."""
        if self._process is None:
            return
        self.resume()  # a paused process would not act on SIGTERM
        self._process.terminate()
        try:
            self._process.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(_STOP_TIMEOUT_S)
        self._process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def wait_online(broker: str, prefix: str, hub_ids: Collection[str], timeout_s: float) -> None:
    """Return once every hub in ``hub_ids`` has published an online status (preloads done).

    Raises:
        TimeoutError: Not all of them within ``timeout_s``.
    """
    waiting = set(hub_ids)
    done = asyncio.Event()

    def on_status(incoming: Incoming) -> None:
        status = decode_status(incoming.payload)
        if status.role == "hub" and status.state == "online":
            waiting.discard(status.node_id)
            if not waiting:
                done.set()

    topic = Topics(prefix).all_status()
    async with Connection(
        broker, client_id=f"watch-{uuid.uuid4().hex[:12]}", subscriptions=[(topic, 1)], on_message=on_status
    ):
        await asyncio.wait_for(done.wait(), timeout_s)

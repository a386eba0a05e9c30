"""Run a command that dies with its parent: ``python _watchdog.py COMMAND [ARG ...]``.

:class:`~cloud_hub.LocalBroker` starts mosquitto through this watchdog. The
parent holds the watchdog's stdin pipe; when the parent goes away, even killed
with SIGKILL, the pipe reaches end-of-file and the watchdog stops the command.
SIGTERM and SIGINT stop the command too. The watchdog exits with the command's
exit status. It is run as a file, not as ``-m cloud_hub._watchdog``, so that
it imports only the standard library and starts in milliseconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

KILL_AFTER_S = 5.0
"""How long the command has to exit after SIGTERM before it is killed."""


def run(command: Sequence[str]) -> int:
    """Run ``command`` until it exits, stdin closes, or SIGTERM/SIGINT arrives; return its exit status."""
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL)  # noqa: S603 - argv from LocalBroker

    def stop(_signum: int = 0, _frame: FrameType | None = None) -> None:
        if child.poll() is None:
            child.terminate()
            killer = threading.Timer(KILL_AFTER_S, child.kill)
            killer.daemon = True  # the watchdog exits as soon as the command has
            killer.start()

    def stop_at_eof() -> None:
        # os.read, not sys.stdin: a daemon thread blocked inside the buffered reader holds its
        # lock, and the interpreter aborts at exit when mosquitto ends first.
        while os.read(0, 4096):
            pass
        stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=stop_at_eof, name="watchdog-stdin", daemon=True).start()
    return child.wait()


def main() -> None:
    """Entry point: run the command given as arguments, exit with its status."""
    if len(sys.argv) < 2:  # noqa: PLR2004 - the program name and at least the command
        sys.exit("usage: python _watchdog.py COMMAND [ARG ...]")
    code = run(sys.argv[1:])
    sys.exit(code if code >= 0 else 128 - code)  # killed by signal N: 128 + N, as a shell reports it


if __name__ == "__main__":
    main()

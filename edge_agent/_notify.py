"""systemd's notify protocol (``Type=notify``, ``WatchdogSec=``): a few datagrams over ``$NOTIFY_SOCKET``.

What ``sd_notify(3)`` does, without libsystemd: each state (``READY=1``,
``WATCHDOG=1``, ``STOPPING=1``, ``STATUS=...``) is one datagram to the unix
socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract
namespace). Outside systemd the variable is unset and every call does
nothing. The watchdog wants ``WATCHDOG=1`` more often than ``$WATCHDOG_USEC``;
sending it at half that, from the event loop, means a loop stuck for that
long gets the service restarted.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

logger = logging.getLogger("edgecut.agent")


class Notifier:
    """Tells systemd how the service is doing (no-op when not started by systemd).

    Args:
        environ: Where ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` are read.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        """The socket's address (``""``: not under systemd)."""
        self.watchdog_s = _watchdog_interval(env)
        """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or ``None`` without a watchdog."""

    def notify(self, *states: str) -> bool:
        """Send ``states`` (e.g. ``"READY=1"``) in one datagram; whether it was sent.

        A failure is logged, never raised: a service runs on without systemd hearing it.
        """
        if not self.address or not states:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(states).encode(), self.address)
        except OSError as exc:
            logger.warning("could not notify systemd at %s: %s", self.address, exc)
            return False
        return True


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, when the watchdog is on and meant for this process."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2 / 1_000_000

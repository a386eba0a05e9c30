"""Waiting for the signals that stop a long-running command."""

from __future__ import annotations

import asyncio
import signal


async def until_signalled() -> None:
    """Wait for SIGINT or SIGTERM (what Ctrl+C, kill, systemd and container runtimes send)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)

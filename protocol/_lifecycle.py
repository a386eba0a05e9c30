"""Running a server until SIGINT/SIGTERM, as uvicorn does: the first signal drains, a second forces.

Hubs and agent services alike: each is a :class:`Server` (``serve()``, ``request_shutdown()``,
``is_shutting_down``), and neither package imports the other.
"""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import logging

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_CANCEL_AGAIN_AFTER_S = 0.1


class Server(Protocol):
    """What :func:`serve_until_signalled` runs."""

    async def serve(self) -> None:
        """Serve until a shutdown is requested, then drain and return."""

    def request_shutdown(self) -> None:
        """Ask :meth:`serve` to drain and return."""

    @property
    def is_shutting_down(self) -> bool:
        """True once a shutdown was requested."""


async def serve_until_signalled(
    server: Server, *, name: str, draining: str, logger: logging.Logger
) -> signal.Signals | None:
    """Run ``server.serve()`` with SIGINT/SIGTERM handlers installed for its duration.

    The first signal asks for a graceful shutdown; a second one stops the
    server at once. The previous handlers are restored on return.

    Args:
        server: What to run.
        name: The serving task's name (``edgecut[hub-1].serve``).
        draining: What the first signal's log line says is being finished.
        logger: Where the signals are logged (the server's own logger).

    Returns:
        The signal that forced the stop, or ``None`` after a graceful one.
    """
    loop = asyncio.get_running_loop()
    serving = asyncio.create_task(server.serve(), name=name)
    forced: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        if server.is_shutting_down:
            logger.warning("second %s: stopping now", signum.name)
            forced.append(signum)
            serving.cancel()
            return
        logger.info("%s: finishing %s (again to force)", signum.name, draining)
        server.request_shutdown()

    for signum in _SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await serving
    except asyncio.CancelledError:
        if not forced:  # cancelled from outside, not by a signal
            raise
    finally:
        for signum in _SIGNALS:
            loop.remove_signal_handler(signum)
    return forced[0] if forced else None


def raise_forcing(forced: signal.Signals | None) -> None:
    """After a forced stop, raise the signal again with the default handlers back, as uvicorn does.

    A forcing SIGINT ends in ``KeyboardInterrupt`` (the CLI exits 130); a forcing
    SIGTERM terminates the process the way SIGTERM does.
    """
    if forced is not None:
        signal.raise_signal(forced)


async def cancel_and_wait(task: asyncio.Task[Any], *, again_after: float = _CANCEL_AGAIN_AFTER_S) -> None:
    """Cancel ``task`` until it has ended, and wait for that.

    One cancel may not do on Python 3.11: a cancel that lands inside aiomqtt's
    publish (``asyncio.wait_for``) can be swallowed (CPython gh-86296), and the
    task then runs on, into its loop's next wait. So the cancel is sent again
    every ``again_after`` seconds while the task runs. What the task ended with
    is retrieved, not raised.

    If the caller is cancelled meanwhile, ``task`` is cancelled again at once
    and still seen to its end before the caller's cancellation propagates: a
    teardown cancelled twice (as this function's own callers are) must not
    leave behind a task that swallowed its one cancel and runs on.
    """
    interrupted = False
    while not task.done():
        task.cancel()
        try:
            await asyncio.wait([task], timeout=again_after)
        except asyncio.CancelledError:
            interrupted = True
    if not task.cancelled():
        task.exception()  # retrieved: not logged as never retrieved
    if interrupted:
        raise asyncio.CancelledError

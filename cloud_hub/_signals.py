"""Running a hub until SIGINT/SIGTERM, as uvicorn does: the first signal drains, a second forces."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING

from cloud_hub._server import Hub

if TYPE_CHECKING:
    from cloud_hub._config import HubConfig

logger = logging.getLogger("edgecut.hub")


def run_hub(config: HubConfig) -> None:
    """Serve ``config`` until SIGINT/SIGTERM: the first drains gracefully, a second forces.

    After a forced stop the signal is raised again with the default handlers
    back in place, as uvicorn does: a forcing SIGINT ends in
    ``KeyboardInterrupt`` (the CLI exits 130), a forcing SIGTERM terminates
    the process the way SIGTERM does.

    Raises:
        ProviderUnavailableError: An execution provider asked for is not in the installed onnxruntime.
        TransportError: The broker could not be reached at start-up.
    """
    forced = asyncio.run(serve_until_signalled(Hub(config)))
    if forced is not None:
        signal.raise_signal(forced)


async def serve_until_signalled(hub: Hub) -> signal.Signals | None:
    """Run ``hub.serve()`` with SIGINT/SIGTERM handlers installed for its duration.

    The first signal asks for a graceful shutdown; a second one stops the hub
    at once. The previous handlers are restored on return.

    Returns:
        The signal that forced the stop, or ``None`` after a graceful one.
    """
    loop = asyncio.get_running_loop()
    serving = asyncio.create_task(hub.serve(), name=f"edgecut[{hub.config.hub_id}].serve")
    forced: list[signal.Signals] = []
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal(signum: signal.Signals) -> None:
        if hub.is_shutting_down:
            logger.warning("second %s: stopping now", signum.name)
            forced.append(signum)
            serving.cancel()
            return
        logger.info("%s: finishing accepted requests (again to force)", signum.name)
        hub.request_shutdown()

    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await serving
    except asyncio.CancelledError:
        if not forced:  # cancelled from outside, not by a signal
            raise
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
    return forced[0] if forced else None

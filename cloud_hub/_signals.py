"""Running a hub until SIGINT/SIGTERM, as uvicorn does: the first signal drains, a second forces."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from cloud_hub._server import Hub
from protocol import lifecycle
from protocol.lifecycle import raise_forcing

if TYPE_CHECKING:
    import signal
    from collections.abc import Callable

    from cloud_hub._config import HubConfig

logger = logging.getLogger("edgecut.hub")


def run_hub(config: HubConfig, *, on_ready: Callable[[Hub], None] | None = None) -> None:
    """Serve ``config`` until SIGINT/SIGTERM: the first drains gracefully, a second forces.

    After a forced stop the signal is raised again with the default handlers
    back in place, as uvicorn does: a forcing SIGINT ends in
    ``KeyboardInterrupt`` (the CLI exits 130), a forcing SIGTERM terminates
    the process the way SIGTERM does.

    Args:
        config: The hub to run.
        on_ready: Called on the event loop once the hub serves: its preloads
            loaded, connected and subscribed (:attr:`Hub.ready`), so that a
            request sent now runs at once; never called if it stops first.

    Raises:
        ProviderUnavailableError: An execution provider asked for is not in the installed onnxruntime.
        TransportError: The broker could not be reached at start-up.
    """
    raise_forcing(asyncio.run(_serve_and_tell(Hub(config), on_ready)))


async def _serve_and_tell(hub: Hub, on_ready: Callable[[Hub], None] | None) -> signal.Signals | None:
    """:func:`serve_until_signalled`, calling ``on_ready(hub)`` when the hub is ready."""
    if on_ready is None:
        return await serve_until_signalled(hub)

    async def tell() -> None:
        await hub.ready.wait()
        on_ready(hub)

    telling = asyncio.create_task(tell(), name=f"edgecut[{hub.config.hub_id}].ready")
    try:
        return await serve_until_signalled(hub)
    finally:
        telling.cancel()


async def serve_until_signalled(hub: Hub) -> signal.Signals | None:
    """Run ``hub.serve()`` with SIGINT/SIGTERM handlers installed for its duration (:mod:`protocol.lifecycle`).

    Returns:
        The signal that forced the stop, or ``None`` after a graceful one.
    """
    return await lifecycle.serve_until_signalled(
        hub, name=f"edgecut[{hub.config.hub_id}].serve", draining="accepted requests", logger=logger
    )

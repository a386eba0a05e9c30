"""Publishing a hub's replies through broker restarts: again on the next connection, until the deadline."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from protocol.errors import EdgecutError, TransportError

if TYPE_CHECKING:
    from protocol.mqtt import Connection

logger = logging.getLogger("edgecut.hub")

_REPUBLISH_PAUSE_S = 0.05
"""Pause before publishing again after a failed attempt (the connection was lost)."""


async def publish_until(
    connection: Connection, topic: str, payload: bytes, *, qos: int, correlation: bytes | None, deadline: float
) -> bool:
    """Publish ``payload``; if the connection drops first, again on the next one, until ``deadline``.

    A publish on a dead connection fails at once (:class:`~protocol.mqtt.Connection`),
    and the next attempt waits for the connection to be back, for as long as
    the deadline allows.

    Args:
        connection: The hub's connection.
        topic: Where to publish.
        payload: What.
        qos: At which QoS.
        correlation: The MQTT 5 CorrelationData to set.
        deadline: ``time.perf_counter()`` value after which nobody waits for it.

    Returns:
        Whether it was published; failures are logged.
    """
    while True:
        remaining = deadline - time.perf_counter()
        try:
            await connection.publish(topic, payload, qos=qos, correlation=correlation, timeout=max(0.1, remaining))
        except TransportError as exc:
            if remaining <= _REPUBLISH_PAUSE_S:
                logger.warning("reply on %s lost: %s", topic, exc)
                return False
            logger.info("reply on %s not sent (%s); publishing it again", topic, exc)
            await asyncio.sleep(_REPUBLISH_PAUSE_S)
        except EdgecutError as exc:
            logger.warning("reply on %s lost: %s", topic, exc)
            return False
        else:
            return True

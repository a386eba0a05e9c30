"""A node's metrics and health over HTTP (``/metrics``, ``/health/live``, ``/health/ready``), for agents and hubs.

An agent service's KServe API is served beside them, as an ``app``.

Like :mod:`protocol.mqtt`, not imported by ``import protocol``: the wire
format stays usable without asyncio.
"""

from protocol._http import (
    EXCHANGE_TIMEOUT_S,
    MAX_CONNECTIONS,
    MAX_HEAD_BYTES,
    Endpoint,
    Request,
    Response,
    parse_address,
)

__all__ = [
    "EXCHANGE_TIMEOUT_S",
    "MAX_CONNECTIONS",
    "MAX_HEAD_BYTES",
    "Endpoint",
    "Request",
    "Response",
    "parse_address",
]

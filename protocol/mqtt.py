"""The MQTT 5 binding of the protocol (docs/protocol.md, section 1), shared by agents and hubs.

:class:`Connection` keeps one supervised broker connection (reconnects with
jittered backoff, resubscribes, last will); :class:`BrokerURL` parses
``mqtt://`` and ``mqtts://`` URLs. This is the one place aiomqtt is imported,
and ``import protocol`` does not import it: the wire format stays usable
without asyncio or an MQTT client.
"""

from protocol._mqtt import (
    ACKS_AT_ONCE,
    Backoff,
    Connack,
    Connection,
    Incoming,
    Will,
    acknowledge_now,
    acknowledge_reads_at_once,
)
from protocol._url import DEFAULT_PORTS, BrokerURL, QoS

__all__ = [
    "ACKS_AT_ONCE",
    "DEFAULT_PORTS",
    "Backoff",
    "BrokerURL",
    "Connack",
    "Connection",
    "Incoming",
    "QoS",
    "Will",
    "acknowledge_now",
    "acknowledge_reads_at_once",
]

"""The optional probes of ``edgecut broker-check``: what edgecut copes without, reported all the same.

- ``persistent_session``: QoS 1 messages published while a client with a kept
  session was away reach it when it comes back. edgecut's hubs use clean
  sessions (a kept one queues a share of the requests for an absent hub);
  agents and hubs resend what a broken connection may have lost.
- ``packet_limit``: the broker keeps messages over a client's MQTT 5 Maximum
  Packet Size from it (the spec's MUST). Without it a flood of huge messages
  reaches the hubs, which read and refuse each one ``too_large``.
- ``share_groups``: two filters shared under one group name each get all their
  messages (a shared subscription is the group *and* the filter). Without it
  two deployments whose hubs share a ``--group`` name on one broker lose each
  other's requests: give each its own group.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from cloud_hub._broker_probes import AGENT, HUBS, BrokerCheck, Outcome, tagged, take
from protocol import PACKET_OVERHEAD_BYTES

if TYPE_CHECKING:
    from cloud_hub._broker_probes import BrokerProbes
    from protocol.mqtt import Connection, Incoming

_SESSION_MESSAGES = 5
_SESSION_EXPIRY_S = 60
_SMALL_CLIENT_BYTES = 1024
_SHARED_BURST = 10


async def persistent_session(probes: BrokerProbes) -> BrokerCheck:
    """Whether QoS 1 messages published while a persistent session was away reach it on reconnect."""
    topic = f"{probes.topics.prefix}/session"
    inbox: asyncio.Queue[Incoming] = asyncio.Queue()

    def sleeper(subscriptions: list[tuple[str, int]]) -> Connection:
        return probes.connection("sleeper", subscriptions, inbox.put_nowait, session_expiry_s=_SESSION_EXPIRY_S)

    try:
        async with probes.connected(sleeper([(topic, 1)])):
            pass  # subscribed, then a clean DISCONNECT: the broker keeps the session
        async with probes.connected(probes.connection("waker")) as publisher:
            for index in range(_SESSION_MESSAGES):
                await publisher.publish(topic, str(index).encode(), qos=1, timeout=probes.timeout_s)
        async with probes.connected(sleeper([])) as back:  # no subscription: what comes, the kept session brought
            got = await take(inbox, _SESSION_MESSAGES, probes.timeout_s)
    finally:  # a clean start ends the kept session
        async with probes.connected(probes.connection("sleeper")):
            pass
    delivered = len({message.payload for message in got})
    present = back.connack is not None and back.connack.session_present
    data: dict[str, object] = {"queued": _SESSION_MESSAGES, "delivered": delivered, "session_present": present}
    figure = f"{delivered}/{_SESSION_MESSAGES} QoS 1 messages queued while away delivered on reconnect"
    outcome: Outcome = "pass" if delivered == _SESSION_MESSAGES else "fail"
    if not present and not delivered:
        outcome, figure = "unsupported", "the broker kept no session (session present: no, nothing delivered)"
    return BrokerCheck(name="persistent_session", outcome=outcome, required=False, figure=figure, data=data)


async def packet_limit(probes: BrokerProbes) -> BrokerCheck:
    """Whether a message over a client's Maximum Packet Size is kept from it.

    A message twice that size goes first, then a small marker on the same
    connection: once the marker is in, the large one would have come before it.
    """
    topic = f"{probes.topics.prefix}/limit"
    declared = _SMALL_CLIENT_BYTES + PACKET_OVERHEAD_BYTES  # what Connection tells the broker
    inbox: asyncio.Queue[Incoming] = asyncio.Queue()
    small = probes.connection("small", [(topic, 1)], inbox.put_nowait, max_message_bytes=_SMALL_CLIENT_BYTES)
    async with probes.connected(small), probes.connected(probes.connection("large")) as sender:
        await sender.publish(topic, bytes(2 * declared), qos=1, timeout=probes.timeout_s)
        await sender.publish(topic, b"marker", qos=1, timeout=probes.timeout_s)
        got = await take(inbox, 1, probes.timeout_s)
        if got and got[0].payload != b"marker":  # the large one came: the marker should follow
            got += await take(inbox, 1, probes.timeout_s)
    payloads = [message.payload for message in got]
    data: dict[str, object] = {"declared_bytes": declared, "sent_bytes": 2 * declared}
    if b"marker" not in payloads:
        figure = "the small message after the large one never came"
        return BrokerCheck(name="packet_limit", outcome="fail", required=False, figure=figure, data=data)
    kept = len(payloads) == 1
    figure = (
        f"a {2 * declared:,} byte message was {'kept from' if kept else 'delivered to'}"
        f" a client that takes {declared:,} byte packets"
    )
    return BrokerCheck(
        name="packet_limit", outcome="pass" if kept else "fail", required=False, figure=figure, data=data
    )


async def share_groups(probes: BrokerProbes) -> BrokerCheck:
    """Whether two filters shared under one group name each get all their own messages."""
    group = f"edgecut-check-{probes.run_id}-both"
    filters = {
        HUBS[0]: f"$share/{group}/{probes.topics.all_requests()}",
        HUBS[1]: f"$share/{group}/{probes.topics.all_pings()}",
    }
    arrived: asyncio.Queue[tuple[str, Incoming]] = asyncio.Queue()
    qos = probes.url.qos

    async with (
        probes.connected(probes.connection(HUBS[0], [(filters[HUBS[0]], qos)], tagged(arrived, HUBS[0]))),
        probes.connected(probes.connection(HUBS[1], [(filters[HUBS[1]], qos)], tagged(arrived, HUBS[1]))),
        probes.connected(probes.connection(AGENT)) as agent,
    ):
        for index in range(_SHARED_BURST):
            await agent.publish(probes.topics.request(AGENT), b"%d" % index, qos=qos, timeout=probes.timeout_s)
            await agent.publish(probes.topics.ping(AGENT), b"%d" % index, qos=qos, timeout=probes.timeout_s)
        got = await take(arrived, 2 * _SHARED_BURST, probes.timeout_s)
    requests = sum(hub == HUBS[0] and "/req/" in message.topic for hub, message in got)
    pings = sum(hub == HUBS[1] and "/ping/" in message.topic for hub, message in got)
    apart = requests == pings == _SHARED_BURST
    figure = f"{requests}/{_SHARED_BURST} requests and {pings}/{_SHARED_BURST} pings reached their filter's subscriber"
    data: dict[str, object] = {"requests": requests, "pings": pings, "sent_each": _SHARED_BURST}
    return BrokerCheck(
        name="share_groups", outcome="pass" if apart else "fail", required=False, figure=figure, data=data
    )

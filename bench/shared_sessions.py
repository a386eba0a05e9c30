"""Why hubs do not use persistent MQTT sessions: what a broker does with an offline member of a share group.

Subscriber A joins ``$share/g/t`` with a persistent session (clean start off,
session expiry 60 s) and disconnects; B joins the same group and stays. Ten
QoS 1 messages are published. If the broker routes part of them to A's
offline session, those wait until A comes back, or are lost when its session
expires: for a hub that died, its share of the requests.

    python bench/shared_sessions.py [--broker mosquitto|iotcore|auto]
"""

from __future__ import annotations

import argparse
import asyncio

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_hub import LocalBroker
from protocol.mqtt import BrokerURL

MESSAGES = 10


def _client(url: BrokerURL, identifier: str, *, persistent: bool = False) -> aiomqtt.Client:
    properties = None
    if persistent:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 60
    return aiomqtt.Client(
        url.host,
        url.port,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=not persistent,
        properties=properties,
    )


async def _count(client: aiomqtt.Client, seconds: float) -> int:
    received = 0
    try:
        async with asyncio.timeout(seconds):
            async for _ in client.messages:
                received += 1
    except TimeoutError:
        pass
    return received


async def measure(url: BrokerURL) -> tuple[int, int]:
    async with _client(url, "A", persistent=True) as member:
        await member.subscribe("$share/g/t", qos=1)
    async with _client(url, "B") as online, _client(url, "P") as publisher:
        await online.subscribe("$share/g/t", qos=1)
        for index in range(MESSAGES):
            await publisher.publish("t", str(index).encode(), qos=1)
        to_online = await _count(online, 1)
    async with _client(url, "A", persistent=True) as member:
        to_offline = await _count(member, 1)
    return to_online, to_offline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["auto", "mosquitto", "iotcore"], default="auto", help="local broker kind")
    args = parser.parse_args()
    with LocalBroker(kind=args.broker) as broker:
        to_online, to_offline = asyncio.run(measure(BrokerURL.parse(broker.url)))
    print(f"$ python bench/shared_sessions.py --broker {broker.kind}")
    print(f"of {MESSAGES} messages to a share group of one online and one offline persistent session:")
    print(f"  {to_online} went to the online member, {to_offline} waited for the offline one")


if __name__ == "__main__":
    main()

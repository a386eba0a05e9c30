"""Model delivery at a node: retained offers of the model directories it holds, and blocks on request.

Agents fetch models in blocks (docs/protocol.md, section 9). A node reads
fetches on a broker connection of its own, so a transfer never queues in
front of a hub's requests or replies, nor behind them; file reads and hashes
run off the event loop. What it serves is bounded: ``max_fetches`` fetches at
a time, ``max_fetches_per_agent`` per agent, each of at most 64 blocks of
``block_size`` bytes; a fetch past a bound is answered ``overloaded``.

A version is published by putting its directory under the models directory
(whole: copy it beside, then rename it in): the node scans the directory
again every ``rescan_s`` (hashing only files it has not hashed before) and
publishes the offers that changed, so agents that follow a model's newest
version fetch it while the old one is still served. A model whose last
directory went has its retained offer cleared.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
from typing import TYPE_CHECKING, Any, Self

from cloud_hub._offers import Catalog, FileHashes, scan_offers
from protocol import (
    BLOCK_ENVELOPE_BYTES,
    DEFAULT_BLOCK_BYTES,
    Block,
    ErrorCode,
    InferenceReply,
    Topics,
    decode_fetch,
    encode_block,
    encode_offer,
    encode_reply,
    peek_request_id,
)
from protocol.errors import ConfigError, EdgecutError, ProtocolError
from protocol.lifecycle import cancel_and_wait
from protocol.mqtt import Connection

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from pathlib import Path

    from cloud_hub._offers import Held
    from protocol import FetchRequest
    from protocol.mqtt import Incoming

logger = logging.getLogger("edgecut.hub")

_PUBLISH_TIMEOUT_S = 30.0
"""A block not taken by the broker in this long is given up: the agent asks for it again."""


def _read_block(path: Path, offset: int, length: int) -> tuple[bytes, str]:
    """Read one block and hash it (in a worker thread)."""
    with path.open("rb") as file:
        file.seek(offset)
        data = file.read(length)
    return data, hashlib.sha256(data).hexdigest()


class ModelDelivery:
    """Offers the model directories under ``models_dir`` and answers fetches for their blocks.

    Use as an async context manager: it connects, scans and publishes its
    offers (again after every reconnect), and serves until the block exits.

    Args:
        broker: Broker URL.
        node_id: This node's id (a hub's id, or a registry's); unique per broker.
        models_dir: Searched recursively for segments and split directories.
        prefix: Topic prefix.
        block_size: Bytes per block.
        max_fetches: Fetches served at a time, all agents together.
        max_fetches_per_agent: Fetches served at a time for one agent.
        max_message_bytes: The largest message the broker takes from this node.
        rescan_s: Seconds between two scans of ``models_dir`` for versions
            added or removed (:meth:`rescan`); ``None``: only at start.
        on_change: Called with the models whose offers a scan changed, before
            the new offers are published (a hub rescans its tails then).

    Raises:
        ConfigError: A bound is below 1, ``rescan_s`` is not positive, or a block would not fit a message.
    """

    def __init__(
        self,
        broker: str,
        *,
        node_id: str,
        models_dir: Path,
        prefix: str = "edgecut",
        block_size: int = DEFAULT_BLOCK_BYTES,
        max_fetches: int = 16,
        max_fetches_per_agent: int = 4,
        max_message_bytes: int = 16 * 1024 * 1024,
        rescan_s: float | None = 10.0,
        on_change: Callable[[list[str]], None] | None = None,
    ) -> None:
        if min(max_fetches, max_fetches_per_agent) < 1:
            msg = "max_fetches and max_fetches_per_agent must be at least 1"
            raise ConfigError(msg)
        if rescan_s is not None and not rescan_s > 0:
            msg = f"rescan_s must be above 0 seconds, not {rescan_s}"
            raise ConfigError(msg)
        if block_size + BLOCK_ENVELOPE_BYTES > max_message_bytes:
            msg = f"block_size {block_size} does not fit in a message of {max_message_bytes} bytes"
            raise ConfigError(msg)
        self.node_id = node_id
        self._topics = Topics(prefix)
        self._models_dir = models_dir
        self._block_size = block_size
        self._max_fetches = max_fetches
        self._max_fetches_per_agent = max_fetches_per_agent
        self._catalog = Catalog(offers={}, held={})
        self._hashes = FileHashes()
        self._rescan_s = rescan_s
        self._on_change = on_change
        self._scanning = asyncio.Lock()
        self._serving: collections.Counter[str] = collections.Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self.blocks_sent = 0
        """Blocks published so far."""
        self.refused: collections.Counter[str] = collections.Counter()
        """Fetches refused, by error code."""
        self.connection = Connection(
            broker,
            client_id=f"{node_id}.models",
            subscriptions=[(self._topics.all_fetches(node_id), 1)],
            on_message=self._accept,
            on_connect=self._publish_offers,
            max_message_bytes=max_message_bytes,
        )

    @property
    def catalog(self) -> Catalog:
        """What this node offers (empty until it has scanned its directory)."""
        return self._catalog

    async def __aenter__(self) -> Self:
        self._catalog = await self._scan()
        for model, offer in self._catalog.offers.items():
            logger.info("delivering %s: versions %s", model, ", ".join(v.version for v in offer.versions))
        await self.connection.__aenter__()
        if self._rescan_s is not None:
            self._spawn(self._rescan_every(self._rescan_s))
        return self

    async def rescan(self) -> list[str]:
        """Scan the models directory again and publish the offers that changed.

        Returns:
            The models whose offer changed (a version added or removed), or that are no longer offered.
        """
        async with self._scanning:
            old = self._catalog.offers
            self._catalog = await self._scan()
            new = self._catalog.offers
            changed = sorted(model for model in old.keys() | new.keys() if old.get(model) != new.get(model))
            if changed and self._on_change is not None:
                self._on_change(changed)
            for model in changed:
                offer = new.get(model)
                versions = ", ".join(v.version for v in offer.versions) if offer is not None else "none"
                logger.info("delivering %s: versions %s", model, versions)
                payload = encode_offer(offer) if offer is not None else b""  # empty: the retained offer cleared
                topic = self._topics.offer(self.node_id, model)
                try:
                    await self.connection.publish(topic, payload, qos=1, retain=True, timeout=_PUBLISH_TIMEOUT_S)
                except EdgecutError as exc:  # offline: every offer is published again on reconnecting
                    logger.info("offer of %s not published yet: %s", model, exc)
            return changed

    async def _scan(self) -> Catalog:
        return await asyncio.to_thread(scan_offers, self._models_dir, self.node_id, self._block_size, self._hashes)

    async def _rescan_every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.rescan()
            except OSError as exc:  # the directory gone for a moment: the offers stand
                logger.warning("could not scan %s: %s", self._models_dir, exc)

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.gather(*(cancel_and_wait(task) for task in list(self._tasks)))
        await self.connection.__aexit__(None, None, None)

    async def _publish_offers(self) -> None:
        for model, offer in self._catalog.offers.items():
            topic = self._topics.offer(self.node_id, model)
            await self.connection.publish(topic, encode_offer(offer), qos=1, retain=True, timeout=_PUBLISH_TIMEOUT_S)

    def _accept(self, incoming: Incoming) -> None:
        try:
            agent_id = self._topics.agent_of_fetch(self.node_id, incoming.topic)
        except ValueError:
            logger.debug("dropped a fetch on %s: its topic names no valid agent", incoming.topic)
            return
        # The agent is the topic's (which a broker ACL restricts): blocks go to its blocks topic only.
        try:
            fetch = decode_fetch(incoming.payload)
        except ProtocolError as exc:
            self._refuse(agent_id, peek_request_id(incoming.payload) or "unreadable", exc.code, str(exc))
            return
        held = self._catalog.find(fetch.model, fetch.version)
        file = held.offered.file(fetch.file) if held is not None else None
        if held is None or file is None:
            msg = f"{self.node_id} delivers no file {fetch.file!r} of {fetch.model} version {fetch.version}"
            self._refuse(agent_id, fetch.request_id, ErrorCode.UNKNOWN_MODEL, msg)
            return
        try:
            ranges = [held.offered.block_range(file, index) for index in fetch.blocks]
        except ValueError as exc:
            self._refuse(agent_id, fetch.request_id, ErrorCode.BAD_REQUEST, str(exc))
            return
        if self._serving.total() >= self._max_fetches or self._serving[agent_id] >= self._max_fetches_per_agent:
            msg = f"{self.node_id} serves as many fetches as it allows; ask again later"
            self._refuse(agent_id, fetch.request_id, ErrorCode.OVERLOADED, msg)
            return
        self._serving[agent_id] += 1
        self._spawn(self._serve(agent_id, fetch, held, ranges))

    async def _serve(self, agent_id: str, fetch: FetchRequest, held: Held, ranges: list[tuple[int, int]]) -> None:
        topic = self._topics.blocks(agent_id)
        path = held.directory / fetch.file
        try:
            for index, (offset, length) in zip(fetch.blocks, ranges, strict=True):
                data, sha256 = await asyncio.to_thread(_read_block, path, offset, length)
                block = Block(
                    fetch.request_id, self.node_id, fetch.model, fetch.version, fetch.file, index, offset, sha256, data
                )
                await self.connection.publish(topic, encode_block(block), qos=1, timeout=_PUBLISH_TIMEOUT_S)
                self.blocks_sent += 1
        except (EdgecutError, OSError) as exc:  # the agent asks again for what it lacks
            logger.info("fetch %s of %s ended early: %s", fetch.request_id, agent_id, exc)
        finally:
            self._serving[agent_id] -= 1
            if not self._serving[agent_id]:
                del self._serving[agent_id]

    def _refuse(self, agent_id: str, request_id: str, code: str, message: str) -> None:
        self.refused[code] += 1
        reply = InferenceReply.failure(request_id, self.node_id, code, message)
        self._spawn(self._send_refusal(self._topics.blocks(agent_id), encode_reply(reply)))

    async def _send_refusal(self, topic: str, payload: bytes) -> None:
        try:
            await self.connection.publish(topic, payload, qos=1, timeout=_PUBLISH_TIMEOUT_S)
        except EdgecutError as exc:
            logger.debug("a refused fetch's answer was lost: %s", exc)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

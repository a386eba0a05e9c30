"""Fetching a model over MQTT from a node that offers it (docs/protocol.md, section 9).

:func:`fetch_model` drives a :class:`~edge_agent._transfer.Transfer`: it
waits for a node's retained offer, asks for blocks within a window, checks
each block, writes it beside its bitmap in the :class:`ModelCache`, checks
every finished file's sha256 and moves the version into place when all
match. A lost connection, a stall or a restart costs only the blocks not yet
on disk.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
import uuid
from typing import TYPE_CHECKING, Final

from edge_agent._model_cache import ModelCache
from edge_agent._transfer import Transfer
from protocol import (
    DEFAULT_PREFIX,
    Block,
    ErrorCode,
    Topics,
    check_delivery_name,
    decode_block,
    decode_offer,
    encode_fetch,
)
from protocol.errors import ModelError, ProtocolError, TransportError
from protocol.mqtt import BrokerURL, Connection

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from edge_agent._model_cache import PartialVersion
    from protocol import ModelOffer, OfferedVersion
    from protocol.mqtt import Incoming

logger = logging.getLogger("edgecut.agent")

_RECONNECTED: Final = None
"""Queued when the connection comes back: blocks asked for on the lost one are asked for again."""
_OVERLOADED_PAUSE_S = 0.5


@dataclasses.dataclass(frozen=True, slots=True)
class FetchProgress:
    """How far a model's fetch has come.

    Attributes:
        model: The model.
        version: The version fetched.
        node_id: The node it comes from.
        received_bytes: Bytes on disk and checked so far, ``resumed_bytes`` included.
        total_bytes: Bytes of the whole version.
        resumed_bytes: Bytes an earlier, interrupted fetch had left on disk.
    """

    model: str
    version: str
    node_id: str
    received_bytes: int
    total_bytes: int
    resumed_bytes: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FetchSettings:
    """How a fetch waits and how many blocks it keeps in flight.

    Attributes:
        connect_s: For the first broker connection.
        offer_s: For a node's offer of the model (and version) asked for.
        stall_s: With blocks asked for and none arriving this long, ask for them again.
        max_stalls: Give up after this many stalls in a row.
        blocks_per_fetch: Most blocks one fetch asks for.
        fetches_in_flight: Most fetches asked and not fully answered.
        max_mismatches: Give the version up once one file has had every block
            and not its sha256 this many times (the node's copy is damaged).
    """

    connect_s: float = 10.0
    offer_s: float = 10.0
    stall_s: float = 10.0
    max_stalls: int = 6
    blocks_per_fetch: int = 16
    fetches_in_flight: int = 2
    max_mismatches: int = 3


async def fetch_model(
    broker: str,
    model: str,
    *,
    cache: ModelCache | Path,
    version: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    agent_id: str | None = None,
    settings: FetchSettings | None = None,
    on_progress: Callable[[FetchProgress], None] | None = None,
) -> Path:
    """The directory of ``model`` (a segments or split directory) in ``cache``, fetched first if it is not there.

    Without ``version``, the newest version offered is the one wanted; a
    cache that holds it already costs no transfer. Every file is checked
    against the sha256 of the offer before the version is moved into place.

    Args:
        broker: Broker URL.
        model: The model's name, as offered.
        cache: The cache (or its directory, bounded at its default size).
        version: The version wanted; ``None``: the newest offered (of those
            whose staged roll-out, if any, takes ``agent_id``).
        prefix: Topic prefix.
        agent_id: This agent's id in topics (under an ACL, its user name); ``None``: the URL's user name, else random.
        settings: Waits and window.
        on_progress: Called on the event loop after every block written.

    Returns:
        The version's directory, to open as the agent's model.

    Raises:
        ModelError: No node offers the model (or version) in time, the node
            refused it, or a file of it kept failing its sha256.
        TransportError: No broker connection in time, or the node stopped answering.
        ConfigError: The version does not fit in the cache.
        ValueError: ``model`` or ``version`` is not a name a node could offer.
    """
    check_delivery_name(model, "model")
    cache = cache if isinstance(cache, ModelCache) else ModelCache(cache)
    if version is not None and (held := cache.path(model, version)) is not None:
        await asyncio.to_thread(cache.use, model, version)
        return held
    url = BrokerURL.parse(broker)
    settings = settings or FetchSettings()
    agent_id = agent_id or url.username or f"agent-{uuid.uuid4().hex[:12]}"
    fetcher = _Fetcher(url, model, Topics(prefix), agent_id, max_mismatches=settings.max_mismatches)
    return await fetcher.run(cache, version, settings, on_progress)


class Offers:
    """The offers of one model, by node, kept as they arrive (retained, and cleared with an empty message).

    Args:
        model: The model.
        topics: The topics its offers come on.
        agent_id: Who asks: the newest version it takes is the newest whose canary it is in (if any).
    """

    def __init__(self, model: str, topics: Topics, agent_id: str) -> None:
        self.model = model
        self._topics = topics
        self._agent_id = agent_id
        self.by_node: dict[str, ModelOffer] = {}
        """The latest offer of each node offering the model."""
        self.changed = asyncio.Event()
        """Set whenever an offer arrives or is cleared; clear it to wait for the next."""

    def find(self, version: str | None = None) -> tuple[str, OfferedVersion] | None:
        """The first node (by id) offering ``version`` (``None``: its newest this agent takes), and that version."""
        for node_id, offer in sorted(self.by_node.items()):
            offered = offer.version(version, agent_id=self._agent_id)
            if offered is not None:
                return node_id, offered
        return None

    def take(self, incoming: Incoming) -> None:
        """Keep the offer that ``incoming`` carries, if it is one of this model by the node of its topic."""
        try:
            node_id = self._topics.node_of_offer(self.model, incoming.topic)
            if not incoming.payload:  # a retained offer cleared
                self.by_node.pop(node_id, None)
                self.changed.set()
                return
            offer = decode_offer(incoming.payload)
        except (ValueError, ProtocolError) as exc:
            logger.warning("ignored an offer on %s: %s", incoming.topic, exc)
            return
        if (offer.node_id, offer.model) != (node_id, self.model):
            logger.warning("ignored an offer on %s naming %s of %s", incoming.topic, offer.model, offer.node_id)
            return
        self.by_node[node_id] = offer
        self.changed.set()


class _Fetcher:
    def __init__(self, url: BrokerURL, model: str, topics: Topics, agent_id: str, *, max_mismatches: int) -> None:
        self._model = model
        self._topics = topics
        self._agent_id = agent_id
        self._blocks_topic = topics.blocks(agent_id)
        self._offers = Offers(model, topics, agent_id)
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._mismatches: collections.Counter[str] = collections.Counter()
        self._max_mismatches = max_mismatches
        self._connection = Connection(
            url,
            client_id=f"{agent_id}.fetch-{uuid.uuid4().hex[:6]}",
            subscriptions=[(topics.all_offers(model), 1), (self._blocks_topic, 1)],
            on_message=self._on_message,
            on_connect=self._on_connect,
        )

    async def run(
        self,
        cache: ModelCache,
        version: str | None,
        settings: FetchSettings,
        on_progress: Callable[[FetchProgress], None] | None,
    ) -> Path:
        async with self._connection:
            await self._connection.wait_connected(settings.connect_s)
            node_id, offered = await self._offer(version, settings.offer_s)
            held = cache.path(self._model, offered.version)
            if held is not None:
                await asyncio.to_thread(cache.use, self._model, offered.version)
                return held
            partial = await asyncio.to_thread(cache.partial, self._model, offered)
            transfer = Transfer(
                offered,
                self._model,
                await asyncio.to_thread(partial.open),
                blocks_per_fetch=settings.blocks_per_fetch,
                fetches_in_flight=settings.fetches_in_flight,
                id_prefix=f"fetch-{uuid.uuid4().hex[:8]}",
            )
            progress = _Progress(self._model, offered, node_id, transfer.received_bytes, on_progress)
            logger.info(
                "fetching %s %s (%d bytes, %d on disk) from %s",
                self._model,
                offered.version,
                offered.size,
                progress.resumed_bytes,
                node_id,
            )
            await self._verify_finished(transfer, partial)
            await self._transfer(transfer, partial, node_id, settings, progress)
            return await asyncio.to_thread(cache.complete, partial)

    async def _offer(self, version: str | None, timeout_s: float) -> tuple[str, OfferedVersion]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = self._offers.find(version)
            if found is not None:
                return found
            self._offers.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                what = self._model if version is None else f"{self._model} version {version}"
                nodes = ", ".join(sorted(self._offers.by_node)) or "none"
                msg = f"no node offers {what} within {timeout_s:.1f} s (nodes offering {self._model}: {nodes})"
                raise ModelError(msg)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._offers.changed.wait(), left)

    async def _verify_finished(self, transfer: Transfer, partial: PartialVersion) -> None:
        """Check the files an interrupted fetch had every block of but had not checked yet."""
        for file in transfer.offered.files:
            if transfer.received[file.name].full and not await asyncio.to_thread(partial.verify, file):
                transfer.corrupt(file.name)

    async def _transfer(
        self, transfer: Transfer, partial: PartialVersion, node_id: str, settings: FetchSettings, progress: _Progress
    ) -> None:
        fetch_topic = self._topics.fetch(node_id, self._agent_id)
        stalls = 0
        while not transfer.done:
            for fetch in transfer.next_fetches():
                with contextlib.suppress(TransportError):  # lost: asked again once reconnected
                    await self._connection.publish(fetch_topic, encode_fetch(fetch), qos=1, timeout=settings.stall_s)
            try:
                payload = await asyncio.wait_for(self._inbox.get(), settings.stall_s)
            except TimeoutError:
                stalls += 1
                if stalls >= settings.max_stalls:
                    msg = f"{node_id} sent no block of {self._model} for {stalls * settings.stall_s:.0f} s"
                    raise TransportError(msg) from None
                logger.warning("no block from %s for %.1f s: asking again", node_id, settings.stall_s)
                transfer.lost()
                continue
            stalls = 0
            if payload is None:  # _RECONNECTED
                transfer.lost()
                continue
            block = await self._read(payload, transfer)
            if block is not None and await self._store(block, transfer, partial):
                progress.update(transfer.received_bytes)

    async def _read(self, payload: bytes, transfer: Transfer) -> Block | None:
        try:
            message = decode_block(payload)
        except ProtocolError as exc:
            logger.warning("dropped an unreadable message on %s: %s", self._blocks_topic, exc)
            return None
        if isinstance(message, Block):
            return message
        error = message.error
        if error is None:
            return None
        if error.code == ErrorCode.OVERLOADED:
            transfer.refused(message.request_id)
            await asyncio.sleep(_OVERLOADED_PAUSE_S)
            return None
        what = f"{self._model} {transfer.offered.version}"
        msg = f"{message.hub_id} refused a fetch of {what}: {error.code}: {error.message}"
        raise ModelError(msg)

    async def _store(self, block: Block, transfer: Transfer, partial: PartialVersion) -> bool:
        """Write a block that checks out; True when it was written."""
        why = transfer.check(block)
        if why is not None:
            logger.debug("dropped a block: %s", why)
            transfer.reject(block)
            return False
        file_done = transfer.take(block)
        bitmap = transfer.received[block.file]
        await asyncio.to_thread(partial.write, block.file, block.offset, block.data, bitmap)
        if file_done:
            offered = transfer.offered.file(block.file)
            if offered is not None and not await asyncio.to_thread(partial.verify, offered):
                self._mismatch(transfer, block.file)
        return True

    def _mismatch(self, transfer: Transfer, file: str) -> None:
        """File ``file`` had every block and not its sha256: fetch it again, or give the version up."""
        self._mismatches[file] += 1
        what = f"{file} of {self._model} {transfer.offered.version}"
        if self._mismatches[file] >= self._max_mismatches:
            msg = f"{what} did not match its sha256 {self._mismatches[file]} times: the node's copy is damaged"
            raise ModelError(msg)
        logger.warning("%s did not match its sha256: fetching it again", what)
        transfer.corrupt(file)

    def _on_message(self, incoming: Incoming) -> None:
        if incoming.topic == self._blocks_topic:
            self._inbox.put_nowait(incoming.payload)
        else:
            self._offers.take(incoming)

    async def _on_connect(self) -> None:
        if self._connection.connects > 1:
            self._inbox.put_nowait(_RECONNECTED)


class _Progress:
    def __init__(
        self,
        model: str,
        offered: OfferedVersion,
        node_id: str,
        resumed_bytes: int,
        callback: Callable[[FetchProgress], None] | None,
    ) -> None:
        self._model = model
        self._offered = offered
        self._node_id = node_id
        self.resumed_bytes = resumed_bytes
        self._callback = callback

    def update(self, received_bytes: int) -> None:
        if self._callback is not None:
            self._callback(
                FetchProgress(
                    self._model,
                    self._offered.version,
                    self._node_id,
                    received_bytes,
                    self._offered.size,
                    self.resumed_bytes,
                )
            )

"""A fetched model's versions served one after another: the newer one opened beside, checked, switched to.

:class:`ServedModel` holds the agent that serves a configured model and
switches it between requests: a request takes the agent current when it
starts and finishes on it, so no request is dropped or runs on two versions.
A version switched to is **on trial** for its first requests made online, with
the one it replaced still open: a trial request that fails (an error, or outputs holding
NaN or infinity) rolls the model back at once and is run again on the
previous version, and the failed version is remembered as bad. Once the
trial passes, the previous version's agent closes when its last request is
done.

:func:`follow_versions` watches a model's offers (docs/protocol.md, section
9) and brings each newer version in: fetched into the cache (every file
checked against its sha256), opened beside the running one, checked by a
first request run on the device, then switched to.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from typing import TYPE_CHECKING

import numpy as np

from edge_agent._fetch import Offers, fetch_model
from models import EDGE_ONLY
from protocol import Topics, version_of
from protocol.errors import EdgecutError, ModelError, TransportError
from protocol.mqtt import BrokerURL, Connection

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping
    from pathlib import Path

    from edge_agent._agent import EdgeAgent
    from edge_agent._model_cache import ModelCache
    from edge_agent._results import InferenceResult

logger = logging.getLogger("edgecut.agent")

_RETRY_S = 5.0
"""After a fetch lost its broker, the next try at the same version."""


def version_of_agent(agent: EdgeAgent) -> str:
    """The version of the model ``agent`` runs (``protocol.version_of`` its sha256)."""
    return version_of(agent.model.model_sha256)


def unusable(result: InferenceResult) -> str | None:
    """Why a result cannot be used (a float output holding NaN or infinity), or ``None`` when it can."""
    for name, array in result.outputs.items():
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            return f"output {name} holds NaN or infinity"
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class VersionState:
    """Which version of a model runs, and why (``GET /v2/models/NAME``'s ``parameters.update``).

    Attributes:
        version: The version serving new requests.
        state: ``"serving"``, or ``"on trial"`` while its first requests decide.
        previous: The version it replaced (``None`` at first).
        why: How it came to run.
        bad: Versions refused or rolled back, each with why: not tried again.
    """

    version: str
    state: str
    previous: str | None
    why: str
    bad: dict[str, str]


class ServedModel:
    """One model's agent, replaced by a newer version between requests, and rolled back when that one fails.

    Args:
        name: The model's name in the API.
        agent: The agent serving it now (entered).
        trial_requests: How many first requests made online a new version must answer before it is kept.
        on_closed: Called with each version whose agent closed (to unpin it in the cache).
        bad: Versions known bad already (refused or rolled back before a restart), with why.
        on_bad: Called with each version found bad, and why (to remember it across restarts).
    """

    def __init__(
        self,
        name: str,
        agent: EdgeAgent,
        *,
        trial_requests: int,
        on_closed: Callable[[str], None] | None = None,
        bad: Mapping[str, str] | None = None,
        on_bad: Callable[[str, str], None] | None = None,
    ) -> None:
        self.name = name
        self.agent = agent
        """The agent new requests go to."""
        self._trial_requests = trial_requests
        self._on_closed = on_closed
        self._previous: EdgeAgent | None = None
        self._trials_left = 0
        self._in_flight: dict[EdgeAgent, int] = {}
        self._idle: dict[EdgeAgent, asyncio.Event] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._why = "opened at start"
        self._previous_version: str | None = None
        self.bad: dict[str, str] = dict(bad or {})
        """Versions refused or rolled back, with why: not tried again."""
        self._on_bad = on_bad
        self.settled = asyncio.Event()
        """Set while no version is on trial (a newer one may be switched to)."""
        self.settled.set()

    @property
    def version(self) -> str:
        """The version new requests run on."""
        return version_of_agent(self.agent)

    def state(self) -> VersionState:
        """Which version runs, and why."""
        return VersionState(
            version=self.version,
            state="serving" if self._previous is None else "on trial",
            previous=self._previous_version,
            why=self._why,
            bad=dict(self.bad),
        )

    async def infer(self, run: Callable[[EdgeAgent], Awaitable[InferenceResult]]) -> InferenceResult:
        """``run`` on the current agent; on a version on trial that fails, roll back and ``run`` on the previous one.

        Raises:
            EdgecutError: As ``run`` raises (on a version not on trial, or on the previous one too).
        """
        agent = self.agent
        on_trial = self._previous is not None
        online = agent.connected  # a trial counts the requests that met the hub, not those run offline
        self._in_flight[agent] = self._in_flight.get(agent, 0) + 1
        self._idle.setdefault(agent, asyncio.Event()).clear()
        problem: str | None = None
        try:
            result = await run(agent)
        except (EdgecutError, RuntimeError) as exc:
            if not on_trial:
                raise
            problem = f"{type(exc).__name__}: {exc}"
        else:
            problem = unusable(result) if on_trial else None
            if problem is None:
                if on_trial and online and agent is self.agent:
                    await self._passed()
                return result
        finally:
            self._in_flight[agent] -= 1
            if not self._in_flight[agent]:
                self._idle[agent].set()
        await self.roll_back(agent, problem)
        return await self.infer(run)

    async def switch(self, agent: EdgeAgent) -> None:
        """Send new requests to ``agent`` (entered, checked); the current one stays open until the trial passes."""
        if self._previous is not None:
            msg = f"{self.name}: a version is on trial already"
            raise RuntimeError(msg)
        old, self.agent = self.agent, agent
        self._previous_version = version_of_agent(old)
        self._why = f"switched from {self._previous_version}"
        logger.info("%s: switched from %s to %s", self.name, self._previous_version, self.version)
        if self._trial_requests:  # before the first await: every request from now on sees the trial
            self._previous = old
            self._trials_left = self._trial_requests
            self.settled.clear()
        await agent.announce()
        await old.announce(announcing=False)
        if not self._trial_requests:
            self._retire(old)

    async def roll_back(self, agent: EdgeAgent, why: str) -> None:
        """Drop ``agent``'s version, on trial, for the one it replaced (nothing when that happened already)."""
        previous = self._previous
        if agent is not self.agent or previous is None:
            return
        bad = version_of_agent(agent)
        self._remember_bad(bad, why)
        self.agent, self._previous = previous, None
        self._previous_version = bad
        self._why = f"rolled back from {bad}: {why}"
        logger.warning("%s: rolled back from %s to %s: %s", self.name, bad, self.version, why)
        await previous.announce()
        await agent.announce(announcing=False)
        self._retire(agent)
        self.settled.set()

    def refuse(self, version: str, why: str) -> None:
        """Remember ``version`` as bad without having run it (its fetch or its check failed)."""
        logger.warning("%s: version %s refused: %s", self.name, version, why)
        self._remember_bad(version, why)

    def _remember_bad(self, version: str, why: str) -> None:
        self.bad[version] = why
        if self._on_bad is not None:
            self._on_bad(version, why)

    async def aclose(self) -> None:
        """Close every agent: the current one, one kept for a rollback, those finishing their requests."""
        for agent in (self.agent, self._previous):
            if agent is not None:
                self._retire(agent)
        await asyncio.gather(*self._closing, return_exceptions=True)

    async def _passed(self) -> None:
        self._trials_left -= 1
        if self._trials_left > 0 or self._previous is None:
            return
        previous, self._previous = self._previous, None
        logger.info("%s: version %s passed its %d first requests", self.name, self.version, self._trial_requests)
        self._retire(previous)
        self.settled.set()

    def _retire(self, agent: EdgeAgent) -> None:
        """Close ``agent`` once its requests under way are done."""
        task = asyncio.create_task(self._close(agent), name=f"edgecut[{agent.agent_id}].retire")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, agent: EdgeAgent) -> None:
        idle = self._idle.get(agent)
        if idle is not None:
            await idle.wait()
        self._idle.pop(agent, None)
        self._in_flight.pop(agent, None)
        version = version_of_agent(agent)
        await agent.__aexit__(None, None, None)
        if self._on_closed is not None:
            self._on_closed(version)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """Where a model's versions come from: the broker, the model's name there, and the cache they go to.

    Attributes:
        broker: Broker URL.
        model: The model's name, as offered.
        cache: Where versions are fetched to.
        prefix: Topic prefix.
        agent_id: Who fetches, in topics.
    """

    broker: str
    model: str
    cache: ModelCache
    prefix: str
    agent_id: str


async def follow_versions(
    served: ServedModel, source: Source, open_agent: Callable[[Path], EdgeAgent], *, retry_s: float = _RETRY_S
) -> None:
    """Switch ``served`` to each newer version its offers name, until cancelled.

    The version wanted is the newest that the first node (by id) offers, of
    those whose canary (a staged roll-out) takes this agent's id. It
    is fetched (checked file by file), opened by ``open_agent`` beside the
    one serving (silent: it announces once switched to), checked, and
    switched to; a version that fails any of this is refused, and not tried
    again. A fetch that lost the broker is tried again after ``retry_s``.
    """
    offers = Offers(source.model, Topics(source.prefix), source.agent_id)
    url = BrokerURL.parse(source.broker)
    connection = Connection(
        url,
        client_id=f"{source.agent_id}.versions-{uuid.uuid4().hex[:6]}",
        subscriptions=[(Topics(source.prefix).all_offers(source.model), 1)],
        on_message=offers.take,
    )
    async with connection:
        while True:
            await offers.changed.wait()
            await served.settled.wait()
            offers.changed.clear()
            found = offers.find()
            if found is None or found[1].version == served.version or found[1].version in served.bad:
                continue
            version = found[1].version
            try:
                agent = await _bring_in(served, source, version, open_agent)
            except TransportError as exc:
                logger.info("%s: version %s not fetched yet: %s", served.name, version, exc)
                await asyncio.sleep(retry_s)
                offers.changed.set()
                continue
            except (EdgecutError, RuntimeError, ValueError) as exc:
                served.refuse(version, f"{type(exc).__name__}: {exc}")
                continue
            await served.switch(agent)


async def _bring_in(
    served: ServedModel, source: Source, version: str, open_agent: Callable[[Path], EdgeAgent]
) -> EdgeAgent:
    """``version`` fetched, opened and checked: an entered agent, not yet announcing."""
    logger.info("%s: bringing in version %s", served.name, version)
    directory = await fetch_model(
        source.broker, source.model, cache=source.cache, version=version, prefix=source.prefix, agent_id=source.agent_id
    )
    source.cache.pin(source.model, version)
    agent = open_agent(directory)
    try:
        await agent.__aenter__()
    except BaseException:
        source.cache.unpin(source.model, version)
        raise
    try:
        if served.agent.connected:  # not switched to offline while the serving one is online
            await agent.wait_connected()
        await check_version(agent, served.agent)
    except BaseException:
        await agent.__aexit__(None, None, None)
        source.cache.unpin(source.model, version)
        raise
    return agent


async def check_version(agent: EdgeAgent, serving: EdgeAgent) -> None:
    """A first request on the device: ``agent`` answers, with the outputs ``serving`` has, every value finite.

    Raises:
        ModelError: Its inputs or outputs differ from the serving version's, or an output is NaN or infinite.
    """
    new, old = agent.model, serving.model
    for what, theirs, ours in (("inputs", old.inputs, new.inputs), ("outputs", old.outputs, new.outputs)):
        if [(s.name, s.dtype) for s in theirs] != [(s.name, s.dtype) for s in ours]:
            msg = f"its {what} differ from the serving version's: {ours} vs {theirs}"
            raise ModelError(msg)
    inputs = {spec.name: np.zeros(new.input_shapes[spec.name], spec.dtype) for spec in new.inputs}
    result = await agent.infer(inputs, cut=EDGE_ONLY)
    problem = unusable(result)
    if problem is not None:
        msg = f"its first request on the device: {problem}"
        raise ModelError(msg)

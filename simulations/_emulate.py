"""Emulate mode: a scenario on real processes and sockets, in wall-clock time.

A broker (``LocalBroker``: mosquitto, else the embedded one), hub replicas as
``edgecut hub`` processes (one ORT thread per worker, every candidate cut of
every model preloaded), and the scenario's agents: real
:class:`edge_agent.EdgeAgent` objects, each behind its own emulated link
(:class:`simulations.LinkProxy`) and running as a device of its profile's
speed (:func:`simulations.stretched_sessions`). The agents run in this
process, on one event loop, so tens of them are the practical limit on a
small machine. Arrivals draw from the same named streams as fleet mode.
Faults act on the real things: a link's proxy changes rate, a hub process
is killed and started again (outages: fleet mode only, for now).

Every finished request becomes the same :class:`RequestRecord` fleet mode
writes (times in seconds from the run's start).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import time
import uuid
import zlib
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np

from cloud_hub import HubProcess, LocalBroker, wait_online
from edge_agent import CLOUD_ONLY, EDGE_ONLY, EdgeAgent, Timeouts
from protocol.errors import ConfigError
from simulations._devices import PROFILES, stretched_sessions
from simulations._fleet import RequestRecord
from simulations._link import LinkSpec
from simulations._proxy import LinkProxy

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from edge_agent import InferenceResult, SessionFactory
    from simulations._calibrate import ModelProfile
    from simulations._scenario import FaultSpec, GroupSpec, Scenario

_POLICY_CUTS = {"edge": EDGE_ONLY, "cloud": CLOUD_ONLY}
_ONLINE_TIMEOUT_S = 120.0


@dataclasses.dataclass(frozen=True, slots=True)
class _Member:
    """One emulated agent: its name, group, policy, the agent and its link."""

    name: str
    group: GroupSpec
    policy: str
    agent: EdgeAgent
    proxy: LinkProxy


async def run_emulated(
    scenario: Scenario,
    profiles: dict[str, ModelProfile],
    record: Callable[[RequestRecord], None],
    *,
    policy: str | None = None,
) -> None:
    """Run ``scenario`` once, for ``duration_s`` of wall-clock time, every group using ``policy`` (or its own)."""
    prefix = f"emulate-{uuid.uuid4().hex[:8]}"
    quiet = logging.getLogger("edgecut.agent")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # fallbacks are expected here, and every one is in the records
    try:
        await _run(scenario, profiles, record, policy=policy, prefix=prefix)
    finally:
        quiet.setLevel(level)


async def _run(
    scenario: Scenario,
    profiles: dict[str, ModelProfile],
    record: Callable[[RequestRecord], None],
    *,
    policy: str | None,
    prefix: str,
) -> None:
    preload = [f"{name}:{cut.id}" for name, profile in profiles.items() for cut in profile.cuts if cut.id != EDGE_ONLY]
    with LocalBroker() as broker, _hub_processes(broker.url, prefix, scenario, preload) as hubs:
        await wait_online(broker.url, prefix, [hub.hub_id for hub in hubs], _ONLINE_TIMEOUT_S)
        upstream = urlsplit(broker.url)
        async with contextlib.AsyncExitStack() as stack:
            agents = []
            for group in scenario.groups:
                chosen = policy or group.policy
                for index in range(group.count):
                    name = f"{group.name}-{index}"
                    proxy = await stack.enter_async_context(
                        LinkProxy(
                            group.link, upstream=(upstream.hostname or "", upstream.port or 0), seed=scenario.seed
                        )
                    )
                    url = broker.url.replace(f":{upstream.port}", f":{proxy.port}")
                    agent = await stack.enter_async_context(
                        EdgeAgent(
                            url,
                            model=group.model,
                            cut="auto" if chosen == "auto" else _POLICY_CUTS.get(chosen, chosen),
                            agent_id=name,
                            prefix=prefix,
                            threads=1,
                            session_factory=_device(group.device),
                            timeouts=Timeouts(request=group.deadline_s, retry=None),
                            state_dir=None,
                        )
                    )
                    agents.append(_Member(name, group, chosen, agent, proxy))
            started = time.monotonic()
            run = policy or "scenario"
            tasks = [
                asyncio.create_task(_agent(member, scenario, started=started, record=record, run=run))
                for member in agents
            ]
            tasks += [asyncio.create_task(_fault(fault, agents, hubs, started)) for fault in scenario.faults]
            await asyncio.sleep(scenario.duration_s)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _device(name: str) -> SessionFactory | None:
    factor = PROFILES[name].factor
    return stretched_sessions(factor) if factor > 1 else None


@contextlib.contextmanager
def _hub_processes(broker: str, prefix: str, scenario: Scenario, preload: list[str]) -> Iterator[list[HubProcess]]:
    """The replicas, started; stopped on the way out."""
    spec = scenario.hub
    options = ["--workers", str(spec.workers), "--threads", "1", "--max-queue", str(spec.max_queue)]
    options += ["--status-interval", str(spec.status_interval_s)]
    for item in preload:
        options += ["--preload", item]
    hubs = [
        HubProcess(broker, prefix=prefix, hub_id=f"hub-{index}", options=options, quiet=True)
        for index in range(spec.replicas)
    ]
    with contextlib.ExitStack() as stack:
        for hub in hubs:
            stack.enter_context(hub)
        yield hubs


async def _agent(
    member: _Member, scenario: Scenario, *, started: float, record: Callable[[RequestRecord], None], run: str
) -> None:
    name, group, agent = member.name, member.group, member.agent
    arrivals = random.Random(f"{scenario.seed}/{name}/arrivals")  # noqa: S311 - the fleet's stream, by name
    spec = agent.model.inputs[0]
    shape = tuple(dim if isinstance(dim, int) else 1 for dim in spec.shape[1:])
    rng = np.random.default_rng(zlib.crc32(f"{scenario.seed}/{name}/inputs".encode()))
    inputs = rng.integers(0, 256, shape).astype(spec.dtype)
    pending: set[asyncio.Task[None]] = set()

    async def one() -> None:
        at = time.monotonic()
        result = await agent.infer(inputs)
        record(_record(run, member, at - started, result))

    try:
        if group.arrival == "closed":
            while True:
                await one()
                await asyncio.sleep(group.think_s)
        await asyncio.sleep(arrivals.uniform(0, 1 / group.rate_hz))
        while True:
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            await asyncio.sleep(arrivals.expovariate(group.rate_hz))
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _record(run: str, member: _Member, start_s: float, result: InferenceResult) -> RequestRecord:
    timings = result.timings
    return RequestRecord(
        run=run,
        group=member.group.name,
        agent=member.name,
        policy=member.policy,
        start_s=start_s,
        cut=result.cut_id,
        bytes_up=result.bytes_sent,
        edge_ms=timings.edge_ms + timings.encode_ms,
        network_ms=timings.network_ms,
        hub_queue_ms=timings.hub_queue_ms,
        hub_compute_ms=timings.hub_compute_ms,
        fallback_ms=timings.fallback_ms,
        total_ms=timings.total_ms,
        predicted_ms=result.predicted_ms if not math.isnan(result.predicted_ms) else math.nan,
        fallback=result.fallback or "",
        hub=result.hub_id or "",
    )


async def _fault(fault: FaultSpec, agents: list[_Member], hubs: list[HubProcess], started: float) -> None:
    await asyncio.sleep(max(0.0, started + fault.at_s - time.monotonic()))
    proxies = [member.proxy for member in agents if member.group.name == fault.group]
    if fault.kind == "hub-down":
        hub = hubs[fault.replica or 0]
        await asyncio.to_thread(hub.kill)
        if fault.for_s is not None:
            await asyncio.sleep(fault.for_s)
            hub.start()
        return
    before = [proxy.spec for proxy in proxies]
    for proxy in proxies:
        up = dataclasses.replace(proxy.spec.up, rate_bit_s=fault.rate_bit_s, trace=None)
        down = dataclasses.replace(proxy.spec.down, rate_bit_s=fault.rate_bit_s, trace=None)
        proxy.set_spec(LinkSpec(name=f"{proxy.spec.name} at {fault.rate_bit_s} bit/s", up=up, down=down))
    if fault.for_s is not None:
        await asyncio.sleep(fault.for_s)
        for proxy, spec in zip(proxies, before, strict=True):
            proxy.set_spec(spec)


def check_emulatable(scenario: Scenario) -> None:
    """Refuse what emulate mode cannot do yet (an outage: the proxy has no blackhole).

    Raises:
        ConfigError: The scenario has an outage fault.
    """
    for index, fault in enumerate(scenario.faults):
        if fault.kind == "outage":
            msg = f"faults[{index}]: outages run in fleet mode only for now (the link proxy cannot hold bytes back)"
            raise ConfigError(msg)

"""Emulate mode: a scenario on real processes and sockets, in wall-clock time.

The scenario's broker (``[broker]``: the embedded one, mosquitto, or an
external URL), hub replicas as ``edgecut hub`` processes (one ORT thread per
worker, every candidate cut of every model preloaded unless ``[hub] preload``
is false), and the scenario's
agents: real :class:`edge_agent.EdgeAgent` objects, each in a process of its
own (:mod:`simulations._agent_process`) behind its own emulated link
(:class:`simulations.LinkProxy`, in this process) and running as a device of
its profile's speed (:func:`simulations.stretched_sessions`). Every process
shares this machine's cores, so tens of agents are the practical limit.
Arrivals are fleet mode's, drawn from the same named streams. Faults act on the
real things: a link's proxy changes rate or holds everything (an outage), a
hub process is killed and started again or stopped (SIGSTOP) and continued,
the broker is stopped and started again on its port.

Every finished request becomes the same :class:`RequestRecord` fleet mode
writes (times in seconds from the run's start).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from cloud_hub import HubProcess, LocalBroker, wait_online
from edge_agent import EDGE_ONLY
from protocol.mqtt import BrokerURL
from simulations._agent_process import AgentConfig, AgentProcess, EmulationError, log_tail
from simulations._link import LinkSpec
from simulations._proxy import LinkProxy

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from simulations._calibrate import ModelProfile
    from simulations._report import RequestRecord
    from simulations._scenario import BrokerSpec, FaultSpec, GroupSpec, Scenario

_ONLINE_TIMEOUT_S = 120.0
_READY_TIMEOUT_S = 120.0
_POLL_S = 0.05
"""How often the run checks whether the scenario's request count has finished."""
_BROKER_KINDS = {"embedded": "iotcore", "mosquitto": "mosquitto", "auto": "auto"}


@dataclasses.dataclass(frozen=True, slots=True)
class _Member:
    """One emulated agent: its group, its process and its link."""

    group: GroupSpec
    process: AgentProcess
    proxy: LinkProxy


async def run_emulated(
    scenario: Scenario,
    profiles: Mapping[str, ModelProfile],
    record: Callable[[RequestRecord], None],
    *,
    policy: str | None = None,
    tick: Callable[[float], None] | None = None,
    logs: Path | None = None,
) -> float:
    """Run ``scenario`` once, every group using ``policy`` (or its own); return the seconds it ran.

    It runs for ``duration_s`` of wall-clock time, or until ``requests``
    requests have finished (later ones are not recorded). ``tick`` is called
    about once a second with the seconds run so far. Each hub and agent
    process writes its output to ``<name>.log`` in ``logs`` (created; by
    default a temporary directory removed at the end).

    Raises:
        EmulationError: An agent process did not start or died.
        TransportError: The broker did not start.
    """
    links = logging.getLogger("edgecut.sim.link")
    level = links.level
    links.setLevel(logging.ERROR)  # a proxy refused by a restarting broker is the fault at work, not news
    try:
        return await _run(scenario, profiles, record, policy=policy, tick=tick, logs=logs)
    finally:
        links.setLevel(level)


async def _run(
    scenario: Scenario,
    profiles: Mapping[str, ModelProfile],
    record: Callable[[RequestRecord], None],
    *,
    policy: str | None,
    tick: Callable[[float], None] | None,
    logs: Path | None,
) -> float:
    prefix = f"emulate-{uuid.uuid4().hex[:8]}"
    limit = scenario.requests
    finished = 0

    def counted(item: RequestRecord) -> None:
        nonlocal finished
        if limit is None or finished < limit:
            finished += 1
            record(item)

    tails = [f"{p.model}:{cut.id}" for p in profiles.values() for cut in p.cuts if cut.id != EDGE_ONLY]
    preload = tails if scenario.hub.preload else []  # without: a hub loads each tail on its first use
    with contextlib.ExitStack() as resources:
        work = Path(resources.enter_context(tempfile.TemporaryDirectory(prefix="edgecut-emulate-")))
        logs = logs or work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        url, broker = resources.enter_context(_broker(scenario.broker))
        models = _models_dir(scenario, work / "models")
        hubs = resources.enter_context(_hub_processes(url, prefix, scenario, preload, models=models, logs=logs))
        await _online(url, prefix, hubs)
        async with contextlib.AsyncExitStack() as stack:
            members = []
            for group in scenario.groups:
                for index in range(group.count):
                    proxy = await stack.enter_async_context(_proxy(group.link, url, scenario.seed))
                    config = _config(scenario, group, index, policy, url=proxy.url_for(url), prefix=prefix)
                    process = AgentProcess(config, counted, log=logs / f"{config.name}.log")
                    stack.push_async_callback(process.stop)
                    members.append(_Member(group, process, proxy))
            starts = await asyncio.gather(
                *(member.process.start(_READY_TIMEOUT_S) for member in members), return_exceptions=True
            )
            for failure in starts:
                if isinstance(failure, BaseException):
                    raise failure
            started = asyncio.get_running_loop().time()  # the monotonic clock the children share
            for member in members:
                member.process.go(started)
            faults = [asyncio.create_task(_fault(f, members, hubs, broker, started)) for f in scenario.faults]
            ran_s = await _elapse(scenario.duration_s, started, tick, done=lambda: finished == limit)
            for task in faults:
                task.cancel()
            await asyncio.gather(*faults, return_exceptions=True)
            await asyncio.gather(*(member.process.stop() for member in members))
            for member in members:
                member.process.check()
            return ran_s


async def _elapse(
    duration_s: float, started: float, tick: Callable[[float], None] | None, *, done: Callable[[], bool]
) -> float:
    """Wait until ``duration_s`` from ``started`` or until ``done()``, ticking each second; the seconds run."""
    loop = asyncio.get_running_loop()
    ticked = started
    while (left := started + duration_s - loop.time()) > 0 and not done():
        await asyncio.sleep(min(_POLL_S, left))
        if tick is not None and loop.time() - ticked >= 1.0:
            ticked = loop.time()
            tick(min(duration_s, ticked - started))
    return min(duration_s, loop.time() - started)


def _config(
    scenario: Scenario, group: GroupSpec, index: int, policy: str | None, *, url: str, prefix: str
) -> AgentConfig:
    return AgentConfig(
        run=policy or "scenario",
        name=f"{group.name}-{index}",
        group=group.name,
        policy=policy or group.policy,
        model=group.model,
        device_factor=group.factor,
        url=url,
        prefix=prefix,
        seed=scenario.seed,
        arrival=group.arrival,
        rate_hz=group.rate_hz.points,
        think_s=group.think_s,
        start_s=group.start_s,
        stop_s=scenario.stop_s(group),
        deadline_s=group.deadline_s,
    )


@contextlib.contextmanager
def _broker(spec: BrokerSpec) -> Iterator[tuple[str, LocalBroker | None]]:
    """The broker's URL, and the broker when this run started it (an external one is only connected to)."""
    if spec.url is not None:
        yield spec.url, None
        return
    with LocalBroker(kind=_BROKER_KINDS[spec.kind]) as broker:  # type: ignore[arg-type]  # a checked kind
        yield broker.url, broker


def _proxy(link: LinkSpec, broker: str, seed: int) -> LinkProxy:
    upstream = BrokerURL.parse(broker)  # its default port per scheme (8883 for mqtts://)
    return LinkProxy(link, upstream=(upstream.host, upstream.port), seed=seed)


def _models_dir(scenario: Scenario, directory: Path) -> Path | None:
    """A directory the hubs can serve the groups' own ``.onnx`` files from (``None`` when all are zoo models).

    Each file is linked into a directory of its own, with its external data files.
    """
    files = dict.fromkeys(Path(group.model) for group in scenario.groups if Path(group.model).suffix == ".onnx")
    if not files:
        return None
    from models.partition import describe  # noqa: PLC0415 - needs onnx, which zoo-only runs do not

    for index, file in enumerate(files):
        home = directory / f"model-{index}"
        home.mkdir(parents=True)
        for name in (file.name, *describe(file).external_files):
            (home / name).symlink_to((file.parent / name).resolve())
    return directory


async def _online(url: str, prefix: str, hubs: list[HubProcess]) -> None:
    """Wait until every hub is online; a hub that exits first (a model it cannot load) fails the run at once."""
    online = asyncio.create_task(wait_online(url, prefix, [hub.hub_id for hub in hubs], _ONLINE_TIMEOUT_S))
    while not online.done():
        await asyncio.wait({online}, timeout=_POLL_S)
        for hub in hubs:
            if hub.exit_code is not None and not online.done():
                online.cancel()
                what = f"hub {hub.hub_id} exited with status {hub.exit_code} before going online"
                raise EmulationError(what + ("" if hub.log is None else f"; {log_tail(hub.log)}"))
    await online


@contextlib.contextmanager
def _hub_processes(
    broker: str, prefix: str, scenario: Scenario, preload: list[str], *, models: Path | None, logs: Path
) -> Iterator[list[HubProcess]]:
    """The replicas, started; stopped on the way out."""
    spec = scenario.hub
    options = ["--workers", str(spec.workers), "--threads", "1", "--max-queue", str(spec.max_queue)]
    options += ["--max-batch-size", str(spec.max_batch_size)]
    options += ["--status-interval", str(spec.status_interval_s)]
    if models is not None:
        options += ["--models", str(models)]
    for item in preload:
        options += ["--preload", item]
    hubs = [
        HubProcess(broker, prefix=prefix, hub_id=f"hub-{index}", options=options, log=logs / f"hub-{index}.log")
        for index in range(spec.replicas)
    ]
    with contextlib.ExitStack() as stack:
        for hub in hubs:
            stack.enter_context(hub)
        yield hubs


async def _fault(
    fault: FaultSpec, members: list[_Member], hubs: list[HubProcess], broker: LocalBroker | None, started: float
) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, started + fault.at_s - loop.time()))
    proxies = [member.proxy for member in members if member.group.name == fault.group]
    if fault.kind == "hub-down":
        hub = hubs[fault.replica or 0]
        await asyncio.to_thread(hub.kill)
        if fault.for_s is not None:
            await asyncio.sleep(fault.for_s)
            hub.start()
    elif fault.kind == "hub-stall":
        hub = hubs[fault.replica or 0]
        hub.pause()
        if fault.for_s is not None:
            await asyncio.sleep(fault.for_s)
            hub.resume()
    elif fault.kind == "broker-restart":
        assert broker is not None  # noqa: S101 - the scenario refuses restarts of an external broker
        await asyncio.to_thread(broker.stop)
        if fault.for_s is not None:
            await asyncio.sleep(fault.for_s)
            await asyncio.to_thread(broker.start)
    elif fault.kind == "outage":
        for proxy in proxies:
            proxy.cut_off()
        if fault.for_s is not None:
            await asyncio.sleep(fault.for_s)
            for proxy in proxies:
                proxy.restore()
    else:
        await _bandwidth(fault, proxies)


async def _bandwidth(fault: FaultSpec, proxies: list[LinkProxy]) -> None:
    before = [proxy.spec for proxy in proxies]
    for proxy in proxies:
        up = dataclasses.replace(proxy.spec.up, rate_bit_s=fault.rate_bit_s, trace=None)
        down = dataclasses.replace(proxy.spec.down, rate_bit_s=fault.rate_bit_s, trace=None)
        proxy.set_spec(LinkSpec(name=f"{proxy.spec.name} at {fault.rate_bit_s} bit/s", up=up, down=down))
    if fault.for_s is not None:
        await asyncio.sleep(fault.for_s)
        for proxy, spec in zip(proxies, before, strict=True):
            proxy.set_spec(spec)

"""Fleet mode's faults: what each does to the links, the hub replicas and the broker, on simulated time.

- ``bandwidth``: the group's links change rate both ways (trace or fixed),
  and change back after ``for_s``.
- ``outage``: the group's links hold every byte until it ends.
- ``hub-down``: the replica stops, losing what it holds, and comes back (after its ``start_s``).
- ``hub-stall``: the replica hangs, holding what it has; the broker keeps
  routing to it until it drops it for silence (losing what it held).
- ``broker-restart``: every client loses the broker and reconnects on the
  runtime's own backoff once it is back (:func:`reconnected`).
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import TYPE_CHECKING

from protocol.mqtt import Backoff

if TYPE_CHECKING:
    from collections.abc import Generator, Sequence

    import simpy

    from simulations._fleet_agent import SimulatedAgent
    from simulations._hubs import Hub, Hubs
    from simulations._scenario import FaultSpec

_DROPPED_AFTER_S = 15.0
"""A broker drops a silent client 1.5 keepalives (10 s: protocol.mqtt.Connection's) after its last packet."""


def fault_process(
    env: simpy.Environment, fault: FaultSpec, agents: Sequence[SimulatedAgent], hubs: Hubs, seed: int
) -> Generator[simpy.Event, object, None]:
    """The process of one fault: it waits for ``fault.at_s``, then acts (and undoes it after ``for_s``)."""
    yield env.timeout(fault.at_s)
    affected = [agent for agent in agents if agent.group.name == fault.group]
    ends = env.now + (math.inf if fault.for_s is None else fault.for_s)
    if fault.kind == "hub-stall":
        yield from _hub_stall(env, hubs.replicas[fault.replica or 0], ends)
    elif fault.kind == "hub-down":
        hub = hubs.replicas[fault.replica or 0]
        hub.stop()
        if fault.for_s is not None:
            yield env.timeout(fault.for_s + hubs.start_s)  # restarted, then starting up
            hub.up = True
    elif fault.kind == "broker-restart":
        _broker_restart(env.now, ends, agents, hubs, seed)
    elif fault.kind == "outage":
        for agent in affected:
            agent.outage_until_s = ends
    else:
        yield from _bandwidth(env, fault, affected)


def _bandwidth(
    env: simpy.Environment, fault: FaultSpec, affected: Sequence[SimulatedAgent]
) -> Generator[simpy.Event, object, None]:
    before = [(agent.up.spec, agent.down.spec) for agent in affected]
    for agent in affected:
        agent.up.spec = dataclasses.replace(agent.up.spec, rate_bit_s=fault.rate_bit_s, trace=None)
        agent.down.spec = dataclasses.replace(agent.down.spec, rate_bit_s=fault.rate_bit_s, trace=None)
    if fault.for_s is not None:
        yield env.timeout(fault.for_s)
        for agent, (up, down) in zip(affected, before, strict=True):
            agent.up.spec, agent.down.spec = up, down


def _hub_stall(env: simpy.Environment, hub: Hub, ends: float) -> Generator[simpy.Event, object, None]:
    """A replica hangs: the broker keeps routing to it until it drops it for silence, losing what it held."""
    hub.stalled_until = ends
    if ends - env.now <= _DROPPED_AFTER_S:
        return
    yield env.timeout(_DROPPED_AFTER_S)
    hub.stop()
    if not math.isinf(ends):
        yield env.timeout(ends - env.now)
        hub.up = True  # it wakes, reconnects and serves again


def _broker_restart(down_s: float, back_s: float, agents: Sequence[SimulatedAgent], hubs: Hubs, seed: int) -> None:
    """Every client loses the broker at ``down_s`` and reconnects on its backoff schedule once it is back.

    What the broker held is lost; agents publish their open requests again
    on reconnecting and hubs answer repeats from their reply cache, so an
    agent's transfers wait until both it and a hub are connected again.
    """
    first_hub = min(
        reconnected(down_s, back_s, random.Random(f"{seed}/{hub.name}/reconnect"))  # noqa: S311
        for hub in hubs.replicas
    )
    for agent in agents:
        mine = reconnected(down_s, back_s, random.Random(f"{seed}/{agent.name}/reconnect"))  # noqa: S311
        agent.outage_until_s = max(agent.outage_until_s, mine, first_hub)


def reconnected(down_s: float, back_s: float, rng: random.Random) -> float:
    """When a client that lost its broker at ``down_s`` is connected again, the broker being back at ``back_s``."""
    if math.isinf(back_s):
        return back_s
    attempt = down_s
    for pause in Backoff().delays(rng):
        attempt += pause
        if attempt >= back_s:
            return attempt
    return attempt  # pragma: no cover - delays() never ends

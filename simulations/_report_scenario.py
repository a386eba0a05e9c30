"""The scenario as the report shows it: its groups, links, hub and faults as rows of words.

Every function returns plain strings; :mod:`simulations._report_page`
escapes them and lays them out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulations._tc import format_rate

if TYPE_CHECKING:
    from simulations._link import DirectionSpec, LinkSpec
    from simulations._scenario import FaultSpec, GroupSpec, Scenario

GROUP_COLUMNS = ("group", "agents", "model", "device", "uplink", "downlink", "arrivals", "policy", "deadline", "in run")
FAULT_COLUMNS = ("from", "to", "fault", "on", "what")


def group_rows(scenario: Scenario) -> list[tuple[str, ...]]:
    """A row per group, in :data:`GROUP_COLUMNS`' order."""
    policy = "each run's" if scenario.policies else None
    return [
        (
            group.name,
            f"{group.count:,}",
            group.model,
            group.device,
            _direction(group.link, group.link.up),
            _direction(group.link, group.link.down),
            _arrivals(group),
            policy or group.policy,
            f"{group.deadline_s:g} s",
            f"{group.start_s:g}-{scenario.stop_s(group):g} s",
        )
        for group in scenario.groups
    ]


def fault_rows(scenario: Scenario) -> list[tuple[str, ...]]:
    """A row per fault, in :data:`FAULT_COLUMNS`' order."""
    return [
        (
            f"{fault.at_s:g} s",
            "the end" if fault.for_s is None else f"{fault.at_s + fault.for_s:g} s",
            fault.kind,
            _target(fault),
            f"{format_rate(fault.rate_bit_s)} both ways" if fault.rate_bit_s is not None else "",
        )
        for fault in scenario.faults
    ]


def hub_line(scenario: Scenario, mode: str, *, searched: bool = False) -> str:
    """The hub replicas (``searched``: as many as each point), their workers and queues (and emulate mode's broker)."""
    hub = scenario.hub
    replicas = "Hub replicas (as many as each point says)" if searched else f"{hub.replicas} hub replica"
    line = (
        f"{replicas}{'s' if hub.replicas > 1 and not searched else ''} of {hub.workers} worker"
        f"{'s' if hub.workers > 1 else ''}, queue {hub.max_queue}, status every {hub.status_interval_s:g} s"
    )
    if mode == "emulate":
        broker = scenario.broker
        line += f"; broker: {broker.url or broker.kind}"
    return line


def _direction(link: LinkSpec, direction: DirectionSpec) -> str:
    if direction.trace is not None:
        rate = f"trace {link.name}"
    elif direction.rate_bit_s is None:
        rate = "unlimited"
    else:
        rate = format_rate(direction.rate_bit_s)
    parts = [rate, f"{direction.delay_s * 1000:g} ms"]
    if direction.jitter_s:
        parts.append(f"jitter {direction.jitter_s * 1000:g} ms")
    if direction.loss:
        parts.append(f"loss {direction.loss:g}")
    return ", ".join(parts)


def _arrivals(group: GroupSpec) -> str:
    if group.arrival == "closed":
        return f"closed, think {group.think_s:g} s"
    rates = [rate for _, rate in group.rate_hz.points]
    if len(set(rates)) == 1:
        return f"Poisson {rates[0]:g}/s each"
    return f"Poisson {min(rates):g}-{max(rates):g}/s each (a curve)"


def _target(fault: FaultSpec) -> str:
    if fault.group is not None:
        return f"group {fault.group}"
    if fault.replica is not None:
        return f"replica {fault.replica}"
    return "the broker" if fault.kind == "broker-restart" else ""

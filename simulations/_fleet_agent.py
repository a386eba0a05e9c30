"""Fleet mode's agent: its device, its link, its random streams and the runtime's own agent core.

An agent's decisions and what it learns are an :class:`edge_agent.AgentCore`'s,
the object :class:`edge_agent.EdgeAgent` runs: with ``auto`` a
:class:`edge_agent.Planner` over the profile's candidate cuts, warmed up with
the device's head times, else the policy's fixed cut. Fleet mode only
carries its commands out on simulated time (:mod:`simulations._fleet`).
"""

from __future__ import annotations

import functools
import itertools
import random
import zlib
from typing import TYPE_CHECKING

from edge_agent import EDGE_ONLY, AgentCore, Candidate, HubReports, Planner, Timeouts
from simulations._link import Direction
from simulations._scenario import policy_cut

if TYPE_CHECKING:
    import simpy

    from simulations._calibrate import ModelProfile
    from simulations._scenario import GroupSpec


class SimulatedAgent:
    """One agent of a group: a device of one ORT thread, a link of its own, and its core.

    Args:
        env: The simulation.
        seed: The scenario's seed: every stream is named from it and the agent's name.
        group: The agent's group.
        index: Its index in the group (its name is ``<group>-<index>``).
        profile: Its model's measured profile.
        policy: ``edge``, ``cloud``, ``auto`` or a cut id.
        hubs: What the hubs' statuses report for its model, shared by every
            planner of that model (each status is heard once, not once per agent).
    """

    def __init__(
        self,
        env: simpy.Environment,
        seed: int,
        group: GroupSpec,
        index: int,
        *,
        profile: ModelProfile,
        policy: str,
        hubs: HubReports,
    ) -> None:
        self.env = env
        self.group = group
        self.name = f"{group.name}-{index}"
        self.profile = profile
        self.policy = policy
        self.factor = group.factor
        self._device_free_s = 0.0  # when the device's ORT thread is done with what it was given
        self.up = Direction(group.link.up, f"{seed}/{self.name}/up")
        self.down = Direction(group.link.down, f"{seed}/{self.name}/down")
        self._seed = seed
        self._leg_excess_s = profile.network_excess_ms / 2000  # half of an exchange's, each way
        self.outage_until_s = 0.0
        self.core = self._core(seed, hubs)

    def _core(self, seed: int, hubs: HubReports) -> AgentCore:
        timeouts = Timeouts(request=self.group.deadline_s, retry=None)  # fleet mode models no retries
        cut = policy_cut(self.policy)
        if cut is not None:
            return AgentCore(cut=cut, timeouts=timeouts)
        cuts = self.profile.cuts
        candidates = [Candidate(id=cut.id, bytes=cut.request_bytes, edge_only=cut.id == EDGE_ONLY) for cut in cuts]
        core = AgentCore(
            planner=Planner(candidates, seed=zlib.crc32(f"{seed}/{self.name}/planner".encode()), hubs=hubs),
            chain=[cut.id for cut in cuts],
            model_sha256=self.profile.model_sha256,
            timeouts=timeouts,
        )
        segment_ms = [(later.head_ms - cut.head_ms) * self.factor for cut, later in itertools.pairwise(cuts)]
        core.warmed_up([segment_ms], self.env.now)  # the agent's warm-up, as its device runs the profile
        return core

    @functools.cached_property
    def compute(self) -> random.Random:
        """Where the device's spread draws from, made on the first draw (a device without one never makes it)."""
        return random.Random(f"{self._seed}/{self.name}/device")  # noqa: S311 - not crypto

    def run(self, host_ms: float) -> tuple[float, float]:
        """Queue on the device what this host computes in ``host_ms``: when it starts and when it ends (s).

        The device is one ORT thread taking runs first come, first served, so
        a run's times are known when it is queued (its spread drawn then, if
        the profile has one): no queue of events is needed to find them.
        """
        spread = self.profile.head_spread
        multiple = self.compute.choice(spread) if spread else 1.0
        start_s = max(self.env.now, self._device_free_s)
        self._device_free_s = start_s + host_ms * self.factor * multiple / 1000
        return start_s, self._device_free_s

    def transfer(self, direction: Direction, nbytes: int) -> simpy.Timeout:
        """Wait until ``nbytes`` entering ``direction`` now have come out (:meth:`arrival`)."""
        return self.env.timeout(self.arrival(direction, nbytes) - self.env.now)

    def arrival(self, direction: Direction, nbytes: int) -> float:
        """When ``nbytes`` entering ``direction`` now come out at the far end (after any outage), in s.

        Plus half the profile's ``network_excess_ms``: what emulate mode's
        messages took beyond the link model (zero in a measured profile).
        """
        start = max(self.env.now, self.outage_until_s)
        return direction.departure(start, nbytes) + self._leg_excess_s

"""One planner per input size: what a cut of a model with dynamic sizes costs depends on the input's size.

A detector sent a 640x640 image crosses its cuts with four times the bytes,
and runs its head four times as long, as one sent 320x320. An agent with
``cut="auto"`` keeps an :class:`~edge_agent.AgentCore` per input size it has
seen (the last few), each warmed up at its size and sharing the link's
estimates, and decides each request with the one of its size.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from edge_agent._core import AgentCore

MAX_SIZES = 4
"""Input sizes whose cores an agent keeps; the least recently used beyond this is forgotten."""

SizeKey: TypeAlias = "tuple[tuple[str, tuple[int, ...]], ...]"
"""An input size: each input's name and shape, by name."""


def size_key(shapes: Mapping[str, Sequence[int]]) -> SizeKey:
    """The key of an input size."""
    return tuple(sorted((name, tuple(dims)) for name, dims in shapes.items()))


class CoresBySize:
    """The cores of the input sizes seen last, the current one among them.

    Args:
        key: The first size.
        core: Its core.
        limit: Sizes kept at most.
    """

    def __init__(self, key: SizeKey, core: AgentCore, *, limit: int = MAX_SIZES) -> None:
        self._cores: OrderedDict[SizeKey, AgentCore] = OrderedDict({key: core})
        self._limit = limit
        self.key = key
        """The current size."""
        self.first = core
        """The first size's core: whose head times are kept across restarts (kept even when forgotten here)."""

    def use(self, key: SizeKey) -> AgentCore | None:
        """The core of size ``key``, now the current one; ``None`` if this size has none (yet)."""
        core = self._cores.get(key)
        if core is not None:
            self._cores.move_to_end(key)
            self.key = key
        return core

    def add(self, key: SizeKey, core: AgentCore) -> None:
        """Keep ``core`` for size ``key``, now the current one, forgetting the least recently used beyond the limit."""
        self._cores[key] = core
        self._cores.move_to_end(key)
        self.key = key
        while len(self._cores) > self._limit:
            self._cores.popitem(last=False)

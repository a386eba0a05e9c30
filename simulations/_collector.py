"""Python's cyclic garbage collector during a fleet run, which makes almost no cycles to collect.

A fleet of 10,000 agents is some millions of long-lived objects (planners,
estimators, random streams, SimPy processes), and a run then allocates and
frees events by the million. The collector counts those allocations and,
every so often, scans its generations; each scan of the oldest one walks all
the agents' objects again. Measured (``bench/fleet_speed.py``, 10,000 agents,
``auto``): 40-45% of the wall time went to those scans, and they found
nothing to free (a few hundred objects in a whole run, the imports' own).

So while a fleet is built the collector is off, its objects are then frozen
(:func:`gc.freeze`: moved out of every generation the collector scans), and
the run collects the youngest generation every
:data:`_YOUNGEST_THRESHOLD` allocations instead of every 2,000: cycles a
scenario does make are still freed, within a bounded amount of memory.
Everything is as it was once the block ends. The collector is the
process's: other threads meanwhile see the same settings. A process that
froze objects of its own keeps them frozen: the fleet's are then not
frozen (unfreezing is all or nothing), which costs a run about 6%.
"""

from __future__ import annotations

import contextlib
import gc
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

_YOUNGEST_THRESHOLD = 50_000
"""Allocations (less frees) of tracked objects between two collections of the youngest generation in a run."""


@contextlib.contextmanager
def few_collections() -> Iterator[Callable[[], None]]:
    """Build and run a fleet in the block, with the collector tuned for it; call what it yields once built.

    Before that call the collector is off (building makes long-lived objects
    only); after it, what exists is frozen (unless something else was
    frozen already) and collections are rare.
    """
    enabled = gc.isenabled()
    thresholds = gc.get_threshold()
    freezing = gc.get_freeze_count() == 0  # never unfreeze what someone else froze
    gc.disable()

    def built() -> None:
        if freezing:
            gc.freeze()
        gc.set_threshold(max(thresholds[0], _YOUNGEST_THRESHOLD), *thresholds[1:])
        if enabled:
            gc.enable()

    try:
        yield built
    finally:
        if freezing:
            gc.unfreeze()
        gc.set_threshold(*thresholds)
        if enabled:
            gc.enable()
        else:
            gc.disable()

"""The cuts a hub runs most, each run as one fused tail instead of a stretch of its chain.

A chain holds a model's weights once whatever the cuts (:mod:`cloud_hub._chains`),
but a tail that runs as several segments pays for it: a run per segment, and
no fusion across their boundaries (resnet18 from layer3.1.out: 8.9 ms as three
segments, 6.5 ms fused; ``bench/transport.py``). So once a cut has been used
often, the hub splits the model at that cut once more (in its splitting
child) and runs that cut's requests on the fused tail. Each fused tail holds
its own copy of the tail's weights, so there are at most ``capacity`` of them:
the most used cuts, a newcomer replacing the least used one only when it has
been used more than twice as often.

Told what happens (:meth:`FusedTails.note_use`), it decides; the fusing itself
runs on the executor given, never on the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Executor

    from cloud_hub._store import Tail

logger = logging.getLogger("edgecut.hub")

FUSE_AFTER = 16
"""Uses of a cut's chain tail after which the hub fuses it."""
_MAX_COUNTED = 4096
"""Most cuts whose uses are counted; the counts halve when there are more (recent use weighs more)."""

Key = tuple[str, str]
"""(model sha256, cut id)."""


class FusedTails:
    """Fused tails of the most used cuts, at most ``capacity`` of them.

    Args:
        capacity: Fused tails held at once (0: none).
        executor: Where fusing runs (the hub's loading thread).
        fuse: Makes the fused tail of ``(model id, key)``, blocking; ``None``
            when it cannot (no full model to split).
    """

    def __init__(self, *, capacity: int, executor: Executor, fuse: Callable[[str, Key], Tail | None]) -> None:
        self._capacity = capacity
        self._executor = executor
        self._fuse = fuse
        self._tails: dict[Key, Tail] = {}
        self._uses: collections.Counter[Key] = collections.Counter()
        self._fusing: set[Key] = set()
        self._tasks: set[asyncio.Future[Tail | None]] = set()

    def get(self, key: Key) -> Tail | None:
        """The fused tail of ``key``, if the hub holds one."""
        return self._tails.get(key)

    def note_use(self, key: Key, model_id: str) -> None:
        """A request ran (or is about to run) the chain tail of ``key``: fuse it once it is used enough."""
        if not self._capacity:
            return
        self._uses[key] += 1
        if len(self._uses) > _MAX_COUNTED:
            self._uses = collections.Counter({k: n // 2 for k, n in self._uses.items() if n > 1})
        if self._uses[key] >= FUSE_AFTER and key not in self._fusing and self._room_for(key):
            self._start(key, model_id)

    def _room_for(self, key: Key) -> bool:
        if len(self._tails) + len(self._fusing) < self._capacity:
            return True
        if not self._tails:
            return False
        least = min(self._tails, key=lambda held: self._uses[held])
        return self._uses[key] > 2 * self._uses[least]

    def _start(self, key: Key, model_id: str) -> None:
        self._fusing.add(key)
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._fuse, model_id, key)
        self._tasks.add(future)
        future.add_done_callback(lambda done: self._fused(key, done))

    def _fused(self, key: Key, future: asyncio.Future[Tail | None]) -> None:
        self._tasks.discard(future)
        self._fusing.discard(key)
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            logger.warning("could not fuse the tail of %s at cut %s: %s", key[0][:12], key[1], error)
            return
        tail = future.result()
        if tail is None:
            return
        while len(self._tails) >= self._capacity:
            least = min(self._tails, key=lambda held: self._uses[held])
            del self._tails[least]
            logger.info("unfused the tail at cut %s (used less than %s)", least[1], key[1])
        self._tails[key] = tail
        logger.info("%s at cut %s now runs as one fused tail", tail.manifest.model_id, key[1])

"""What a hub tells agents of its speed: recent queue waits, and tail times by model and cut.

Agents plan with these (``docs/planner.md``): the tail time of a cut they
have not used yet, and the wait a request would meet now. Everything is
bounded: the samples per entry, the models, and the cuts per model; the
least recently used go first.
"""

from __future__ import annotations

import collections
import statistics
from collections import OrderedDict


class LoadProfile:
    """Recent queue waits and tail times, as medians.

    Args:
        window: Samples kept per entry (and for the queue wait).
        max_models: Models kept.
        max_cuts: Cuts kept per model.
    """

    def __init__(self, *, window: int = 16, max_models: int = 8, max_cuts: int = 64) -> None:
        self._window = window
        self._max_models = max_models
        self._max_cuts = max_cuts
        self._waits: collections.deque[float] = collections.deque(maxlen=window)
        self._tails: OrderedDict[str, OrderedDict[str, collections.deque[float]]] = OrderedDict()

    def note_wait(self, ms: float) -> None:
        """A request waited ``ms`` before its tail ran."""
        self._waits.append(ms)

    def note_tail(self, model_sha256: str, cut_id: str, ms: float) -> None:
        """The tail of ``model_sha256`` at ``cut_id`` ran in ``ms``."""
        cuts = self._tails.setdefault(model_sha256, OrderedDict())
        self._tails.move_to_end(model_sha256)
        samples = cuts.setdefault(cut_id, collections.deque(maxlen=self._window))
        cuts.move_to_end(cut_id)
        samples.append(ms)
        while len(cuts) > self._max_cuts:
            cuts.popitem(last=False)
        while len(self._tails) > self._max_models:
            self._tails.popitem(last=False)

    def queue_wait_ms(self) -> float | None:
        """The median of recent waits, or ``None`` before the first."""
        return statistics.median(self._waits) if self._waits else None

    def tail_ms(self) -> dict[str, dict[str, float]]:
        """Model sha256 to cut id to the median of recent tail times."""
        return {
            sha: {cut: statistics.median(samples) for cut, samples in cuts.items()} for sha, cuts in self._tails.items()
        }

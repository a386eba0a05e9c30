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
        wait_age_s: Queue waits older than this no longer count.
    """

    def __init__(self, *, window: int = 16, max_models: int = 8, max_cuts: int = 64, wait_age_s: float = 10.0) -> None:
        self._window = window
        self._max_models = max_models
        self._max_cuts = max_cuts
        self._wait_age_s = wait_age_s
        self._waits: collections.deque[tuple[float, float]] = collections.deque(maxlen=window)
        self._tails: OrderedDict[str, OrderedDict[str, collections.deque[float]]] = OrderedDict()

    def note_wait(self, ms: float, now_s: float) -> None:
        """A request waited ``ms`` before its tail ran (``now_s``: a monotonic clock)."""
        self._waits.append((now_s, ms))

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

    def queue_wait_ms(self, now_s: float, *, queued: int) -> float | None:
        """The mean of the waits of the last ``wait_age_s`` (a busy hub's are skewed: the mean is what a request pays).

        With none: ``0.0`` while nothing is queued (an idle hub has no queue),
        else ``None`` (requests wait, and none has been measured yet).
        """
        recent = [ms for at, ms in self._waits if now_s - at <= self._wait_age_s]
        if recent:
            return statistics.fmean(recent)
        return 0.0 if queued == 0 else None

    def tail_ms(self) -> dict[str, dict[str, float]]:
        """Model sha256 to cut id to the median of recent tail times."""
        return {
            sha: {cut: statistics.median(samples) for cut, samples in cuts.items()} for sha, cuts in self._tails.items()
        }

"""``cut="auto"``: the planner fed from an agent's own requests, probes and hub statuses.

The agent holds the model as a chain through its candidate cuts
(:meth:`ModelHalves.chain`). At start a short warm-up runs the whole chain a
few times and times each segment, which gives the head time of every
candidate; head times saved by an earlier run on this device (``state_dir``)
are restored first. Each finished request then teaches the planner its own
cut's timings, and the chain's segment times refresh every earlier cut's head
time too. Everything runs on the agent's event loop except the warm-up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_agent._planner import Candidate, Decision, Objective, Observation, Planner
from models import EDGE_ONLY
from protocol import RAW_CODEC, codec_applies, data_bytes_estimate

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from edge_agent._halves import ModelHalves
    from edge_agent._results import InferenceResult
    from models import Boundary, TensorSpec
    from protocol import NodeStatus

logger = logging.getLogger("edgecut.agent")

WARM_UP_RUNS = 3
"""Whole-chain runs at start, after one untimed run (ONNX Runtime's first run is slow)."""
STATE_FORMAT = 1


class AdaptiveCut:
    """Chooses each request's cut for an agent, and learns from the result.

    Use :meth:`start` (blocking: it runs the warm-up).

    Args:
        halves: The agent's model, with a chain.
        planner: The planner over the chain's cuts.
        state_file: Where head times are kept across restarts, or ``None``.
    """

    def __init__(self, halves: ModelHalves, planner: Planner, state_file: Path | None) -> None:
        self._halves = halves
        self.planner = planner
        self._state_file = state_file
        self._chain_cuts = halves.chain().manifest.cut_ids

    @classmethod
    def start(
        cls,
        halves: ModelHalves,
        *,
        objective: Objective = "latency",
        budget_ms: float | None = None,
        state_dir: Path | None = None,
        codecs: Sequence[str] = (RAW_CODEC,),
    ) -> AdaptiveCut:
        """Load the chain, restore saved head times, warm up (blocking).

        Every cut is a candidate with each of ``codecs`` that changes what it
        sends (fp16 and int8 only where floats cross, image codecs only where
        an image does; with none of them, the first). Each candidate's bytes
        start as what its tensors take under its codec
        (:func:`protocol.data_bytes_estimate`); requests then teach the
        planner what they really send, and what encoding costs.

        Raises:
            ModelError: The model has no chain (a single-cut split directory).
        """
        chain = halves.chain()
        candidates = [candidate for boundary in chain.manifest.cuts for candidate in _candidates(boundary, codecs)]
        planner = Planner(candidates, objective=objective, budget_ms=budget_ms)
        state_file = None if state_dir is None else state_dir / f"planner-{halves.model_sha256[:16]}.json"
        adaptive = cls(halves, planner, state_file)
        now = time.monotonic()
        adaptive._restore(now)
        planner.seed_head(chain.manifest.cut_ids[0], 0.0, now)  # the input cut runs nothing here
        feeds = {spec.name: np.zeros(_shape(spec.shape), spec.dtype) for spec in chain.manifest.inputs}
        chain.run(feeds, chain.manifest.cut_ids[0], EDGE_ONLY)
        for _ in range(WARM_UP_RUNS):
            _, segment_ms = chain.run(feeds, chain.manifest.cut_ids[0], EDGE_ONLY)
            adaptive.note_segments(segment_ms, now)
        return adaptive

    def decide(self, now_s: float) -> Decision:
        """The cut for the next request, and why."""
        return self.planner.choose(now_s)

    def note_segments(self, segment_ms: Sequence[float], now_s: float) -> None:
        """Segment times of a run from the start of the chain: the head time of each cut they reach."""
        elapsed = 0.0
        for cut_id, ms in zip(self._chain_cuts[1:], segment_ms, strict=False):
            elapsed += ms
            self.planner.seed_head(cut_id, elapsed, now_s)

    def learn(self, result: InferenceResult, segment_ms: Sequence[float], now_s: float) -> None:
        """What a finished request measured (its head's segment times included)."""
        self.note_segments(segment_ms[:-1], now_s)  # the last segment ends at the cut: observe() has it
        timings = result.timings
        answered = result.hub_id is not None and result.fallback is None
        if result.fallback is not None:
            self.planner.observe_unanswered(now_s, sent_s=now_s - timings.total_ms / 1000)
        self.planner.observe(
            Observation(
                cut_id=result.cut_id,
                codec=result.codec,
                bytes_sent=result.bytes_sent,
                edge_ms=timings.edge_ms,
                encode_ms=timings.encode_ms,
                network_ms=timings.network_ms,
                hub_queue_ms=timings.hub_queue_ms,
                hub_compute_ms=timings.hub_compute_ms,
                decode_ms=timings.decode_ms,
                total_ms=timings.total_ms,
                answered_by_hub=answered,
            ),
            now_s,
        )

    def on_hub_status(self, status: NodeStatus, now_s: float) -> None:
        """A hub's status: its tail times for this model, and its queue wait."""
        if status.role != "hub" or status.state != "online":
            return
        tails = status.tail_ms.get(self._halves.model_sha256)
        self.planner.observe_hub(now_s, tail_ms=tails, queue_ms=status.queue_wait_ms)

    def save(self) -> None:
        """Keep the head times for the next run on this device (errors are logged, not raised)."""
        if self._state_file is None:
            return
        state = {"format": STATE_FORMAT, "model_sha256": self._halves.model_sha256, "heads": self.planner.export()}
        try:
            self._state_file.parent.mkdir(parents=True, exist_ok=True)
            temporary = self._state_file.with_suffix(".tmp")
            temporary.write_text(json.dumps(state), encoding="utf-8")
            temporary.replace(self._state_file)
        except OSError as exc:
            logger.warning("could not save the planner's head times to %s: %s", self._state_file, exc)

    def _restore(self, now_s: float) -> None:
        if self._state_file is None or not self._state_file.is_file():
            return
        try:
            state: Any = json.loads(self._state_file.read_text(encoding="utf-8"))
            heads = state["heads"] if state.get("format") == STATE_FORMAT else {}
            with contextlib.suppress(TypeError, ValueError):
                self.planner.restore(heads, now_s)
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            logger.warning("ignored the planner state in %s: %s", self._state_file, exc)


def _candidates(boundary: Boundary, codecs: Sequence[str]) -> list[Candidate]:
    """The cut with each codec that changes what it sends (edge-only: once, nothing is sent)."""
    if boundary.id == EDGE_ONLY:
        return [Candidate(id=boundary.id, bytes=_estimated_bytes(boundary.crossing, RAW_CODEC), edge_only=True)]
    useful = [
        codec
        for codec in codecs
        if codec == RAW_CODEC or any(codec_applies(codec, spec.dtype, _shape(spec.shape)) for spec in boundary.crossing)
    ]
    return [
        Candidate(id=boundary.id, bytes=_estimated_bytes(boundary.crossing, codec), codec=codec)
        for codec in useful or list(codecs[:1])
    ]


def _estimated_bytes(crossing: Sequence[TensorSpec], codec: str) -> int:
    """What a request's tensors at a cut take under ``codec``, at batch 1."""
    return sum(data_bytes_estimate(codec, spec.dtype, _shape(spec.shape)) for spec in crossing)


def _shape(dims: Sequence[int | str]) -> tuple[int, ...]:
    """A concrete shape: every symbolic dimension set to 1."""
    return tuple(dim if isinstance(dim, int) else 1 for dim in dims)

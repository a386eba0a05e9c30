"""``cut="auto"`` on a device: the planner's candidates, the warm-up, and head times kept across restarts.

The agent holds the model as a chain through its candidate cuts
(:meth:`ModelHalves.chain`). At start a short warm-up runs the whole chain a
few times and hands each run's segment times to the agent's
:class:`~edge_agent.AgentCore`, which gives every candidate its head time;
head times saved by an earlier run on this device (``state_dir``) are
restored first. With a full model at hand, the warm-up also runs the whole
model as one fused session, in turns with the chain: where the chain's
boundaries cost more than :data:`FUSED_EDGE_ONLY_GAIN` (ONNX Runtime cannot
fuse across them, and what crosses each is written out whole: a detector's
early 640x640 activations), edge-only runs on the fused session from then
on, and the chain times its segments on one edge-only request in
:data:`~edge_agent._core.SEGMENT_TIMES_EVERY`; else the fused session is let
go (it is a second copy of the weights), unless the model is small
(:data:`SMALL_MODEL_BYTES`) and the chain did not run clearly faster. This
module is the I/O around the core: running the chain and reading and
writing the state file. Everything else (what requests, pings and hub
statuses teach the planner) is the core's.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from edge_agent._codecs import codec_at
from edge_agent._core import AgentCore
from edge_agent._planner import Candidate, Objective, Planner
from models import EDGE_ONLY, TensorSpec, random_feeds, run_timed
from protocol import RAW_CODEC, data_bytes_estimate

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    import numpy as np

    from edge_agent._energy import EnergyModel
    from edge_agent._halves import ModelHalves
    from edge_agent._results import Timeouts
    from models import Chain

logger = logging.getLogger("edgecut.agent")

WARM_UP_RUNS = 3
"""Whole-chain runs at start, after one untimed run (ONNX Runtime's first run is slow)."""
FUSED_EDGE_ONLY_GAIN = 1.05
"""Edge-only runs on a fused session (a second copy of the weights) where the warm-up's chain took at least this
many times as long: resnet18's 1.02-1.03x keeps one copy; mobilenet_v2 took 1.04-1.10x, a detector at 640 1.04-1.15x."""
SMALL_MODEL_BYTES = 16 * 1024 * 1024
"""A model no larger keeps its fused session unless the chain was clearly faster (:func:`keeps_fused`): a second
copy of its weights costs a device little, and a few warm-up runs on a busy or emulated device can miss what the
chain costs (the 57 KB detector, 1.14x through its chain, measured under 1.05x in two warm-ups of twelve at x10:
its runs of the same work took 187-462 ms)."""
STATE_FORMAT = 1


class HeadTimes:
    """A device's head times for one model, kept in ``state_dir`` across restarts.

    Args:
        state_dir: The directory (created when saving).
        model_sha256: The model's identity: one file per model.
    """

    def __init__(self, state_dir: Path, model_sha256: str) -> None:
        self.path = state_dir / f"planner-{model_sha256[:16]}.json"
        self._model_sha256 = model_sha256

    def load(self) -> dict[str, list[float]]:
        """The saved head times by candidate label; none when there is no file or it cannot be used (warned)."""
        if not self.path.is_file():
            return {}
        try:
            state: Any = json.loads(self.path.read_text(encoding="utf-8"))
            heads = state["heads"] if state.get("format") == STATE_FORMAT else {}
            return {str(label): [float(ms) for ms in samples] for label, samples in heads.items()}
        except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
            logger.warning("ignored the planner state in %s: %s", self.path, exc)
            return {}

    def save(self, core: AgentCore) -> None:
        """Keep ``core``'s head times for the next run on this device (errors are logged, not raised)."""
        state = {"format": STATE_FORMAT, "model_sha256": self._model_sha256, "heads": core.head_times()}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps(state), encoding="utf-8")
            temporary.replace(self.path)
        except OSError as exc:
            logger.warning("could not save the planner's head times to %s: %s", self.path, exc)


def auto_core(
    halves: ModelHalves,
    now_s: float,
    *,
    objective: Objective = "latency",
    budget_ms: float | None = None,
    energy: EnergyModel | None = None,
    codecs: Sequence[str] = (RAW_CODEC,),
    timeouts: Timeouts | None = None,
    saved: HeadTimes | None = None,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> AgentCore:
    """The core of an agent with ``cut="auto"``: load the chain, restore saved head times, warm up (blocking).

    Every cut is a candidate with each of ``codecs`` under the name of what
    it really sends there (:func:`~edge_agent._codecs.codec_at`: fp16 and
    int8 only where floats cross, image codecs only where an image does,
    ``int8+zstd`` as ``zstd`` where only an image does), once per distinct
    name; ``raw`` only when allowed or nothing else applies. Each candidate's bytes
    start as what its tensors take under its codec
    (:func:`protocol.data_bytes_estimate`) at ``shapes`` (default: the
    halves' input shapes), as a warm-up run at those shapes sees them;
    requests then teach the planner what they really send, and what
    encoding costs.

    Raises:
        ModelError: The model has no chain (a single-cut split directory).
    """
    chain = halves.chain()
    feeds = random_feeds(chain.manifest.inputs, shapes=shapes or halves.input_shapes)
    crossing = _crossing_at_inputs(chain, feeds)
    candidates = [
        candidate
        for boundary in chain.manifest.cuts
        for candidate in _candidates(boundary.id, crossing[boundary.id], codecs)
    ]
    core = AgentCore(
        planner=Planner(candidates, objective=objective, budget_ms=budget_ms, energy=energy),
        codec=codecs[0],
        chain=chain.manifest.cut_ids,
        model_sha256=halves.model_sha256,
        timeouts=timeouts,
    )
    if saved is not None:
        core.restore(saved.load(), now_s)
    runs, fused_ms = _warm_up(halves, chain, feeds)
    core.warmed_up(runs, now_s, edge_only_ms=fused_ms)
    return core


def _warm_up(
    halves: ModelHalves, chain: Chain, feeds: Mapping[str, np.ndarray]
) -> tuple[list[list[float]], list[float]]:
    """The whole chain's runs (each as its segments' ms) and, where it pays, a fused session's (ms).

    The fused session runs in turns with the chain, after one untimed run,
    where it can be made (a full model) and the chain has a boundary inside
    (more than the two extreme cuts); it is kept for edge-only as
    :func:`keeps_fused` says from both sets of runs, else let go and no
    fused times are returned. Never their medians: whatever else runs
    meanwhile (an agent starts beside others, a hub loads) only adds time,
    and three runs of each leave a median at the mercy of two.
    """
    first = chain.manifest.cut_ids[0]
    fused = None
    if halves.holds_full_model and len(chain.manifest.cuts) > 2:  # noqa: PLR2004 - input and output alone: no boundary
        fused = halves.halves(EDGE_ONLY, fused=True).head
        run_timed(fused, feeds)  # ORT's first run is slow
    runs: list[list[float]] = []
    fused_ms: list[float] = []
    for _ in range(WARM_UP_RUNS):
        runs.append(chain.run(feeds, first, EDGE_ONLY)[1])
        if fused is not None:
            fused_ms.append(run_timed(fused, feeds)[1])
    if fused is None:
        return runs, []
    chained_ms = [sum(run) for run in runs]
    if not keeps_fused(chained_ms, fused_ms, halves.model_bytes):
        halves.release(EDGE_ONLY, fused=True)
        return runs, []
    logger.info(
        "edge-only runs as one session: the chain's %d boundaries took it %.2fx as long (%.1f against %.1f ms)",
        len(chain.manifest.cuts) - 2,
        min(chained_ms) / min(fused_ms),
        min(chained_ms),
        min(fused_ms),
    )
    return runs, fused_ms


def keeps_fused(chained_ms: Sequence[float], whole_ms: Sequence[float], model_bytes: int | None) -> bool:
    """Whether edge-only keeps a fused session whose warm-up runs took ``whole_ms`` against the chain's ``chained_ms``.

    A model larger than :data:`SMALL_MODEL_BYTES` (or of unknown size) keeps
    it where the chain's fastest run took :data:`FUSED_EDGE_ONLY_GAIN` times
    the fused one's or more. A smaller one keeps it unless every fused run
    took longer than every run of the chain: on a busy or emulated device
    runs of the same work spread far more than the chain's boundaries cost
    (one warm-up's fastest runs are then a coin toss), and a fused session
    is never slower than the chain in truth.
    """
    if model_bytes is not None and model_bytes <= SMALL_MODEL_BYTES:
        return min(whole_ms) <= max(chained_ms)
    return min(chained_ms) >= FUSED_EDGE_ONLY_GAIN * min(whole_ms)


def _crossing_at_inputs(chain: Chain, feeds: Mapping[str, np.ndarray]) -> dict[str, tuple[TensorSpec, ...]]:
    """What crosses each cut of ``chain`` when it runs on ``feeds``: the specs with the sizes seen.

    One run, segment by segment (also the first, slow run of each): a model
    with dynamic sizes, or a size its input's values decide, is counted as it
    runs, not as its manifest's symbols would say.
    """
    ids = chain.manifest.cut_ids
    tensors: Mapping[str, np.ndarray] = feeds
    seen: dict[str, tuple[TensorSpec, ...]] = {}
    for index, boundary in enumerate(chain.manifest.cuts):
        if index:
            tensors = chain.run(tensors, ids[index - 1], boundary.id)[0]
        seen[boundary.id] = tuple(
            TensorSpec(spec.name, spec.dtype, tuple(tensors[spec.name].shape)) for spec in boundary.crossing
        )
    return seen


def _candidates(cut_id: str, crossing: Sequence[TensorSpec], codecs: Sequence[str]) -> list[Candidate]:
    """The cut with each codec that changes what it sends (edge-only: once, nothing is sent)."""
    if cut_id == EDGE_ONLY:
        return [Candidate(id=cut_id, bytes=_estimated_bytes(crossing, RAW_CODEC), edge_only=True)]
    here = dict.fromkeys(codec_at(codec, crossing) for codec in codecs)  # what each really sends
    if RAW_CODEC not in codecs and len(here) > 1:
        here.pop(RAW_CODEC, None)  # a codec that sends everything raw here adds nothing the others do not
    return [Candidate(id=cut_id, bytes=_estimated_bytes(crossing, codec), codec=codec) for codec in here]


def _estimated_bytes(crossing: Sequence[TensorSpec], codec: str) -> int:
    """What a request's tensors of these (concrete) sizes take under ``codec``."""
    return sum(data_bytes_estimate(codec, spec.dtype, spec.concrete()) for spec in crossing)

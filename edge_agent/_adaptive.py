"""``cut="auto"`` on a device: the planner's candidates, the warm-up, and head times kept across restarts.

The agent holds the model as a chain through its candidate cuts
(:meth:`ModelHalves.chain`). At start a short warm-up runs the whole chain a
few times and hands each run's segment times to the agent's
:class:`~edge_agent.AgentCore`, which gives every candidate its head time;
head times saved by an earlier run on this device (``state_dir``) at the
same input sizes are restored first, and where they cover every candidate,
the warm-up's timed runs are skipped: a restart costs the device one run of
the model, not seven (:func:`auto_core`). With a full model at hand, the
warm-up also runs the whole model as one fused session, in turns with the
chain: where the chain's boundaries cost more than
:data:`FUSED_EDGE_ONLY_GAIN` (ONNX Runtime cannot fuse across them, and
what crosses each is written out whole: a detector's early 640x640
activations), edge-only runs on the fused session from then
on, and the chain times its segments on one edge-only request in
:data:`~edge_agent._core.SEGMENT_TIMES_EVERY`; else the fused session is let
go (it is a second copy of the weights), unless the model is small
(:data:`SMALL_MODEL_BYTES`) and the chain did not run clearly faster. This
module is the I/O around the core: running the chain and reading and
writing the state file. Everything else (what requests, pings and hub
statuses teach the planner) is the core's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
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


@dataclasses.dataclass(frozen=True)
class SavedHeads:
    """What an earlier run on this device left in its state file."""

    heads: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    """Head times by candidate label (``cut`` or ``cut@codec``)."""
    edge_only_fused: bool | None = None
    """Whether edge-only ran on a fused session (``None``: not recorded, as by a version before this field)."""


class HeadTimes:
    """A device's head times for one model at one input size, kept in ``state_dir`` across restarts.

    Args:
        state_dir: The directory (created when saving).
        model_sha256: The model's identity: one file per model.
        input_shapes: The input sizes the head times are of: a file saved
            at other sizes is not restored.
    """

    def __init__(self, state_dir: Path, model_sha256: str, input_shapes: Mapping[str, Sequence[int]]) -> None:
        self.path = state_dir / f"planner-{model_sha256[:16]}.json"
        self._model_sha256 = model_sha256
        self._shapes = {name: [int(size) for size in dims] for name, dims in sorted(input_shapes.items())}

    def load(self) -> SavedHeads:
        """The saved state; empty when there is no file, it was saved at other sizes, or it cannot be used (warned)."""
        if not self.path.is_file():
            return SavedHeads()
        try:
            state: Any = json.loads(self.path.read_text(encoding="utf-8"))
            if state.get("format") != STATE_FORMAT:
                return SavedHeads()
            shapes = state.get("input_shapes", self._shapes)  # a file of a version that did not record them: as now
            if shapes != self._shapes:
                logger.info("not restoring the head times in %s: saved at input sizes %s", self.path, shapes)
                return SavedHeads()
            heads = {str(label): [float(ms) for ms in samples] for label, samples in state["heads"].items()}
            fused = state.get("edge_only_fused")
            return SavedHeads(heads, fused if isinstance(fused, bool) else None)
        except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
            logger.warning("ignored the planner state in %s: %s", self.path, exc)
            return SavedHeads()

    def save(self, core: AgentCore, *, edge_only_fused: bool) -> None:
        """Keep ``core``'s head times for the next run on this device (errors are logged, not raised).

        ``edge_only_fused``: edge-only runs on a fused session (the
        warm-up's verdict, which a restart that skips the warm-up follows).
        """
        state = {
            "format": STATE_FORMAT,
            "model_sha256": self._model_sha256,
            "input_shapes": self._shapes,
            "edge_only_fused": edge_only_fused,
            "heads": core.head_times(),
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(f".{uuid.uuid4().hex}.tmp")  # agents sharing the directory: no clash
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

    Head times ``saved`` by an earlier run (at its input sizes: see
    :class:`HeadTimes`) with one for every candidate and the fused session's
    verdict stand in for the warm-up's timed runs: the device runs the model
    once (to size what crosses each cut, which is also ONNX Runtime's slow
    first run), and once more on the fused session where edge-only ran on
    one. The restored times are refreshed as requests run, and a cut whose
    times went stale is explored like any other.

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
        restored = saved.load()
        core.restore(restored.heads, now_s)
        if restored.edge_only_fused is not None and {c.label for c in candidates} <= restored.heads.keys():
            logger.info("head times restored from %s: no warm-up runs", saved.path)
            if restored.edge_only_fused and _fused_edge_only(halves, chain):
                run_timed(halves.halves(EDGE_ONLY, fused=True).head, feeds)  # ORT's first run is slow
            return core
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
    if _fused_edge_only(halves, chain):
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


def _fused_edge_only(halves: ModelHalves, chain: Chain) -> bool:
    """Whether edge-only could run on a fused session: a full model, and a chain with a boundary inside."""
    return halves.holds_full_model and len(chain.manifest.cuts) > 2  # noqa: PLR2004 - input and output: no boundary


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

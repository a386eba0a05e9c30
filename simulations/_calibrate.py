"""What fleet mode knows of a model, measured on this host: per candidate cut, bytes and compute.

The profile holds, for each of a model's candidate cuts (the cuts
``cut="auto"`` chooses between): the bytes of a request message at that cut,
the head's time on this host (one ORT thread) and the tail's, and the bytes
of a reply. A device runs its head ``factor`` times slower
(:data:`simulations.PROFILES`); a hub runs tails as this host does. Measured
with the agent's own chain, on a random image, median of a few runs.

:func:`observed_profiles` gives the same profiles as an emulated run
measured them instead: what the agents' heads took on their devices (divided
by the device's factor), what its fallbacks took on the device, what the
hubs' tails took, per cut, and what the network legs took beyond the link
model, from the run's records. Emulate mode writes them as
``observed-profiles.json``; a fleet run given them (``--profiles``) is
calibrated on what emulate mode measured, host contention included.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import statistics
import time
from typing import TYPE_CHECKING, Any

from models import EDGE_ONLY, random_feeds
from protocol import InferenceReply, InferenceRequest, encode_reply, encode_request
from simulations._link import Direction

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    import numpy as np

    from models import InputShapes
    from simulations._link import LinkSpec
    from simulations._report import RequestRecord
    from simulations._scenario import Scenario

PROFILE_FORMAT = 1
_RUNS = 5
_BUSY_SPREAD = 0.25
"""Whole-model runs spreading more than this around their median: the host was busy while measured."""

logger = logging.getLogger("edgecut.sim")
_MIN_OBSERVED = 3
"""Samples a cut needs before its observed time replaces the measured one."""
_SPREAD_POINTS = 20


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CutCost:
    """One candidate cut as this host measured it.

    Attributes:
        id: The cut.
        request_bytes: A request message at this cut (``0`` for edge-only).
        head_ms: The head on this host (the whole model for edge-only).
        tail_ms: The tail on this host (``0`` for edge-only).
        rest_ms: The rest of the model after this cut on a device, on this
            host's time, as fallbacks in an emulated run took it (``None``:
            not observed; :meth:`ModelProfile.rest_ms` works it out).
    """

    id: str
    request_bytes: int
    head_ms: float
    tail_ms: float
    rest_ms: float | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ModelProfile:
    """A model's candidate cuts, measured (see the module docstring).

    Attributes:
        model: The model's id.
        model_sha256: Its identity.
        cuts: Its candidate cuts.
        reply_bytes: A reply message.
        head_spread: How a device's compute varies around a cut's time: equally
            likely multiples of it, drawn per run (observed in emulate mode;
            empty: every run takes the cut's time).
        network_excess_ms: What an answered request's two network legs took
            beyond the link model's time for its bytes on an idle link (the
            broker, the link's proxy, both ends' I/O), observed in emulate
            mode; fleet mode adds half of it to every message each way.
    """

    model: str
    model_sha256: str
    cuts: tuple[CutCost, ...]
    reply_bytes: int
    head_spread: tuple[float, ...] = ()
    network_excess_ms: float = 0.0

    def cut(self, cut_id: str) -> CutCost:
        """The cut called ``cut_id``.

        Raises:
            KeyError: Not a candidate cut of this model.
        """
        for cut in self.cuts:
            if cut.id == cut_id:
                return cut
        raise KeyError(cut_id)

    def rest_ms(self, cut_id: str) -> float:
        """What finishing the model after ``cut_id`` takes on a device, on this host's time (a fallback's run).

        What fallbacks took in an emulated run, where observed; else the
        device's own figures: the whole model's head less the cut's (an
        observed profile's tail times are a hub's, cold runs and all); the
        cut's tail time for a profile without an edge-only cut.
        """
        cut = self.cut(cut_id)
        if cut.rest_ms is not None:
            return cut.rest_ms
        whole = next((other for other in self.cuts if other.id == EDGE_ONLY), None)
        return cut.tail_ms if whole is None else max(0.0, whole.head_ms - cut.head_ms)

    def to_json(self) -> dict[str, Any]:
        """The profile as JSON."""
        return {"format": PROFILE_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelProfile:
        """Read :meth:`to_json`'s output."""
        return cls(
            model=data["model"],
            model_sha256=data["model_sha256"],
            cuts=tuple(CutCost(**cut) for cut in data["cuts"]),
            reply_bytes=int(data["reply_bytes"]),
            head_spread=tuple(float(multiple) for multiple in data.get("head_spread", ())),
            network_excess_ms=float(data.get("network_excess_ms", 0.0)),
        )


def measure_profile(model: str, input_shapes: InputShapes | None = None) -> ModelProfile:
    """Measure ``model``'s candidate cuts on this host (a few seconds; needs ``onnx`` for a zoo model).

    Args:
        model: A zoo name, ``.onnx`` file or segments directory.
        input_shapes: The shape of each input with dynamic sizes (see
            :meth:`edge_agent.ModelHalves.open`): what it is measured at.

    Raises:
        ModelError: As :meth:`edge_agent.ModelHalves.open`.
    """
    from edge_agent import ModelHalves  # noqa: PLC0415 - the measuring side only

    halves = ModelHalves.open(model, threads=1, input_shapes=input_shapes)
    chain = halves.chain()
    ids = chain.manifest.cut_ids
    feeds = random_feeds(chain.manifest.inputs, shapes=halves.input_shapes)
    chain.run(feeds, ids[0], EDGE_ONLY)  # the first run is slow
    runs = [chain.run(feeds, ids[0], EDGE_ONLY)[1] for _ in range(_RUNS)]
    segment_ms = [statistics.median(run[index] for run in runs) for index in range(len(ids) - 1)]
    total = sum(segment_ms)
    _warn_if_busy(halves.model_id, [sum(run) for run in runs])
    cuts = []
    for index, cut_id in enumerate(ids):
        head = sum(segment_ms[:index], 0.0)
        if cut_id == EDGE_ONLY:
            cuts.append(CutCost(id=cut_id, request_bytes=0, head_ms=total, tail_ms=0.0))
            continue
        crossing = chain.run(feeds, ids[0], cut_id)[0] if index else feeds
        tensors = {tensor.name: crossing[tensor.name] for tensor in chain.manifest.cuts[index].crossing}
        request = _request(halves.model_id, halves.model_sha256, cut_id, tensors)
        cuts.append(CutCost(id=cut_id, request_bytes=len(request), head_ms=head, tail_ms=total - head))
    outputs = chain.run(feeds, ids[0], EDGE_ONLY)[0]
    reply = InferenceReply(
        request_id="x" * 32, hub_id="hub-0", outputs=outputs, error=None, queue_ms=1.0, compute_ms=1.0, queue_depth=0
    )
    return ModelProfile(
        model=halves.model_id,
        model_sha256=halves.model_sha256,
        cuts=tuple(cuts),
        reply_bytes=len(encode_reply(reply)),
    )


def _warn_if_busy(model: str, totals: list[float]) -> None:
    """Warn when the runs spread as on a busy host: a profile measured so moves every figure of a run."""
    median = statistics.median(totals)
    spread = (max(totals) - min(totals)) / median if median > 0 else 0.0
    if spread > _BUSY_SPREAD:
        logger.warning(
            "%s: its %d runs on this host spread %.0f%% around %.1f ms (more than %.0f%%): the host is busy, and a "
            "simulation on this profile moves with its load; measure on a quiet host, or pass a profile that was "
            "(--profiles, docs/profiles/)",
            model,
            len(totals),
            spread * 100,
            median,
            _BUSY_SPREAD * 100,
        )


def observed_profiles(
    scenario: Scenario, records: Iterable[RequestRecord], measured: dict[str, ModelProfile]
) -> dict[str, ModelProfile]:
    """``measured`` with each cut's head and tail times as ``records`` of an emulated run show them.

    A head time is the median of the requests' device times at that cut over
    their device's factor; a tail time the median of the hubs' compute times
    (a request that ran in a batch of ``n`` counts ``1/n`` of the run);
    a rest time (:attr:`CutCost.rest_ms`) the median of the fallbacks' device
    times over the factor. A cut with fewer than 3 samples of one keeps its
    measured figure (no rest time). The device times' spread around their
    cut's median, heads and fallbacks pooled over the cuts, becomes the
    profile's ``head_spread`` (20 equally likely multiples) when there are at
    least 20 of them. The network excess is the median, over answered
    requests on links of a fixed rate (no trace, jitter or loss), of their
    network time less the link model's for their bytes.
    """
    groups = {group.name: group for group in scenario.groups}
    heads: dict[tuple[str, str], list[float]] = {}
    tails: dict[tuple[str, str], list[float]] = {}
    rests: dict[tuple[str, str], list[float]] = {}
    excess: dict[str, list[float]] = {}
    for record in records:
        group = groups[record.group]
        key = (group.model, record.cut)
        heads.setdefault(key, []).append(record.edge_ms / group.factor)
        if record.hub:
            tails.setdefault(key, []).append(record.hub_compute_ms / max(1, record.hub_batch))  # its share of a batch
            legs = _idle_link_ms(group.link, record.bytes_up, measured[group.model].reply_bytes)
            if legs is not None:
                excess.setdefault(group.model, []).append(record.network_ms - legs)
        if record.fallback_ms > 0:
            rests.setdefault(key, []).append(record.fallback_ms / group.factor)
    observed = {}
    for name, profile in measured.items():
        cuts, multiples = [], []
        for cut in profile.cuts:
            head = heads.get((name, cut.id), [])
            tail = tails.get((name, cut.id), [])
            head_ms = statistics.median(head) if len(head) >= _MIN_OBSERVED else cut.head_ms
            if len(head) >= _MIN_OBSERVED and cut.head_ms > 0:  # a cut with a head (not the input's encoding)
                multiples += [ms / head_ms for ms in head]
            tail_ms = statistics.median(tail) if len(tail) >= _MIN_OBSERVED else cut.tail_ms
            rest = rests.get((name, cut.id), [])
            rest_ms = statistics.median(rest) if len(rest) >= _MIN_OBSERVED else None
            if rest_ms:
                multiples += [ms / rest_ms for ms in rest]
            cuts.append(dataclasses.replace(cut, head_ms=head_ms, tail_ms=tail_ms, rest_ms=rest_ms))
        spread = _spread(multiples) if len(multiples) >= _SPREAD_POINTS else profile.head_spread
        extra = excess.get(name, [])
        network_excess_ms = max(0.0, statistics.median(extra)) if len(extra) >= _MIN_OBSERVED else 0.0
        observed[name] = dataclasses.replace(
            profile, cuts=tuple(cuts), head_spread=spread, network_excess_ms=network_excess_ms
        )
    return observed


def _idle_link_ms(link: LinkSpec, up_bytes: int, down_bytes: int) -> float | None:
    """Both legs of an exchange on ``link`` when idle, as the link model has them, in ms.

    ``None`` for a link that varies (trace, jitter, loss): what it would have
    done depends on when the request went, which the records do not place.
    """
    legs = ((link.up, up_bytes), (link.down, down_bytes))
    if any(spec.trace is not None or spec.jitter_s or spec.jitter_samples_s or spec.loss for spec, _ in legs):
        return None
    return sum(Direction(spec, random.Random(0)).departure(0.0, nbytes) for spec, nbytes in legs) * 1000  # noqa: S311


def _spread(multiples: list[float]) -> tuple[float, ...]:
    """``multiples`` as 20 equally likely values: the midpoints of 20 equal-probability bins."""
    ordered = sorted(multiples)
    last = len(ordered) - 1
    return tuple(
        round(ordered[min(last, int((index + 0.5) / _SPREAD_POINTS * len(ordered)))], 4)
        for index in range(_SPREAD_POINTS)
    )


def scenario_profiles(scenario: Scenario, known: Path | None = None) -> dict[str, ModelProfile]:
    """A profile for every model ``scenario`` uses: from the profiles file ``known`` where it has one, else measured."""
    saved = load_profiles(known) if known is not None else {}
    return {model: saved.get(model) or measure_profile(model) for model in scenario.models}


def load_profiles(path: Path) -> dict[str, ModelProfile]:
    """Profiles saved by :func:`save_profiles`, by model."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {name: ModelProfile.from_json(profile) for name, profile in data.items()}


def save_profiles(profiles: dict[str, ModelProfile], path: Path) -> None:
    """Keep measured profiles, to rerun a scenario on the same figures."""
    data = {name: profile.to_json() for name, profile in profiles.items()}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _request(model_id: str, sha: str, cut_id: str, tensors: dict[str, np.ndarray]) -> bytes:
    request = InferenceRequest(
        request_id="x" * 32,
        agent_id="agent-000000000000",
        model_id=model_id,
        model_sha256=sha,
        cut_id=cut_id,
        tensors=tensors,
        sent_at=time.time(),
        deadline_ms=5000.0,
    )
    return encode_request(request)

"""What fleet mode knows of a model, measured on this host: per candidate cut, bytes and compute.

The profile holds, for each of a model's candidate cuts (the cuts
``cut="auto"`` chooses between): the bytes of a request message at that cut,
the head's time on this host (one ORT thread) and the tail's, and the bytes
of a reply. A device runs its head ``factor`` times slower
(:data:`simulations.PROFILES`); a hub runs tails as this host does. Measured
with the agent's own chain, on a random image, median of a few runs.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from protocol import InferenceReply, InferenceRequest, encode_reply, encode_request

if TYPE_CHECKING:
    from pathlib import Path

PROFILE_FORMAT = 1
_RUNS = 5


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CutCost:
    """One candidate cut as this host measured it.

    Attributes:
        id: The cut.
        request_bytes: A request message at this cut (``0`` for edge-only).
        head_ms: The head on this host (the whole model for edge-only).
        tail_ms: The tail on this host (``0`` for edge-only).
    """

    id: str
    request_bytes: int
    head_ms: float
    tail_ms: float


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ModelProfile:
    """A model's candidate cuts, measured (see the module docstring)."""

    model: str
    model_sha256: str
    cuts: tuple[CutCost, ...]
    reply_bytes: int

    def cut(self, cut_id: str) -> CutCost:
        """The cut called ``cut_id``.

        Raises:
            KeyError: Not a candidate cut of this model.
        """
        for cut in self.cuts:
            if cut.id == cut_id:
                return cut
        raise KeyError(cut_id)

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
        )


def measure_profile(model: str) -> ModelProfile:
    """Measure ``model``'s candidate cuts on this host (a few seconds; needs ``onnx`` for a zoo model)."""
    from edge_agent import EDGE_ONLY, ModelHalves  # noqa: PLC0415 - the measuring side only

    halves = ModelHalves.open(model, threads=1)
    chain = halves.chain()
    ids = chain.manifest.cut_ids
    spec = chain.manifest.inputs[0]
    shape = tuple(dim if isinstance(dim, int) else 1 for dim in spec.shape)
    rng = np.random.default_rng(0)
    feeds = {spec.name: rng.integers(0, 256, shape).astype(spec.dtype)}
    chain.run(feeds, ids[0], EDGE_ONLY)  # the first run is slow
    runs = [chain.run(feeds, ids[0], EDGE_ONLY)[1] for _ in range(_RUNS)]
    segment_ms = [statistics.median(run[index] for run in runs) for index in range(len(ids) - 1)]
    total = sum(segment_ms)
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

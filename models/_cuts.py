"""Cut enumeration: every prefix of a model's topological order, once per crossing set.

One walk over the non-constant nodes keeps the *live* set, the tensors
available on the edge that a later node still reads or that are graph outputs,
with a count of each tensor's remaining consumers. The live set after each
prefix is that prefix's crossing set.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import TYPE_CHECKING, Any

from models._graph import Graph, analyse
from models._manifest import CLOUD_ONLY, EDGE_ONLY
from protocol.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    import onnx

    from models._manifest import TensorSpec

# Single-tensor ids that could be mistaken for another kind of id get "tensor:".
_RESERVED_PREFIXES = ("prefix:", "tensor:")


@dataclasses.dataclass(frozen=True)
class Cut:
    """A place to split a model: what the edge computes, what it sends.

    Attributes:
        id: ``"input"`` (the edge runs nothing), ``"output"`` (the edge runs
            everything), the crossing tensor's name for a single-tensor cut
            (``"tensor:<name>"`` if the name could be mistaken for another id),
            else ``"prefix:<position>"``.
        position: How many non-constant nodes of the topological order run on
            the edge.
        tensors: Every tensor that travels from edge to cloud, in wire order
            (``crossing`` in JSON, as in manifests and docs/protocol.md).
        bytes: Their total size at batch 1 (symbolic dimensions set to 1).
        single_tensor: Exactly one tensor crosses.
    """

    id: str
    position: int
    tensors: tuple[TensorSpec, ...]
    bytes: int
    single_tensor: bool

    def to_json(self) -> dict[str, Any]:
        """The cut as a JSON-ready dict: ``id``, ``position``, ``crossing``, ``bytes``, ``single_tensor``."""
        return {
            "id": self.id,
            "position": self.position,
            "crossing": [spec.to_json() for spec in self.tensors],
            "bytes": self.bytes,
            "single_tensor": self.single_tensor,
        }


@dataclasses.dataclass(frozen=True)
class CutScan:
    """The cuts of a model, and those rejected for lack of shape information.

    Attributes:
        cuts: The valid cuts: ``input`` first, then by position, ``output`` last.
        rejected: Id of each rejected cut to the reason.
    """

    cuts: tuple[Cut, ...]
    rejected: dict[str, str]

    def find(self, cut: str | Cut) -> Cut:
        """The cut with ``cut``'s id; a :class:`Cut` must also match this model's.

        Raises:
            ModelError: No such valid cut; the message says why and lists some
                valid ids.
        """
        cut_id = cut if isinstance(cut, str) else cut.id
        found = next((c for c in self.cuts if c.id == cut_id), None)
        if found is not None and (isinstance(cut, str) or cut == found):
            return found
        if found is not None:
            msg = f"cut {cut_id!r} was enumerated on another model: it does not match"
        elif cut_id in self.rejected:
            msg = f"cut {cut_id!r} cannot be used: {self.rejected[cut_id]}"
        else:
            msg = f"unknown cut {cut_id!r}: valid cuts include {self._examples()}"
        raise ModelError(msg)

    def _examples(self, count: int = 6) -> str:
        ids = [cut.id for cut in self.cuts]
        shown = ids if len(ids) <= count else [*ids[: count - 1], "...", ids[-1]]
        return ", ".join(shown) + " (see `edgecut models cuts`)"


def enumerate_cuts(model: onnx.ModelProto) -> list[Cut]:
    """Every cut of ``model``: each prefix of its topological order, once per crossing.

    Constant nodes (``Constant``, and nodes computed from weights only) are not
    in the order: each side recomputes those it needs, and initializers are
    copied to each side that reads them, so neither ever crosses. The list
    starts with ``input`` (the edge runs nothing; the model inputs cross), ends
    with ``output`` (the edge runs everything; the model outputs cross) and has
    the other cuts by position in between, each at the first position where its
    crossing set occurs.

    Cuts whose crossing tensors lack a known element type or full shape (every
    dimension a number or a symbolic name, after shape inference) are omitted;
    :func:`split` names the missing information if asked for one. Shape
    inference names data-dependent sizes (``unk__0``): those count as symbolic,
    so ``bytes`` takes them as 1.

    Raises:
        ModelError: The graph is invalid (a read of an undefined tensor, a
            name defined twice, a cycle).
    """
    return list(scan(analyse(model)).cuts)


def scan(graph: Graph) -> CutScan:
    """Enumerate ``graph``'s cuts, deduplicated by crossing set.

    A cut whose crossing tensors lack a known element type or full shape (each
    dimension a number or a symbolic name) is left out of ``cuts`` and listed in
    ``rejected`` with the reason.
    """
    seen = {frozenset(graph.inputs), frozenset(graph.outputs)}  # the extremes come first and last
    found = [(CLOUD_ONLY, 0, graph.inputs)]
    for position, live in _prefix_live_sets(graph):
        key = frozenset(live)
        if key not in seen:
            seen.add(key)
            found.append((_cut_id(position, live), position, live))
    found.append((EDGE_ONLY, len(graph.compute), graph.outputs))
    cuts: list[Cut] = []
    rejected: dict[str, str] = {}
    specs: dict[str, TensorSpec] = {}  # a tensor crosses many cuts: describe it once
    for cut_id, position, names in found:
        try:
            cuts.append(_make_cut(graph, specs, cut_id, position, names))
        except ModelError as exc:
            rejected[cut_id] = str(exc)
    return CutScan(cuts=tuple(cuts), rejected=rejected)


def _prefix_live_sets(graph: Graph) -> Iterator[tuple[int, tuple[str, ...]]]:
    """The crossing set after each proper, non-empty prefix, in birth order."""
    outputs = set(graph.outputs)
    remaining = Counter(name for index in graph.compute for name in graph.deps[index] if name not in graph.constants)
    live = dict.fromkeys(name for name in graph.inputs if remaining[name] or name in outputs)
    for position, index in enumerate(graph.compute[:-1], start=1):
        for name in graph.deps[index]:
            if name in remaining:
                remaining[name] -= 1
                if not remaining[name] and name not in outputs:
                    live.pop(name, None)
        live.update(dict.fromkeys(n for n in graph.nodes[index].output if remaining[n] or n in outputs))
        yield position, tuple(live)


def _cut_id(position: int, names: tuple[str, ...]) -> str:
    if len(names) != 1:
        return f"prefix:{position}"
    name = names[0]
    reserved = name in {CLOUD_ONLY, EDGE_ONLY} or name.startswith(_RESERVED_PREFIXES)
    return f"tensor:{name}" if reserved else name


def _make_cut(graph: Graph, specs: dict[str, TensorSpec], cut_id: str, position: int, names: tuple[str, ...]) -> Cut:
    for name in names:
        if name not in specs:
            specs[name] = graph.spec(name)
    tensors = tuple(specs[name] for name in names)
    return Cut(
        id=cut_id,
        position=position,
        tensors=tensors,
        bytes=sum(spec.nbytes() for spec in tensors),
        single_tensor=len(tensors) == 1,
    )


def candidate_cuts(cuts: Sequence[Cut]) -> list[Cut]:
    """The cuts worth choosing between at run time: usually a handful.

    ``input`` and ``output``, and between them every cut that sends fewer
    bytes than every cut before it. A cut that sends more than an earlier
    one costs more on the device and on the link, and saves only hub
    compute, which edge-only saves entirely: while the hub's queue and the
    round trip do not depend on the cut, it never has the lowest latency.

    Args:
        cuts: A model's cuts as :func:`enumerate_cuts` lists them.
    """
    chosen: list[Cut] = []
    for cut in cuts:
        if cut.id in {CLOUD_ONLY, EDGE_ONLY} or cut.bytes < min(c.bytes for c in chosen):
            chosen.append(cut)
    return chosen

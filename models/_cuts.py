"""Cut enumeration: every prefix of a model's topological order, once per crossing set.

One walk over the non-constant nodes keeps the *live* set, the tensors
available on the edge that a later node still reads or that are graph outputs,
with a count of each tensor's remaining consumers. The live set after each
prefix is that prefix's crossing set.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from models import _shapes
from models._feeds import random_feeds
from models._graph import Graph, analyse
from models._input_shapes import bound_symbols
from models._manifest import CLOUD_ONLY, EDGE_ONLY
from protocol import RAW_CODEC, data_bytes_estimate, effective_codec
from protocol.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    import onnx

    from models._input_shapes import InputShapes
    from models._manifest import TensorSpec

P = TypeVar("P", bound="Place")

# Single-tensor ids that could be mistaken for another kind of id get "tensor:".
_RESERVED_PREFIXES = ("prefix:", "tensor:")


@dataclasses.dataclass(frozen=True)
class Place:
    """Where a model can be split, whatever the sizes it runs at.

    Attributes:
        id: ``"input"`` (the edge runs nothing), ``"output"`` (the edge runs
            everything), the crossing tensor's name for a single-tensor cut
            (``"tensor:<name>"`` if the name could be mistaken for another id),
            else ``"prefix:<position>"``.
        position: How many non-constant nodes of the topological order run on
            the edge.
        tensors: Every tensor that travels from edge to cloud, in wire order
            (``crossing`` in JSON, as in manifests and docs/protocol.md),
            with the model's symbolic sizes.
    """

    id: str
    position: int
    tensors: tuple[TensorSpec, ...]


@dataclasses.dataclass(frozen=True)
class Cut(Place):
    """A place to split a model, with what it sends at concrete input shapes.

    Attributes:
        bytes: The crossing tensors' total size at the input shapes the cuts
            were counted at (``enumerate_cuts``' ``input_shapes``; a batch
            axis at 1).
        single_tensor: Exactly one tensor crosses.
        measured: Some crossing size depends on the input's values (boxes
            left after a threshold): ``bytes`` was measured on one random
            input of those shapes.
    """

    bytes: int
    single_tensor: bool
    measured: bool = False

    def to_json(self) -> dict[str, Any]:
        """The cut as a JSON-ready dict: ``id``, ``position``, ``crossing``, ``bytes``, ``single_tensor``."""
        return {
            "id": self.id,
            "position": self.position,
            "crossing": [spec.to_json() for spec in self.tensors],
            "bytes": self.bytes,
            "single_tensor": self.single_tensor,
            "measured": self.measured,
        }


@dataclasses.dataclass(frozen=True)
class CutScan(Generic[P]):
    """The places (or cuts) of a model, and those rejected for lack of shape information.

    Attributes:
        cuts: The valid ones: ``input`` first, then by position, ``output`` last.
        rejected: Id of each rejected one to the reason.
    """

    cuts: tuple[P, ...]
    rejected: dict[str, str]

    def find(self, cut: str | Place) -> P:
        """The one with ``cut``'s id; a :class:`Place` must also match this model's.

        Raises:
            ModelError: No such valid cut; the message says why and lists some
                valid ids.
        """
        cut_id = cut if isinstance(cut, str) else cut.id
        found = next((c for c in self.cuts if c.id == cut_id), None)
        if found is not None and (
            isinstance(cut, str) or (cut.position, cut.tensors) == (found.position, found.tensors)
        ):
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


def enumerate_cuts(model: onnx.ModelProto, input_shapes: InputShapes | None = None) -> list[Cut]:
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
    :func:`split` names the missing information if asked for one. A cut's
    tensors keep the model's symbolic sizes (what a hub accepts); its bytes
    are counted at concrete input shapes (``models._shapes``).

    Args:
        model: Any ONNX model; it is not modified.
        input_shapes: The shape of each input the model does not fix (a
            batch axis may be left out: it counts as 1).

    Raises:
        ModelError: The graph is invalid (a read of an undefined tensor, a
            name defined twice, a cycle), an input's size is known from
            nowhere (the message names it and the option to state it), or
            the model cannot run at the stated shapes.
    """
    return list(scan(analyse(model), input_shapes).cuts)


def enumerate_places(model: onnx.ModelProto) -> list[Place]:
    """Every place to split ``model``, as :func:`enumerate_cuts` lists them, without counting bytes.

    Needs no input shapes: what a hub that serves any size a model takes lists.

    Raises:
        ModelError: The graph is invalid (see :func:`enumerate_cuts`).
    """
    return list(layout(analyse(model)).cuts)


def find_cut(model: onnx.ModelProto, cut: str, input_shapes: InputShapes | None = None) -> Cut:
    """The cut of ``model`` with id ``cut``, its bytes counted at ``input_shapes``.

    Raises:
        ModelError: As :func:`enumerate_cuts`, or no such valid cut (the
            message says why and lists some valid ids).
    """
    return scan(analyse(model), input_shapes).find(cut)


def scan(graph: Graph, input_shapes: InputShapes | None = None) -> CutScan[Cut]:
    """Enumerate ``graph``'s cuts, deduplicated by crossing set, bytes counted at ``input_shapes``."""
    places = layout(graph)
    specs = {spec.name: spec for place in places.cuts for spec in place.tensors}
    sizes, measured = _sizes(graph, specs, input_shapes)
    cuts = tuple(
        Cut(
            id=place.id,
            position=place.position,
            tensors=place.tensors,
            bytes=sum(sizes[spec.name] for spec in place.tensors),
            single_tensor=len(place.tensors) == 1,
            measured=any(spec.name in measured for spec in place.tensors),
        )
        for place in places.cuts
    )
    return CutScan(cuts=cuts, rejected=places.rejected)


def layout(graph: Graph) -> CutScan[Place]:
    """Every place to split ``graph``, deduplicated by crossing set: no sizes needed.

    A place whose crossing tensors lack a known element type or full shape
    (each dimension a number or a symbolic name) is left out of ``cuts`` and
    listed in ``rejected`` with the reason.
    """
    seen = {frozenset(graph.inputs), frozenset(graph.outputs)}  # the extremes come first and last
    found = [(CLOUD_ONLY, 0, graph.inputs)]
    for position, live in _prefix_live_sets(graph):
        key = frozenset(live)
        if key not in seen:
            seen.add(key)
            found.append((_cut_id(position, live), position, live))
    found.append((EDGE_ONLY, len(graph.compute), graph.outputs))
    rejected: dict[str, str] = {}
    specs: dict[str, TensorSpec] = {}  # a tensor crosses many cuts: describe it once
    places = []
    for cut_id, position, names in found:
        try:
            places.append(Place(id=cut_id, position=position, tensors=tuple(_spec(graph, specs, n) for n in names)))
        except ModelError as exc:
            rejected[cut_id] = str(exc)
    return CutScan(cuts=tuple(places), rejected=rejected)


def _spec(graph: Graph, specs: dict[str, TensorSpec], name: str) -> TensorSpec:
    if name not in specs:
        specs[name] = graph.spec(name)
    return specs[name]


def _sizes(
    graph: Graph, specs: dict[str, TensorSpec], input_shapes: InputShapes | None
) -> tuple[dict[str, int], frozenset[str]]:
    """Bytes of every tensor in ``specs`` at the resolved input shapes, and those measured by a run.

    A tensor whose every size is a number or a symbol of the inputs (a batch
    axis, a stated height) is counted from its spec; only the others need
    ONNX shape inference on the model (and a run, for data-dependent sizes).
    """
    if not input_shapes and all(isinstance(dim, int) for spec in specs.values() for dim in spec.shape):
        return {name: spec.nbytes() for name, spec in specs.items()}, frozenset()
    inputs = [graph.spec(name) for name in graph.inputs]
    shapes = _shapes.input_shapes(graph.model, input_shapes)
    known = bound_symbols(inputs, shapes)
    direct = {
        name: spec.nbytes(symbols=known)
        for name, spec in specs.items()
        if all(isinstance(dim, int) or dim in known for dim in spec.shape)
    }
    rest = [name for name in specs if name not in direct]
    if not rest:
        return direct, frozenset()
    sizes, measured = _shapes.tensor_bytes(graph.model, rest, shapes, random_feeds(inputs, shapes=shapes))
    return direct | sizes, measured


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


def candidate_cuts(cuts: Sequence[Cut], codecs: Sequence[str] = (RAW_CODEC,)) -> list[Cut]:
    """The cuts worth choosing between at run time: usually a handful.

    ``input`` and ``output``, and between them every cut that sends fewer
    bytes than every cut before it, each sent with the allowed codec that
    sends it in fewest. A cut that sends more than an earlier one costs
    more on the device and on the link, and saves only hub compute, which
    edge-only saves entirely: while the hub's queue and the round trip do
    not depend on the cut, it never has the lowest latency. Under ``int8``
    a transformer's float blocks send a quarter of their raw bytes, less
    than its uint8 image: raw alone would keep none of them.

    Args:
        cuts: A model's cuts as :func:`enumerate_cuts` lists them.
        codecs: The codecs requests may use; a compressing one counts at
            its size before compression (what it saves depends on the data).
    """
    chosen: list[Cut] = []
    least = math.inf
    for cut in cuts:
        sent = _fewest_bytes(cut, codecs)
        if cut.id in {CLOUD_ONLY, EDGE_ONLY} or sent < least:
            chosen.append(cut)
            least = min(least, sent)
    return chosen


def _fewest_bytes(cut: Cut, codecs: Sequence[str]) -> float:
    """``cut.bytes`` under the codec of ``codecs`` that sends it in fewest (the ratio at unit symbolic sizes)."""
    shapes = [(spec.dtype, spec.concrete()) for spec in cut.tensors]
    raw = sum(data_bytes_estimate(RAW_CODEC, dtype, shape) for dtype, shape in shapes)
    if not raw:
        return cut.bytes
    fewest = min(
        sum(data_bytes_estimate(effective_codec(codec, dtype, shape), dtype, shape) for dtype, shape in shapes)
        for codec in codecs
    )
    return cut.bytes * fewest / raw

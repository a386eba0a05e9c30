"""Split a model at a cut into a head (edge) and a tail (cloud) model.

Each half is built from its own node set rather than with
``onnx.utils.Extractor``, which drops the producers of outer-scope tensors read
inside ``If``/``Loop``/``Scan`` bodies. A half gets the initializers and
constant nodes it reads, the value_info of the tensors it computes, and the
full model's opsets, functions and metadata.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import TYPE_CHECKING

import onnx

from models import _shapes
from models._cuts import Place, layout
from models._graph import Graph, analyse, dangling_inputs
from models._manifest import CLOUD_ONLY, EDGE_ONLY, HEAD_FILE, TAIL_FILE, Manifest, sha256_hex
from models._segments import Boundary, SegmentFile, SegmentsManifest
from protocol.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable
    from pathlib import Path

    from models._input_shapes import InputShapes

# The scalar fields of ModelProto a half inherits (onnx is proto2: copy only those set).
_MODEL_FIELDS = (
    "ir_version",
    "producer_name",
    "producer_version",
    "domain",
    "model_version",
    "doc_string",
)


@dataclasses.dataclass(frozen=True)
class Split:
    """The two halves of a model and the manifest that ties them together.

    Attributes:
        head: What the edge runs: the model's inputs to the crossing tensors;
            ``None`` at the ``input`` cut.
        tail: What the cloud runs: the crossing tensors to the model's
            outputs; ``None`` at the ``output`` cut.
        manifest: Model, cut, tensors and the sha256 of each half.
    """

    head: onnx.ModelProto | None
    tail: onnx.ModelProto | None
    manifest: Manifest


def model_sha256(model: onnx.ModelProto) -> str:
    """The hex sha256 of ``model``'s serialized bytes (its identity in manifests)."""
    return sha256_hex(model.SerializeToString())


def split(
    model: onnx.ModelProto,
    cut: str | Place,
    *,
    model_id: str,
    check: bool = True,
    input_shapes: InputShapes | None = None,
) -> Split:
    """Split ``model`` at ``cut`` into a head and a tail.

    The head reads the model inputs it uses and returns the crossing tensors in
    cut order; the tail reads the crossing tensors and returns the model's
    outputs. The same model and cut always give byte-identical halves.

    Args:
        model: Any ONNX model; it is not modified.
        cut: A cut id from :func:`enumerate_cuts`, or one of its cuts.
        model_id: The model's name for the manifest (zoo name or file stem).
        check: Run ``onnx.checker.check_model(..., full_check=True)`` on the
            model (once sorted, if its nodes were not) and on both halves. Halves are always checked for dangling
            inputs.
        input_shapes: Shapes stated for the model's inputs (see
            ``models.partition.input_shapes``): recorded, resolved, in the
            manifest, where an agent running the halves finds them.

    Raises:
        ModelError: The cut does not exist in this model (the message lists
            valid ids), its tensors lack shape information, or the model or a
            half fails the checks.
    """
    graph = analyse(model)
    data = model.SerializeToString()  # once: serializing dominates the cost of a split
    if check:
        _check_model(data if graph.model is model else graph.model, "the model")
    found = layout(graph).find(cut)
    head = None if found.id == CLOUD_ONLY else _head(graph, found)
    tail = None if found.id == EDGE_ONLY else _tail(graph, found)
    manifest = Manifest(
        model_id=model_id,
        model_sha256=sha256_hex(data),
        cut_id=found.id,
        inputs=tuple(graph.spec(name) for name in graph.inputs),
        crossing=found.tensors,
        outputs=tuple(graph.spec(name) for name in graph.outputs),
        head_sha256=_checked_sha256(head, f"the head at cut {found.id!r}", check=check),
        tail_sha256=_checked_sha256(tail, f"the tail at cut {found.id!r}", check=check),
        input_shapes=_recorded(model, input_shapes),
    )
    return Split(head=head, tail=tail, manifest=manifest)


def save_split(split: Split, directory: Path) -> list[Path]:
    """Write ``split`` into ``directory`` (created if needed); return the paths written.

    Writes ``head.onnx`` and ``tail.onnx`` (each only if the split has it; a
    stale file of a missing half is removed) and ``manifest.json``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for half, name in ((split.head, HEAD_FILE), (split.tail, TAIL_FILE)):
        path = directory / name
        if half is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(half.SerializeToString())
            written.append(path)
    written.append(split.manifest.save(directory))
    return written


def _head(graph: Graph, cut: Place) -> onnx.ModelProto:
    names = [spec.name for spec in cut.tensors]
    nodes = _slice(graph, names, stop=(), side=range(cut.position))
    reads = _reads(graph, nodes, names)
    inputs = [vi for vi in graph.model.graph.input if vi.name in reads]
    return _assemble(graph, "head", nodes, reads=reads, inputs=inputs, outputs=_value_infos(graph, names))


def _tail(graph: Graph, cut: Place) -> onnx.ModelProto:
    names = [spec.name for spec in cut.tensors]
    side = range(cut.position, len(graph.compute))
    nodes = _slice(graph, graph.outputs, stop=set(names), side=side)
    reads = _reads(graph, nodes, graph.outputs)
    # Initializers the model also lists as inputs (overridable defaults) stay inputs.
    defaults = [vi for vi in graph.model.graph.input if vi.name in reads and vi.name in graph.constants]
    inputs = [*_value_infos(graph, names), *defaults]
    return _assemble(graph, "tail", nodes, reads=reads, inputs=inputs, outputs=list(graph.model.graph.output))


def _slice(graph: Graph, targets: Iterable[str], *, stop: Collection[str], side: range) -> list[int]:
    """Indexes, in graph order, of the nodes that ``targets`` need, up to ``stop``.

    Every non-constant node needed must have its rank in ``side``: the cut
    puts every tensor the other side needs into the crossing set.
    """
    picked: set[int] = set()
    pending = [name for name in targets if name not in stop]
    while pending:
        index = graph.producer.get(pending.pop())
        if index is None or index in picked:
            continue
        if graph.rank[index] >= 0 and graph.rank[index] not in side:
            node = graph.nodes[index].name
            msg = f"internal error: node {node!r} is needed on both sides of the cut"
            raise ModelError(msg)
        picked.add(index)
        pending.extend(name for name in graph.deps[index] if name not in stop)
    return sorted(picked)


def _reads(graph: Graph, nodes: Iterable[int], also: Iterable[str]) -> set[str]:
    """What a half made of ``nodes`` reads, with the names it returns (``also``)."""
    reads = {name for index in nodes for name in graph.deps[index]}
    reads.update(also)
    return reads


def _value_infos(graph: Graph, names: Iterable[str]) -> list[onnx.ValueInfoProto]:
    return [onnx.ValueInfoProto(name=name, type=graph.types[name]) for name in names]


def _assemble(
    graph: Graph,
    label: str,
    nodes: list[int],
    *,
    reads: set[str],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
) -> onnx.ModelProto:
    source = graph.model
    produced = {name for index in nodes for name in graph.nodes[index].output}
    interface = {vi.name for vi in (*inputs, *outputs)}
    half = onnx.ModelProto(
        opset_import=source.opset_import,
        metadata_props=source.metadata_props,
        functions=source.functions,
    )
    for field in _MODEL_FIELDS:
        if source.HasField(field):
            setattr(half, field, getattr(source, field))
    body = half.graph
    body.name = f"{source.graph.name}_{label}"
    body.node.extend(graph.nodes[index] for index in nodes)
    body.input.extend(inputs)
    body.output.extend(outputs)
    body.initializer.extend(t for t in source.graph.initializer if t.name in reads)
    body.sparse_initializer.extend(t for t in source.graph.sparse_initializer if t.values.name in reads)
    body.value_info.extend(vi for vi in source.graph.value_info if vi.name in produced and vi.name not in interface)
    return half


def _checked_sha256(half: onnx.ModelProto | None, label: str, *, check: bool) -> str | None:
    """Check ``half`` for dangling inputs (and with the checker); return its sha256."""
    if half is None:
        return None
    dangling = dangling_inputs(half.graph)
    if dangling:
        msg = f"{label} reads tensors it does not define: {', '.join(dangling[:5])}"
        raise ModelError(msg)
    data = half.SerializeToString()
    if check:
        _check_model(data, label)
    return sha256_hex(data)


def _check_model(model: onnx.ModelProto | bytes, label: str) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        msg = f"{label} fails the ONNX checker: {exc}"
        raise ModelError(msg) from exc


@dataclasses.dataclass(frozen=True)
class Segments:
    """A model cut into a chain of segments (see :mod:`models._segments`).

    Attributes:
        models: One model per segment, in order.
        manifest: The cuts, tensors and the sha256 of each segment.
    """

    models: tuple[onnx.ModelProto, ...]
    manifest: SegmentsManifest


def split_segments(
    model: onnx.ModelProto,
    cuts: Iterable[str | Place],
    *,
    model_id: str,
    check: bool = True,
    input_shapes: InputShapes | None = None,
) -> Segments:
    """Cut ``model`` at every one of ``cuts`` into a chain of segments.

    ``input`` and ``output`` are always cuts of the chain; the others may be
    given in any order. Segment ``i`` reads the tensors crossing cut ``i``
    that it needs and returns those crossing cut ``i + 1`` that it computes
    (a tensor crossing both passes by it). The same model and cuts always give
    byte-identical segments.

    Raises:
        ModelError: A cut does not exist in this model, or a segment fails
            the checks (see :func:`split`; ``input_shapes`` as there).
    """
    graph = analyse(model)
    data = model.SerializeToString()
    if check:
        _check_model(data if graph.model is model else graph.model, "the model")
    found = layout(graph)
    wanted = {found.find(cut).id for cut in cuts} | {CLOUD_ONLY, EDGE_ONLY}
    chain = [cut for cut in found.cuts if cut.id in wanted]
    models: list[onnx.ModelProto] = []
    files: list[SegmentFile] = []
    for index, (start, end) in enumerate(itertools.pairwise(chain), start=1):
        segment = _segment(graph, start, end)
        label = f"the segment from {start.id!r} to {end.id!r}"
        sha = _checked_sha256(segment, label, check=check)
        models.append(segment)
        files.append(SegmentFile(file=f"segment-{index:02d}.onnx", sha256=sha or ""))
    manifest = SegmentsManifest(
        model_id=model_id,
        model_sha256=sha256_hex(data),
        inputs=tuple(graph.spec(name) for name in graph.inputs),
        outputs=tuple(graph.spec(name) for name in graph.outputs),
        cuts=tuple(Boundary(id=cut.id, crossing=cut.tensors) for cut in chain),
        segments=tuple(files),
        input_shapes=_recorded(model, input_shapes),
    )
    return Segments(models=tuple(models), manifest=manifest)


def _recorded(model: onnx.ModelProto, stated: InputShapes | None) -> dict[str, tuple[int, ...]] | None:
    """Every input's shape as counted, for a manifest, where shapes were stated; else ``None``."""
    return None if not stated else _shapes.input_shapes(model, stated)


def save_segments(segments: Segments, directory: Path) -> list[Path]:
    """Write ``segments`` into ``directory`` (created if needed); return the paths written.

    Writes one ``segment-NN.onnx`` per segment and ``segments.json``; stale
    segment files of an earlier chain with more segments are removed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for model, segment in zip(segments.models, segments.manifest.segments, strict=True):
        path = directory / segment.file
        path.write_bytes(model.SerializeToString())
        written.append(path)
    keep = {segment.file for segment in segments.manifest.segments}
    for stale in directory.glob("segment-*.onnx"):
        if stale.name not in keep:
            stale.unlink()
    written.append(segments.manifest.save(directory))
    return written


def _segment(graph: Graph, start: Place, end: Place) -> onnx.ModelProto:
    given = [spec.name for spec in start.tensors]
    made = [spec.name for spec in end.tensors if spec.name not in given]
    if not made:
        msg = f"nothing is computed between cuts {start.id!r} and {end.id!r}: they cannot both be in a chain"
        raise ModelError(msg)
    nodes = _slice(graph, made, stop=set(given), side=range(start.position, end.position))
    reads = _reads(graph, nodes, made)
    defaults = [vi for vi in graph.model.graph.input if vi.name in reads and vi.name in graph.constants]
    inputs = [*_value_infos(graph, [name for name in given if name in reads]), *defaults]
    return _assemble(
        graph, f"{start.id}-{end.id}", nodes, reads=reads, inputs=inputs, outputs=_value_infos(graph, made)
    )

"""Models with the traits of the ones users bring, built offline for tests (issue 25).

The zoo's models are fixed-shape and take a uint8 image; exported models
usually are not. Each function here builds, with ``onnx.helper`` and weights
drawn from a fixed seed, a small model (well under a second to build,
milliseconds to run) with one family's traits:

- :func:`detector`: a YOLO-like detector: dynamic batch, height and width,
  float input scaled outside the graph, a neck whose Concat fails on 1x1 and
  on many sizes that are not multiples of 8, and a box-decoding tail with a data-dependent
  axis (a number of boxes, not a batch).
- :func:`dynamic_classifier`: dynamic batch, height and width, global
  average pooling then a linear layer.
- :func:`recurrent`: a voice-activity-like model with several inputs (audio,
  a state carried between calls, a scalar sample rate) and an ``If`` on the
  sample rate whose branches read the audio from the outer scope.
- :func:`float_input_model`: a fixed-shape CNN on normalised float NCHW
  input, for use behind a preprocessing prelude.

:func:`realistic_inputs` gives each model valid inputs: an image in 0..1,
audio in -1..1, a zero state and a 16 kHz sample rate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models._zoo_builder import IR_VERSION, OPSET, GraphBuilder

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

CLASSES = 3
"""Detector classes and classifier logits."""
SCORE_THRESHOLD = 0.55
"""A detector's anchor is a detection when its best class score is above this."""
DETECTOR_STRIDE = 8
"""Its deepest stride: the detector runs on any height and width that are multiples of this."""
STATE_SIZE = 16
"""Width of each of the recurrent model's two state rows."""
SAMPLE_RATE = 16000
"""The recurrent model's main branch; any other rate takes the other branch."""
FLOAT_INPUT_SHAPE = (1, 3, 64, 64)
"""The input shape of :func:`float_input_model`."""
_SEED = 25


def detector() -> onnx.ModelProto:
    """A YOLO-like detector: ``images`` float32 ``[batch, 3, height, width]`` in 0..1 to ``detections``.

    Traits: symbolic ``batch``, ``height`` and ``width``; a backbone of
    strided Conv+ReLU down to strides 4 and 8; a neck that upsamples the
    stride-8 map (Resize) and concatenates it with the stride-4 one on
    channels, so 1x1 and many sizes that are not multiples of 8 (60, 66)
    fail with a Concat dimension mismatch, as real detectors do; heads at both scales reshaped to ``[batch,
    anchors, 4 + classes]`` (anchors depend on height and width); then box
    decoding that keeps the anchors whose best score passes
    :data:`SCORE_THRESHOLD` (NonZero, GatherND). ``detections`` is ``[boxes,
    6]`` (batch index, box, score): its first axis is a number of boxes,
    known only from the data.
    """
    b = _builder("images", 3)
    x = b.relu(b.conv("images", "stem.conv", 8, 3, stride=2), "stem.relu")
    p3 = b.relu(b.conv(x, "p3.conv", 16, 3, stride=2), "p3.relu")
    p4 = b.relu(b.conv(p3, "p4.conv", 32, 3, stride=2), "p4.relu")
    scales = _const(b, "neck.scales", np.array([1, 1, 2, 2], np.float32))
    up = _node(b, "Resize", [p4, "", scales], "neck.upsample", mode="nearest")
    b.declare(up, b.channels(p4))  # the builder tracks channels of the nodes it made itself
    fused = b.relu(b.conv(b.concat([up, p3], "neck.concat"), "neck.conv", 16, 3), "neck.relu")
    per_anchor = _const(b, "head.shape", np.array([0, 4 + CLASSES, -1], np.int64))
    flat = [
        _node(b, "Reshape", [b.conv(source, f"head{i}.conv", 4 + CLASSES, 1), per_anchor], f"head{i}.flatten")
        for i, source in enumerate((fused, p4))
    ]
    joined = _node(b, "Concat", flat, "head.concat", axis=2)
    anchors = _node(b, "Transpose", [joined], "head.anchors", perm=[0, 2, 1])
    _decode(b, _node(b, "Sigmoid", [anchors], "decode.sigmoid"))
    return _model(
        b,
        "corpus_detector",
        [_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [_info("detections", TensorProto.FLOAT, ["boxes", 6])],
    )


def _decode(b: GraphBuilder, anchors: str) -> None:
    """``detections``: batch index, box and best score of each anchor whose best score passes the threshold."""
    last_axis = _ints(b, "decode.last_axis", [2])  # opset 17: Slice takes axes as an input, ReduceMax as an attribute
    box = _slice(b, anchors, "decode.box", (0, 4), last_axis)
    best = _node(
        b,
        "ReduceMax",
        [_slice(b, anchors, "decode.classes", (4, 4 + CLASSES), last_axis)],
        "decode.best",
        axes=[2],
        keepdims=0,
    )
    threshold = _const(b, "decode.threshold", np.array(SCORE_THRESHOLD, np.float32))
    keep = _node(b, "Greater", [best, threshold], "decode.keep")
    where = _node(b, "Transpose", [_node(b, "NonZero", [keep], "decode.nonzero")], "decode.where")  # [boxes, 2]
    score = _node(
        b,
        "Unsqueeze",
        [_node(b, "GatherND", [best, where], "decode.scores"), _ints(b, "decode.column", [1])],
        "decode.score",
    )
    image = _slice(b, where, "decode.image", (0, 1), _ints(b, "decode.index_axis", [1]))
    image = _node(b, "Cast", [image], "decode.image_float", to=TensorProto.FLOAT)
    _node(b, "Concat", [image, _node(b, "GatherND", [box, where], "decode.boxes"), score], "detections", axis=1)


def dynamic_classifier() -> onnx.ModelProto:
    """A classifier on ``input`` float32 ``[batch, 3, height, width]`` (any size from 1x1) to ``logits``.

    Traits: symbolic ``batch``, ``height`` and ``width``; two strided
    Conv+ReLU, then global average pooling and a linear layer, so the logits
    are ``[batch, CLASSES]`` whatever the image size.
    """
    b = _builder("input", 3)
    x = b.relu(b.conv("input", "conv1", 8, 3, stride=2), "conv1.relu")
    x = b.relu(b.conv(x, "conv2", 16, 3, stride=2), "conv2.relu")
    b.classifier(x, CLASSES)
    return _model(
        b,
        "corpus_dynamic_classifier",
        [_info("input", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
    )


def float_input_model() -> onnx.ModelProto:
    """A CNN on ``input`` float32 ``[1, 3, 64, 64]``, normalised outside the graph, to ``logits``.

    Traits: a fixed shape, and preprocessing (``(x / 255 - mean) / std``)
    left to the caller, as exported classifiers do: the model a prelude
    would put a uint8 image in front of.
    """
    b = _builder("input", 3)
    x = b.relu(b.conv("input", "conv1", 8, 3, stride=2), "conv1.relu")
    x = b.relu(b.conv(x, "conv2", 16, 3, stride=2), "conv2.relu")
    b.classifier(x, CLASSES)
    return _model(
        b,
        "corpus_float_input",
        [_info("input", TensorProto.FLOAT, list(FLOAT_INPUT_SHAPE))],
        [_info("logits", TensorProto.FLOAT, [1, CLASSES])],
    )


def recurrent() -> onnx.ModelProto:
    """A voice-activity-like model: ``input``, ``state`` and ``sr`` in; ``output`` and ``stateN`` out.

    Inputs: ``input`` float32 ``[batch, samples]`` audio, ``state`` float32
    ``[2, batch, 16]`` (zeros at the start, then the last ``stateN``), and
    ``sr``, a scalar int64 sample rate. An ``If`` on ``sr == 16000`` runs one
    of two branches (a reflect-padded strided Conv1d of their own, reading
    ``input`` from the outer scope), so a 1-sample input fails in the branch's
    Pad; then two tanh cells update the state and ``output`` ``[batch, 1]``
    is a probability.
    """
    b = _builder("input", 1)
    rate = _const(b, "sr.expected", np.array(SAMPLE_RATE, np.int64))
    is_main_rate = _node(b, "Equal", ["sr", rate], "sr.is_16k")
    features = _node(
        b,
        "If",
        [is_main_rate],
        "features",
        then_branch=_audio_branch("16k", kernel=8, pad=4),
        else_branch=_audio_branch("8k", kernel=4, pad=2),
    )
    rows = [_node(b, "Gather", ["state", _ints(b, f"state.row{i}", i)], f"state.h{i}", axis=0) for i in (0, 1)]
    h0 = _cell(b, "cell0", features, rows[0])
    h1 = _cell(b, "cell1", h0, rows[1])
    first = _ints(b, "state.axis", [0])
    unsqueezed = [_node(b, "Unsqueeze", [h, first], f"{h}.row") for h in (h0, h1)]
    _node(b, "Concat", unsqueezed, "stateN", axis=0)
    scores = _node(b, "MatMul", [h1, _weight(b, "out.weight", (STATE_SIZE, 1))], "out.matmul")
    logit = _node(b, "Add", [scores, _weight(b, "out.bias", (1,))], "out.logit")
    _node(b, "Sigmoid", [logit], "output")
    return _model(
        b,
        "corpus_recurrent",
        [
            _info("input", TensorProto.FLOAT, ["batch", "samples"]),
            _info("state", TensorProto.FLOAT, [2, "batch", STATE_SIZE]),
            _info("sr", TensorProto.INT64, []),
        ],
        [
            _info("output", TensorProto.FLOAT, ["batch", 1]),
            _info("stateN", TensorProto.FLOAT, [2, "batch", STATE_SIZE]),
        ],
    )


def _audio_branch(name: str, *, kernel: int, pad: int) -> onnx.GraphProto:
    """An If branch: ``input`` (outer scope) reflect-padded, a strided Conv1d, ReLU, mean over time."""
    branch = _builder("input", 1, seed=_SEED + kernel)  # its own weights, whichever branch is built first
    padded = _node(
        branch, "Pad", ["input", _ints(branch, f"{name}.pads", [0, pad, 0, pad])], f"{name}.pad", mode="reflect"
    )
    frames = _node(branch, "Unsqueeze", [padded, _ints(branch, f"{name}.channel", [1])], f"{name}.frames")
    weight = _weight(branch, f"{name}.conv.weight", (STATE_SIZE, 1, kernel))
    conv = _node(branch, "Conv", [frames, weight], f"{name}.conv", strides=[kernel // 2])
    relu = _node(branch, "Relu", [conv], f"{name}.relu")
    _node(branch, "ReduceMean", [relu], f"{name}.features", axes=[2], keepdims=0)
    return helper.make_graph(
        branch.nodes,
        f"branch_{name}",
        [],
        [_info(f"{name}.features", TensorProto.FLOAT, ["batch", STATE_SIZE])],
        initializer=branch.initializers,
    )


def _cell(b: GraphBuilder, name: str, x: str, h: str) -> str:
    """``tanh(x W + h U + bias)``: one recurrent step with ``STATE_SIZE`` units."""
    xw = _node(b, "MatMul", [x, _weight(b, f"{name}.w", (STATE_SIZE, STATE_SIZE))], f"{name}.xw")
    hu = _node(b, "MatMul", [h, _weight(b, f"{name}.u", (STATE_SIZE, STATE_SIZE))], f"{name}.hu")
    total = _node(b, "Add", [xw, hu], f"{name}.sum")
    total = _node(b, "Add", [total, _weight(b, f"{name}.bias", (STATE_SIZE,))], f"{name}.pre")
    return _node(b, "Tanh", [total], f"{name}.h")


CORPUS: dict[str, Callable[[], onnx.ModelProto]] = {
    "detector": detector,
    "dynamic_classifier": dynamic_classifier,
    "float_input_model": float_input_model,
    "recurrent": recurrent,
}
"""Every corpus model's builder, by name."""


def realistic_inputs(
    name: str, *, batch: int = 1, height: int = 64, width: int = 64, samples: int = 512, seed: int = 0
) -> dict[str, np.ndarray]:
    """Valid inputs for the corpus model ``name``, by input name.

    Images are smooth random pictures in 0..1 (``float_input_model``'s
    normalised with ImageNet's statistics, at its fixed size); audio is a
    noisy tone in -1..1 with a zero state and ``sr`` 16000.

    Args:
        name: A key of :data:`CORPUS`.
        batch: The batch size (1 for ``float_input_model``).
        height: Image height (detector and classifier).
        width: Image width (detector and classifier).
        samples: Audio samples per batch row (recurrent).
        seed: Seed of the random draws.
    """
    rng = np.random.default_rng(seed)
    if name == "recurrent":
        t = np.arange(samples, dtype=np.float32) / SAMPLE_RATE
        tone = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal((batch, samples), dtype=np.float32)
        return {
            "input": np.clip(tone, -1, 1).astype(np.float32),
            "state": np.zeros((2, batch, STATE_SIZE), np.float32),
            "sr": np.array(SAMPLE_RATE, np.int64),
        }
    if name == "float_input_model":
        mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
        image = _image(rng, 1, *FLOAT_INPUT_SHAPE[2:])
        return {"input": ((image - mean[:, None, None]) / std[:, None, None]).astype(np.float32)}
    key = {"detector": "images", "dynamic_classifier": "input"}[name]
    return {key: _image(rng, batch, height, width)}


def _image(rng: np.random.Generator, batch: int, height: int, width: int) -> np.ndarray:
    """Smooth random pictures, float32 ``[batch, 3, height, width]`` in 0..1: coarse noise, upsampled."""
    coarse = rng.uniform(0, 1, (batch, 3, -(-height // 8), -(-width // 8))).astype(np.float32)
    return np.repeat(np.repeat(coarse, 8, axis=2), 8, axis=3)[:, :, :height, :width].copy()


# --- graph helpers ----------------------------------------------------------------------------


def _builder(input_name: str, channels: int, *, seed: int = _SEED) -> GraphBuilder:
    builder = GraphBuilder(seed=seed)
    builder.declare(input_name, channels)  # the zoo's builder starts from its own preprocessing
    return builder


def _node(b: GraphBuilder, op: str, inputs: Sequence[str], name: str, **attrs: object) -> str:
    """Emit ``op`` as node ``name`` with one output of the same name."""
    b.nodes.append(helper.make_node(op, list(inputs), [name], name=name, **attrs))
    return name


def _const(b: GraphBuilder, name: str, value: np.ndarray) -> str:
    b.initializers.append(numpy_helper.from_array(value, name))
    return name


def _ints(b: GraphBuilder, name: str, value: int | list[int]) -> str:
    return _const(b, name, np.array(value, np.int64))


def _weight(b: GraphBuilder, name: str, shape: tuple[int, ...]) -> str:
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    return _const(b, name, b._normal(shape, float(np.sqrt(1.0 / fan_in))))


def _slice(b: GraphBuilder, x: str, name: str, bounds: tuple[int, int], axes: str) -> str:
    start, end = bounds
    return _node(b, "Slice", [x, _ints(b, f"{name}.start", [start]), _ints(b, f"{name}.end", [end]), axes], name)


def _info(name: str, elem_type: int, shape: Sequence[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, list(shape))


def _model(
    b: GraphBuilder, graph_name: str, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]
) -> onnx.ModelProto:
    graph = helper.make_graph(b.nodes, graph_name, inputs, outputs, initializer=b.initializers)
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION, producer_name="edgecut.tests"
    )

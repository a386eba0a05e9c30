"""A preprocessing prelude: a small ONNX graph that turns a camera's uint8 image into a float model's input.

Many models are exported with their preprocessing outside the graph: a
detector takes ``float32[1, 3, 640, 640]`` scaled to 0..1. At the ``input``
cut that is four bytes a value and no image codec applies.
:func:`add_prelude` composes a prelude in front of such a model with
``onnx.compose.merge_models``, so the new model takes what a camera gives,
a uint8 ``[N, H, W, 3]`` RGB image batch as the zoo's models do, which the
``jpeg`` and ``png`` codecs send as image files.

The prelude computes in float32:

1. ``Cast`` the image to float32.
2. ``Resize`` to the model's height and width (``resize``), or to the largest
   size of the image's aspect ratio that fits, then ``Pad`` with
   ``pad_value`` to the model's size, centred as ultralytics' ``LetterBox``
   does (``letterbox``). Resize is bilinear (mode ``linear``) with
   coordinate mode ``half_pixel`` and no antialiasing: output pixel ``i``
   samples source coordinate ``(i + 0.5) * in / out - 0.5``, clamped to the
   edge pixels, as ``cv2.resize`` with ``INTER_LINEAR`` and torch's
   ``interpolate(mode="bilinear", align_corners=False)`` sample.
3. ``(pixel * scale - mean) / std`` per channel, as one ``Mul`` and one ``Add``.
4. ``Transpose`` to NCHW if the model's layout is ``nchw``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
import onnx
import onnx.compose
from onnx import TensorProto, helper, numpy_helper

from models._graph import initializer_names, tensor_spec
from protocol import ONNX_ELEMENT_TYPES
from protocol.errors import ModelError

if TYPE_CHECKING:
    from models._manifest import TensorSpec

Layout = Literal["nchw", "nhwc"]
Fit = Literal["resize", "letterbox"]

_CHANNELS = 3
_MIN_OPSET = 11  # Resize with sizes, Pad with its pads as an input
_BATCH = "N"  # the batch axis's name where the model leaves it unnamed, as in the zoo
_PREFIX = "prelude."


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Preprocessing:
    """What a model's own preprocessing does to a camera image, outside its graph.

    The model sees ``(pixel * scale - mean) / std`` per channel, RGB, of the
    image resized or letterboxed to its size (module docstring).

    Attributes:
        image: The camera image's ``(height, width)``: the prelude's fixed input size.
        layout: The model input's layout, ``"nchw"`` or ``"nhwc"``.
        scale: Factor applied to pixels 0..255 first, such as ``1 / 255``.
        mean: Subtracted per channel (R, G, B) after scaling.
        std: Divides per channel after the mean.
        fit: ``"resize"`` stretches the image to the model's size;
            ``"letterbox"`` keeps its aspect ratio and pads.
        pad_value: The letterbox padding's pixel value, 0..255 (ultralytics' grey).

    Raises:
        ValueError: A size is not positive, a factor not finite, a ``std`` is
            zero, or a choice unknown.
    """

    image: tuple[int, int]
    layout: Layout
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    fit: Fit = "resize"
    pad_value: float = 114.0

    def __post_init__(self) -> None:
        problems = [
            *_size_problems("image", self.image),
            *_choice_problems("layout", self.layout, get_args(Layout)),
            *_choice_problems("fit", self.fit, get_args(Fit)),
        ]
        if not (math.isfinite(self.scale) and self.scale > 0):
            problems.append(f"scale must be a positive number, not {self.scale}")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != _CHANNELS or not all(math.isfinite(v) for v in values):
                problems.append(f"{name} must be {_CHANNELS} finite numbers (R, G, B), not {values}")
        if 0 in self.std:
            problems.append(f"std must not be zero: {self.std}")
        if not 0 <= self.pad_value <= 255:  # noqa: PLR2004 - the pixel range
            problems.append(f"pad_value must be a pixel value 0..255, not {self.pad_value}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclasses.dataclass(frozen=True, slots=True)
class Placement:
    """Where the camera image lands in the model's input: resized to ``height`` x ``width``, then padded.

    A point ``(x, y)`` of the model's input is ``((x - left) * W / width,
    (y - top) * H / height)`` in an ``H`` x ``W`` camera image: how a
    detector's boxes go back to the photo.
    """

    height: int
    width: int
    top: int
    bottom: int
    left: int
    right: int

    def to_json(self) -> dict[str, int]:
        """The placement as a JSON-ready dict, one key per field."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, slots=True)
class Prelude:
    """A model with a prelude in front.

    Attributes:
        model: The composed model, checked (``full_check``).
        image: Its new input: the uint8 camera image, under the model input's name.
        feeds: What the prelude gives the model: the input it replaces, at the size used.
        placement: Where the image lands in that input.
    """

    model: onnx.ModelProto
    image: TensorSpec
    feeds: TensorSpec
    placement: Placement


def placement(image: tuple[int, int], model_size: tuple[int, int], fit: Fit) -> Placement:
    """Where an ``image`` (height, width) lands in a model input of ``model_size`` under ``fit``.

    ``letterbox`` follows ultralytics' ``LetterBox`` (centred, scaled up or
    down): ratio ``r = min(model / image)`` over both axes, resized size
    ``round(image * r)``, and the odd pixel of padding on the bottom or right.
    """
    if fit == "resize":
        return Placement(*model_size, 0, 0, 0, 0)
    ratio = min(m / i for m, i in zip(model_size, image, strict=True))
    height, width = (round(i * ratio) for i in image)
    half_h, half_w = (model_size[0] - height) / 2, (model_size[1] - width) / 2
    # ultralytics' rounding: the odd pixel goes below and to the right.
    return Placement(height, width, round(half_h - 0.1), round(half_h + 0.1), round(half_w - 0.1), round(half_w + 0.1))


def add_prelude(
    model: onnx.ModelProto,
    preprocessing: Preprocessing,
    *,
    input_name: str | None = None,
    model_size: tuple[int, int] | None = None,
) -> Prelude:
    """Compose a prelude in front of ``model`` so that it takes a uint8 ``[N, H, W, 3]`` image.

    The new input keeps the name of the input it feeds, and the batch axis
    that input has; the model's other inputs stay as they are.

    Args:
        model: A model with a 4-D float32 image input, opset 11 or later.
        preprocessing: What to do to the image.
        input_name: The input to feed; needed only if several inputs are 4-D float32.
        model_size: The ``(height, width)`` the model sees; needed only if
            its input's height or width is not fixed.

    Raises:
        ModelError: No input, or several, could take the image; the input
            is not 4-D float32, has other than 3 channels in ``layout``, has
            no fixed size and no ``model_size`` (or one that differs); the
            opset is older than 11; or the composed model fails the checker.
        ValueError: ``model_size`` is not two positive integers.
    """
    target = _image_input(model, input_name)
    size = _model_size(target, preprocessing.layout, model_size)
    place = placement(preprocessing.image, size, preprocessing.fit)
    prelude, out = _prelude_model(
        target, preprocessing, size=size, place=place, opset=_opset(model), ir_version=model.ir_version
    )
    try:
        composed = onnx.compose.merge_models(
            prelude,
            model,
            io_map=[(out, target.name)],
            name=model.graph.name,
            doc_string=model.graph.doc_string,
            producer_name=model.producer_name,
            producer_version=model.producer_version,
            domain=model.domain,
            model_version=model.model_version,
        )
        composed.doc_string = model.doc_string
        onnx.checker.check_model(composed, full_check=True)
    except (ValueError, onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        msg = f"cannot put a prelude in front of input {target.name!r}: {exc}"
        raise ModelError(msg) from exc
    image, feeds = (tensor_spec(vi.name, vi.type) for vi in (prelude.graph.input[0], prelude.graph.output[0]))
    return Prelude(composed, image, dataclasses.replace(feeds, name=target.name), place)


def _image_input(model: onnx.ModelProto, name: str | None) -> onnx.ValueInfoProto:
    weights = initializer_names(model.graph)
    inputs: list[onnx.ValueInfoProto] = [vi for vi in model.graph.input if vi.name not in weights]
    if name is not None:
        named = [vi for vi in inputs if vi.name == name]
        if not named:
            msg = f"the model has no input {name!r}; its inputs: {_inputs_text(inputs)}"
            raise ModelError(msg)
        if not _is_image(named[0]):
            msg = f"input {name!r} is {_type_text(named[0])}: a prelude feeds a 4-D float32 image input"
            raise ModelError(msg)
        return named[0]
    images: list[onnx.ValueInfoProto] = [vi for vi in inputs if _is_image(vi)]
    if not images:
        msg = f"no input is 4-D float32, which a prelude feeds; the model's inputs: {_inputs_text(inputs)}"
        raise ModelError(msg)
    if len(images) > 1:
        names = ", ".join(vi.name for vi in images)
        msg = f"several inputs could take the image ({names}): name one (input_name, --input NAME)"
        raise ModelError(msg)
    return images[0]


def _is_image(vi: onnx.ValueInfoProto) -> bool:
    tensor = vi.type.tensor_type
    return tensor.elem_type == TensorProto.FLOAT and tensor.HasField("shape") and len(tensor.shape.dim) == 4  # noqa: PLR2004


def _model_size(target: onnx.ValueInfoProto, layout: Layout, given: tuple[int, int] | None) -> tuple[int, int]:
    dims = [_dim(d) for d in target.type.tensor_type.shape.dim]
    channel_axis, hw_axes = (1, (2, 3)) if layout == "nchw" else (3, (1, 2))
    channels = dims[channel_axis]
    if isinstance(channels, int) and channels != _CHANNELS:
        other = "nhwc" if layout == "nchw" else "nchw"
        msg = f"input {target.name!r} is {_type_text(target)}: in {layout} axis {channel_axis} has {channels} "
        msg += f"channels, not {_CHANNELS}; is its layout {other}?"
        raise ModelError(msg)
    height, width = (dim if isinstance(dim := dims[axis], int) else None for axis in hw_axes)
    if given is None:
        if height is None or width is None:
            msg = f"input {target.name!r} is {_type_text(target)}: its height and width are not fixed; give the "
            msg += "size the model sees (model_size=(H, W), --model-size HxW)"
            raise ModelError(msg)
        return height, width
    if problems := _size_problems("model_size", given):
        raise ValueError(problems[0])
    if height not in (None, given[0]) or width not in (None, given[1]):
        msg = f"input {target.name!r} is {_type_text(target)}: it cannot take a model size of {given[0]}x{given[1]}"
        raise ModelError(msg)
    return given


def _opset(model: onnx.ModelProto) -> int:
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if version < _MIN_OPSET:
        msg = f"the model imports opset {version}; a prelude needs {_MIN_OPSET} or later "
        msg += "(onnx.version_converter.convert_version can bring it there)"
        raise ModelError(msg)
    return version


class _Builder:
    """Nodes and constants of the prelude, each named ``prelude.<step>`` (its output has the same name)."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[TensorProto] = []

    def node(self, op: str, inputs: list[str], step: str, **attrs: int | str | list[int]) -> str:
        name = _PREFIX + step
        node = helper.make_node(op, inputs, [name], name=name)
        node.attribute.extend(helper.make_attribute(key, value) for key, value in sorted(attrs.items()))
        self.nodes.append(node)
        return name

    def const(self, step: str, value: np.ndarray) -> str:
        name = _PREFIX + step
        self.weights.append(numpy_helper.from_array(value, name))
        return name


def _prelude_model(
    target: onnx.ValueInfoProto,
    pre: Preprocessing,
    *,
    size: tuple[int, int],
    place: Placement,
    opset: int,
    ir_version: int,
) -> tuple[onnx.ModelProto, str]:
    batch = _dim(target.type.tensor_type.shape.dim[0]) or _BATCH
    graph = _Builder()
    x = graph.node("Cast", [target.name], "cast", to=TensorProto.FLOAT)
    if (place.height, place.width) != pre.image:
        x = _resize(graph, x, batch, (place.height, place.width))
    if any((place.top, place.bottom, place.left, place.right)):
        pads = np.array([0, place.top, place.left, 0, 0, place.bottom, place.right, 0], dtype=np.int64)
        value = graph.const("pad_value", np.array(pre.pad_value, dtype=np.float32))
        x = graph.node("Pad", [x, graph.const("pads", pads), value], "pad", mode="constant")
    factor = np.float32(pre.scale) / np.array(pre.std, dtype=np.float32)
    shift = -np.array(pre.mean, dtype=np.float32) / np.array(pre.std, dtype=np.float32)
    if (factor != 1).any():
        x = graph.node("Mul", [x, graph.const("factor", factor)], "scale")
    if shift.any():
        x = graph.node("Add", [x, graph.const("offset", shift)], "shift")
    shape: list[int | str] = [batch, *size, _CHANNELS]
    if pre.layout == "nchw":
        x = graph.node("Transpose", [x], "to_nchw", perm=[0, 3, 1, 2])
        shape = [batch, _CHANNELS, *size]
    image = helper.make_tensor_value_info(target.name, TensorProto.UINT8, [batch, *pre.image, _CHANNELS])
    out = helper.make_tensor_value_info(x, TensorProto.FLOAT, shape)
    body = helper.make_graph(graph.nodes, "prelude", [image], [out], initializer=graph.weights)
    model = helper.make_model(body, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)
    return model, x


def _resize(graph: _Builder, x: str, batch: int | str, size: tuple[int, int]) -> str:
    """Bilinear, half_pixel; roi and scales as empty tensors, which opset 11 requires and later opsets accept."""
    hwc = np.array([*size, _CHANNELS], dtype=np.int64)
    if isinstance(batch, int):
        sizes = graph.const("sizes", np.array([batch, *hwc], dtype=np.int64))
    else:  # the batch axis stays free: take its size from the image
        shape = graph.node("Shape", [x], "shape")
        first = [graph.const("zero", np.array([0], dtype=np.int64)), graph.const("one", np.array([1], dtype=np.int64))]
        count = graph.node("Slice", [shape, *first], "batch")
        sizes = graph.node("Concat", [count, graph.const("hwc", hwc)], "sizes", axis=0)
    empty = graph.const("empty", np.zeros(0, dtype=np.float32))
    return graph.node(
        "Resize",
        [x, empty, empty, sizes],
        "resize",
        mode="linear",
        coordinate_transformation_mode="half_pixel",
    )


def _dim(dim: onnx.TensorShapeProto.Dimension) -> int | str:
    """A dimension's size, its symbolic name, or ``""`` if it has neither."""
    return dim.dim_value if dim.HasField("dim_value") else dim.dim_param


def _type_text(vi: onnx.ValueInfoProto) -> str:
    tensor = vi.type.tensor_type
    kind = ONNX_ELEMENT_TYPES.get(tensor.elem_type) or TensorProto.DataType.Name(tensor.elem_type).lower()
    if not tensor.HasField("shape"):
        return f"{kind} of unknown shape"
    return f"{kind}[{','.join(str(_dim(d) or '?') for d in tensor.shape.dim)}]"


def _inputs_text(inputs: list[onnx.ValueInfoProto]) -> str:
    return ", ".join(f"{vi.name} {_type_text(vi)}" for vi in inputs) or "none"


def _size_problems(name: str, size: tuple[int, int]) -> list[str]:
    if len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):  # noqa: PLR2004 - height and width
        return []
    return [f"{name} must be a (height, width) of positive integers, not {size}"]


def _choice_problems(name: str, value: str, choices: tuple[str, ...]) -> list[str]:
    return [] if value in choices else [f"{name} must be one of {', '.join(choices)}, not {value!r}"]

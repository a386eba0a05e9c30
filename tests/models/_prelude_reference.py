"""Float-input test models, and the preprocessing a prelude replaces written in plain numpy (the reference)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models import partition

if TYPE_CHECKING:
    from collections.abc import Sequence

    from models import prelude

MODEL_SIZE = (32, 48)
NCHW: list[int | str] = [1, 3, *MODEL_SIZE]
NHWC: list[int | str] = [1, *MODEL_SIZE, 3]
IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def graph_model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], opset: int = 17) -> onnx.ModelProto:
    """A model of ``nodes`` (the last one's output is the model's), with the conv weights it uses, shapes inferred."""
    weights = [
        numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(np.random.default_rng(1).standard_normal((2, 4, 3, 3)).astype(np.float32), "w2"),
    ]
    used = {name for node in nodes for name in node.input}
    output = helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", inputs, [output], [w for w in weights if w.name in used])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return onnx.shape_inference.infer_shapes(model)


def tensor_input(shape: Sequence[int | str], name: str = "x", dtype: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, list(shape))


def identity(shape: Sequence[int | str] = NCHW) -> onnx.ModelProto:
    """A model whose output is its input: the composed model's output is the prelude's."""
    return graph_model([helper.make_node("Identity", ["x"], ["y"])], [tensor_input(shape)])


def convnet(shape: Sequence[int | str] = NCHW, opset: int = 17) -> onnx.ModelProto:
    """A tiny conv net on float32 NCHW input."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["conv1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
        helper.make_node("Conv", ["relu1", "w2"], ["conv2"], name="conv2", strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["conv2"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["y"], name="flatten"),
    ]
    return graph_model(nodes, [tensor_input(shape)], opset)


def _axis(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half-pixel source coordinates, clamped to the edge pixels: lower index, upper index, weight of the upper."""
    source = np.clip((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
    low = np.floor(source).astype(int)
    return low, np.minimum(low + 1, size_in - 1), source - low


def bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An HWC float64 image resized, bilinear, half-pixel centres, no antialiasing."""
    top, bottom, dy = _axis(image.shape[0], height)
    rows = image[top] * (1 - dy)[:, None, None] + image[bottom] * dy[:, None, None]
    left, right, dx = _axis(image.shape[1], width)
    return rows[:, left] * (1 - dx)[None, :, None] + rows[:, right] * dx[None, :, None]


def letterbox(image: np.ndarray, height: int, width: int, pad: float) -> np.ndarray:
    """ultralytics' ``LetterBox`` (centre, scale up or down), with :func:`bilinear` for cv2.resize."""
    shape = image.shape[:2]
    r = min(height / shape[0], width / shape[1])
    new_unpad = round(shape[1] * r), round(shape[0] * r)
    dw, dh = (width - new_unpad[0]) / 2, (height - new_unpad[1]) / 2
    image = bilinear(image, new_unpad[1], new_unpad[0])
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    return np.pad(image, ((top, bottom), (left, right), (0, 0)), constant_values=pad)


def reference(images: np.ndarray, steps: prelude.Preprocessing, size: tuple[int, int] = MODEL_SIZE) -> np.ndarray:
    """What a user's numpy preprocessing gives the model for a uint8 NHWC batch."""
    batch = []
    for image in images.astype(np.float64):
        fitted = letterbox(image, *size, steps.pad_value) if steps.fit == "letterbox" else bilinear(image, *size)
        x = (fitted * steps.scale - np.array(steps.mean)) / np.array(steps.std)
        batch.append(x.transpose(2, 0, 1) if steps.layout == "nchw" else x)
    return np.stack(batch).astype(np.float32)


def images(height: int, width: int, batch: int = 1, seed: int = 0) -> np.ndarray:
    """Smooth random images (as photos are), with noise: a worst case neither for resizing nor for the tolerance."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = 128 + 100 * np.sin(x[..., None] / 3 + y[..., None] / 5 + rng.uniform(0, 6, (batch, 1, 1, 3)))
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def run(model: onnx.ModelProto, image: np.ndarray, name: str = "x") -> np.ndarray:
    outputs = partition.run_model(model, {name: image})
    return next(iter(outputs.values()))

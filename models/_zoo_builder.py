"""A small ONNX graph builder for the model zoo: layers, readable names, weights.

Every layer draws its weights from one ``numpy`` generator in call order, so a
network built twice from the same seed serializes to the same bytes. Weights
are He-initialised (Kaiming normal, fan-in) with a BatchNorm folded in: each
conv has a bias and a per-channel scale, and no ``BatchNormalization`` node.
Filters are centred to zero mean (weight standardisation), which is what keeps
the logits of a BatchNorm-free random network input-dependent.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

if TYPE_CHECKING:
    from collections.abc import Sequence

OPSET = 17
# IR 9 is enough for opset 17 and loads in onnxruntime 1.17 (the oldest supported).
IR_VERSION = 9
BATCH = "N"
INPUT_NAME = "image"
OUTPUT_NAME = "logits"

# ImageNet statistics in 0..255 units, as torchvision's (0.485, ...) * 255.
_MEAN = (123.675, 116.28, 103.53)
_STD = (58.395, 57.12, 57.375)
# Folded BatchNorm: gamma / sqrt(var) spread and beta (the folded bias) spread.
_BN_SCALE_SPREAD = 0.2
_BN_BIAS_STD = 0.1
# He's gain 2 assumes E[x^2] of ReLU outputs; zero-mean filters see only their
# variance, (1 - 1/pi) / 2 of the pre-activation's (the NF-ResNet gain).
_RELU_GAIN = 2.0 / (1.0 - 1.0 / math.pi)


class GraphBuilder:
    """Collects nodes and initializers of one NCHW float graph.

    Each layer method takes its input tensor name and a node name, emits the
    node, and returns the output tensor name: the node's name unless ``out``
    gives another (blocks name their last tensor ``<block>.out``).

    Args:
        seed: Seed of the generator every weight is drawn from.
    """

    def __init__(self, *, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self._channels: dict[str, int] = {}
        self._shared: set[str] = set()
        self._node_names: set[str] = set()

    def channels(self, tensor: str) -> int:
        """Channel count (axis 1) of a tensor this builder made."""
        return self._channels[tensor]

    def declare(self, tensor: str, channels: int) -> None:
        """Say the channel count (axis 1) of a tensor made outside the builder: a graph input, a node added by hand."""
        self._channels[tensor] = channels

    def preprocess(self, image: str) -> str:
        """Cast a uint8 NHWC image to float, normalise it, and go to NCHW."""
        mean = self._const("preprocess.mean", np.array(_MEAN, dtype=np.float32))
        std = self._const("preprocess.std", np.array(_STD, dtype=np.float32))
        x = self._emit("Cast", [image], "preprocess.cast", to=TensorProto.FLOAT)
        x = self._emit("Sub", [x, mean], "preprocess.sub_mean")
        x = self._emit("Div", [x, std], "preprocess.div_std")
        x = self._emit("Transpose", [x], "preprocess.to_nchw", "preprocess.out", perm=[0, 3, 1, 2])
        self._channels[x] = len(_MEAN)
        return x

    def conv(
        self,
        x: str,
        name: str,
        channels: int,
        kernel: int,
        *,
        stride: int = 1,
        groups: int = 1,
        scale: float = 1.0,
        out: str | None = None,
    ) -> str:
        """Conv with bias and "same" padding, its BatchNorm folded in.

        Weights are He-normal for zero-mean filters on ReLU outputs, then
        each filter is centred; ``scale`` shrinks the output, as a small
        folded gamma does on a residual branch's last conv.
        """
        c_in = self._channels[x] // groups
        std = scale * math.sqrt(_RELU_GAIN / (c_in * kernel * kernel))
        weight = _centred(self._normal((channels, c_in, kernel, kernel), std))
        weight *= self._bn_scale(channels)[:, None, None, None]
        bias = self._normal((channels,), _BN_BIAS_STD * scale)
        w = self._const(f"{name}.weight", weight)
        b = self._const(f"{name}.bias", bias)
        pad = kernel // 2
        y = self._emit(
            "Conv",
            [x, w, b],
            name,
            out,
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=[pad] * 4,
            group=groups,
        )
        self._channels[y] = channels
        return y

    def relu(self, x: str, name: str, *, out: str | None = None) -> str:
        """ReLU."""
        return self._same_channels(x, self._emit("Relu", [x], name, out))

    def relu6(self, x: str, name: str, *, out: str | None = None) -> str:
        """ReLU6 as ``Clip`` with shared min/max initializer inputs."""
        lo = self._shared_scalar("relu6.min", 0.0)
        hi = self._shared_scalar("relu6.max", 6.0)
        return self._same_channels(x, self._emit("Clip", [x, lo, hi], name, out))

    def max_pool(
        self,
        x: str,
        name: str,
        kernel: int,
        stride: int,
        *,
        pad: int = 0,
        ceil: bool = False,
        out: str | None = None,
    ) -> str:
        """Max pooling over ``kernel`` x ``kernel`` windows."""
        y = self._emit(
            "MaxPool",
            [x],
            name,
            out,
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=[pad] * 4,
            ceil_mode=int(ceil),
        )
        return self._same_channels(x, y)

    def concat(self, xs: Sequence[str], name: str, *, out: str | None = None) -> str:
        """Concatenate along channels (axis 1)."""
        y = self._emit("Concat", list(xs), name, out, axis=1)
        self._channels[y] = sum(self._channels[x] for x in xs)
        return y

    def add(self, a: str, b: str, name: str, *, out: str | None = None) -> str:
        """Elementwise sum (residual join)."""
        return self._same_channels(a, self._emit("Add", [a, b], name, out))

    def classifier(self, x: str, classes: int) -> str:
        """Global average pool, flatten, and a Gemm to ``OUTPUT_NAME``."""
        features = self._channels[x]
        pooled = self._emit("GlobalAveragePool", [x], "pool")
        flat = self._emit("Flatten", [pooled], "flatten", axis=1)
        weight = self._normal((classes, features), math.sqrt(_RELU_GAIN / features))
        weight = _centred(weight)
        w = self._const("logits.weight", weight)
        b = self._const("logits.bias", self._normal((classes,), _BN_BIAS_STD))
        return self._emit("Gemm", [flat, w, b], "logits", OUTPUT_NAME, transB=1)

    def model(self, *, graph_name: str, size: int, classes: int, doc: str) -> onnx.ModelProto:
        """Wrap the nodes in a model with the zoo's input and output signature."""
        image = helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, [BATCH, size, size, 3])
        logits = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH, classes])
        graph = helper.make_graph(
            self.nodes,
            graph_name,
            [image],
            [logits],
            initializer=self.initializers,
            doc_string=doc,
        )
        return helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            ir_version=IR_VERSION,
            producer_name="edgecut.zoo",
            doc_string=doc,
        )

    def _same_channels(self, x: str, y: str) -> str:
        self._channels[y] = self._channels[x]
        return y

    def _emit(
        self,
        op: str,
        inputs: list[str],
        name: str,
        out: str | None = None,
        **attrs: int | list[int],
    ) -> str:
        if name in self._node_names:
            msg = f"node name {name!r} is already used"
            raise ValueError(msg)
        self._node_names.add(name)
        output = out or name
        node = helper.make_node(op, inputs, [output], name=name)
        node.attribute.extend(helper.make_attribute(key, value) for key, value in sorted(attrs.items()))
        self.nodes.append(node)
        return output

    def _normal(self, shape: tuple[int, ...], std: float) -> np.ndarray:
        return self._rng.standard_normal(shape, dtype=np.float32) * np.float32(std)

    def _bn_scale(self, channels: int) -> np.ndarray:
        spread = self._rng.uniform(-_BN_SCALE_SPREAD, _BN_SCALE_SPREAD, channels)
        return (1.0 + spread).astype(np.float32)

    def _const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def _shared_scalar(self, name: str, value: float) -> str:
        if name not in self._shared:
            self._shared.add(name)
            self._const(name, np.array(value, dtype=np.float32))
        return name


def _centred(weight: np.ndarray) -> np.ndarray:
    # Zero-mean filters (weight standardisation, as in normaliser-free nets):
    # without BatchNorm, ReLU outputs' positive mean otherwise passes through
    # every layer until all images give nearly the same logits and class.
    # The mean is taken in float64 so its float32 rounding is reproducible.
    axes = tuple(range(1, weight.ndim))
    wide = weight.astype(np.float64)
    centred: np.ndarray = wide - wide.mean(axis=axes, keepdims=True)
    return centred.astype(np.float32)

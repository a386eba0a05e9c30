"""The zoo's transformers: a ViT-style image classifier and a BERT-style text classifier, built offline.

Both are pre-norm encoders (LayerNormalization, multi-head self-attention,
an Erf GELU MLP, residuals) written with ``onnx.helper`` at opset 17, with
weights drawn from a seed. ``vit_tiny`` takes the zoo's uint8 NHWC image
(32x32) and cuts it into 8x8 patches with a strided Conv; ``bert_tiny``
takes int64 token ids ``[N, S]`` with a symbolic sequence length ``S``, so
its activations are ``[N, S, 64]``: a cut carries as many bytes as the
sequence is long. Its metadata states the longest sequence, 128 tokens, as
the shape to count bytes at (``edgecut.input_shapes``). :func:`vit` builds
the same architecture at any size; :func:`vit_s16` is a ViT-S/16 (224x224
image, 12 blocks 384 wide, 22M parameters, 4.6 GFLOPs), a transformer of
the size users deploy, left out of the zoo's names because every hub builds
the whole zoo as it starts.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models._input_shapes import INPUT_SHAPES_KEY
from models._zoo_builder import IR_VERSION

if TYPE_CHECKING:
    from collections.abc import Sequence

OPSET = 17
VOCABULARY = 1000
MAX_TOKENS = 128
_MEAN = (123.675, 116.28, 103.53)
_STD = (58.395, 57.12, 57.375)


@dataclasses.dataclass(frozen=True, slots=True)
class Encoder:
    """An encoder's dimensions: its width, attention heads, blocks and MLP hidden size."""

    width: int = 64
    heads: int = 4
    layers: int = 2
    mlp: int = 128


TINY = Encoder()
"""The zoo's two transformers: two blocks 64 wide."""


class _Graph:
    """Nodes and initializers of one graph, with seeded weights and unique names."""

    def __init__(self, seed: int, encoder: Encoder = TINY) -> None:
        self.dims = encoder
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def weight(self, name: str, shape: tuple[int, ...], std: float) -> str:
        return self.const(name, (self.rng.standard_normal(shape) * std).astype(np.float32))

    def node(self, op: str, inputs: Sequence[str], name: str, **attrs: float | list[int]) -> str:
        node = helper.make_node(op, list(inputs), [name], name=name)
        node.attribute.extend(helper.make_attribute(key, value) for key, value in sorted(attrs.items()))
        self.nodes.append(node)
        return name

    def linear(self, x: str, name: str, d_in: int, d_out: int) -> str:
        w = self.weight(f"{name}.weight", (d_in, d_out), 1 / math.sqrt(d_in))
        b = self.const(f"{name}.bias", np.zeros(d_out, np.float32))
        return self.node("Add", [self.node("MatMul", [x, w], f"{name}.matmul"), b], name)

    def layer_norm(self, x: str, name: str) -> str:
        scale = self.const(f"{name}.scale", np.ones(self.dims.width, np.float32))
        bias = self.const(f"{name}.bias", np.zeros(self.dims.width, np.float32))
        return self.node("LayerNormalization", [x, scale, bias], name, axis=-1, epsilon=1e-5)

    def gelu(self, x: str, name: str) -> str:
        root2 = self.const(f"{name}.sqrt2", np.array(math.sqrt(2), np.float32))
        one = self.const(f"{name}.one", np.array(1.0, np.float32))
        half = self.const(f"{name}.half", np.array(0.5, np.float32))
        erf = self.node("Erf", [self.node("Div", [x, root2], f"{name}.div")], f"{name}.erf")
        inner = self.node("Mul", [self.node("Add", [erf, one], f"{name}.add"), half], f"{name}.scale")
        return self.node("Mul", [x, inner], name)

    def attention(self, x: str, name: str) -> str:
        """Multi-head self-attention over ``[N, S, width]``."""
        width, heads_count = self.dims.width, self.dims.heads
        head = width // heads_count
        split = self.const(f"{name}.heads", np.array([0, 0, heads_count, head], np.int64))
        merge = self.const(f"{name}.merge", np.array([0, 0, width], np.int64))

        def heads(tensor: str, part: str, perm: list[int]) -> str:
            shaped = self.node("Reshape", [tensor, split], f"{name}.{part}.split")
            return self.node("Transpose", [shaped], f"{name}.{part}.heads", perm=perm)

        q = heads(self.linear(x, f"{name}.q", width, width), "q", [0, 2, 1, 3])
        k = heads(self.linear(x, f"{name}.k", width, width), "k", [0, 2, 3, 1])
        v = heads(self.linear(x, f"{name}.v", width, width), "v", [0, 2, 1, 3])
        scale = self.const(f"{name}.scale", np.array(1 / math.sqrt(head), np.float32))
        scores = self.node("Mul", [self.node("MatMul", [q, k], f"{name}.scores"), scale], f"{name}.scaled")
        weights = self.node("Softmax", [scores], f"{name}.softmax", axis=-1)
        mixed = self.node("MatMul", [weights, v], f"{name}.mixed")
        back = self.node("Transpose", [mixed], f"{name}.back", perm=[0, 2, 1, 3])
        return self.linear(self.node("Reshape", [back, merge], f"{name}.merged"), f"{name}.out", width, width)

    def encoder(self, x: str, name: str) -> str:
        """A pre-norm encoder block; its output is named ``<name>.out``."""
        attended = self.attention(self.layer_norm(x, f"{name}.ln1"), f"{name}.attn")
        x = self.node("Add", [x, attended], f"{name}.res1")
        width, mlp = self.dims.width, self.dims.mlp
        hidden = self.gelu(self.linear(self.layer_norm(x, f"{name}.ln2"), f"{name}.fc1", width, mlp), f"{name}.gelu")
        return self.node("Add", [x, self.linear(hidden, f"{name}.fc2", mlp, width)], f"{name}.out")

    def model(
        self, name: str, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]
    ) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.initializers)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgecut.zoo")


def vit_tiny(seed: int) -> onnx.ModelProto:
    """A ViT-style classifier: 8x8 patches of a 32x32 uint8 RGB image, two encoder blocks, mean-pooled tokens."""
    return vit(seed, name="vit_tiny")


def vit_s16(seed: int = 0) -> onnx.ModelProto:
    """A ViT-S/16 (DeiT-S's shape): 16x16 patches of a 224x224 uint8 image, 12 blocks 384 wide, 1000 classes."""
    return vit(seed, size=224, patch=16, classes=1000, encoder=Encoder(384, 6, 12, 1536), name="vit_s16")


def vit(
    seed: int,
    *,
    size: int = 32,
    patch: int = 8,
    classes: int = 10,
    encoder: Encoder = TINY,
    name: str = "vit",
) -> onnx.ModelProto:
    """A ViT-style classifier of any size: ``patch`` x ``patch`` patches of a uint8 RGB image, mean-pooled tokens.

    Args:
        seed: Seed of the weights (the same arguments give byte-identical models).
        size: The image's height and width, a multiple of ``patch``.
        patch: The side of a patch (a strided Conv cuts them).
        classes: Logits out.
        encoder: The encoder's dimensions (:data:`TINY`: the zoo's).
        name: The graph's name, recorded as ``edgecut.zoo.name``.
    """
    if size % patch:
        msg = f"an image of {size} pixels does not cut into patches of {patch}"
        raise ValueError(msg)
    g = _Graph(seed, encoder)
    width = encoder.width
    mean = g.const("preprocess.mean", np.array(_MEAN, np.float32))
    std = g.const("preprocess.std", np.array(_STD, np.float32))
    x = g.node("Cast", ["image"], "preprocess.cast", to=TensorProto.FLOAT)
    x = g.node("Div", [g.node("Sub", [x, mean], "preprocess.sub_mean"), std], "preprocess.div_std")
    x = g.node("Transpose", [x], "preprocess.out", perm=[0, 3, 1, 2])
    w = g.weight("patches.weight", (width, 3, patch, patch), 1 / math.sqrt(3 * patch * patch))
    b = g.const("patches.bias", np.zeros(width, np.float32))
    x = g.node("Conv", [x, w, b], "patches", kernel_shape=[patch, patch], strides=[patch, patch])
    tokens = (size // patch) ** 2
    flat = g.const("tokens.shape", np.array([0, width, tokens], np.int64))
    x = g.node("Transpose", [g.node("Reshape", [x, flat], "tokens.flat")], "tokens", perm=[0, 2, 1])
    x = g.node("Add", [x, g.weight("position", (1, tokens, width), 0.02)], "embedded")
    for layer in range(encoder.layers):
        x = g.encoder(x, f"block{layer}")
    x = g.node("ReduceMean", [g.layer_norm(x, "norm")], "pool", axes=[1], keepdims=0)
    g.linear(x, "head", width, classes)
    g.nodes[-1].output[0] = "logits"
    g.nodes[-1].name = "logits"
    image = helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", size, size, 3])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])
    return _finish(g.model(name, [image], [logits]), name, seed)


def bert_tiny(seed: int, *, classes: int = 2) -> onnx.ModelProto:
    """A BERT-style classifier: int64 token ids ``[N, S]``, two encoder blocks, the first token's state."""
    g = _Graph(seed)
    width = g.dims.width
    x = g.node("Gather", [g.weight("embedding", (VOCABULARY, width), 0.02), "tokens"], "embedded.tokens")
    zero, one = g.const("zero", np.array(0, np.int64)), g.const("one", np.array(1, np.int64))
    ones = g.node("Add", [g.node("Mul", ["tokens", zero], "tokens.zeros"), one], "tokens.ones")
    counted = g.node("CumSum", [ones, g.const("axis", np.array(1, np.int64))], "tokens.count")
    positions = g.node("Sub", [counted, one], "positions")  # [N, S]: 0, 1, ..., S - 1, S kept symbolic
    table = g.weight("position", (MAX_TOKENS, width), 0.02)
    x = g.node("Add", [x, g.node("Gather", [table, positions], "embedded.positions")], "embedded")
    for layer in range(g.dims.layers):
        x = g.encoder(x, f"block{layer}")
    first = g.node("Gather", [g.layer_norm(x, "norm"), zero], "pool", axis=1)
    g.linear(first, "head", width, classes)
    g.nodes[-1].output[0] = "logits"
    g.nodes[-1].name = "logits"
    tokens = helper.make_tensor_value_info("tokens", TensorProto.INT64, ["N", "S"])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])
    model = g.model("bert_tiny", [tokens], [logits])
    return _finish(model, "bert_tiny", seed, {INPUT_SHAPES_KEY: json.dumps({"tokens": [1, MAX_TOKENS]})})


def _finish(model: onnx.ModelProto, name: str, seed: int, props: dict[str, str] | None = None) -> onnx.ModelProto:
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {"edgecut.zoo.name": name, "edgecut.zoo.seed": str(seed), **(props or {})})
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model

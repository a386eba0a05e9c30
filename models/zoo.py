"""The model zoo: standard CNNs and two small transformers, built offline with ``onnx.helper``, no downloads.

Every model but ``bert_tiny`` takes one uint8 NHWC image batch named
``image`` (as a camera gives it), casts, normalises with ImageNet mean and
std and transposes to NCHW inside the graph, and returns float32 ``logits``;
``bert_tiny`` takes int64 token ids ``tokens`` of any length
(:mod:`models._zoo_transformers`). Weights are drawn from a
seed (He-initialised, BatchNorm folded into the convs), so the same name and
seed always give byte-identical models, and the logits are sane: finite, of
moderate scale, and different images get different classes.

Example:
    >>> from models import zoo
    >>> model = zoo.build("tiny", seed=0)
    >>> [i.name for i in model.graph.input]
    ['image']

This module imports ``onnx``; :mod:`models` does not import it.
"""

from __future__ import annotations

import dataclasses
import io
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np
import onnx

from models._manifest import TensorSpec
from models._zoo_builder import BATCH, INPUT_NAME, OUTPUT_NAME, GraphBuilder
from models._zoo_nets import digits, googlenet, mobilenet_v2, resnet18, tiny
from models._zoo_transformers import bert_tiny, vit_s16, vit_tiny
from protocol.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["MODEL_NAMES", "ZooEntry", "build", "describe", "entry", "trained_weights", "vit_s16"]


@dataclasses.dataclass(frozen=True, slots=True)
class ZooEntry:
    """What a zoo model is, known without building it.

    Attributes:
        name: The zoo name passed to :func:`build`.
        description: One line for listings such as ``edgecut models list``.
        input: The ``image`` input: uint8, ``("N", size, size, 3)``.
        output: The ``logits`` output: float32, ``("N", classes)``.
    """

    name: str
    description: str
    input: TensorSpec
    output: TensorSpec


@dataclasses.dataclass(frozen=True, slots=True)
class _Recipe:
    entry: ZooEntry
    features: Callable[[GraphBuilder, str], str]
    weights: str | None = None  # trained weights in models/trained/, by initializer name

    @property
    def size(self) -> int:
        return int(self.entry.input.shape[1])

    @property
    def classes(self) -> int:
        return int(self.entry.output.shape[1])


def _recipe(
    name: str,
    description: str,
    features: Callable[[GraphBuilder, str], str],
    *,
    size: int = 224,
    classes: int = 1000,
    weights: str | None = None,
) -> _Recipe:
    image = TensorSpec(INPUT_NAME, "uint8", (BATCH, size, size, 3))
    logits = TensorSpec(OUTPUT_NAME, "float32", (BATCH, classes))
    return _Recipe(ZooEntry(name, description, image, logits), features, weights)


_RECIPES = {
    recipe.entry.name: recipe
    for recipe in (
        _recipe(
            "digits",
            "Digits CNN, trained: scikit-learn's 8x8 handwritten digits at 32x32, three convs, 15K params, "
            "98.1% test top-1 (353 of 360)",
            digits,
            size=32,
            classes=10,
            weights="digits.npz",
        ),
        _recipe(
            "googlenet",
            "GoogLeNet (Inception v1): nine 4-branch Inception blocks, 6.6M params",
            googlenet,
        ),
        _recipe(
            "mobilenet_v2",
            "MobileNetV2 1.0: 17 inverted residual blocks, ReLU6, 3.5M params",
            mobilenet_v2,
        ),
        _recipe(
            "resnet18",
            "ResNet-18: 8 BasicBlocks in 4 stages (64-512 channels), 11.7M params",
            resnet18,
        ),
        _recipe(
            "tiny",
            "Tiny test CNN: 32x32 input, one Inception block, one residual block",
            tiny,
            size=32,
            classes=10,
        ),
    )
}

_TRANSFORMERS: dict[str, tuple[ZooEntry, Callable[[int], onnx.ModelProto]]] = {
    "vit_tiny": (
        ZooEntry(
            "vit_tiny",
            "ViT-style transformer: 32x32 image in 8x8 patches, 2 pre-norm encoder blocks (64 wide, 4 heads)",
            TensorSpec(INPUT_NAME, "uint8", (BATCH, 32, 32, 3)),
            TensorSpec(OUTPUT_NAME, "float32", (BATCH, 10)),
        ),
        vit_tiny,
    ),
    "bert_tiny": (
        ZooEntry(
            "bert_tiny",
            "BERT-style transformer: int64 token ids [N, S] (any length S up to 128), 2 encoder blocks, 2 classes",
            TensorSpec("tokens", "int64", (BATCH, "S")),
            TensorSpec(OUTPUT_NAME, "float32", (BATCH, 2)),
        ),
        bert_tiny,
    ),
}

MODEL_NAMES: tuple[str, ...] = tuple(sorted([*_RECIPES, *_TRANSFORMERS]))
"""Names :func:`build` accepts, sorted."""


def entry(name: str) -> ZooEntry:
    """Return the zoo entry of ``name`` without building the model.

    Raises:
        ModelError: ``name`` is not in :data:`MODEL_NAMES`.
    """
    if name in _TRANSFORMERS:
        return _TRANSFORMERS[name][0]
    return _lookup(name).entry


def describe(name: str) -> str:
    """Return the one-line description of ``name``.

    Raises:
        ModelError: ``name`` is not in :data:`MODEL_NAMES`.
    """
    return entry(name).description


def build(name: str, *, seed: int = 0, trained: bool = True) -> onnx.ModelProto:
    """Build zoo model ``name`` with weights drawn from ``seed``, or its trained weights.

    The model has opset 17, shapes inferred for every intermediate tensor
    (batch axis ``"N"``), and passes ``onnx.checker`` with ``full_check``.

    Args:
        name: One of :data:`MODEL_NAMES`.
        seed: Non-negative seed of the weights; the same name and seed give
            byte-identical ``SerializeToString()`` output.
        trained: For a trained model (``digits``): its trained weights
            (shipped in ``models/trained/``) replace the drawn ones, so the
            seed no longer matters; ``False`` gives the untrained start.

    Raises:
        ModelError: ``name`` is not in :data:`MODEL_NAMES`.
    """
    if name in _TRANSFORMERS:
        return _TRANSFORMERS[name][1](seed)
    recipe = _lookup(name)
    g = GraphBuilder(seed=seed)
    g.classifier(recipe.features(g, g.preprocess(INPUT_NAME)), recipe.classes)
    if trained and recipe.weights is not None:
        _load_trained(g, recipe.weights)
    model = g.model(
        graph_name=name,
        size=recipe.size,
        classes=recipe.classes,
        doc=recipe.entry.description,
    )
    props = {"edgecut.zoo.name": name, "edgecut.zoo.seed": str(seed)}
    if trained and recipe.weights is not None:
        props = {"edgecut.zoo.name": name, "edgecut.zoo.weights": recipe.weights}
    onnx.helper.set_model_props(model, props)
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def trained_weights(file_name: str) -> dict[str, np.ndarray]:
    """The arrays of a trained-weights file shipped in ``models/trained/``, by initializer name."""
    data = resources.files("models").joinpath("trained", file_name).read_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        return {key: arrays[key] for key in arrays.files}


def _load_trained(g: GraphBuilder, file_name: str) -> None:
    weights = trained_weights(file_name)
    names = {initializer.name for initializer in g.initializers}
    if set(weights) != names:
        msg = f"trained weights {file_name} do not fit the architecture: {sorted(set(weights) ^ names)}"
        raise ModelError(msg)
    for index, initializer in enumerate(g.initializers):
        array = weights[initializer.name]
        if tuple(initializer.dims) != array.shape:
            msg = (
                f"trained weight {initializer.name} is {array.shape}, the architecture wants {tuple(initializer.dims)}"
            )
            raise ModelError(msg)
        g.initializers[index] = onnx.numpy_helper.from_array(array.astype(np.float32), initializer.name)


def _lookup(name: str) -> _Recipe:
    try:
        return _RECIPES[name]
    except KeyError:
        msg = f"unknown zoo model {name!r}; known: {', '.join(MODEL_NAMES)}"
        raise ModelError(msg) from None

"""The model zoo: standard CNNs built offline with ``onnx.helper``, no downloads.

Every model takes one uint8 NHWC image batch named ``image`` (as a camera
gives it), casts, normalises with ImageNet mean and std and transposes to NCHW
inside the graph, and returns float32 ``logits``. Weights are drawn from a
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
from typing import TYPE_CHECKING

import onnx

from models._manifest import TensorSpec
from models._zoo_builder import BATCH, INPUT_NAME, OUTPUT_NAME, GraphBuilder
from models._zoo_nets import googlenet, mobilenet_v2, resnet18, tiny
from protocol.errors import ModelError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["MODEL_NAMES", "ZooEntry", "build", "describe", "entry"]


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
) -> _Recipe:
    image = TensorSpec(INPUT_NAME, "uint8", (BATCH, size, size, 3))
    logits = TensorSpec(OUTPUT_NAME, "float32", (BATCH, classes))
    return _Recipe(ZooEntry(name, description, image, logits), features)


_RECIPES = {
    recipe.entry.name: recipe
    for recipe in (
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

MODEL_NAMES: tuple[str, ...] = tuple(sorted(_RECIPES))
"""Names :func:`build` accepts, sorted."""


def entry(name: str) -> ZooEntry:
    """Return the zoo entry of ``name`` without building the model.

    Raises:
        ModelError: ``name`` is not in :data:`MODEL_NAMES`.
    """
    return _lookup(name).entry


def describe(name: str) -> str:
    """Return the one-line description of ``name``.

    Raises:
        ModelError: ``name`` is not in :data:`MODEL_NAMES`.
    """
    return _lookup(name).entry.description


def build(name: str, *, seed: int = 0) -> onnx.ModelProto:
    """Build zoo model ``name`` with weights drawn from ``seed``.

    The model has opset 17, shapes inferred for every intermediate tensor
    (batch axis ``"N"``), and passes ``onnx.checker`` with ``full_check``.

    Args:
        name: One of :data:`MODEL_NAMES`.
        seed: Non-negative seed of the weights; the same name and seed give
            byte-identical ``SerializeToString()`` output.

    Raises:
        ModelError: ``name`` is not in :data:`MODEL_NAMES`.
    """
    recipe = _lookup(name)
    g = GraphBuilder(seed=seed)
    g.classifier(recipe.features(g, g.preprocess(INPUT_NAME)), recipe.classes)
    model = g.model(
        graph_name=name,
        size=recipe.size,
        classes=recipe.classes,
        doc=recipe.entry.description,
    )
    onnx.helper.set_model_props(model, {"edgecut.zoo.name": name, "edgecut.zoo.seed": str(seed)})
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def _lookup(name: str) -> _Recipe:
    try:
        return _RECIPES[name]
    except KeyError:
        msg = f"unknown zoo model {name!r}; known: {', '.join(MODEL_NAMES)}"
        raise ModelError(msg) from None

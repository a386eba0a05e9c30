"""Enumerate the cuts of any ONNX model and split it into head and tail.

Needs ``onnx`` (the ``tools`` extra); agents that only run prebuilt halves
never import this module.

Example::

    from pathlib import Path

    from models import partition

    model_id, model = partition.load_model("resnet18")
    for cut in partition.enumerate_cuts(model):
        print(cut.id, cut.bytes)
    split = partition.split(model, "output", model_id=model_id)
    partition.save_split(split, Path("out/resnet18"))
"""

from __future__ import annotations

from models._cuts import Cut, enumerate_cuts
from models._graph import dangling_inputs
from models._load import load_model
from models._manifest import CLOUD_ONLY, EDGE_ONLY
from models._split import Split, model_sha256, save_split, split
from models._verify import (
    max_abs_diff,
    random_feeds,
    run_model,
    run_split,
    verify_split,
)

__all__ = [
    "CLOUD_ONLY",
    "EDGE_ONLY",
    "Cut",
    "Split",
    "dangling_inputs",
    "enumerate_cuts",
    "load_model",
    "max_abs_diff",
    "model_sha256",
    "random_feeds",
    "run_model",
    "run_split",
    "save_split",
    "split",
    "verify_split",
]

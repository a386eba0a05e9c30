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
    # or a chain of segments at the few cuts worth choosing between at run time
    candidates = partition.candidate_cuts(partition.enumerate_cuts(model))
    chain = partition.split_segments(model, candidates, model_id=model_id)
    partition.save_segments(chain, Path("out/resnet18-auto"))
"""

from __future__ import annotations

from models._cuts import Cut, Place, candidate_cuts, enumerate_cuts, enumerate_places, find_cut
from models._feeds import random_feeds
from models._graph import dangling_inputs
from models._info import ModelInfo, describe, int8_cuts
from models._input_shapes import InputShapes, parse_input_shape
from models._load import load_model, load_model_file, model_file_sha256
from models._manifest import CLOUD_ONLY, EDGE_ONLY
from models._shapes import input_shapes
from models._split import Segments, Split, model_sha256, save_segments, save_split, split, split_segments
from models._verify import (
    max_abs_diff,
    run_model,
    run_split,
    verify_segments,
    verify_split,
)

__all__ = [
    "CLOUD_ONLY",
    "EDGE_ONLY",
    "Cut",
    "InputShapes",
    "ModelInfo",
    "Place",
    "Segments",
    "Split",
    "candidate_cuts",
    "dangling_inputs",
    "describe",
    "enumerate_cuts",
    "enumerate_places",
    "find_cut",
    "input_shapes",
    "int8_cuts",
    "load_model",
    "load_model_file",
    "max_abs_diff",
    "model_file_sha256",
    "model_sha256",
    "parse_input_shape",
    "random_feeds",
    "run_model",
    "run_split",
    "save_segments",
    "save_split",
    "split",
    "split_segments",
    "verify_segments",
    "verify_split",
]

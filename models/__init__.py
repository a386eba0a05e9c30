"""Models: split manifests and the ONNX Runtime wrapper.

This package imports without ``onnx`` so an agent can run prebuilt head files
with only onnxruntime. The tooling that needs ``onnx`` lives in the public
submodules :mod:`models.zoo` (builds the model zoo) and :mod:`models.partition`
(enumerates cuts and splits any ONNX model); import them explicitly.
"""

from models._feeds import random_feeds
from models._input_shapes import InputShapes, batch_symbols, bound_symbols, parse_input_shape, resolve_input_shapes
from models._manifest import (
    CLOUD_ONLY,
    EDGE_ONLY,
    HEAD_FILE,
    MANIFEST_FILE,
    TAIL_FILE,
    Manifest,
    Shaped,
    TensorSpec,
    sha256_hex,
    tensors_mismatch,
)
from models._runtime import Session
from models._segments import (
    SEGMENTS_FILE,
    Boundary,
    Chain,
    ChainPart,
    Runnable,
    SegmentFile,
    SegmentsManifest,
    run_timed,
)

__all__ = [
    "CLOUD_ONLY",
    "EDGE_ONLY",
    "HEAD_FILE",
    "MANIFEST_FILE",
    "SEGMENTS_FILE",
    "TAIL_FILE",
    "Boundary",
    "Chain",
    "ChainPart",
    "InputShapes",
    "Manifest",
    "Runnable",
    "SegmentFile",
    "SegmentsManifest",
    "Session",
    "Shaped",
    "TensorSpec",
    "batch_symbols",
    "bound_symbols",
    "parse_input_shape",
    "random_feeds",
    "resolve_input_shapes",
    "run_timed",
    "sha256_hex",
    "tensors_mismatch",
]

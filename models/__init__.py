"""Models: split manifests and the ONNX Runtime wrapper.

This package imports without ``onnx`` so an agent can run prebuilt head files
with only onnxruntime. The tooling that needs ``onnx`` lives in the public
submodules :mod:`models.zoo` (builds the model zoo) and :mod:`models.partition`
(enumerates cuts and splits any ONNX model); import them explicitly.
"""

from models._feeds import camera_images, random_feeds
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
    file_sha256_hex,
    sha256_hex,
    tensors_mismatch,
)
from models._providers import (
    AUTO_ORDER,
    PROVIDERS,
    check_providers,
    parse_providers,
    provider_name,
    resolve_providers,
    short_names,
)
from models._runtime import CPU_PROVIDER, Session, available_providers
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
    "AUTO_ORDER",
    "CLOUD_ONLY",
    "CPU_PROVIDER",
    "EDGE_ONLY",
    "HEAD_FILE",
    "MANIFEST_FILE",
    "PROVIDERS",
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
    "available_providers",
    "batch_symbols",
    "bound_symbols",
    "camera_images",
    "check_providers",
    "file_sha256_hex",
    "parse_input_shape",
    "parse_providers",
    "provider_name",
    "random_feeds",
    "resolve_input_shapes",
    "resolve_providers",
    "run_timed",
    "sha256_hex",
    "short_names",
    "tensors_mismatch",
]

"""Put a model's preprocessing in front of it, so that it takes a camera's uint8 image.

Needs ``onnx`` (the ``tools`` extra). The prelude's steps, and how closely they
match the same preprocessing in numpy, are in docs/runtime.md ("Your own models").

Example::

    from pathlib import Path

    import onnx

    from models import partition, prelude

    model = partition.load_model_file(Path("detector.onnx"))  # float32[1, 3, 640, 640], 0..1
    steps = prelude.Preprocessing(image=(480, 640), layout="nchw", scale=1 / 255, fit="letterbox")
    composed = prelude.add_prelude(model, steps)  # takes uint8[1, 480, 640, 3]
    onnx.save(composed.model, "detector-uint8.onnx")
"""

from __future__ import annotations

from models._prelude import Fit, Layout, Placement, Prelude, Preprocessing, add_prelude, placement

__all__ = ["Fit", "Layout", "Placement", "Prelude", "Preprocessing", "add_prelude", "placement"]

"""An agent on a device without the onnx package: head files + manifest only."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import numpy as np
import pytest

from edge_agent import CLOUD_ONLY
from models import partition

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.broker

# Runs in a fresh interpreter where `import onnx` fails, as on a device without it.
_DEVICE_SCRIPT = """
import json, sys
sys.modules["onnx"] = None  # any import of onnx now raises ImportError
import numpy as np
from edge_agent import SyncEdgeAgent, Timeouts

url, split_dir, prefix = sys.argv[1:4]
with SyncEdgeAgent(url, model=split_dir, prefix=prefix, timeouts=Timeouts(request=0.5)) as agent:
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    result = agent.infer(image)
print(json.dumps({
    "cut": result.cut_id,
    "fallback": result.fallback,
    "logits": result.outputs["logits"].tolist(),
    "onnx_loaded": sys.modules.get("onnx") is not None,
}))
"""


def test_agent_runs_a_split_directory_with_onnx_unavailable(broker_url: str, prefix: str, tmp_path: Path) -> None:
    model_id, model = partition.load_model("tiny")
    cut = next(c.id for c in partition.enumerate_cuts(model) if c.single_tensor and c.id != CLOUD_ONLY)
    split = partition.split(model, cut, model_id=model_id)
    partition.save_split(split, tmp_path)
    # No hub runs: the request times out and the device's own tail answers.
    completed = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", _DEVICE_SCRIPT, broker_url, str(tmp_path), prefix],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    expected = partition.run_model(model, {"image": np.zeros((1, 32, 32, 3), np.uint8)})["logits"]
    assert report["cut"] == cut
    assert report["fallback"] is not None
    assert not report["onnx_loaded"]
    np.testing.assert_allclose(np.array(report["logits"]), expected, atol=1e-4, rtol=0)

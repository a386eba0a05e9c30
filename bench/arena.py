"""Does the agent's chain run as fast as the same files in plain ONNX Runtime? And what shrinking the arena costs.

The model is split at its ``cut="auto"`` candidates into segment files
(``edgecut models split --cuts auto``). Three ways then run the whole chain
edge-only on one input, one ORT thread each, in alternating rounds after
warm-up runs:

- ``plain``: each segment file in an ``onnxruntime.InferenceSession`` with
  default options (one intra-op thread), run in turn;
- ``agent``: the agent's own chain (``edge_agent.ModelHalves`` on the
  segments directory: ``models.Session`` with edgecut's defaults);
- ``shrunk``: plain ORT with the arena shrunk after every run, as edgecut's
  sessions did before (``memory.enable_memory_arena_shrinkage``).

The ratios of medians to ``plain`` are printed with the command; the target
for ``agent`` is <= 1.1.

    python bench/arena.py [--model resnet18] [--input-shape NAME=DIMS ...] [--runs 20]

A large-input model: the test corpus's detector at 640x640, saved first with
``PYTHONPATH=. python -c "import onnx; from tests.corpus import detector; onnx.save(detector(), 'detector.onnx')"``
and then ``python bench/arena.py --model detector.onnx --input-shape images=1x3x640x640``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import onnxruntime as ort

from edge_agent import CLOUD_ONLY, EDGE_ONLY, ModelHalves
from models import parse_input_shape, partition, random_feeds

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import numpy as np

WARM_UP = 3


def plain_chain(paths: list[Path], *, shrink: bool) -> Callable[[Mapping[str, np.ndarray]], None]:
    """Run every segment file in turn with plain ORT sessions (the arena shrunk after each run if ``shrink``)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = [ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]) for path in paths]
    run_options = ort.RunOptions()
    if shrink:
        run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def run(feeds: Mapping[str, np.ndarray]) -> None:
        tensors = dict(feeds)
        for session in sessions:
            names = [output.name for output in session.get_outputs()]
            wanted = {value.name for value in session.get_inputs()}
            outputs = session.run(names, {k: v for k, v in tensors.items() if k in wanted}, run_options)
            tensors.update(zip(names, outputs, strict=True))

    return run


def agent_chain(directory: Path, shapes: dict[str, tuple[int, ...]]) -> Callable[[Mapping[str, np.ndarray]], None]:
    """Run the chain edge-only as an agent with ``cut="auto"`` does."""
    chain = ModelHalves.open(directory, threads=1, input_shapes=shapes).chain()
    return lambda feeds: chain.run(feeds, CLOUD_ONLY, EDGE_ONLY)


def main(model_name: str, shapes: dict[str, tuple[int, ...]], runs: int) -> dict[str, float]:
    """Median ms of each way to run the chain, after writing its segments to a temporary directory."""
    model_id, model = partition.load_model(model_name)
    cuts = partition.candidate_cuts(partition.enumerate_cuts(model, shapes))
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        segments = partition.split_segments(model, cuts, model_id=model_id)
        paths = [path for path in partition.save_segments(segments, directory) if path.suffix == ".onnx"]
        feeds = random_feeds(segments.manifest.inputs, shapes=partition.input_shapes(model, shapes))
        ways = {
            "plain": plain_chain(paths, shrink=False),
            "agent": agent_chain(directory, shapes),
            "shrunk": plain_chain(paths, shrink=True),
        }
        samples: dict[str, list[float]] = {name: [] for name in ways}
        for round_index in range(WARM_UP + runs):
            for name, run in ways.items():
                started = time.perf_counter()
                run(feeds)
                if round_index >= WARM_UP:
                    samples[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet18", help="zoo name or .onnx file (default resnet18)")
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME=DIMS", help="for dynamic sizes")
    parser.add_argument("--runs", type=int, default=20, help="measured rounds (default 20)")
    args = parser.parse_args()
    stated = dict(parse_input_shape(text) for text in args.input_shape)
    medians = main(args.model, stated, args.runs)
    shown = " ".join(f"--input-shape {text}" for text in args.input_shape)
    print(f"$ python bench/arena.py --model {args.model} {shown} --runs {args.runs}".replace("  ", " "))
    print(f"{'way':<8} {'median ms':>10} {'vs plain':>9}")
    for name, value in medians.items():
        print(f"{name:<8} {value:>10.2f} {value / medians['plain']:>9.3f}")

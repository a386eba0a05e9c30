"""What switching cuts costs: a chain of segments against fused heads, in compute and in memory.

For each model (a zoo name or an ``.onnx`` file), the chain through its
candidate cuts under ``--codecs`` (what ``cut="auto"`` holds with those
codecs allowed) runs the head at every candidate; the fused head (one session
cut at that cut) runs the same input. At ``output`` that is the whole model,
which an auto agent runs as one fused session where the chain costs 1.05x or
more (``edge_agent._adaptive.FUSED_EDGE_ONLY_GAIN``). Runs alternate between the two, N rounds after 3
warm-up runs, one ORT thread; the ratio of medians is the chain's compute
overhead (budget: 1.1x). Memory is measured in child processes, one per
variant, as the RSS the sessions add: the chain (every candidate's head and
tail, one copy of the weights), the fused full model, and one fused head per
candidate (what an agent switching cuts held before chains), each loaded from
files in a fresh process. ONNX Runtime holds about 3x a model's weight bytes
for the fused model alone (initializers, prepacked weights, arena), so the
budget (the weights at most 1.5x) is read against the fused model's RSS.

    python bench/segments.py [--models resnet18 mobilenet_v2 googlenet] [--runs 30] [--codecs raw,int8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from models import Chain, Session, partition, random_feeds

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from models import Runnable

WARM_UP = 3


def _rss_kib() -> int:
    with Path("/proc/self/status").open(encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def memory_child(paths: list[str]) -> None:
    """In a child process: load the models at ``paths`` as sessions, run each once, print the RSS added (KiB).

    The first model's inputs are the model's (its symbolic sizes 1).
    """
    before = _rss_kib()
    sessions = [Session(path, threads=1) for path in paths]
    feeds = random_feeds(sessions[0].inputs)
    tensors: dict[str, np.ndarray] = dict(feeds)
    for session in sessions:  # one run each, so that arenas and prepacked weights exist
        tensors.update(session.run({spec.name: tensors[spec.name] for spec in session.inputs}))
    print(json.dumps({"added_kib": _rss_kib() - before}))


def _memory_mib(paths: list[Path]) -> float:
    out = subprocess.run(  # noqa: S603 - this very script, with paths it wrote
        [sys.executable, __file__, "--memory-child", *map(str, paths)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)["added_kib"] / 1024


def _variants(
    model: onnx.ModelProto, model_id: str, candidates: list[partition.Cut], directory: Path
) -> dict[str, list[Path]]:
    """Model files for each variant: the chain, the fused full model, a fused head per candidate."""
    segments = partition.split_segments(model, candidates, model_id=model_id, check=False)
    files: dict[str, list[Path]] = {"chain": [], "fused": [directory / "full.onnx"], "heads": []}
    files["fused"][0].write_bytes(model.SerializeToString())
    for index, segment in enumerate(segments.models):
        files["chain"].append(directory / f"segment-{index}.onnx")
        files["chain"][-1].write_bytes(segment.SerializeToString())
    for index, cut in enumerate(candidates[1:]):
        head = partition.split(model, cut, model_id=model_id, check=False).head
        if head is not None:
            files["heads"].append(directory / f"head-{index}.onnx")
            files["heads"][-1].write_bytes(head.SerializeToString())
    return files


def _median_ms(runnable: Runnable, feeds: dict[str, np.ndarray], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        runnable.run(feeds)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def bench_model(name: str, runs: int, codecs: list[str]) -> dict[str, object]:
    """Compute ratio per candidate, and memory per variant, for one model (a zoo name or an ``.onnx`` file)."""
    model_id, model = partition.load_model(name)
    weights_mib = sum(len(t.raw_data) for t in model.graph.initializer) / 2**20
    candidates = partition.candidate_cuts(partition.enumerate_cuts(model), codecs)
    segments = partition.split_segments(model, candidates, model_id=model_id)
    chain = Chain(segments.manifest, [Session(m.SerializeToString(), threads=1) for m in segments.models])
    feeds = random_feeds(chain.manifest.inputs, shapes=partition.input_shapes(model))
    rows = []
    for cut in candidates[1:]:
        split = partition.split(model, cut, model_id=model_id, check=False)
        if split.head is None:
            continue
        fused = Session(split.head.SerializeToString(), threads=1)
        part = chain.part(candidates[0].id, cut.id)
        for runnable in (fused, part):
            for _ in range(WARM_UP):
                runnable.run(feeds)
        fused_times, chain_times = [], []
        for _ in range(runs):  # alternate, so that the machine's noise hits both alike
            fused_times.append(_median_ms(fused, feeds, 1))
            chain_times.append(_median_ms(part, feeds, 1))
        segments_used = chain.manifest.index(cut.id)
        rows.append(
            {
                "cut": cut.id,
                "segments": segments_used,
                "fused_ms": statistics.median(fused_times),
                "chain_ms": statistics.median(chain_times),
                "ratio": statistics.median(chain_times) / statistics.median(fused_times),
            }
        )
    with tempfile.TemporaryDirectory() as directory:
        files = _variants(model, model_id, candidates, Path(directory))
        memory = {variant: _memory_mib(paths) for variant, paths in files.items()}
    return {"model": name, "weights_mib": weights_mib, "cuts": rows, "memory_mib": memory}


def main() -> None:
    """Parse arguments, run, print a table (or, in a child, measure memory)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["resnet18", "mobilenet_v2", "googlenet"],
        help="zoo names or .onnx files (default: these three)",
    )
    parser.add_argument("--runs", type=int, default=30, help="rounds of timed runs per cut (default 30)")
    parser.add_argument("--codecs", default="raw", help="codecs allowed (comma-separated): which cuts are candidates")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead")
    parser.add_argument("--memory-child", nargs="+", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    codecs = [codec.strip() for codec in args.codecs.split(",") if codec.strip()]
    print(
        f"$ python bench/segments.py --models {' '.join(args.models)} --runs {args.runs} --codecs {','.join(codecs)}",
        flush=True,
    )
    results = []
    for name in args.models:
        result = bench_model(name, args.runs, codecs)
        results.append(result)
        if args.json:
            continue
        memory = result["memory_mib"]
        weights = result["weights_mib"]
        print(f"\n{name}: weights {weights:.1f} MiB")
        print(f"  {'cut':<16} {'segments':>8} {'fused ms':>9} {'chain ms':>9} {'chain/fused':>11}")
        for row in result["cuts"]:  # type: ignore[attr-defined]
            print(
                f"  {row['cut']:<16} {row['segments']:>8} {row['fused_ms']:>9.2f} {row['chain_ms']:>9.2f} "
                f"{row['ratio']:>10.3f}x"
            )
        print(
            "  RSS added: chain {chain:.0f} MiB ({c:.2f}x the fused model's), fused full model {fused:.0f} MiB "
            "({f:.1f}x the weights' bytes), a fused head per candidate {heads:.0f} MiB ({h:.2f}x)".format(
                c=memory["chain"] / memory["fused"],  # type: ignore[index]
                f=memory["fused"] / weights,  # type: ignore[index, operator]
                h=memory["heads"] / memory["fused"],  # type: ignore[index]
                **memory,  # type: ignore[arg-type]
            )
        )
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

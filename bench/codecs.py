"""What each codec costs and saves: bytes, encode and decode time, and how far the answer moves.

For each model, one real photo (scikit-learn's sample images, centre-cropped
to 224x224, when scikit-learn is installed; else a synthetic smooth image,
said so in the output) runs through the chain of candidate cuts. At every
candidate the crossing tensors are encoded with every codec that applies:
bytes on the wire (the whole request message), ratio to raw and to the
JPEG (q90) of the same image, the median encode and decode time (ms, and ms
per raw MB), and the tail run on the decoded tensors against the tail on the
originals: the largest logit error relative to the largest logit, and
whether the top-1 class is the same. The zoo's weights are random, so these
show how far a codec moves the answer, not accuracy.

    python bench/codecs.py [--models resnet18 mobilenet_v2] [--runs 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np

from edge_agent import CLOUD_ONLY, EDGE_ONLY, ModelHalves
from protocol import InferenceRequest, codec_names, decode_request, encode_request

IMAGE_CODECS = ("jpeg", "png")
CODECS = ("raw", "zstd", "lz4", "fp16", "fp16+zstd", "int8", "int8+zstd", "int8-channel+zstd", "jpeg", "png")


def photo() -> tuple[np.ndarray, str]:
    """A 224x224 RGB photo (and where it came from)."""
    try:
        from sklearn.datasets import load_sample_images  # noqa: PLC0415 - optional
    except ImportError:
        rows, cols = np.mgrid[0:224, 0:224]
        image = np.stack([rows, cols, (rows + cols) // 2], axis=-1).astype(np.uint8)
        return image, "synthetic gradient (pip install scikit-learn for a real photo)"
    china = load_sample_images().images[0]
    top, left = (china.shape[0] - 224) // 2, (china.shape[1] - 224) // 2
    return np.ascontiguousarray(china[top : top + 224, left : left + 224]), "scikit-learn china.jpg, centre 224x224"


def _median_ms(function: Any, runs: int) -> float:  # noqa: ANN401 - any callable
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(model_name: str, image: np.ndarray, runs: int) -> list[dict[str, Any]]:
    """Every (cut, codec) of one model on one image."""
    model = ModelHalves.open(model_name, threads=1)
    feeds = {model.inputs[0].name: image[np.newaxis]}
    full = model.halves(EDGE_ONLY).head
    rows = []
    jpeg_bytes = None
    for candidate in model.candidates:
        if candidate.id == EDGE_ONLY:
            continue
        halves = model.halves(candidate.id)
        crossing = halves.head.run(feeds) if halves.head is not None else feeds
        tensors = {spec.name: crossing[spec.name] for spec in halves.manifest.crossing}
        reference = halves.tail.run(tensors) if halves.tail is not None else full.run(feeds)
        raw_nbytes = sum(tensor.nbytes for tensor in tensors.values())
        for codec in CODECS:
            if codec in IMAGE_CODECS and candidate.id != CLOUD_ONLY:
                continue  # they apply to the image only
            request = InferenceRequest(
                request_id="bench",
                agent_id="bench",
                model_id=model.model_id,
                model_sha256=model.model_sha256,
                cut_id=candidate.id,
                tensors=tensors,
                sent_at=0.0,
                deadline_ms=1000.0,
                codec=codec,
            )
            payload = encode_request(request)
            if codec == "jpeg" and candidate.id == CLOUD_ONLY:
                jpeg_bytes = len(payload)
            encode_ms = _median_ms(lambda request=request: encode_request(request), runs)
            decode_ms = _median_ms(lambda payload=payload: decode_request(payload), runs)
            decoded = decode_request(payload).tensors
            outputs = halves.tail.run(decoded) if halves.tail is not None else reference
            name = next(iter(reference))
            error = float(np.abs(outputs[name] - reference[name]).max() / np.abs(reference[name]).max())
            rows.append(
                {
                    "model": model_name,
                    "cut": candidate.id,
                    "codec": codec,
                    "bytes": len(payload),
                    "raw_bytes": raw_nbytes,
                    "encode_ms": encode_ms,
                    "decode_ms": decode_ms,
                    "encode_ms_per_mb": encode_ms / (raw_nbytes / 1e6),
                    "decode_ms_per_mb": decode_ms / (raw_nbytes / 1e6),
                    "logit_error": error,
                    "same_top1": bool(np.argmax(outputs[name]) == np.argmax(reference[name])),
                }
            )
    for row in rows:
        row["vs_jpeg"] = row["bytes"] / jpeg_bytes if jpeg_bytes else float("nan")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="+", default=["resnet18", "mobilenet_v2"], help="zoo models (default resnet18 mobilenet_v2)"
    )
    parser.add_argument("--runs", type=int, default=20, help="timed runs per codec (default 20)")
    parser.add_argument("--json", type=argparse.FileType("w"), help="also write the rows as JSON here")
    args = parser.parse_args()
    assert set(CODECS) <= set(codec_names())  # noqa: S101 - a bench's own consistency
    image, source = photo()
    print(f"$ python bench/codecs.py --models {' '.join(args.models)} --runs {args.runs}")
    print(f"image: {source}")
    header = (
        f"{'model':<12} {'cut':<22} {'codec':<18} {'bytes':>9} {'/raw':>6} {'/jpeg':>6}"
        f" {'enc ms':>7} {'dec ms':>7} {'enc/MB':>7} {'dec/MB':>7} {'logit err':>9} top-1"
    )
    print(header)
    report = []
    for model_name in args.models:
        for row in measure(model_name, image, args.runs):
            report.append(row)
            print(
                f"{row['model']:<12} {row['cut']:<22} {row['codec']:<18} {row['bytes']:>9}"
                f" {row['bytes'] / row['raw_bytes']:>6.2f} {row['vs_jpeg']:>6.2f}"
                f" {row['encode_ms']:>7.2f} {row['decode_ms']:>7.2f} {row['encode_ms_per_mb']:>7.1f}"
                f" {row['decode_ms_per_mb']:>7.1f} {row['logit_error']:>9.4f} {'same' if row['same_top1'] else 'DIFF'}",
                flush=True,
            )
    if args.json:
        json.dump(report, args.json, indent=2)


if __name__ == "__main__":
    main()

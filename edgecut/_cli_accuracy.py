"""``edgecut models accuracy``: what each codec at each cut sends and how far it moves the answer.

The handler imports :mod:`models.accuracy` when it runs (it needs ``onnx``),
so building the parser stays cheap.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecut._cli_text import leaf, out, print_table, require_onnx
from edgecut._cli_values import at_least_one
from edgecut._exit import ExitCode
from edgecut._output import print_json
from protocol.errors import ModelError

if TYPE_CHECKING:
    import argparse

    import onnx

    from models import TensorSpec


def add_accuracy(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``models accuracy`` to the ``models`` subcommands ``actions``."""
    from protocol import codec_names  # noqa: PLC0415 - keeps the parser cheap to build

    parser = leaf(
        actions,
        "accuracy",
        _accuracy,
        "measure what each codec at each cut sends and how far it moves the answer",
    )
    parser.add_argument("model", metavar="NAME_OR_PATH", help="zoo model name or .onnx file")
    parser.add_argument(
        "--cut",
        action="append",
        metavar="ID",
        help="a cut to measure (repeatable; default: the cuts cut=auto chooses between)",
    )
    parser.add_argument(
        "--codec",
        action="append",
        choices=codec_names(),
        metavar="NAME",
        help="a codec to measure (repeatable; default: raw, fp16, int8, int8-channel, zstd and their zstd forms, jpeg)",
    )
    parser.add_argument(
        "--images",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="images or .npy arrays to measure on (default: the digits test set for 'digits', else "
        "scikit-learn's sample photos)",
    )
    parser.add_argument("--limit", type=at_least_one, metavar="N", help="use only the first N images")
    parser.add_argument("--json", action="store_true", help="print a JSON array of rows")


def _accuracy(args: argparse.Namespace) -> ExitCode:
    require_onnx()
    from models import accuracy, partition  # noqa: PLC0415 - needs onnx: see module docstring

    model_id, model = partition.load_model(args.model)
    images, labels, source = _accuracy_images(args, model_id, model)
    if args.limit is not None:
        images, labels = images[: args.limit], None if labels is None else labels[: args.limit]
    cuts = args.cut or [cut.id for cut in partition.candidate_cuts(partition.enumerate_cuts(model))]
    codecs = args.codec or list(accuracy.DEFAULT_CODECS)

    def progress(done: int, total: int) -> None:
        if not args.json and sys.stderr.isatty():
            sys.stderr.write(f"\r{done}/{total} images" + ("\n" if done == total else ""))
            sys.stderr.flush()

    rows = accuracy.measure(model, cuts, codecs, images, labels, model_id=model_id, progress=progress)
    if args.json:
        print_json({"model": model_id, "images": len(images), "source": source, "rows": [r.to_json() for r in rows]})
        return ExitCode.OK
    out(f"{model_id}: {len(images)} images ({source}), one request each")
    header = ["cut", "codec", "bytes", "vs raw", "vs jpeg", "top-1 agree", "max logit err"]
    if labels is not None:
        header += ["top-1", "change"]
    table = []
    for row in rows:
        line = [
            row.cut,
            row.codec,
            f"{row.bytes:,.0f}",
            f"{row.vs_raw:.3f}",
            f"{row.vs_jpeg:.3f}",
            f"{row.agreement:.1%}",
            f"{row.max_logit_error:.4f}",
        ]
        if row.top1 is not None and row.top1_change is not None:
            line += [f"{row.top1:.2%}", f"{row.top1_change:+.2f} pt"]
        table.append(line)
    print_table(header, table)
    return ExitCode.OK


def _accuracy_images(args: argparse.Namespace, model_id: str, model: onnx.ModelProto) -> tuple[Any, Any, str]:
    """The images to measure on, their labels if known, and where they came from."""
    import numpy as np  # noqa: PLC0415

    from edge_agent import load_input  # noqa: PLC0415
    from models import TensorSpec, digits  # noqa: PLC0415
    from protocol import ONNX_ELEMENT_TYPES  # noqa: PLC0415

    graph_input = model.graph.input[0]
    tensor_type = graph_input.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "N") for d in tensor_type.shape.dim)
    spec = TensorSpec(graph_input.name, ONNX_ELEMENT_TYPES.get(tensor_type.elem_type, "float32"), dims)
    if args.images:
        return np.stack([load_input(path, spec) for path in args.images]), None, f"{len(args.images)} files"
    if model_id == "digits":
        images, labels = digits.test_set()
        return images, labels, "the digits test set, labelled"
    return (
        _sample_photos(dataclasses.replace(spec, shape=dims[1:])),
        None,
        "crops of scikit-learn's two sample photos, unlabelled",
    )


def _sample_photos(spec: TensorSpec) -> Any:  # noqa: ANN401 - a numpy array
    import numpy as np  # noqa: PLC0415

    try:
        from sklearn.datasets import load_sample_images  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: PLC0415
    except ImportError as exc:
        msg = "without --images this needs scikit-learn's sample photos: pip install 'edgecut[train]'"
        raise ModelError(msg) from exc
    shape = spec.shape
    if len(shape) != 3 or shape[-1] != 3 or spec.dtype != "uint8" or not all(isinstance(d, int) for d in shape[:2]):  # noqa: PLR2004
        msg = f"sample photos fit uint8 HxWx3 image inputs, not {spec.dtype}{list(shape)}: give --images"
        raise ModelError(msg)
    height, width = int(shape[0]), int(shape[1])
    crops = [
        photo[top : top + height, left : left + width]
        for photo in load_sample_images().images
        for top in np.linspace(0, photo.shape[0] - height, 2, dtype=int)
        for left in np.linspace(0, photo.shape[1] - width, 4, dtype=int)
    ]
    return np.ascontiguousarray(np.stack(crops))

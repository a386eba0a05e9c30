"""``edgecut models``: list and build zoo models, describe a model, list its cuts, split it, measure codecs.

The handlers only parse, call :mod:`models.partition`, :mod:`models.prelude`
and :mod:`models.zoo`, and print. Those modules need ``onnx``, so they are
imported when a handler runs: an agent without ``onnx`` can still build the
whole parser, and ``edgecut --help`` imports neither onnx nor onnxruntime.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecut._exit import ExitCode
from edgecut._output import print_json
from protocol.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import onnx

    from models import TensorSpec
    from models.partition import Cut

_TOLERANCE = 1e-4
_SHOWN = 8  # int8 cuts listed by `models info`
_UNITS = ("B", "KiB", "MiB", "GiB")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``models`` and its subcommands to the ``edgecut`` subparsers ``commands``."""
    models = commands.add_parser(
        "models",
        help="list, build, cut and split ONNX models",
        description="Work with ONNX models: the zoo, their cuts, and head/tail splits.",
    )
    actions = models.add_subparsers(dest="action", metavar="ACTION", required=True)
    _add_list(actions)
    _add_build(actions)
    _add_cuts(actions)
    _add_split(actions)
    _add_accuracy(actions)
    _add_info(actions)
    _add_profile(actions)
    _add_prelude(actions)


def _add_list(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _leaf(actions, "list", _list, "list the zoo's models with their input and output")
    parser.add_argument("--json", action="store_true", help="print a JSON array")


def _add_build(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _leaf(actions, "build", _build, "build a zoo model and write NAME.onnx")
    parser.add_argument("name", metavar="NAME", help="zoo model name (see `models list`)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to write into")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: 0)")
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def _add_cuts(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _leaf(actions, "cuts", _cuts, "list where a model can be split and what crosses")
    parser.add_argument("model", metavar="NAME_OR_PATH", help="zoo model name or .onnx file")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print a JSON array of cuts (its keys: docs/protocol.md, section 8)",
    )
    parser.add_argument("--single-only", action="store_true", help="only cuts where one tensor crosses")
    _add_input_shape(parser)


def _add_split(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _leaf(
        actions,
        "split",
        _split,
        "split a model at a cut into head.onnx and tail.onnx, or at several cuts into a chain of segments",
    )
    parser.add_argument("model", metavar="NAME_OR_PATH", help="zoo model name or .onnx file")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--cut", metavar="ID", help="one cut id (see `models cuts`): writes head.onnx and tail.onnx")
    where.add_argument(
        "--cuts",
        metavar="auto|all|ID,ID,...",
        help="several cuts: writes segments.json and a segment-NN.onnx between consecutive cuts, for an agent "
        "that chooses its cut per request (cut=auto). 'auto': the cuts worth choosing between (marked in "
        "`models cuts`); 'all': every cut; input and output are always included",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to write into")
    parser.add_argument("--json", action="store_true", help="print a JSON object")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="run the halves (every head and tail of a chain) and the full model on a random x; "
        f"exit 1 if they differ by more than {_TOLERANCE:g}",
    )
    _add_input_shape(parser)


def _add_info(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _leaf(actions, "info", _info, "describe a model file: what to run first on your own model")
    parser.add_argument("file", type=Path, metavar="FILE", help="an .onnx file (external data and links are fine)")
    _add_input_shape(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def _add_profile(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _leaf(
        actions,
        "profile",
        _profile,
        "measure a model's candidate cuts on this host (request bytes, head and tail times) for fleet mode",
    )
    parser.add_argument("model", metavar="NAME_OR_PATH", help="zoo model name or .onnx file")
    parser.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="add the profile to this profiles file (created if needed), for `edgecut sim run --profiles FILE`",
    )
    _add_input_shape(parser)
    parser.add_argument("--json", action="store_true", help="print the profile as JSON")


def _add_accuracy(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from protocol import codec_names  # noqa: PLC0415 - keeps the parser cheap to build

    parser = _leaf(
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
    parser.add_argument("--limit", type=int, metavar="N", help="use only the first N images")
    parser.add_argument("--json", action="store_true", help="print a JSON array of rows")


def _add_input_shape(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME=D1xD2x...",
        help="the shape to count and run an input at, for a model with dynamic sizes (repeatable, one per "
        "input; e.g. images=1x3x640x640; NAME= for a scalar). Default: the model's own sizes, a batch axis at 1",
    )


def _input_shapes(args: argparse.Namespace) -> dict[str, tuple[int, ...]]:
    from models.partition import parse_input_shape  # noqa: PLC0415 - needs onnx: see module docstring

    return dict(parse_input_shape(text) for text in args.input_shape)


def _leaf(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Callable[[argparse.Namespace], ExitCode],
    summary: str,
) -> argparse.ArgumentParser:
    parser = actions.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")
    parser.set_defaults(handler=handler)
    return parser


def _list(args: argparse.Namespace) -> ExitCode:
    _require_onnx()
    from models import zoo  # noqa: PLC0415 - needs onnx: see module docstring

    entries = [zoo.entry(name) for name in zoo.MODEL_NAMES]
    if args.json:
        rows = [
            {
                "name": e.name,
                "description": e.description,
                "input": e.input.to_json(),
                "output": e.output.to_json(),
            }
            for e in entries
        ]
        print_json(rows)
    else:
        _print_table(
            ("name", "input", "output", "description"),
            [(e.name, _spec_text(e.input), _spec_text(e.output), e.description) for e in entries],
        )
    return ExitCode.OK


def _build(args: argparse.Namespace) -> ExitCode:
    _require_onnx()
    from models import sha256_hex, zoo  # noqa: PLC0415 - needs onnx: see module docstring

    model = zoo.build(args.name, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.name}.onnx"
    data = model.SerializeToString()
    path.write_bytes(data)
    sha = sha256_hex(data)
    if args.json:
        print_json(
            {
                "name": args.name,
                "seed": args.seed,
                "path": str(path),
                "bytes": len(data),
                "sha256": sha,
            }
        )
    else:
        _out(f"wrote {path} ({_human(len(data))}, sha256 {sha})")
    return ExitCode.OK


def _cuts(args: argparse.Namespace) -> ExitCode:
    _require_onnx()
    from models import partition  # noqa: PLC0415 - needs onnx: see module docstring

    model_id, model = partition.load_model(args.model)
    shapes = _input_shapes(args)
    cuts = partition.enumerate_cuts(model, shapes)
    reference = cuts[0].bytes  # the input cut: what sending the raw input costs
    shown = [cut for cut in cuts if cut.single_tensor or not args.single_only]
    candidates = {cut.id for cut in partition.candidate_cuts(cuts)}
    int8 = partition.int8_cuts(model, cuts)
    if args.json:
        print_json([cut.to_json() | {"candidate": cut.id in candidates, "int8": cut.id in int8} for cut in shown])
        return ExitCode.OK
    singles = sum(cut.single_tensor for cut in cuts)
    _out(f"{model_id}: {len(cuts)} cuts, {singles} single-tensor, {len(candidates)} candidates for cut=auto")
    _out(f"the input cut (raw input, for reference) sends {_human(reference)}, {_shapes_text(model, shapes)}")
    if any(cut.measured for cut in cuts):
        _out("bytes marked * depend on the input's values: measured on one random input of those shapes")
    if int8:
        _out(f"{len(int8)} int8 cuts (a QuantizeLinear output crosses: int8 on the wire at no accuracy cost)")
    _print_table(
        ("id", "position", "bytes", "vs input", "single", "auto", "int8", "crossing"),
        [_cut_row(cut, reference, candidate=cut.id in candidates, int8=cut.id in int8) for cut in shown],
    )
    return ExitCode.OK


def _split(args: argparse.Namespace) -> ExitCode:
    _require_onnx()
    from models import partition  # noqa: PLC0415 - needs onnx: see module docstring

    model_id, model = partition.load_model(args.model)
    if args.cuts is not None:
        return _split_segments(args, model_id, model)
    shapes = _input_shapes(args)
    cut = partition.find_cut(model, args.cut, shapes)
    split = partition.split(model, cut, model_id=model_id, input_shapes=shapes or None)
    paths = partition.save_split(split, args.out)
    diff = partition.verify_split(model, split, input_shapes=shapes) if args.verify else None
    manifest = split.manifest
    if args.json:
        print_json(
            {
                "model_id": model_id,
                "cut": manifest.cut_id,
                "crossing": [spec.to_json() for spec in manifest.crossing],
                "bytes": cut.bytes,
                "input_shapes": _resolved(model, shapes),
                "files": [str(path) for path in paths],
                "max_abs_diff": diff,
            }
        )
    else:
        _print_split(cut, _shapes_text(model, shapes), paths, diff)
    return ExitCode.FAILED if diff is not None and not diff <= _TOLERANCE else ExitCode.OK


def _split_segments(args: argparse.Namespace, model_id: str, model: onnx.ModelProto) -> ExitCode:
    from models import partition  # noqa: PLC0415 - needs onnx: see module docstring

    shapes = _input_shapes(args)
    cuts = partition.enumerate_cuts(model, shapes)
    if args.cuts == "auto":
        chosen: Sequence[str | Cut] = partition.candidate_cuts(cuts)
    elif args.cuts == "all":
        chosen = cuts
    else:
        chosen = [cut_id.strip() for cut_id in args.cuts.split(",") if cut_id.strip()]
    segments = partition.split_segments(model, chosen, model_id=model_id, input_shapes=shapes or None)
    paths = partition.save_segments(segments, args.out)
    diff = partition.verify_segments(model, segments, input_shapes=shapes) if args.verify else None
    manifest = segments.manifest
    counted = {cut.id: cut.bytes for cut in cuts}
    if args.json:
        print_json(
            {
                "model_id": model_id,
                "cuts": [{"id": cut.id, "bytes": counted[cut.id]} for cut in manifest.cuts],
                "input_shapes": _resolved(model, shapes),
                "files": [str(path) for path in paths],
                "max_abs_diff": diff,
            }
        )
    else:
        _out(f"{model_id}: a chain of {len(manifest.segments)} segments through {len(manifest.cuts)} cuts")
        _out(f"bytes {_shapes_text(model, shapes)}")
        _print_table(("cut", "bytes"), [(cut.id, _human(counted[cut.id])) for cut in manifest.cuts])
        total = sum(path.stat().st_size for path in paths)
        _out(f"wrote {len(paths)} files to {args.out} ({_human(total)})")
        if diff is not None:
            verdict = "ok" if diff <= _TOLERANCE else f"FAILED: above {_TOLERANCE:g}"
            _out(f"verify: every head and tail vs the full model: max abs diff {diff:.3g} ({verdict})")
    return ExitCode.FAILED if diff is not None and not diff <= _TOLERANCE else ExitCode.OK


def _info(args: argparse.Namespace) -> ExitCode:
    _require_onnx()
    from models import partition  # noqa: PLC0415 - needs onnx: see module docstring

    info = partition.describe(args.file, _input_shapes(args))
    if args.json:
        print_json(info.to_json())
        return ExitCode.OK
    stored = _human(info.file_bytes)
    if info.external_files:
        stored += f" + {_human(info.external_bytes)} of external data in {', '.join(info.external_files)}"
    opsets = ", ".join(f"{domain} {version}" for domain, version in info.opsets.items())
    top = ", ".join(f"{op} {count}" for op, count in list(info.operators.items())[:8])
    _out(f"{info.path}")
    _out(f"  sha256        {info.sha256}")
    _out(f"  producer      {info.producer or '(not recorded)'}; opsets {opsets}")
    _out(f"  stored        {stored}")
    _out(f"  parameters    {info.parameters:,}; {info.nodes} nodes ({top})")
    _out(f"  quantisation  {info.quantisation}")
    _out(f"  inputs        {_tensors_text(info.inputs)}")
    _out(f"  outputs       {_tensors_text(info.outputs)}")
    _out(f"  counted at    {_dims_text(info.input_shapes)}")
    _out(f"  cuts          {info.cuts}; cut=auto chooses between {', '.join(cut.id for cut in info.candidates)}")
    smallest = ", ".join(f"{cut.id} ({_human(cut.bytes)})" for cut in info.smallest) or "none"
    _out(f"  fewest bytes  {smallest}")
    if info.int8_cuts:
        more = " ..." if len(info.int8_cuts) > _SHOWN else ""
        _out(f"  int8 cuts     {', '.join(info.int8_cuts[:_SHOWN])}{more}")
    return ExitCode.OK


def _profile(args: argparse.Namespace) -> ExitCode:
    _require_onnx()
    from simulations import load_profiles, measure_profile, save_profiles  # noqa: PLC0415

    profile = measure_profile(args.model, input_shapes=_input_shapes(args))
    if args.out is not None:
        profiles = load_profiles(args.out) if args.out.is_file() else {}
        profiles[args.model] = profile  # by the name scenarios give it
        save_profiles(profiles, args.out)
    if args.json:
        print_json(profile.to_json())
        return ExitCode.OK
    _out(f"{profile.model} on this host, one ORT thread (median of 5 runs); reply {_human(profile.reply_bytes)}")
    _out(f"  {'cut':<24} {'request':>10} {'head ms':>8} {'tail ms':>8}")
    for cut in profile.cuts:
        _out(f"  {cut.id:<24} {_human(cut.request_bytes):>10} {cut.head_ms:8.2f} {cut.tail_ms:8.2f}")
    if args.out is not None:
        _out(f"added to {args.out}")
    return ExitCode.OK


def _accuracy(args: argparse.Namespace) -> ExitCode:
    _require_onnx()
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
    _out(f"{model_id}: {len(images)} images ({source}), one request each")
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
    _print_table(header, table)
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
    spec = TensorSpec(graph_input.name, ONNX_ELEMENT_TYPES.get(tensor_type.elem_type, "float32"), dims[1:])
    if args.images:
        return np.stack([load_input(path, spec) for path in args.images]), None, f"{len(args.images)} files"
    if model_id == "digits":
        images, labels = digits.test_set()
        return images, labels, "the digits test set, labelled"
    return _sample_photos(spec), None, "crops of scikit-learn's two sample photos, unlabelled"


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


def _add_prelude(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _leaf(
        actions,
        "prelude",
        _prelude,
        "put a float model's preprocessing in front of it, so that it takes a uint8 camera image (jpeg applies)",
    )
    parser.add_argument("model", type=Path, metavar="MODEL", help="an .onnx file with a 4-D float32 image input")
    parser.add_argument(
        "--image",
        type=_height_width,
        required=True,
        metavar="HxW",
        help="the camera image's height and width, such as 480x640: the new input is uint8[N,H,W,3], RGB",
    )
    parser.add_argument("--layout", choices=("nchw", "nhwc"), required=True, help="the model input's layout")
    parser.add_argument(
        "--scale", type=_number, default=1.0, metavar="S", help="multiply pixels 0..255 by S first, such as 1/255"
    )
    parser.add_argument(
        "--mean",
        type=_rgb,
        default=(0.0, 0.0, 0.0),
        metavar="R,G,B",
        help="then subtract per channel, in scaled units (such as 0.485,0.456,0.406; default 0,0,0)",
    )
    parser.add_argument(
        "--std", type=_rgb, default=(1.0, 1.0, 1.0), metavar="R,G,B", help="then divide per channel (default 1,1,1)"
    )
    fit = parser.add_mutually_exclusive_group()
    fit.add_argument(
        "--resize",
        dest="fit",
        action="store_const",
        const="resize",
        default="resize",
        help="stretch the image to the model's size (the default)",
    )
    fit.add_argument(
        "--letterbox",
        dest="fit",
        action="store_const",
        const="letterbox",
        help="keep the aspect ratio and pad, centred, as ultralytics' LetterBox",
    )
    parser.add_argument(
        "--pad-value", type=float, default=114.0, metavar="V", help="the letterbox's padding, 0..255 (default 114)"
    )
    parser.add_argument("--input", metavar="NAME", help="the input to feed, if several are 4-D float32")
    parser.add_argument(
        "--model-size",
        type=_height_width,
        metavar="HxW",
        help="the size the model sees, if its input's height or width is not fixed",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="the .onnx file to write")
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def _height_width(text: str) -> tuple[int, int]:
    """``480x640`` as ``(480, 640)``."""
    height, sep, width = text.lower().partition("x")
    if sep and height.strip().isdigit() and width.strip().isdigit() and int(height) > 0 and int(width) > 0:
        return int(height), int(width)
    msg = f"{text!r} is not a size HxW such as 480x640"
    raise argparse.ArgumentTypeError(msg)


def _number(text: str) -> float:
    """``0.5`` or a fraction such as ``1/255``."""
    numerator, sep, denominator = text.partition("/")
    try:
        return float(numerator) / float(denominator) if sep else float(text)
    except (ValueError, ZeroDivisionError):
        msg = f"{text!r} is not a number such as 0.5 or 1/255"
        raise argparse.ArgumentTypeError(msg) from None


def _rgb(text: str) -> tuple[float, float, float]:
    """``R,G,B``: three numbers (or fractions)."""
    parts = text.split(",")
    if len(parts) != 3:  # noqa: PLR2004 - R, G and B
        msg = f"{text!r} is not three numbers R,G,B such as 0.485,0.456,0.406"
        raise argparse.ArgumentTypeError(msg)
    red, green, blue = (_number(part) for part in parts)
    return red, green, blue


def _prelude(args: argparse.Namespace) -> ExitCode:
    _require_onnx()
    from models import partition, prelude, sha256_hex  # noqa: PLC0415 - needs onnx: see module docstring

    try:
        steps = prelude.Preprocessing(
            image=args.image,
            layout=args.layout,
            scale=args.scale,
            mean=args.mean,
            std=args.std,
            fit=args.fit,
            pad_value=args.pad_value,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    model = partition.load_model_file(args.model)
    composed = prelude.add_prelude(model, steps, input_name=args.input, model_size=args.model_size)
    data = composed.model.SerializeToString()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    sha = sha256_hex(data)
    place = composed.placement
    if args.json:
        print_json(
            {
                "path": str(args.out),
                "bytes": len(data),
                "sha256": sha,
                "input": composed.image.to_json(),
                "feeds": composed.feeds.to_json(),
                "placement": place.to_json(),
            }
        )
        return ExitCode.OK
    _out(f"wrote {args.out} ({_human(len(data))}, sha256 {sha})")
    _out(f"  input  {_tensors_text([composed.image])}: the camera image, which jpeg and png send at the input cut")
    padding = f", padded top {place.top}, bottom {place.bottom}, left {place.left}, right {place.right}"
    fitted = f"the image resized to {place.height}x{place.width}" + (padding if args.fit == "letterbox" else "")
    _out(f"  feeds  {_tensors_text([composed.feeds])}: {fitted}")
    return ExitCode.OK


def _resolved(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> dict[str, list[int]]:
    """Every input's shape as counted: stated, the model's own, a batch axis at 1."""
    from models import partition  # noqa: PLC0415 - needs onnx: see module docstring

    return {name: list(dims) for name, dims in partition.input_shapes(model, shapes).items()}


def _shapes_text(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> str:
    return f"at {_dims_text(_resolved(model, shapes))}"


def _dims_text(shapes: Mapping[str, Sequence[int]]) -> str:
    """``images=1x3x640x640, sr=scalar``."""
    return ", ".join(f"{name}={'x'.join(map(str, dims)) or 'scalar'}" for name, dims in shapes.items())


def _print_split(cut: Cut, shapes: str, paths: Sequence[Path], diff: float | None) -> None:
    crossing = _tensors_text(cut.tensors)
    _out(f"cut {cut.id}: {crossing} cross ({_human(cut.bytes)} {shapes})")
    for path in paths:
        _out(f"wrote {path} ({_human(path.stat().st_size)})")
    if diff is not None:
        verdict = "ok" if diff <= _TOLERANCE else f"FAILED: above {_TOLERANCE:g}"
        _out(f"verify: tail(head(x)) vs full model: max abs diff {diff:.3g} ({verdict})")


def _cut_row(cut: Cut, reference: int, *, candidate: bool, int8: bool) -> tuple[str, ...]:
    ratio = f"{cut.bytes / reference:.2f}x" if reference else "-"
    marks = ("yes" if flag else "" for flag in (cut.single_tensor, candidate, int8))
    size = _human(cut.bytes) + ("*" if cut.measured else "")
    return (cut.id, str(cut.position), size, ratio, *marks, _tensors_text(cut.tensors))


def _tensors_text(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(f"{spec.name} {_spec_text(spec)}" for spec in specs)


def _spec_text(spec: TensorSpec) -> str:
    return f"{spec.dtype}[{','.join(str(d) for d in spec.shape)}]"


def _human(size: int) -> str:
    """``size`` bytes in binary units: ``512 B``, ``147.0 KiB``."""
    value = float(size)
    for unit in _UNITS[:-1]:
        if value < 1024:  # noqa: PLR2004 - one binary unit
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {_UNITS[-1]}"


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        _out("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _require_onnx() -> None:
    if importlib.util.find_spec("onnx") is None:
        msg = "the models commands need the onnx package: pip install 'edgecut[tools]'"
        raise ModelError(msg)

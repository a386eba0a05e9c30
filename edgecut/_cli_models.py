"""``edgecut models``: list and build zoo models, describe a model, list its cuts, split it.

``accuracy`` and ``prelude`` live in modules of their own. The handlers only
parse, call :mod:`models.partition` and :mod:`models.zoo`, and print. Those modules need ``onnx``, so they are
imported when a handler runs: an agent without ``onnx`` can still build the
whole parser, and ``edgecut --help`` imports neither onnx nor onnxruntime.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgecut._cli_accuracy import add_accuracy
from edgecut._cli_delivery import add_delivery
from edgecut._cli_prelude import add_prelude
from edgecut._cli_text import human, leaf, out, print_table, require_onnx, spec_text, tensors_text
from edgecut._cli_values import count, input_shape
from edgecut._exit import ExitCode
from edgecut._output import print_json

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping, Sequence

    import onnx

    from models.partition import Cut

_TOLERANCE = 1e-4
_SHOWN = 8  # int8 cuts listed by `models info`


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``models`` and its subcommands to the ``edgecut`` subparsers ``commands``."""
    models = commands.add_parser(
        "models",
        help="list, build, cut and split ONNX models",
        description="Work with ONNX models: the zoo, their cuts, head/tail splits, and their delivery over MQTT.",
    )
    actions = models.add_subparsers(dest="action", metavar="ACTION", required=True)
    _add_list(actions)
    _add_build(actions)
    _add_cuts(actions)
    _add_split(actions)
    add_accuracy(actions)
    _add_info(actions)
    _add_profile(actions)
    add_prelude(actions)
    add_delivery(actions)


def _add_list(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = leaf(actions, "list", _list, "list the zoo's models with their input and output")
    parser.add_argument("--json", action="store_true", help="print a JSON array")


def _add_build(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = leaf(actions, "build", _build, "build a zoo model and write NAME.onnx")
    parser.add_argument("name", metavar="NAME", help="zoo model name (see `models list`)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to write into")
    parser.add_argument("--seed", type=count, default=0, help="seed of the random weights (default: 0)")
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def _add_cuts(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = leaf(actions, "cuts", _cuts, "list where a model can be split and what crosses")
    parser.add_argument("model", metavar="NAME_OR_PATH", help="zoo model name or .onnx file")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print a JSON array of cuts (its keys: docs/protocol.md, section 8)",
    )
    parser.add_argument("--single-only", action="store_true", help="only cuts where one tensor crosses")
    _add_input_shape(parser)


def _add_split(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = leaf(
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
    parser = leaf(actions, "info", _info, "describe a model file: what to run first on your own model")
    parser.add_argument("file", type=Path, metavar="FILE", help="an .onnx file (external data and links are fine)")
    _add_input_shape(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON object")


def _add_profile(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = leaf(
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


def _add_input_shape(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input-shape",
        action="append",
        type=input_shape,
        default=[],
        metavar="NAME=D1xD2x...",
        help="the shape to count and run an input at, for a model with dynamic sizes (repeatable, one per "
        "input; e.g. images=1x3x640x640; NAME= for a scalar). Default: the model's own sizes, a batch axis at 1",
    )


def _input_shapes(args: argparse.Namespace) -> dict[str, tuple[int, ...]]:
    return dict(args.input_shape)


def _list(args: argparse.Namespace) -> ExitCode:
    require_onnx()
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
        print_table(
            ("name", "input", "output", "description"),
            [(e.name, spec_text(e.input), spec_text(e.output), e.description) for e in entries],
        )
    return ExitCode.OK


def _build(args: argparse.Namespace) -> ExitCode:
    require_onnx()
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
        out(f"wrote {path} ({human(len(data))}, sha256 {sha})")
    return ExitCode.OK


def _cuts(args: argparse.Namespace) -> ExitCode:
    require_onnx()
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
    out(f"{model_id}: {len(cuts)} cuts, {singles} single-tensor, {len(candidates)} candidates for cut=auto")
    out(f"the input cut (raw input, for reference) sends {human(reference)}, {_shapes_text(model, shapes)}")
    if any(cut.measured for cut in cuts):
        out("bytes marked * depend on the input's values: measured on one random input of those shapes")
    if int8:
        out(f"{len(int8)} int8 cuts (a QuantizeLinear output crosses: int8 on the wire at no accuracy cost)")
    print_table(
        ("id", "position", "bytes", "vs input", "single", "auto", "int8", "crossing"),
        [_cut_row(cut, reference, candidate=cut.id in candidates, int8=cut.id in int8) for cut in shown],
    )
    return ExitCode.OK


def _split(args: argparse.Namespace) -> ExitCode:
    require_onnx()
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
        out(f"{model_id}: a chain of {len(manifest.segments)} segments through {len(manifest.cuts)} cuts")
        out(f"bytes {_shapes_text(model, shapes)}")
        print_table(("cut", "bytes"), [(cut.id, human(counted[cut.id])) for cut in manifest.cuts])
        total = sum(path.stat().st_size for path in paths)
        out(f"wrote {len(paths)} files to {args.out} ({human(total)})")
        if diff is not None:
            verdict = "ok" if diff <= _TOLERANCE else f"FAILED: above {_TOLERANCE:g}"
            out(f"verify: every head and tail vs the full model: max abs diff {diff:.3g} ({verdict})")
    return ExitCode.FAILED if diff is not None and not diff <= _TOLERANCE else ExitCode.OK


def _info(args: argparse.Namespace) -> ExitCode:
    require_onnx()
    from models import partition  # noqa: PLC0415 - needs onnx: see module docstring

    info = partition.describe(args.file, _input_shapes(args))
    if args.json:
        print_json(info.to_json())
        return ExitCode.OK
    stored = human(info.file_bytes)
    if info.external_files:
        stored += f" + {human(info.external_bytes)} of external data in {', '.join(info.external_files)}"
    opsets = ", ".join(f"{domain} {version}" for domain, version in info.opsets.items())
    top = ", ".join(f"{op} {count}" for op, count in list(info.operators.items())[:8])
    out(f"{info.path}")
    out(f"  sha256        {info.sha256}")
    out(f"  producer      {info.producer or '(not recorded)'}; opsets {opsets}")
    out(f"  stored        {stored}")
    out(f"  parameters    {info.parameters:,}; {info.nodes} nodes ({top})")
    out(f"  quantisation  {info.quantisation}")
    out(f"  inputs        {tensors_text(info.inputs)}")
    out(f"  outputs       {tensors_text(info.outputs)}")
    out(f"  counted at    {_dims_text(info.input_shapes)}")
    out(f"  cuts          {info.cuts}; cut=auto chooses between {', '.join(cut.id for cut in info.candidates)}")
    smallest = ", ".join(f"{cut.id} ({human(cut.bytes)})" for cut in info.smallest) or "none"
    out(f"  fewest bytes  {smallest}")
    if info.int8_cuts:
        more = " ..." if len(info.int8_cuts) > _SHOWN else ""
        out(f"  int8 cuts     {', '.join(info.int8_cuts[:_SHOWN])}{more}")
    return ExitCode.OK


def _profile(args: argparse.Namespace) -> ExitCode:
    require_onnx()
    from simulations import load_profiles, measure_profile, save_profiles  # noqa: PLC0415

    profile = measure_profile(args.model, input_shapes=_input_shapes(args))
    if args.out is not None:
        profiles = load_profiles(args.out) if args.out.is_file() else {}
        profiles[args.model] = profile  # by the name scenarios give it
        save_profiles(profiles, args.out)
    if args.json:
        print_json(profile.to_json())
        return ExitCode.OK
    out(f"{profile.model} on this host, one ORT thread (median of 5 runs); reply {human(profile.reply_bytes)}")
    out(f"  {'cut':<24} {'request':>10} {'head ms':>8} {'tail ms':>8}")
    for cut in profile.cuts:
        out(f"  {cut.id:<24} {human(cut.request_bytes):>10} {cut.head_ms:8.2f} {cut.tail_ms:8.2f}")
    if args.out is not None:
        out(f"added to {args.out}")
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
    crossing = tensors_text(cut.tensors)
    out(f"cut {cut.id}: {crossing} cross ({human(cut.bytes)} {shapes})")
    for path in paths:
        out(f"wrote {path} ({human(path.stat().st_size)})")
    if diff is not None:
        verdict = "ok" if diff <= _TOLERANCE else f"FAILED: above {_TOLERANCE:g}"
        out(f"verify: tail(head(x)) vs full model: max abs diff {diff:.3g} ({verdict})")


def _cut_row(cut: Cut, reference: int, *, candidate: bool, int8: bool) -> tuple[str, ...]:
    ratio = f"{cut.bytes / reference:.2f}x" if reference else "-"
    marks = ("yes" if flag else "" for flag in (cut.single_tensor, candidate, int8))
    size = human(cut.bytes) + ("*" if cut.measured else "")
    return (cut.id, str(cut.position), size, ratio, *marks, tensors_text(cut.tensors))

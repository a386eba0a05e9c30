"""``edgecut models prelude``: put a float model's preprocessing in front of it (``models.prelude``).

The handler imports :mod:`models.prelude` when it runs (it needs ``onnx``),
so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgecut._cli_text import human, leaf, out, require_onnx, tensors_text
from edgecut._exit import ExitCode
from edgecut._output import print_json
from protocol.errors import ConfigError


def add_prelude(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``models prelude`` to the ``models`` subcommands ``actions``."""
    parser = leaf(
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
    require_onnx()
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
    out(f"wrote {args.out} ({human(len(data))}, sha256 {sha})")
    out(f"  input  {tensors_text([composed.image])}: the camera image, which jpeg and png send at the input cut")
    padding = f", padded top {place.top}, bottom {place.bottom}, left {place.left}, right {place.right}"
    fitted = f"the image resized to {place.height}x{place.width}" + (padding if args.fit == "letterbox" else "")
    out(f"  feeds  {tensors_text([composed.feeds])}: {fitted}")
    return ExitCode.OK

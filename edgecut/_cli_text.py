"""What the ``edgecut models`` commands share: subcommand set-up, tensor and size text, tables, the onnx check."""

from __future__ import annotations

import importlib.util
import sys
from typing import TYPE_CHECKING

from protocol.errors import ModelError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

    from edgecut._exit import ExitCode
    from models import TensorSpec

_UNITS = ("B", "KiB", "MiB", "GiB")


def leaf(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Callable[[argparse.Namespace], ExitCode],
    summary: str,
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` to ``actions``, run by ``handler``, described by ``summary``."""
    parser = actions.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")
    parser.set_defaults(handler=handler)
    return parser


def tensors_text(specs: Sequence[TensorSpec]) -> str:
    """``name dtype[dims], ...``: tensors as the tables print them."""
    return ", ".join(f"{spec.name} {spec_text(spec)}" for spec in specs)


def spec_text(spec: TensorSpec) -> str:
    """``dtype[dims]``."""
    return f"{spec.dtype}[{','.join(str(d) for d in spec.shape)}]"


def human(size: int) -> str:
    """``size`` bytes in binary units: ``512 B``, ``147.0 KiB``."""
    value = float(size)
    for unit in _UNITS[:-1]:
        if value < 1024:  # noqa: PLR2004 - one binary unit
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {_UNITS[-1]}"


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print ``rows`` under ``header`` in left-aligned columns."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        out("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def out(text: str) -> None:
    """Print a line of a command's report."""
    sys.stdout.write(text + "\n")


def require_onnx() -> None:
    """Fail with the install command when ``onnx`` is missing.

    Raises:
        ModelError: ``onnx`` is not installed.
    """
    if importlib.util.find_spec("onnx") is None:
        msg = "the models commands need the onnx package: pip install 'edgecut[tools]'"
        raise ModelError(msg)

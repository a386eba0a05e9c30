"""Argument types for numbers with a range: a bad value is a usage error (exit 2) naming the flag and the value.

argparse reports what a type raises as ``argument --port: <message>``, so
the library below never sees a port of 99999 or a negative timeout, which it
would refuse with a traceback or, worse, take.
"""

from __future__ import annotations

import argparse
import math
from typing import TypeVar

_N = TypeVar("_N", int, float)


def port(text: str) -> int:
    """A TCP port, 0 to 65535 (0: any free one)."""
    value = _whole(text)
    return _checked(value, text, "is not a port: 0 to 65535", fits=0 <= value <= 65535)  # noqa: PLR2004 - TCP's largest


def count(text: str) -> int:
    """A whole number, 0 or more."""
    value = _whole(text)
    return _checked(value, text, "is negative: 0 or more", fits=value >= 0)


def at_least_one(text: str) -> int:
    """A whole number, 1 or more."""
    value = _whole(text)
    return _checked(value, text, "is less than 1", fits=value >= 1)


def positive(text: str) -> float:
    """A finite number above 0 (seconds, milliseconds)."""
    value = _real(text)
    return _checked(value, text, "is not above 0", fits=0 < value < math.inf)


def non_negative(text: str) -> float:
    """A finite number, 0 or more (watts)."""
    value = _real(text)
    return _checked(value, text, "is negative", fits=0 <= value < math.inf)


def probability(text: str) -> float:
    """A probability: 0 to 1 (a loss rate)."""
    value = _real(text)
    return _checked(value, text, "is not a probability: 0 to 1", fits=0 <= value <= 1)


def input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``NAME=D1xD2x...``: the shape of one of a model's inputs (``NAME=`` for a scalar)."""
    from models import parse_input_shape  # noqa: PLC0415 - keeps onnxruntime out of `edgecut --help`
    from protocol.errors import ModelError  # noqa: PLC0415

    try:
        return parse_input_shape(text)
    except ModelError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _checked(value: _N, text: str, why: str, *, fits: bool) -> _N:
    """``value``, if it ``fits``; else the usage error saying ``text`` ``why``."""
    if not fits:
        msg = f"{text!r} {why}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        msg = f"{text!r} is not a whole number"
        raise argparse.ArgumentTypeError(msg) from None


def _real(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isnan(value):
        msg = f"{text!r} is not a number"
        raise argparse.ArgumentTypeError(msg)
    return value

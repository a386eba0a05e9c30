"""Figures as tc writes them (``5mbit``, ``40ms``), and the ``tc netem`` commands for a kernel that has netem.

Rates and delays come in from the command line in tc's notation; inside,
edgecut uses bits per second and seconds (simulations/_link.py).
"""

from __future__ import annotations

import math
import re
from typing import Final

from simulations._traces import PACKET_BITS, _check_non_negative

_RATE_UNITS: Final = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12}
_BYTE_UNITS: Final = {unit.replace("bit", "bps"): 8 * scale for unit, scale in _RATE_UNITS.items()}
_DURATION_UNITS_MS: Final = {"s": 1e3, "ms": 1.0, "us": 1e-3}
_NUMBER_UNIT: Final = re.compile(r"(\d+(?:\.\d+)?|\.\d+)([a-z]*)")


def tc_commands(
    *, interface: str, rate_bit_s: float, delay_s: float, jitter_s: float = 0.0, limit_bytes: int | None = None
) -> list[str]:
    """The ``tc`` commands that give ``interface``'s egress this delay and rate with netem.

    They shape one direction only, as every qdisc does; run them on each end
    for both. netem's ``limit`` counts packets, not bytes, so ``limit_bytes``
    becomes that many full 1500-byte packets, rounded up.

    Returns:
        The commands, to run in order as root.

    Raises:
        ValueError: A value is out of range, or ``interface`` is not a Linux
            interface name.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", interface):
        msg = f"not an interface name (up to 15 of A-Z a-z 0-9 _ . -): {interface!r}"
        raise ValueError(msg)
    if not (math.isfinite(rate_bit_s) and rate_bit_s >= 8):  # noqa: PLR2004 (one byte per second)
        msg = f"rate_bit_s must be finite and >= 8 (tc keeps whole bytes per second), got {rate_bit_s}"
        raise ValueError(msg)
    _check_non_negative("delay_s", delay_s)
    _check_non_negative("jitter_s", jitter_s)
    netem = f"delay {_format_ms(delay_s)}" + (f" {_format_ms(jitter_s)}" if jitter_s else "")
    netem += f" rate {format_rate(rate_bit_s)}"
    if limit_bytes is not None:
        if limit_bytes < 1:
            msg = f"limit_bytes must be >= 1, got {limit_bytes}"
            raise ValueError(msg)
        netem += f" limit {-(-limit_bytes // (PACKET_BITS // 8))}"
    return [f"tc qdisc replace dev {interface} root netem {netem}"]


def format_rate(bit_s: float) -> str:
    """Write a rate as tc does: whole bits per second in the largest unit that divides them exactly.

    For example ``"500kbit"``, ``"5mbit"``, ``"2500kbit"``; the rate is first
    rounded to a whole bit per second.

    Raises:
        ValueError: ``bit_s`` is negative or not finite.
    """
    _check_non_negative("a rate", bit_s)
    value = round(bit_s)
    for unit in ("bit", "kbit", "mbit", "gbit"):
        if value < 1000 or value % 1000:  # noqa: PLR2004 (tc's units are powers of 1000)
            return f"{value}{unit}"
        value //= 1000
    return f"{value}tbit"


def parse_rate(text: str) -> float:
    """Read a tc-style rate such as ``"500kbit"`` or ``"2.5mbit"`` into bits per second.

    Units are tc's ``bit``, ``kbit``, ``mbit``, ``gbit`` and ``tbit`` (k = 1000),
    in any case. A bare number is refused (tc's versions disagree on its
    unit), and so is ``mbps`` and its kin, which tc reads as bytes per second.

    Raises:
        ValueError: ``text`` is not such a rate.
    """
    match = _NUMBER_UNIT.fullmatch(text.strip().lower())
    if match is None or match[2] not in _RATE_UNITS:
        hint = ""
        if match is not None and match[2] in _BYTE_UNITS:
            bits = format_rate(float(match[1]) * _BYTE_UNITS[match[2]])
            hint = f"; tc reads {match[2]!r} as bytes per second, so {text!r} would be {bits!r}"
        msg = f"not a rate: {text!r} (a number and one of {', '.join(_RATE_UNITS)}){hint}"
        raise ValueError(msg)
    return float(match[1]) * _RATE_UNITS[match[2]]


def parse_duration_ms(text: str) -> float:
    """Read a duration such as ``"40ms"``, ``"1.5s"``, ``"250us"`` or ``"40"`` into milliseconds.

    A bare number is milliseconds (tc would read microseconds).

    Raises:
        ValueError: ``text`` is not such a duration.
    """
    match = _NUMBER_UNIT.fullmatch(text.strip().lower())
    unit = "ms" if match is None or not match[2] else match[2]
    if match is None or unit not in _DURATION_UNITS_MS:
        msg = f"not a duration: {text!r} (a number and one of {', '.join(_DURATION_UNITS_MS)}, or bare milliseconds)"
        raise ValueError(msg)
    return float(match[1]) * _DURATION_UNITS_MS[unit]


def _format_ms(t_s: float) -> str:
    # Microsecond resolution, without trailing zeros: 0.04 -> "40ms", 0.0405 -> "40.5ms".
    return f"{t_s * 1000:.3f}".rstrip("0").rstrip(".") + "ms"

"""Link-capacity traces: read, query, and convert for Mahimahi and ``tc``.

A :class:`RateTrace` is a link's capacity as a step function of time. Readers
turn measured traces into one and validate them the way Mahimahi's
``LinkQueue`` does (no blank lines, ordered times, at least one sample, a
nonzero duration); every error is a ``ConfigError`` starting
``"<file>:<line>: "``. ``simulations/traces/README.md`` says where the bundled
files come from and how each format's samples become steps.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import itertools
import math
from typing import TYPE_CHECKING, Final

from protocol.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path
    from typing import TextIO

PACKET_BITS: Final = 1500 * 8
"""Bits in one Mahimahi delivery opportunity (one MTU-sized packet)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RateTrace:
    """A link's capacity over time, constant within each step.

    Step ``i`` runs from ``starts_s[i]`` to ``starts_s[i + 1]`` (the last to
    ``duration_s``) at ``rates_bit_s[i]``. After ``duration_s`` the trace
    starts again when ``loop`` is true, else its last rate holds forever.

    Attributes:
        starts_s: Start of each step; the first is 0.0, strictly increasing.
        rates_bit_s: Capacity of each step in bits per second, finite, >= 0.
        duration_s: Length of one period; after the last start.
        loop: Whether playback repeats after ``duration_s``.
        source: Where the trace came from (a file name), for messages.

    Raises:
        ValueError: The fields break these rules.
    """

    starts_s: tuple[float, ...]
    rates_bit_s: tuple[float, ...]
    duration_s: float
    loop: bool = True
    source: str
    # Bits delivered from 0 to each step's start, and over one whole period:
    # they make every query a bisect instead of a walk over the steps.
    _cum_bits: tuple[float, ...] = dataclasses.field(init=False, repr=False, compare=False)
    _period_bits: float = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        starts, rates = self.starts_s, self.rates_bit_s
        problem = None
        if not starts or len(starts) != len(rates):
            problem = f"needs one rate per step and at least one step, got {len(starts)} starts, {len(rates)} rates"
        elif starts[0] != 0.0 or not all(math.isfinite(t) for t in starts):
            problem = f"starts_s must be finite, the first 0.0, got {starts[0]}, ..."
        elif any(b <= a for a, b in itertools.pairwise(starts)):
            problem = "starts_s must be strictly increasing"
        elif not all(math.isfinite(r) and r >= 0 for r in rates):
            problem = "rates_bit_s must be finite and >= 0"
        elif not (math.isfinite(self.duration_s) and self.duration_s > starts[-1]):
            problem = f"duration_s must be finite and after the last start {starts[-1]} s, got {self.duration_s}"
        if problem is not None:
            msg = f"{self.source}: {problem}"
            raise ValueError(msg)
        steps = zip(starts, (*starts[1:], self.duration_s), rates, strict=True)
        cum = tuple(itertools.accumulate((r * (e - s) for s, e, r in steps), initial=0.0))
        object.__setattr__(self, "_cum_bits", cum[:-1])
        object.__setattr__(self, "_period_bits", cum[-1])

    @property
    def mean_bit_s(self) -> float:
        """Mean capacity over one period, weighted by time."""
        return self._period_bits / self.duration_s

    def rate_at(self, t_s: float) -> float:
        """Capacity in bits per second at time ``t_s`` (>= 0)."""
        _check_non_negative("t_s", t_s)
        offset_s = t_s % self.duration_s if self.loop else t_s
        return self.rates_bit_s[bisect.bisect_right(self.starts_s, offset_s) - 1]

    def bits_between(self, t0_s: float, t1_s: float) -> float:
        """Bits the link can carry from ``t0_s`` to ``t1_s`` (the integral of the rate).

        Raises:
            ValueError: A time is negative or not finite, or ``t1_s`` is before ``t0_s``.
        """
        if t1_s < t0_s:
            msg = f"t1_s ({t1_s}) is before t0_s ({t0_s})"
            raise ValueError(msg)
        # Both integrals are rounded; clamp so a tiny interval never yields negative bits.
        return max(0.0, self._bits_until(t1_s) - self._bits_until(t0_s))

    def time_to_send(self, t0_s: float, bits: float) -> float:
        """The earliest time t >= ``t0_s`` with ``bits_between(t0_s, t) >= bits``.

        Returns:
            That time, or ``math.inf`` when the link never carries ``bits``
            more (every rate is zero, or a trace that plays once ends at zero).

        Raises:
            ValueError: ``t0_s`` or ``bits`` is negative or not finite.
        """
        _check_non_negative("t0_s", t0_s)
        _check_non_negative("bits", bits)
        if bits == 0:
            return t0_s
        target = self._bits_until(t0_s) + bits
        if not self.loop:
            return max(t0_s, self._offset_for(target))
        if self._period_bits == 0:
            return math.inf
        periods = max(math.ceil(target / self._period_bits) - 1, 0)
        remaining = min(target - periods * self._period_bits, self._period_bits)
        return max(t0_s, periods * self.duration_s + self._offset_for(remaining))

    def scaled(self, factor: float) -> RateTrace:
        """A copy with every rate multiplied by ``factor`` (finite, >= 0)."""
        _check_non_negative("factor", factor)
        return dataclasses.replace(self, rates_bit_s=tuple(r * factor for r in self.rates_bit_s))

    def _bits_until(self, t_s: float) -> float:
        _check_non_negative("t_s", t_s)
        periods = 0.0
        if self.loop:
            periods, t_s = divmod(t_s, self.duration_s)
        i = bisect.bisect_right(self.starts_s, t_s) - 1
        return periods * self._period_bits + self._cum_bits[i] + self.rates_bit_s[i] * (t_s - self.starts_s[i])

    def _offset_for(self, bits: float) -> float:
        # The first step whose end reaches `bits` must have a positive rate,
        # except the open-ended last step of a trace that plays once.
        j = bisect.bisect_left(self._cum_bits, bits)
        if j == 0:
            return 0.0
        rate = self.rates_bit_s[j - 1]
        if rate == 0:
            return math.inf
        return self.starts_s[j - 1] + (bits - self._cum_bits[j - 1]) / rate


def _check_non_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        msg = f"{name} must be finite and >= 0, got {value}"
        raise ValueError(msg)


def read_cooked(path: Path, *, loop: bool = True) -> RateTrace:
    """Read a "cooked" trace: one ``seconds Mbit/s`` line per sample.

    A sample is the throughput over the interval that ends at its time and
    starts at the previous sample's (the first sample's starts at 0). So the
    sample at t=0 that begins every Norway file covers nothing and its rate is
    unused, as in Pensieve's simulator, and the duration is the last sample's
    time. Times must be strictly increasing: a zero-length interval has no
    throughput.

    Raises:
        ConfigError: The file is unreadable or breaks these rules.
    """
    times, rates = _cooked_samples(path)
    if times[-1] == 0:
        raise _error(path, len(times), "the trace must last a nonzero time, but its last sample is at 0 s")
    skip = 1 if times[0] == 0 else 0
    starts, kept = (0.0, *times[skip:-1]), tuple(rates[skip:])
    return RateTrace(starts_s=starts, rates_bit_s=kept, duration_s=times[-1], loop=loop, source=path.name)


def _cooked_samples(path: Path) -> tuple[list[float], list[float]]:
    """Times (s) and rates (bit/s) of a cooked trace, at least one, times strictly increasing."""
    times: list[float] = []
    rates: list[float] = []
    for number, line in _lines(path):
        fields = line.split()
        if len(fields) != 2:  # noqa: PLR2004 (time and rate)
            raise _error(path, number, f"expected 'seconds Mbit/s', got {line!r}")
        t_s = _number(path, number, fields[0], "time")
        if times and t_s <= times[-1]:
            raise _error(path, number, f"time {t_s} s is not after the previous sample's {times[-1]} s")
        times.append(t_s)
        rates.append(_number(path, number, fields[1], "rate") * 1e6)
    if not times:
        raise _error(path, 1, "no samples")
    return times, rates


def read_5gophers(path: Path, *, column: str, loop: bool = True) -> RateTrace:
    """Read one throughput column (Mbit/s) of a 5Gophers CSV, one row per second.

    Each row is one measured second, and the trace plays the rows in order:
    row ``i`` (from 0) covers ``[i, i + 1)`` s and the duration is the number
    of rows. ``seq_num`` must increase, but a gap in it is spliced out rather
    than filled (the driving trace lacks 103 to 108): holding the rate before
    the gap or a zero would both invent capacity that nobody measured.

    Raises:
        ConfigError: The file is unreadable, lacks ``column`` or ``seq_num``,
            or a row breaks these rules.
    """
    rates: list[float] = []
    previous = -1
    for number, row in _csv_rows(path, ("seq_num", column)):
        text = row["seq_num"]
        if not (text.isascii() and text.isdigit()):
            raise _error(path, number, f"seq_num {text!r} is not a whole number")
        if int(text) <= previous:
            raise _error(path, number, f"seq_num {text} is not after the previous row's {previous}")
        previous = int(text)
        rates.append(_number(path, number, row[column], column) * 1e6)
    starts, duration_s = tuple(float(i) for i in range(len(rates))), float(len(rates))
    return RateTrace(starts_s=starts, rates_bit_s=tuple(rates), duration_s=duration_s, loop=loop, source=path.name)


def read_rtts_ms(path: Path, *, carrier: str | None = None) -> tuple[float, ...]:
    """Read the ``rtt_ms`` column of a 5Gophers RTT CSV, in file order.

    Args:
        path: The CSV file.
        carrier: Keep only rows of this carrier, compared ignoring case (the
            RTT file says ``VERIZON`` where the driving file says ``Verizon``);
            ``None`` keeps every row.

    Raises:
        ConfigError: The file is unreadable, a column or a sample is missing
            or invalid, or no row has ``carrier``.
    """
    rows = _csv_rows(path, ("rtt_ms", "carrier"))
    rtts = [(row["carrier"], _number(path, number, row["rtt_ms"], "rtt_ms")) for number, row in rows]
    if carrier is None:
        return tuple(rtt for _, rtt in rtts)
    kept = tuple(rtt for name, rtt in rtts if name.casefold() == carrier.casefold())
    if not kept:
        present = ", ".join(sorted({name for name, _ in rtts}))
        raise _error(path, 1, f"no row has carrier {carrier!r}; carriers: {present}")
    return kept


def read_mahimahi(path: Path, *, bin_ms: int = 10, loop: bool = True) -> RateTrace:
    """Read a Mahimahi trace into steps of ``bin_ms`` milliseconds.

    Each line is the whole millisecond at which one 1500-byte packet may
    leave, non-decreasing; the period is the last line's value, and a line
    at t counts in the step ``(t - bin_ms, t]``. These bins are closed on the
    right because time 0 and the period's end are the same instant when
    Mahimahi repeats the file: a line 0 counts in the last step.

    Raises:
        ConfigError: The file is unreadable or breaks these rules.
        ValueError: ``bin_ms`` is not a positive integer.
    """
    if bin_ms < 1:
        msg = f"bin_ms must be >= 1, got {bin_ms}"
        raise ValueError(msg)
    stamps = _mahimahi_stamps(path)
    period_ms = stamps[-1]
    counts = [0] * -(-period_ms // bin_ms)
    for ms in stamps:
        counts[(ms - 1) // bin_ms % len(counts)] += 1
    starts = tuple(k * bin_ms / 1000 for k in range(len(counts)))
    widths_s = [min(bin_ms, period_ms - k * bin_ms) / 1000 for k in range(len(counts))]
    rates = tuple(n * PACKET_BITS / w for n, w in zip(counts, widths_s, strict=True))
    return RateTrace(starts_s=starts, rates_bit_s=rates, duration_s=period_ms / 1000, loop=loop, source=path.name)


def _mahimahi_stamps(path: Path) -> list[int]:
    """The timestamps of a Mahimahi trace, validated as Mahimahi's ``LinkQueue`` does."""
    stamps: list[int] = []
    for number, line in _lines(path):
        if not (line.isascii() and line.isdigit()):
            raise _error(path, number, f"{line!r} is not a whole number of milliseconds")
        if stamps and int(line) < stamps[-1]:
            raise _error(path, number, f"timestamps must be non-decreasing, but {line} ms follows {stamps[-1]} ms")
        stamps.append(int(line))
    if not stamps:
        raise _error(path, 1, "no timestamps")
    if stamps[-1] == 0:
        raise _error(path, len(stamps), "the trace must last a nonzero time, but its last timestamp is 0 ms")
    return stamps


def write_mahimahi(trace: RateTrace, out: TextIO) -> int:
    """Write one period of ``trace`` as Mahimahi delivery opportunities.

    Like Mahimahi's ``mm-rate-to-events``, a running reserve of bits carries
    fractional packets over: a line ``m`` is written for each packet whose
    last bit the trace delivers within millisecond ``(m - 1, m]``. The period
    is ``duration_s`` rounded to a whole millisecond; Mahimahi takes the last
    line as the period, so when no packet falls due there one more line at
    the period ends the file. The file thus carries the trace's bits to within
    one packet.

    Returns:
        The number of lines written.

    Raises:
        ValueError: The trace is shorter than half a millisecond.
    """
    period_ms = round(trace.duration_s * 1000)
    if period_ms < 1:
        msg = f"{trace.source}: a Mahimahi trace lasts at least 1 ms, this one {trace.duration_s} s"
        raise ValueError(msg)
    lines = 0
    last_ms = 0
    for ms in range(1, period_ms + 1):
        end_s = trace.duration_s if ms == period_ms else ms / 1000
        due = trace.bits_between(0.0, end_s)
        # A hair of slack so that a packet due exactly at a millisecond's end
        # is not pushed into the next one by the integral's rounding.
        while due >= (lines + 1) * PACKET_BITS * (1 - 1e-12):
            out.write(f"{ms}\n")
            lines += 1
            last_ms = ms
    if last_ms != period_ms:
        out.write(f"{period_ms}\n")
        lines += 1
    return lines


def _error(path: Path, line: int, problem: str) -> ConfigError:
    return ConfigError(f"{path}:{line}: {problem}")


def _lines(path: Path) -> list[tuple[int, str]]:
    """Number the lines of ``path``; a blank line is an error, a final newline is not."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{path}: cannot read the trace: {exc}"
        raise ConfigError(msg) from exc
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start another
    numbered = [(number, line.removesuffix("\r")) for number, line in enumerate(lines, start=1)]
    for number, line in numbered:
        if not line.strip():
            raise _error(path, number, "blank line")
    return numbered


def _csv_rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """The numbered data rows of a CSV with a header that names ``required``, at least one row."""
    lines = _lines(path)
    if not lines:
        raise _error(path, 1, "no header row")
    header = next(csv.reader([lines[0][1]]))
    for name in required:
        if name not in header:
            raise _error(path, 1, f"no column {name!r}; columns: {', '.join(header)}")
    rows = []
    for number, line in lines[1:]:
        fields = next(csv.reader([line]))
        if len(fields) != len(header):
            raise _error(path, number, f"{len(fields)} fields, but the header has {len(header)}")
        rows.append((number, dict(zip(header, fields, strict=True))))
    if not rows:
        raise _error(path, 2, "no samples")
    return rows


def _number(path: Path, line: int, text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _error(path, line, f"{name} {text!r} is not a number") from None
    if not (math.isfinite(value) and value >= 0):
        raise _error(path, line, f"{name} {text!r} must be finite and >= 0")
    return value

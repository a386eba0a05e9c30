"""Trace readers on the bundled files and on tiny ones, RateTrace's arithmetic, Mahimahi and tc output."""

from __future__ import annotations

import dataclasses
import io
import math
import re
import statistics
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import ConfigError
from simulations._traces import (
    PACKET_BITS,
    RateTrace,
    read_5gophers,
    read_cooked,
    read_mahimahi,
    read_rtts_ms,
    write_mahimahi,
)

TRACES = Path(__file__).resolve().parents[2] / "simulations" / "traces"
MBIT = 1e6


def _trace(starts: tuple[float, ...], rates: tuple[float, ...], duration: float, *, loop: bool = True) -> RateTrace:
    return RateTrace(starts_s=starts, rates_bit_s=rates, duration_s=duration, loop=loop, source="test")


def _file(tmp_path: Path, text: str, name: str = "trace.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the bundled files ---------------------------------------------------------------------

# samples, duration and mean from the shared README's table; the last column is the
# time-weighted mean, which is what a link following the trace carries (see README.md).
NORWAY = [
    ("norway_bus_1.tsv", 266, 155, 3.34, 2.912),
    ("norway_car_2.tsv", 206, 313, 1.14, 0.988),
    ("norway_train_1.tsv", 233, 299, 1.59, 1.188),
    ("norway_tram_10.tsv", 194, 315, 1.05, 0.905),
    ("norway_metro_2.tsv", 245, 316, 1.44, 1.175),
    ("norway_ferry_2.tsv", 61, 75, 1.55, 1.198),
]


@pytest.mark.parametrize(("name", "samples", "duration", "sample_mean", "time_mean"), NORWAY)
def test_norway_traces_match_the_readme(
    name: str, samples: int, duration: int, sample_mean: float, time_mean: float
) -> None:
    trace = read_cooked(TRACES / name)
    lines = [line.split() for line in (TRACES / name).read_text(encoding="utf-8").splitlines()]
    assert len(lines) == samples
    # The first sample is at 0 s: it covers no time, so every other sample is one step.
    assert len(trace.starts_s) == samples - 1
    assert trace.rates_bit_s == tuple(float(rate) * MBIT for _, rate in lines[1:])
    assert trace.duration_s == pytest.approx(duration, abs=0.5)
    assert statistics.mean(float(rate) for _, rate in lines) == pytest.approx(sample_mean, abs=0.005)
    assert trace.mean_bit_s / MBIT == pytest.approx(time_mean, abs=0.0005)
    assert trace.loop
    assert trace.source == name


def test_5gophers_walking() -> None:
    trace = read_5gophers(TRACES / "5gophers_walking.csv", column="throughput_mbps")
    assert len(trace.rates_bit_s) == 603
    assert trace.duration_s == 603.0
    assert trace.mean_bit_s / MBIT == pytest.approx(332.89, abs=0.01)
    assert trace.rate_at(0.5) == 92.1 * MBIT  # seq_num 1, the first row
    assert trace.rates_bit_s.count(0.0) == 5


@pytest.mark.parametrize(
    ("column", "mean", "zeros"),
    [
        ("Sprint_throughput_mbps", 264.89, 0),
        ("TMobile_throughput_mbps", 97.06, 15),
        ("Verizon_throughput_mbps", 274.89, 3),
    ],
)
def test_5gophers_driving_splices_out_the_missing_seconds(column: str, mean: float, zeros: int) -> None:
    trace = read_5gophers(TRACES / "5gophers_driving_1.csv", column=column)
    # seq_num runs 0..125 but 103..108 are missing: 120 measured seconds.
    assert len(trace.rates_bit_s) == 120
    assert trace.duration_s == 120.0
    assert trace.mean_bit_s / MBIT == pytest.approx(mean, abs=0.01)
    assert trace.rates_bit_s.count(0.0) == zeros


def test_5gophers_driving_row_after_the_gap_follows_the_row_before_it() -> None:
    trace = read_5gophers(TRACES / "5gophers_driving_1.csv", column="Verizon_throughput_mbps")
    assert trace.rate_at(102.5) == pytest.approx(891.2770626763588 * MBIT)  # seq_num 102
    assert trace.rate_at(103.5) == pytest.approx(94.37175000008585 * MBIT)  # seq_num 109


def test_5gophers_rtts() -> None:
    path = TRACES / "5gophers_rtt.csv"
    everything = read_rtts_ms(path)
    assert len(everything) == 720
    assert everything[:2] == (40.0, 37.8)
    verizon = read_rtts_ms(path, carrier="VERIZON")
    assert len(verizon) == 240
    assert (min(verizon), max(verizon)) == (38.8, 109.8)
    assert read_rtts_ms(path, carrier="Verizon") == verizon  # the driving file's spelling
    assert len(read_rtts_ms(path, carrier="tmobile")) == 240


def test_the_bundled_files_have_their_licenses_and_provenance() -> None:
    readme = (TRACES / "README.md").read_text(encoding="utf-8")
    data = sorted(p.name for p in TRACES.iterdir() if p.suffix in {".tsv", ".csv"})
    assert data
    assert [name for name in data if name not in readme] == []
    assert (TRACES / "LICENSE-5gophers.txt").exists()
    assert (TRACES / "LICENSE-norway-3g-cooked.txt").exists()


# --- cooked format: exact mapping and every error ------------------------------------------


def test_cooked_sample_covers_the_interval_ending_at_its_time(tmp_path: Path) -> None:
    trace = read_cooked(_file(tmp_path, "0.0\t1\n0.5\t2\n2.0 4\n"), loop=False)
    assert trace.starts_s == (0.0, 0.5)
    assert trace.rates_bit_s == (2 * MBIT, 4 * MBIT)
    assert trace.duration_s == 2.0
    assert not trace.loop


def test_cooked_first_sample_after_zero_covers_the_start(tmp_path: Path) -> None:
    trace = read_cooked(_file(tmp_path, "1.0 3\r\n2.5 5\r\n"))
    assert trace.starts_s == (0.0, 1.0)
    assert trace.rates_bit_s == (3 * MBIT, 5 * MBIT)
    assert trace.duration_s == 2.5
    assert read_cooked(_file(tmp_path, "5 1")).rates_bit_s == (MBIT,)  # no final newline: fine


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("", 1, "no samples"),
        ("\n", 1, "blank line"),
        ("0 1\n\n1 2\n", 2, "blank line"),
        ("0 1\n1 2\n\n", 3, "blank line"),
        ("0 1\n \n", 2, "blank line"),
        ("0 1\n2 1\n1 1\n", 3, "not after the previous"),
        ("0 1\n1 1\n1 2\n", 3, "not after the previous"),
        ("0.0 1\n", 1, "nonzero time"),
        ("0 1\nx 2\n", 2, "time 'x' is not a number"),
        ("0 1\n1 fast\n", 2, "rate 'fast' is not a number"),
        ("0 1\n1 -2\n", 2, "must be finite and >= 0"),
        ("0 1\n1 nan\n", 2, "must be finite and >= 0"),
        ("0 1\ninf 2\n", 2, "must be finite and >= 0"),
        ("0 1\n1 2 3\n", 2, "expected 'seconds Mbit/s'"),
        ("0 1\n1\n", 2, "expected 'seconds Mbit/s'"),
    ],
)
def test_cooked_errors_name_the_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(ConfigError, match=words) as caught:
        read_cooked(path)
    assert str(caught.value).startswith(f"{path}:{line}: ")


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.tsv"
    with pytest.raises(ConfigError, match="cannot read") as caught:
        read_cooked(missing)
    assert str(caught.value).startswith(f"{missing}: ")
    with pytest.raises(ConfigError, match="cannot read"):
        read_mahimahi(tmp_path)  # a directory


# --- 5Gophers CSVs -------------------------------------------------------------------------

HEADER = "protocol,seq_num,throughput_mbps\n"


def test_5gophers_rows_are_consecutive_seconds(tmp_path: Path) -> None:
    path = _file(tmp_path, HEADER + "TCP,4,10\nTCP,5,0\nTCP,9,2.5\n")
    trace = read_5gophers(path, column="throughput_mbps", loop=False)
    assert trace.starts_s == (0.0, 1.0, 2.0)
    assert trace.rates_bit_s == (10 * MBIT, 0.0, 2.5 * MBIT)
    assert trace.duration_s == 3.0
    assert not trace.loop


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("", 1, "no header row"),
        (HEADER, 2, "no samples"),
        ("protocol,seq_num,mbps\nTCP,1,1\n", 1, "no column 'throughput_mbps'; columns: protocol, seq_num, mbps"),
        ("protocol,throughput_mbps\nTCP,1\n", 1, "no column 'seq_num'"),
        (HEADER + "TCP,1,1\n\nTCP,2,1\n", 3, "blank line"),
        (HEADER + "TCP,2,1\nTCP,1,1\n", 3, "seq_num 1 is not after the previous row's 2"),
        (HEADER + "TCP,1,1\nTCP,1,1\n", 3, "not after the previous"),
        (HEADER + "TCP,1.5,1\n", 2, "seq_num '1.5' is not a whole number"),
        (HEADER + "TCP,1,\n", 2, "throughput_mbps '' is not a number"),
        (HEADER + "TCP,1,-1\n", 2, "must be finite and >= 0"),
        (HEADER + "TCP,1,1\nTCP,2\n", 3, "2 fields, but the header has 3"),
    ],
)
def test_5gophers_errors_name_the_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = _file(tmp_path, text, name="gophers.csv")
    with pytest.raises(ConfigError, match=words) as caught:
        read_5gophers(path, column="throughput_mbps")
    assert str(caught.value).startswith(f"{path}:{line}: ")


def test_rtts_errors_name_the_file_and_line(tmp_path: Path) -> None:
    path = _file(tmp_path, "rtt_ms,carrier\n40,SPRINT\n50.5,VERIZON\n41,SPRINT\n", name="rtt.csv")
    assert read_rtts_ms(path, carrier="sprint") == (40.0, 41.0)
    with pytest.raises(ConfigError) as caught:
        read_rtts_ms(path, carrier="ATT")
    assert str(caught.value) == f"{path}:1: no row has carrier 'ATT'; carriers: SPRINT, VERIZON"
    bad = _file(tmp_path, "rtt_ms,carrier\n40,SPRINT\nslow,SPRINT\n", name="bad.csv")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(bad))}:3: rtt_ms 'slow' is not a number"):
        read_rtts_ms(bad)
    no_carrier = _file(tmp_path, "rtt_ms\n40\n", name="nocarrier.csv")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(no_carrier))}:1: no column 'carrier'; columns: rtt_ms"):
        read_rtts_ms(no_carrier)


# --- Mahimahi ------------------------------------------------------------------------------


def test_mahimahi_counts_each_opportunity_in_the_bin_that_ends_at_or_after_it(tmp_path: Path) -> None:
    # Period 20 ms; bins (0, 10] and (10, 20]; the line 0 is the period's end, so the last bin.
    trace = read_mahimahi(_file(tmp_path, "0\n5\n10\n10\n20\n"), bin_ms=10)
    assert trace.starts_s == (0.0, 0.01)
    assert trace.rates_bit_s == pytest.approx((3 * PACKET_BITS / 0.01, 2 * PACKET_BITS / 0.01))
    assert trace.duration_s == 0.02
    assert trace.bits_between(0, trace.duration_s) == pytest.approx(5 * PACKET_BITS)


def test_mahimahi_last_bin_may_be_short(tmp_path: Path) -> None:
    trace = read_mahimahi(_file(tmp_path, "3\n25\n"), bin_ms=10, loop=False)
    assert trace.starts_s == (0.0, 0.01, 0.02)
    assert trace.rates_bit_s == pytest.approx((1.2 * MBIT, 0.0, 2.4 * MBIT))  # the last bin lasts 5 ms
    assert trace.duration_s == 0.025
    assert not trace.loop


def test_mahimahi_one_line_per_millisecond_is_12_mbit_s(tmp_path: Path) -> None:
    trace = read_mahimahi(_file(tmp_path, "".join(f"{ms}\n" for ms in range(1, 101))), bin_ms=1)
    assert trace.rates_bit_s == pytest.approx((12 * MBIT,) * 100)
    assert trace.duration_s == 0.1


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("", 1, "no timestamps"),
        ("1\n\n2\n", 2, "blank line"),
        ("1\n5\n3\n", 3, "non-decreasing, but 3 ms follows 5 ms"),
        ("0\n0\n", 2, "nonzero time"),
        ("1\n1.5\n", 2, "'1.5' is not a whole number of milliseconds"),
        ("1\n-2\n", 2, "not a whole number"),
        ("1\n 2\n", 2, "not a whole number"),
    ],
)
def test_mahimahi_errors_name_the_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = _file(tmp_path, text, name="link.mm")
    with pytest.raises(ConfigError, match=words) as caught:
        read_mahimahi(path)
    assert str(caught.value).startswith(f"{path}:{line}: ")


def test_mahimahi_bin_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bin_ms"):
        read_mahimahi(_file(tmp_path, "1\n"), bin_ms=0)


def test_write_mahimahi_constant_12_mbit_s_is_one_line_per_millisecond() -> None:
    out = io.StringIO()
    assert write_mahimahi(_trace((0.0,), (12 * MBIT,), 1.0), out) == 1000
    assert out.getvalue() == "".join(f"{ms}\n" for ms in range(1, 1001))


def test_write_mahimahi_carries_fractions_over() -> None:
    out = io.StringIO()
    # 4.8 Mbit/s is 0.4 packets a millisecond: packets complete at 3, 5, 8, 10 ms, ...
    assert write_mahimahi(_trace((0.0,), (4.8 * MBIT,), 0.01), out) == 4
    assert out.getvalue() == "3\n5\n8\n10\n"


def test_write_mahimahi_ends_at_the_period_even_when_the_link_is_idle_there() -> None:
    out = io.StringIO()
    lines = write_mahimahi(_trace((0.0, 0.005), (12 * MBIT, 0.0), 0.01), out)
    assert out.getvalue().split() == ["1", "2", "3", "4", "5", "10"]  # one packet over: the period's end
    assert lines == 6
    silent = io.StringIO()
    assert write_mahimahi(_trace((0.0,), (0.0,), 0.002), silent) == 1
    assert silent.getvalue() == "2\n"


def test_write_mahimahi_refuses_a_trace_shorter_than_a_millisecond() -> None:
    with pytest.raises(ValueError, match="at least 1 ms"):
        write_mahimahi(_trace((0.0,), (MBIT,), 0.0004), io.StringIO())


def test_mahimahi_round_trip_keeps_the_bits(tmp_path: Path) -> None:
    trace = read_cooked(TRACES / "norway_ferry_2.tsv")
    path = tmp_path / "ferry.mm"
    with path.open("w", encoding="utf-8") as out:
        lines = write_mahimahi(trace, out)
    back = read_mahimahi(path, bin_ms=10)
    assert back.duration_s == pytest.approx(trace.duration_s, abs=0.0005)
    total = trace.bits_between(0, trace.duration_s)
    assert lines * PACKET_BITS == pytest.approx(back.bits_between(0, back.duration_s))
    assert abs(back.bits_between(0, back.duration_s) - total) <= PACKET_BITS
    # Second by second too: the reserve never holds back more than one packet.
    for second in range(int(trace.duration_s)):
        assert abs(back.bits_between(second, second + 1) - trace.bits_between(second, second + 1)) <= 2 * PACKET_BITS


# --- RateTrace -----------------------------------------------------------------------------

STEPS = _trace((0.0, 1.0, 3.0), (1000.0, 0.0, 4000.0), 4.0)  # 1000 bits, 2 s of nothing, 4000 bits


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"starts_s": (), "rates_bit_s": ()}, "at least one step"),
        ({"starts_s": (0.0, 1.0), "rates_bit_s": (1.0,)}, "one rate per step"),
        ({"starts_s": (0.5,), "rates_bit_s": (1.0,)}, "the first 0.0"),
        ({"starts_s": (0.0, math.nan), "rates_bit_s": (1.0, 1.0)}, "finite"),
        ({"starts_s": (0.0, 2.0, 1.0), "rates_bit_s": (1.0, 1.0, 1.0)}, "strictly increasing"),
        ({"starts_s": (0.0, 1.0, 1.0), "rates_bit_s": (1.0, 1.0, 1.0)}, "strictly increasing"),
        ({"rates_bit_s": (1.0, -1.0, 1.0)}, "rates_bit_s must be finite and >= 0"),
        ({"rates_bit_s": (1.0, math.inf, 1.0)}, "rates_bit_s must be finite and >= 0"),
        ({"duration_s": 3.0}, "after the last start"),
        ({"duration_s": math.inf}, "duration_s must be finite"),
    ],
)
def test_rate_trace_rejects_bad_fields(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        dataclasses.replace(STEPS, **fields)


def test_rate_trace_basics() -> None:
    assert STEPS.mean_bit_s == 5000 / 4
    doubled = STEPS.scaled(2)
    assert doubled.rates_bit_s == (2000.0, 0.0, 8000.0)
    assert doubled.bits_between(0, 4) == 10_000
    assert (doubled.starts_s, doubled.duration_s, doubled.loop, doubled.source) == (
        STEPS.starts_s,
        4.0,
        True,
        "test",
    )
    assert STEPS.scaled(1.0) == STEPS
    with pytest.raises(ValueError, match="factor"):
        STEPS.scaled(-1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        STEPS.loop = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("t", "looping", "once"),
    [
        (0.0, 1000, 1000),
        (0.999, 1000, 1000),
        (1.0, 0, 0),
        (3.0, 4000, 4000),
        (3.99, 4000, 4000),
        (4.0, 1000, 4000),
        (5.5, 0, 4000),
        (11.0, 4000, 4000),
        (400.5, 1000, 4000),
    ],
)
def test_rate_at_loops_or_holds_the_last_rate(t: float, looping: float, once: float) -> None:
    assert STEPS.rate_at(t) == looping
    assert dataclasses.replace(STEPS, loop=False).rate_at(t) == once


@pytest.mark.parametrize("t", [-0.1, math.nan, math.inf])
def test_times_must_be_finite_and_not_negative(t: float) -> None:
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        STEPS.rate_at(t)
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        STEPS.time_to_send(t, 1)


@pytest.mark.parametrize(
    ("t0", "t1", "looping", "once"),
    [
        (0.0, 0.0, 0, 0),
        (0.0, 0.5, 500, 500),
        (0.5, 3.5, 2500, 2500),
        (0.0, 4.0, 5000, 5000),
        (3.5, 4.5, 2500, 4000),  # across the loop boundary
        (2.0, 10.0, 2 * 5000, 4000 + 6 * 4000),  # two whole periods, or holding 4000 bit/s
        (4.0, 8.0, 5000, 16000),
    ],
)
def test_bits_between(t0: float, t1: float, looping: float, once: float) -> None:
    assert STEPS.bits_between(t0, t1) == pytest.approx(looping)
    assert dataclasses.replace(STEPS, loop=False).bits_between(t0, t1) == pytest.approx(once)


def test_bits_between_needs_ordered_times() -> None:
    with pytest.raises(ValueError, match="before t0_s"):
        STEPS.bits_between(2.0, 1.0)


@pytest.mark.parametrize(
    ("t0", "bits", "looping", "once"),
    [
        (0.0, 0, 0.0, 0.0),
        (1.5, 0, 1.5, 1.5),
        (0.0, 500, 0.5, 0.5),
        (0.0, 1000, 1.0, 1.0),  # the earliest time: not somewhere in the idle 1..3 s
        (0.0, 1001, 3.00025, 3.00025),  # the idle steps are skipped
        (1.5, 2000, 3.5, 3.5),
        (3.5, 2500, 4.5, 4.125),  # across the loop boundary, or on at 4000 bit/s
        (0.0, 10_000, 8.0, 5.25),
        (2.0, 6000, 7.25, 4.5),
        (4.5, 500, 5.0, 4.625),
        (5.5, 500, 7.125, 5.625),  # from within the idle gap of the second period
    ],
)
def test_time_to_send(t0: float, bits: float, looping: float, once: float) -> None:
    assert STEPS.time_to_send(t0, bits) == pytest.approx(looping)
    assert dataclasses.replace(STEPS, loop=False).time_to_send(t0, bits) == pytest.approx(once)


def test_time_to_send_is_infinite_when_the_bits_never_come() -> None:
    ends_idle = _trace((0.0, 1.0), (1000.0, 0.0), 2.0, loop=False)
    assert ends_idle.time_to_send(0.0, 1000) == 1.0
    assert ends_idle.time_to_send(0.0, 1001) == math.inf
    assert ends_idle.time_to_send(5.0, 1) == math.inf
    assert _trace((0.0,), (0.0,), 1.0).time_to_send(3.0, 1) == math.inf
    assert ends_idle.time_to_send(0.5, 0) == 0.5
    with pytest.raises(ValueError, match="bits"):
        ends_idle.time_to_send(0.0, -1)
    with pytest.raises(ValueError, match="bits"):
        ends_idle.time_to_send(0.0, math.inf)


@st.composite
def traces(draw: st.DrawFn) -> RateTrace:
    lengths = draw(st.lists(st.sampled_from([0.25, 0.5, 1.0, 3.0]), min_size=1, max_size=6))
    starts = tuple(sum(lengths[:i], 0.0) for i in range(len(lengths)))
    rates = tuple(draw(st.lists(st.sampled_from([0.0, 1e3, 1e6, 5e6]), min_size=len(lengths), max_size=len(lengths))))
    return _trace(starts, rates, sum(lengths), loop=draw(st.booleans()))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
# At least a thousandth of a bit: less would vanish below the resolution of a float t.
@given(trace=traces(), t0=st.floats(0, 50), bits=st.just(0.0) | st.floats(1e-3, 1e8))
def test_time_to_send_is_the_earliest_time_that_carries_the_bits(trace: RateTrace, t0: float, bits: float) -> None:
    t = trace.time_to_send(t0, bits)
    if math.isinf(t):
        # Only a trace that never carries that much more: all zero, or one that ends idle.
        horizon = t0 + (2 * trace.duration_s if trace.loop else trace.duration_s)
        assert trace.bits_between(t0, horizon + 1) < bits
        return
    assert t >= t0
    assert trace.bits_between(t0, t) == pytest.approx(bits, rel=1e-9, abs=1e-6)
    if t - t0 > 1e-3:
        # The earliest such time ends a stretch that carries bits, never an idle one.
        assert trace.bits_between(t - 1e-3, t) > 0


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(trace=traces(), t0=st.floats(0, 30), span=st.floats(0, 30), split=st.floats(0, 1))
def test_bits_between_adds_up(trace: RateTrace, t0: float, span: float, split: float) -> None:
    middle = t0 + span * split
    whole = trace.bits_between(t0, t0 + span)
    assert whole == pytest.approx(trace.bits_between(t0, middle) + trace.bits_between(middle, t0 + span), abs=1e-3)
    assert 0 <= whole <= max(trace.rates_bit_s) * span * (1 + 1e-9) + 1e-6


# --- tc ------------------------------------------------------------------------------------

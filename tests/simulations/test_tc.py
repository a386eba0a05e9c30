"""Figures in tc's notation and the netem commands (simulations/_tc.py)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulations._tc import format_rate, parse_duration_ms, parse_rate, tc_commands


def test_tc_commands() -> None:
    assert tc_commands(interface="eth0", rate_bit_s=5e6, delay_s=0.04) == [
        "tc qdisc replace dev eth0 root netem delay 40ms rate 5mbit"
    ]
    assert tc_commands(
        interface="veth-agent3", rate_bit_s=2.5e6, delay_s=0.0405, jitter_s=0.005, limit_bytes=100_000
    ) == ["tc qdisc replace dev veth-agent3 root netem delay 40.5ms 5ms rate 2500kbit limit 67"]
    # netem's limit counts packets: 1501 bytes need two 1500-byte packets.
    assert tc_commands(interface="lo", rate_bit_s=500e3, delay_s=0, limit_bytes=1501)[0].endswith(
        "delay 0ms rate 500kbit limit 2"
    )


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"interface": ""}, "interface name"),
        ({"interface": "eth0; reboot"}, "interface name"),
        ({"interface": "eth0;reboot"}, "interface name"),
        ({"interface": "a-very-long-name0"}, "interface name"),
        ({"rate_bit_s": 4.0}, "rate_bit_s"),
        ({"rate_bit_s": math.inf}, "rate_bit_s"),
        ({"delay_s": -0.001}, "delay_s"),
        ({"jitter_s": math.nan}, "jitter_s"),
        ({"limit_bytes": 0}, "limit_bytes"),
    ],
)
def test_tc_commands_rejects_bad_values(kwargs: dict[str, object], words: str) -> None:
    arguments: dict[str, object] = {"interface": "eth0", "rate_bit_s": 1e6, "delay_s": 0.01, **kwargs}
    with pytest.raises(ValueError, match=words):
        tc_commands(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bit_s", "text"),
    [
        (0, "0bit"),
        (100, "100bit"),
        (1500, "1500bit"),
        (500e3, "500kbit"),
        (5e6, "5mbit"),
        (2.5e6, "2500kbit"),
        (1e9, "1gbit"),
        (3e12, "3tbit"),
        (1234.4, "1234bit"),
    ],
)
def test_format_rate(bit_s: float, text: str) -> None:
    assert format_rate(bit_s) == text


@pytest.mark.parametrize("bit_s", [-1.0, math.inf, math.nan])
def test_format_rate_rejects_bad_rates(bit_s: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        format_rate(bit_s)


@pytest.mark.parametrize(
    ("text", "bit_s"),
    [
        ("500kbit", 500e3),
        ("5mbit", 5e6),
        ("1gbit", 1e9),
        ("100bit", 100),
        ("2.5mbit", 2.5e6),
        (" 5Mbit ", 5e6),
        (".5kbit", 500),
        ("2tbit", 2e12),
    ],
)
def test_parse_rate(text: str, bit_s: float) -> None:
    assert parse_rate(text) == bit_s


@pytest.mark.parametrize("text", ["", "5", "mbit", "-5mbit", "5 mbit", "5mb", "1e6bit", "5kibit"])
def test_parse_rate_rejects_what_is_not_a_rate(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a rate: .*\(a number and one of bit, kbit, mbit, gbit, tbit\)"):
        parse_rate(text)


def test_parse_rate_explains_that_tc_reads_bps_as_bytes() -> None:
    with pytest.raises(ValueError, match="tc reads 'mbps' as bytes per second, so '5mbps' would be '40mbit'"):
        parse_rate("5mbps")


@given(bit_s=st.integers(0, 10**13))
@settings(derandomize=True, database=None)
def test_format_rate_round_trips(bit_s: int) -> None:
    assert parse_rate(format_rate(bit_s)) == bit_s


@pytest.mark.parametrize(
    ("text", "ms"), [("40ms", 40), ("1.5s", 1500), ("40", 40), ("250us", 0.25), (" 40MS ", 40), ("0", 0)]
)
def test_parse_duration_ms(text: str, ms: float) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "ms", "-1ms", "5m", "1.5h", "40 ms", "1e3ms"])
def test_parse_duration_ms_rejects_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration_ms(text)

"""Links by the names users ask for (``3g-bus``, ``lte-drive``, ``wifi``), and links from figures or files.

Each preset says where its figures come from. Rates come from measured
traces (simulations/traces/README.md gives their provenance): the Norway
3G/HSDPA commute traces and the 5Gophers 4G/5G traces. Those measured the
*downlink* of a phone; a preset uses the trace for both directions, which is
optimistic for uploads (agents' requests) on real mobile networks: scale the
uplink with ``edgecut sim link --up-scale`` to study that. Delays for the 4G/5G
presets come from the 5Gophers RTT samples (half the RTT one way; the spread
above the minimum as jitter). No measured 3G or Wi-Fi delay trace is vendored:
those delays are stated assumptions, marked as such in ``source``.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Final

from protocol.errors import ConfigError
from simulations._link import DirectionSpec, LinkSpec
from simulations._traces import read_5gophers, read_cooked, read_mahimahi, read_rtts_ms

if TYPE_CHECKING:
    from collections.abc import Callable

    from simulations._traces import RateTrace

TRACES: Final = Path(__file__).with_name("traces")
"""The vendored traces."""

_NORWAY: Final = "Riiser et al., Commute Path Bandwidth Traces from 3G Networks, MMSys 2013"
_GOPHERS: Final = "Narayanan et al., A First Look at Commercial 5G Performance on Smartphones, WWW 2020 (CC BY 4.0)"
_3G_DELAY_S: Final = 0.050
_3G_JITTER_S: Final = 0.010
_3G_ASSUMED: Final = (
    "one-way delay 50 ms (a 100 ms round trip) with 10 ms jitter: an assumption, as no measured 3G delay"
    " trace is vendored"
)


def _mobile(trace: RateTrace, carrier: str, source: str) -> LinkSpec:
    rtts = read_rtts_ms(TRACES / "5gophers_rtt.csv", carrier=carrier)
    least = min(rtts)
    one_way_s = least / 2000
    spread = tuple((rtt - least) / 2000 for rtt in rtts)
    up = DirectionSpec(trace=trace, delay_s=one_way_s, jitter_samples_s=spread)
    down = DirectionSpec(trace=trace, delay_s=one_way_s, jitter_samples_s=spread)
    where = f"{source}; delay from the 5Gophers {carrier} RTT samples ({least:.0f} ms minimum, halved one way)"
    return LinkSpec(name="", up=up, down=down, source=where)


def _norway(file: str) -> LinkSpec:
    trace = read_cooked(TRACES / file)
    up = DirectionSpec(trace=trace, delay_s=_3G_DELAY_S, jitter_s=_3G_JITTER_S)
    down = DirectionSpec(trace=trace, delay_s=_3G_DELAY_S, jitter_s=_3G_JITTER_S)
    return LinkSpec(name="", up=up, down=down, source=f"rate: {file} ({_NORWAY}); {_3G_ASSUMED}")


def _lte_drive() -> LinkSpec:
    trace = read_5gophers(TRACES / "5gophers_driving_1.csv", column="Verizon_throughput_mbps")
    return _mobile(trace, "VERIZON", f"rate: 5gophers_driving_1.csv, Verizon column ({_GOPHERS})")


def _5g_walk() -> LinkSpec:
    trace = read_5gophers(TRACES / "5gophers_walking.csv", column="throughput_mbps")
    return _mobile(trace, "VERIZON", f"rate: 5gophers_walking.csv, 4G and 5G with handoffs ({_GOPHERS})")


def _fixed(rate_bit_s: float, delay_s: float, jitter_s: float, loss: float, why: str) -> Callable[[], LinkSpec]:
    def spec() -> LinkSpec:
        up = DirectionSpec(rate_bit_s=rate_bit_s, delay_s=delay_s, jitter_s=jitter_s, loss=loss)
        down = DirectionSpec(rate_bit_s=rate_bit_s, delay_s=delay_s, jitter_s=jitter_s, loss=loss)
        return LinkSpec(name="", up=up, down=down, source=why)

    return spec


_PRESETS: Final[dict[str, Callable[[], LinkSpec]]] = {
    "3g-bus": functools.partial(_norway, "norway_bus_1.tsv"),
    "3g-car": functools.partial(_norway, "norway_car_2.tsv"),
    "3g-ferry": functools.partial(_norway, "norway_ferry_2.tsv"),
    "3g-metro": functools.partial(_norway, "norway_metro_2.tsv"),
    "3g-train": functools.partial(_norway, "norway_train_1.tsv"),
    "3g-tram": functools.partial(_norway, "norway_tram_10.tsv"),
    "lte-drive": _lte_drive,
    "5g-walk": _5g_walk,
    "wifi": _fixed(50e6, 0.002, 0.001, 0.0, "50 Mbit/s, 2 ms one way, 1 ms jitter: an assumption (a good home Wi-Fi)"),
    "wifi-congested": _fixed(
        5e6, 0.010, 0.020, 0.01, "5 Mbit/s, 10 ms one way, 20 ms jitter, 1% loss: an assumption (a busy shared Wi-Fi)"
    ),
}

PRESET_NAMES: Final = tuple(_PRESETS)
"""Every preset's name."""


def preset(name: str) -> LinkSpec:
    """The link called ``name`` (see :data:`PRESET_NAMES`).

    Raises:
        ConfigError: No preset has that name.
    """
    make = _PRESETS.get(name)
    if make is None:
        msg = f"no link preset {name!r}; presets: {', '.join(PRESET_NAMES)}"
        raise ConfigError(msg)
    spec = make()
    return LinkSpec(name=name, up=spec.up, down=spec.down, source=spec.source)


def scale_up(spec: LinkSpec, factor: float) -> LinkSpec:
    """``spec`` with its uplink (agent to broker) rate multiplied by ``factor``.

    Raises:
        ValueError: ``factor`` is not positive.
    """
    if not factor > 0:
        msg = f"the uplink scale must be > 0, not {factor}"
        raise ValueError(msg)
    up = spec.up
    rate = None if up.rate_bit_s is None else up.rate_bit_s * factor
    trace = None if up.trace is None else up.trace.scaled(factor)
    scaled = dataclasses.replace(up, rate_bit_s=rate, trace=trace)
    return dataclasses.replace(spec, up=scaled, source=f"{spec.source}; uplink rate x{factor:g}")


def fixed_link(*, rate_bit_s: float | None, delay_s: float, jitter_s: float = 0.0, loss: float = 0.0) -> LinkSpec:
    """The same fixed rate, one-way delay, jitter and loss both ways."""
    direction = DirectionSpec(rate_bit_s=rate_bit_s, delay_s=delay_s, jitter_s=jitter_s, loss=loss)
    rate = "unlimited" if rate_bit_s is None else f"{rate_bit_s / 1e6:g}mbit"
    return LinkSpec(name=f"{rate}-{delay_s * 1000:g}ms", up=direction, down=direction, source="fixed figures")


def trace_link(path: Path, *, delay_s: float = 0.0, jitter_s: float = 0.0, column: str | None = None) -> LinkSpec:
    """A link whose rate follows the trace file ``path``, both ways.

    The format follows the file: ``.csv`` is 5Gophers (``column`` names the
    throughput column), a file of single integers per line is Mahimahi, and
    ``seconds<TAB>Mbit/s`` lines are the cooked Norway format.

    Raises:
        ConfigError: The file cannot be read as any of these formats.
    """
    trace = _read_any(path, column)
    direction = DirectionSpec(trace=trace, delay_s=delay_s, jitter_s=jitter_s)
    return LinkSpec(name=path.stem, up=direction, down=direction, source=f"rate: {path}")


def _read_any(path: Path, column: str | None) -> RateTrace:
    if path.suffix == ".csv":
        return read_5gophers(path, column=column or "throughput_mbps")
    try:
        first = next(line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except (OSError, StopIteration) as exc:
        msg = f"{path}: cannot read a trace from it ({exc or 'empty'})"
        raise ConfigError(msg) from exc
    return read_mahimahi(path) if len(first.split()) == 1 else read_cooked(path)

"""What every picture of a run shares: colours, time axes, log axes, the faults shaded, PNG bytes.

One colour per policy and one per cut, the same in every picture and every
run: a policy's is fixed by its name (``edge``, ``cloud``, ``auto``,
``scenario``; a cut named as a policy hashes to one of a few more), a cut's
by its place in its model's chain of candidate cuts (dark at the input,
light at the output), read from the run's ``profiles.json``.
"""

from __future__ import annotations

import dataclasses
import io
import math
import zlib
from typing import TYPE_CHECKING, Literal

import matplotlib as mpl

mpl.use("Agg")
from matplotlib import colormaps
from matplotlib.colors import to_hex
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from simulations._calibrate import ModelProfile
    from simulations._scenario import FaultSpec, Scenario

POLICY_COLOURS = {"edge": "#2ca02c", "cloud": "#1f77b4", "auto": "#ff7f0e", "scenario": "#9467bd"}
"""The colour of each named policy, everywhere."""
_OTHER_POLICIES = ("#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#d62728")
_FAULT_COLOURS = {
    "bandwidth": "#fdd49e",
    "outage": "#fc8d59",
    "hub-down": "#d7301f",
    "hub-stall": "#bcbddc",
    "broker-restart": "#9e9ac8",
}
_INCHES_PER_DECADE = {"y": 0.6, "x": 1.6}
"""The room a decade needs for 1, 2 and 5 to be labelled apart: 0.3 decade (1 to 2, 5 to 10) holds a 10 pt label.

Its height on a y axis, its width (``5,000``) on an x axis. Measured on the
axis before layout, which gives it less room than it gets.
"""
_CUT_MAP = "viridis"
_CUT_RANGE = (0.05, 0.9)  # viridis' ends: near-black and a yellow that vanishes on white


def policy_colour(policy: str) -> str:
    """The colour of ``policy`` (a run's name) in every picture of every run."""
    return POLICY_COLOURS.get(policy) or _OTHER_POLICIES[zlib.crc32(policy.encode()) % len(_OTHER_POLICIES)]


def cut_colours(profiles: Mapping[str, ModelProfile], cuts: Iterable[str]) -> dict[str, str]:
    """A colour per cut, from the input's end to the output's: by its depth in its model's chain.

    The same cut of a model has the same colour in every run. A cut no
    profile names takes a colour hashed from its name.
    """
    depth: dict[str, float] = {}
    for profile in profiles.values():
        ids = [cut.id for cut in profile.cuts]
        for index, cut in enumerate(ids):
            depth.setdefault(cut, index / max(1, len(ids) - 1))
    low, high = _CUT_RANGE
    palette = colormaps[_CUT_MAP]
    fractions = {cut: depth.get(cut, (zlib.crc32(cut.encode()) % 100) / 99) for cut in cuts}
    ordered = sorted(fractions, key=lambda cut: (fractions[cut], cut))
    return {cut: to_hex(palette(low + (high - low) * fractions[cut])) for cut in ordered}


@dataclasses.dataclass(frozen=True, slots=True)
class TimeAxis:
    """How a run's time axis reads: its unit as the mode knows it, its length, and the faults on it."""

    label: str
    duration_s: float
    faults: tuple[FaultSpec, ...]

    @classmethod
    def of(cls, scenario: Scenario, mode: str, ran_s: float | None = None) -> TimeAxis:
        """The time axis of ``scenario`` run in ``mode`` (``fleet``: simulated; ``emulate``: wall-clock).

        It is ``ran_s`` long (default: the scenario's ``duration_s``): a
        run stopped early or by its request count is drawn as long as it ran.
        """
        label = "simulated s" if mode == "fleet" else "s from the start (wall clock)"
        return cls(label, scenario.duration_s if ran_s is None else ran_s, scenario.faults)

    def draw(self, axis: Axes, *, labelled: bool = True) -> None:
        """Limit ``axis`` to the run and shade every fault on it; name the faults in a legend when ``labelled``."""
        shown: set[str] = set()
        for fault in self.faults:
            end = self.duration_s if fault.for_s is None else fault.at_s + fault.for_s
            label = f"fault: {fault.kind}" if labelled and fault.kind not in shown else None
            shown.add(fault.kind)
            axis.axvspan(fault.at_s, end, color=_FAULT_COLOURS[fault.kind], alpha=0.35, lw=0, label=label, zorder=0)
        axis.set_xlim(0, self.duration_s)


def log_axis(axis: Axes, which: Literal["x", "y"] = "y") -> None:
    """A log scale in plain numbers (``1,000``, not ``10^3``): 1, 2 and 5 per decade where they fit, else 1.

    Minor ticks are unlabelled. An axis with no positive data drawn yet
    (every request failed) stays linear.
    """
    limits = axis.dataLim.intervaly if which == "y" else axis.dataLim.intervalx
    if not all(math.isfinite(limit) and limit > 0 for limit in limits):
        return
    if which == "y":
        axis.set_yscale("log")
        low, high = axis.get_ylim()
        inches = axis.bbox.height / axis.figure.dpi
    else:
        axis.set_xscale("log")
        low, high = axis.get_xlim()
        inches = axis.bbox.width / axis.figure.dpi
    decades = max(math.log10(high / low), 1e-9)
    subs = (1.0, 2.0, 5.0) if inches / decades >= _INCHES_PER_DECADE[which] else (1.0,)
    target = axis.yaxis if which == "y" else axis.xaxis
    target.set_major_locator(LogLocator(base=10, subs=subs))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1 else f"{value:g}"))
    target.set_minor_formatter(NullFormatter())


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()

"""What a request costs the device in energy: its compute, and its radio. Pure arithmetic, no I/O.

A request at a cut costs the device

    compute_w x head time  +  radio energy of the bytes it sends

and edge-only costs the whole model's compute and no radio. The radio follows
the linear power model of Huang et al. (MobiSys 2012, "A Close Examination of
Performance and Power Characteristics of 4G LTE Networks"): while sending at
``r`` Mbit/s the radio draws ``up_mw_per_mbps * r + base_mw``, so a transfer
costs ``up_mw_per_mbps`` per Mbit sent plus ``base_mw`` for as long as it
lasts; afterwards the radio stays in a high-power *tail* state for ``tail_s``
at ``tail_mw`` before it sleeps. A request is charged the tail until the next
request's transfer or the tail's end, whichever comes first: sporadic requests
each pay a whole tail (on LTE about 12 J, far more than the bytes), a steady
stream keeps the radio awake and pays only the time between requests.

Left out, and said in docs/planner.md: the reply's bytes (a classifier's reply
is a few KB, received at the down rate's far lower cost), the device's idle
power (the same whichever cut runs), and the radio's promotion delay.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, TypeVar

import numpy as np

RadioName = Literal["wifi", "lte", "3g"]
"""The radios with bundled power models (:data:`RADIOS`)."""

Values = TypeVar("Values", float, np.ndarray)
"""One figure, or one per candidate cut."""


@dataclasses.dataclass(frozen=True, slots=True)
class Radio:
    """A radio's power model.

    Attributes:
        name: What the radio is, for messages.
        up_mw_per_mbps: Power per Mbit/s sent (so: mJ per Mbit sent).
        base_mw: Power while a transfer lasts, whatever its rate.
        tail_mw: Power in the high-power state after a transfer.
        tail_s: How long that state lasts before the radio sleeps.
    """

    name: str
    up_mw_per_mbps: float
    base_mw: float
    tail_mw: float
    tail_s: float

    def __post_init__(self) -> None:
        """Refuse negative powers and times: they would make sending look cheaper than not sending."""
        for field in ("up_mw_per_mbps", "base_mw", "tail_mw", "tail_s"):
            if getattr(self, field) < 0:
                msg = f"{self.name}: {field} must not be negative, not {getattr(self, field)}"
                raise ValueError(msg)

    def transfer_mj(self, nbytes: Values, transfer_ms: Values, idle_after_ms: float | None = None) -> Values:
        """Energy (mJ) of sending ``nbytes`` in ``transfer_ms``, then the tail.

        Args:
            nbytes: Bytes sent.
            transfer_ms: How long sending them takes.
            idle_after_ms: Time from this transfer to the next one, if known:
                the tail is charged up to it (``None``: the whole tail).
        """
        tail_ms = self.tail_s * 1000.0 if idle_after_ms is None else min(idle_after_ms, self.tail_s * 1000.0)
        megabits = nbytes * 8 / 1e6
        return self.up_mw_per_mbps * megabits + (self.base_mw * transfer_ms + self.tail_mw * tail_ms) / 1000.0


RADIOS: dict[RadioName, Radio] = {
    # Huang et al. 2012, Table 3 (uplink power per Mbit/s and base power, from their
    # measured phones) and the tail power and timer they measured (LTE: 1,060 mW for
    # 11.6 s; 3G: the DCH tail, 804 mW for 8.1 s; WiFi: 119 mW for 0.24 s).
    "wifi": Radio("wifi", up_mw_per_mbps=283.17, base_mw=132.86, tail_mw=119.3, tail_s=0.238),
    "lte": Radio("lte", up_mw_per_mbps=438.39, base_mw=1288.04, tail_mw=1060.0, tail_s=11.576),
    "3g": Radio("3g", up_mw_per_mbps=868.98, base_mw=817.88, tail_mw=803.9, tail_s=8.088),
}


@dataclasses.dataclass(frozen=True, slots=True)
class EnergyModel:
    """A device's energy per request: its compute power and its radio.

    Attributes:
        compute_w: Power the device draws above idle while it runs the model
            (measure it: a meter on the supply, running the model in a loop,
            minus the idle reading). No default: it varies 20x between boards.
        radio: The radio requests go out on (:data:`RADIOS` has WiFi, LTE and 3G).
        ms_per_joule: What a joule is worth on this device in milliseconds of
            latency, for the ``"latency+energy"`` objective (which minimises
            ``ms + ms_per_joule * J``): higher on a small battery.

    Example:
        >>> EnergyModel(compute_w=3.5).request_mj(head_ms=20.0)  # 3.5 W for 20 ms, nothing sent
        70.0
    """

    compute_w: float
    radio: Radio = RADIOS["wifi"]
    ms_per_joule: float = 100.0

    def __post_init__(self) -> None:
        """Refuse a negative power or weight."""
        for field in ("compute_w", "ms_per_joule"):
            if getattr(self, field) < 0:
                msg = f"{field} must not be negative, not {getattr(self, field)}"
                raise ValueError(msg)

    def request_mj(
        self, head_ms: float, nbytes: float = 0.0, transfer_ms: float = 0.0, idle_after_ms: float | None = None
    ) -> float:
        """Energy (mJ) of a request that computes for ``head_ms`` here, then sends ``nbytes`` (none: edge-only)."""
        compute = self.compute_w * head_ms
        return compute if nbytes <= 0 else compute + self.radio.transfer_mj(nbytes, transfer_ms, idle_after_ms)

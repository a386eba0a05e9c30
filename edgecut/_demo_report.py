"""What ``edgecut demo`` measured, and how it prints."""

from __future__ import annotations

import dataclasses

TOLERANCE = 1e-4
"""Largest allowed |split - full| on any output element (ORT fuses differently per half)."""
EMULATED_REQUESTS = 7
"""Measured requests per fixed choice, and auto's, under each emulated condition (by default): with 3, one request
slowed by the emulated link or the host moved a median by 1.1-1.3x (auto once 1.25x the fastest on Wi-Fi, sending
the same JPEG as the fastest)."""


@dataclasses.dataclass(frozen=True, slots=True)
class DemoRow:
    """Medians over the requests at one cut, on loopback."""

    cut: str
    bytes_sent: int
    edge_ms: float
    transfer_ms: float
    hub_ms: float
    total_ms: float
    max_abs_diff: float
    fallbacks: int

    @property
    def ok(self) -> bool:
        """True when every result matched the full model and none fell back."""
        return self.max_abs_diff <= TOLERANCE and self.fallbacks == 0


@dataclasses.dataclass(frozen=True, slots=True)
class AutoRun:
    """What ``cut="auto"`` did under one condition once it had learned.

    Attributes:
        label: The choice most of its measured requests made (``cut`` or ``cut@codec``).
        total_ms: Their median total time.
        learning: Requests it made before the measured ones.
    """

    label: str
    total_ms: float
    learning: int


@dataclasses.dataclass(frozen=True, slots=True)
class EmulatedRow:
    """The same cuts as a slower device over an emulated link: median total ms per fixed choice, and auto's.

    ``total_ms`` holds each cut sent raw and cloud-only sent as a JPEG
    (``input@jpeg``); ``max_abs_diff`` is over the results sent raw (a JPEG
    is lossy: docs/codecs.md measures what it costs a trained model).
    """

    device: str
    factor: float
    link: str
    total_ms: dict[str, float]
    max_abs_diff: float
    auto: AutoRun | None = None

    @property
    def fastest(self) -> str:
        """The fixed choice that answered soonest under this condition."""
        return min(self.total_ms, key=self.total_ms.__getitem__)

    @property
    def auto_ratio(self) -> float | None:
        """Auto's median time over the fastest fixed choice's (``None`` without an auto run)."""
        return None if self.auto is None else self.auto.total_ms / self.total_ms[self.fastest]

    @property
    def ok(self) -> bool:
        """True when every result sent raw matched the full model."""
        return self.max_abs_diff <= TOLERANCE


@dataclasses.dataclass(frozen=True, slots=True)
class DemoReport:
    """What the demo ran and measured."""

    model: str
    broker: str
    requests: int
    rows: list[DemoRow]
    emulated: list[EmulatedRow] = dataclasses.field(default_factory=list)
    emulated_requests: int = 0
    """Measured requests per fixed choice, and auto's, under each emulated condition."""

    @property
    def ok(self) -> bool:
        """True when every cut matched, on loopback and emulated."""
        return all(row.ok for row in self.rows) and all(row.ok for row in self.emulated)

    def to_json(self) -> dict[str, object]:
        """The report as a JSON-ready dict."""
        emulated = [
            dataclasses.asdict(row) | {"fastest": row.fastest, "auto_ratio": row.auto_ratio} for row in self.emulated
        ]
        return {
            "model": self.model,
            "broker": self.broker,
            "requests": self.requests,
            "emulated_requests": self.emulated_requests,
            "tolerance": TOLERANCE,
            "ok": self.ok,
            "rows": [dataclasses.asdict(row) for row in self.rows],
            "emulated": emulated,
        }


def format_report(report: DemoReport) -> str:
    """The report as text tables: loopback, then each emulated condition by cut."""
    header = (
        f"{'cut':<28} {'bytes sent':>11} {'edge ms':>8} {'transfer ms':>12} {'hub ms':>7} {'total ms':>9} "
        f"{'max |diff|':>11}"
    )
    lines = [f"{report.model} over {report.broker}, median of {report.requests} requests per cut", header]
    for row in report.rows:
        mark = "" if row.ok else "  <-- beyond tolerance" if row.max_abs_diff > TOLERANCE else "  <-- fell back"
        lines.append(
            f"{row.cut:<28} {row.bytes_sent:>11,} {row.edge_ms:>8.1f} {row.transfer_ms:>12.1f} "
            f"{row.hub_ms:>7.1f} {row.total_ms:>9.1f} {row.max_abs_diff:>11.1e}{mark}"
        )
    if report.emulated:
        lines += ["", *_emulated_table(report)]
    verdict = "all cuts match the full model" if report.ok else "SOME CUTS DO NOT MATCH"
    lossy = "; the JPEG is lossy and not compared" if report.emulated else ""
    lines.append(f"{verdict} (tolerance {TOLERANCE:g}){lossy}")
    return "\n".join(lines)


def _emulated_table(report: DemoReport) -> list[str]:
    names = [f"{row.device} on {row.link}" for row in report.emulated]
    width = max(16, *(len(name) for name in names))
    lines = [
        (
            f"the same cuts as a slower device over an emulated link (total ms, median of {report.emulated_requests}"
            " taken in turns; * the fastest fixed choice):"
        ),
        f"{'cut':<28} " + " ".join(f"{name:>{width}}" for name in names),
    ]
    for label in report.emulated[0].total_ms:
        cells = []
        for condition in report.emulated:
            star = "*" if condition.fastest == label else " "
            cells.append(f"{condition.total_ms[label]:>{width - 1}.0f}{star}")
        lines.append(f"{label:<28} " + " ".join(cells))
    autos = [
        (name, row.auto, row.auto_ratio or 0.0) for name, row in zip(names, report.emulated, strict=True) if row.auto
    ]
    if autos:
        lines.append(f"{'auto':<28} " + " ".join(f"{auto.total_ms:>{width - 1}.0f} " for _, auto, _ in autos))
        chose = "; ".join(f"{name}: {auto.label}, {ratio:.2f}x the fastest" for name, auto, ratio in autos)
        lines.append(f"auto, after {autos[0][1].learning} requests to learn, chose: {chose}")
    devices = sorted({(row.device, row.factor) for row in report.emulated})
    lines.append(
        "devices: "
        + ", ".join(f"{device} = this host x{factor:g}" for device, factor in devices)
        + " (edgecut sim devices, docs/emulation.md)"
    )
    return lines

"""What ``edgecut demo`` measured, and how it prints."""

from __future__ import annotations

import dataclasses

TOLERANCE = 1e-4
"""Largest allowed |split - full| on any output element (ORT fuses differently per half)."""


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
class EmulatedRow:
    """The same cuts as a slower device over an emulated link: median total ms per cut."""

    device: str
    factor: float
    link: str
    total_ms: dict[str, float]
    max_abs_diff: float

    @property
    def fastest(self) -> str:
        """The cut that answered soonest under this condition."""
        return min(self.total_ms, key=self.total_ms.__getitem__)

    @property
    def ok(self) -> bool:
        """True when every result matched the full model."""
        return self.max_abs_diff <= TOLERANCE


@dataclasses.dataclass(frozen=True, slots=True)
class DemoReport:
    """What the demo ran and measured."""

    model: str
    broker: str
    requests: int
    rows: list[DemoRow]
    emulated: list[EmulatedRow] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every cut matched, on loopback and emulated."""
        return all(row.ok for row in self.rows) and all(row.ok for row in self.emulated)

    def to_json(self) -> dict[str, object]:
        """The report as a JSON-ready dict."""
        emulated = [dataclasses.asdict(row) | {"fastest": row.fastest} for row in self.emulated]
        return {
            "model": self.model,
            "broker": self.broker,
            "requests": self.requests,
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
    lines.append(f"{verdict} (tolerance {TOLERANCE:g})")
    return "\n".join(lines)


def _emulated_table(report: DemoReport) -> list[str]:
    names = [f"{row.device} on {row.link}" for row in report.emulated]
    width = max(16, *(len(name) for name in names))
    lines = [
        "the same cuts as a slower device over an emulated link (total ms, median; * the fastest cut):",
        f"{'cut':<28} " + " ".join(f"{name:>{width}}" for name in names),
    ]
    for row in report.rows:
        cells = []
        for condition in report.emulated:
            star = "*" if condition.fastest == row.cut else " "
            cells.append(f"{condition.total_ms[row.cut]:>{width - 1}.0f}{star}")
        lines.append(f"{row.cut:<28} " + " ".join(cells))
    devices = sorted({(row.device, row.factor) for row in report.emulated})
    lines.append(
        "devices: "
        + ", ".join(f"{device} = this host x{factor:g}" for device, factor in devices)
        + " (edgecut sim link --list, docs/emulation.md)"
    )
    return lines

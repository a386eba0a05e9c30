"""A run's records and outputs: one :class:`RequestRecord` per request, the CSV, and the summary from it.

Both modes emit a :class:`RequestRecord` per finished request, built from
the agent's own :class:`edge_agent.InferenceResult` (:meth:`RequestRecord.of`).
``requests.csv`` has one row per record, with the columns of
:data:`COLUMNS` (times in ``_s`` seconds and ``_ms``
milliseconds, ``bytes_up`` in bytes). The summary groups rows by run and
group: count, mean, p50, p95, p99 of ``total_ms``, throughput, mean bytes
sent, cut switches, fallbacks over the requests answered (by a hub or the
device), and the requests that failed (errors) or were lost. The same :func:`summarise` serves the printed
table, ``summary.json`` and the tests, which recompute it from the CSV.
Percentiles are nearest-rank over every request (no binning).
:func:`reasons` counts the fallbacks, errors and lost requests by reason.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from pathlib import Path

    from edge_agent import InferenceResult


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RequestRecord:
    """One finished request. Times are seconds from the run's start (simulated in fleet mode) and milliseconds.

    What did not happen is zero or empty (no hub: ``hub_queue_ms`` 0, ``hub`` empty).

    Attributes:
        run: The policy the whole scenario ran with, or ``"scenario"`` for each group's own.
        group: The agent's group.
        agent: The agent.
        policy: ``edge``, ``cloud``, ``auto`` or a cut id.
        start_s: When the request was made.
        cut: The cut it used.
        bytes_up: Bytes sent (0 on the device alone).
        device_queue_ms: Waiting for the device (busy with earlier requests) before the head ran.
        edge_ms: Head compute on the device.
        network_ms: Transfers both ways.
        hub_queue_ms: Waiting at the hub.
        hub_compute_ms: The tail on the hub.
        fallback_ms: The tail on the device after no answer in time.
        total_ms: From request to answer.
        predicted_ms: The planner's prediction (``nan`` for fixed cuts).
        fallback: Why the device ran the tail itself (empty when it did not).
        error: Why the request failed (empty when it was answered): the error
            it raised, or ``lost: ...`` when, long past its deadline, it still
            had neither an answer nor a fallback as the run ended.
        hub: The replica that answered (empty when none did).
        hub_batch: The batch axis of the tail run that answered, as the hub
            said (more than the request's own rows when dynamic batching ran
            it with others; ``hub_compute_ms`` is then that whole run's); 0:
            no run answered, or the hub did not say.
        reason: Why the cut was chosen, as the agent's result says: the
            planner's reason under ``auto`` (``exploring ...`` when the cut
            was tried to refresh its estimate), ``fixed cut`` otherwise;
            empty for a failed request and in files older than the column.
    """

    run: str
    group: str
    agent: str
    policy: str
    start_s: float
    cut: str
    bytes_up: int = 0
    device_queue_ms: float = 0.0
    edge_ms: float = 0.0
    network_ms: float = 0.0
    hub_queue_ms: float = 0.0
    hub_compute_ms: float = 0.0
    fallback_ms: float = 0.0
    total_ms: float
    predicted_ms: float = math.nan
    fallback: str = ""
    error: str = ""
    hub: str = ""
    hub_batch: int = 0
    reason: str = ""

    @classmethod
    def of(
        cls, result: InferenceResult, *, run: str, group: str, agent: str, policy: str, start_s: float
    ) -> RequestRecord:
        """The record of an agent's result (its encoding counted as edge time).

        Made as ``__init__`` would make it, but field by field through the
        slots, in :data:`COLUMNS`' order: a frozen dataclass's ``__init__``
        matches 20 keyword arguments and sets each field through
        ``object.__setattr__`` (4.2 µs a record against 2.8 here), and
        fleet mode makes a record for every request (a tenth of a
        cloud-only run went to ``__init__``).
        """
        timings = result.timings
        values = (
            run,
            group,
            agent,
            policy,
            start_s,
            result.cut_id,  # cut
            result.bytes_sent,  # bytes_up
            timings.device_queue_ms,
            timings.edge_ms + timings.encode_ms,  # edge_ms
            timings.network_ms,
            timings.hub_queue_ms,
            timings.hub_compute_ms,
            timings.fallback_ms,
            timings.total_ms,
            result.predicted_ms,
            result.fallback or "",  # fallback
            "",  # error
            result.hub_id or "",  # hub
            result.hub_batch_size or 0,  # hub_batch
            result.reason,
        )
        record = object.__new__(cls)
        for set_slot, value in zip(_SET_SLOTS, values, strict=True):
            set_slot(record, value)
        return record


COLUMNS = tuple(field.name for field in dataclasses.fields(RequestRecord))
"""The per-request CSV's columns, in order."""
_SET_SLOTS = tuple(getattr(RequestRecord, column).__set__ for column in COLUMNS)
"""What sets each of a record's slots, in :data:`COLUMNS`' order (:meth:`RequestRecord.of`)."""
LOST = "lost"
"""How a lost request's ``error`` begins."""
PERCENTILES = (50, 95, 99)
"""The percentiles every summary reports."""
_FLOATS = frozenset(f.name for f in dataclasses.fields(RequestRecord) if f.type == "float")
_INTS = frozenset(f.name for f in dataclasses.fields(RequestRecord) if f.type == "int")


class RowWriter(Protocol):
    """Anything with ``writerow`` (a ``csv.writer``)."""

    def writerow(self, row: Iterable[object], /) -> object: ...


def write_header(writer: RowWriter) -> None:
    """The CSV's header row."""
    writer.writerow(COLUMNS)


def write_record(writer: RowWriter, record: RequestRecord) -> None:
    """One request as a CSV row (floats to the microsecond)."""
    writer.writerow(
        f"{value:.3f}" if isinstance(value, float) and not math.isnan(value) else value
        for value in (getattr(record, column) for column in COLUMNS)
    )


def read_records(path: Path) -> list[RequestRecord]:
    """The records of a ``requests.csv``."""
    with path.open(newline="", encoding="utf-8") as file:
        return [_record(row) for row in csv.DictReader(file)]


def _record(row: dict[str, str]) -> RequestRecord:
    values: dict[str, Any] = {}
    for column in COLUMNS:
        text = row.get(column)
        if text is None:  # a column newer than the file: its default
            continue
        values[column] = float(text) if column in _FLOATS else int(text) if column in _INTS else text
    return RequestRecord(**values)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """One run's group, summarised (times in ms)."""

    run: str
    group: str
    count: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    throughput_hz: float
    bytes_up_mean: float
    cut_switches: int
    fallbacks: int
    errors: int
    lost: int
    cuts: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON."""
        return dataclasses.asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of ``values`` (``nan`` when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def summarise(records: Iterable[RequestRecord], duration_s: float | Mapping[str, float]) -> list[Summary]:
    """Per run and group, in order of first appearance, then an ``all`` row per run of several groups.

    ``duration_s`` is every run's length, or each run's by name (a run ended
    by the scenario's request count is shorter), for the throughput.
    """
    by: dict[tuple[str, str], list[RequestRecord]] = {}
    for record in records:
        by.setdefault((record.run, record.group), []).append(record)
    runs: dict[str, list[RequestRecord]] = {}
    for (run, _), rows in by.items():
        runs.setdefault(run, []).extend(rows)
    summaries = []
    for run, rows in runs.items():
        groups = [(group, group_rows) for (r, group), group_rows in by.items() if r == run]
        length = duration_s if isinstance(duration_s, int | float) else duration_s[run]
        summaries += [_summary(run, group, group_rows, length) for group, group_rows in groups]
        if len(groups) > 1:
            summaries.append(_summary(run, "all", rows, length))
    return summaries


def _summary(run: str, group: str, records: list[RequestRecord], duration_s: float) -> Summary:
    rows = [row for row in records if not row.error]
    failed = [row.error for row in records if row.error]
    lost = sum(error.startswith(LOST) for error in failed)
    totals = [row.total_ms for row in rows]
    last_cut: dict[str, str] = {}
    switches = 0
    cuts: dict[str, int] = {}
    for row in sorted(rows, key=lambda r: r.start_s):
        if row.agent in last_cut and last_cut[row.agent] != row.cut:
            switches += 1
        last_cut[row.agent] = row.cut
        cuts[row.cut] = cuts.get(row.cut, 0) + 1
    p50, p95, p99 = (percentile(totals, q) for q in PERCENTILES)
    return Summary(
        run=run,
        group=group,
        count=len(rows),
        mean_ms=sum(totals) / len(totals) if totals else math.nan,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        throughput_hz=len(rows) / duration_s,
        bytes_up_mean=sum(row.bytes_up for row in rows) / len(rows) if rows else math.nan,
        cut_switches=switches,
        fallbacks=sum(bool(row.fallback) for row in rows),
        errors=len(failed) - lost,
        lost=lost,
        cuts=dict(sorted(cuts.items())),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Reason:
    """How many of a run's requests fell back, failed or were lost for one reason.

    Attributes:
        run: The run.
        kind: ``fallback``, ``error`` or ``lost``.
        reason: The text before its first ``": "`` (the rest names the instance).
        count: How many.
        example: The first one's whole text.
    """

    run: str
    kind: str
    reason: str
    count: int
    example: str


def reasons(records: Iterable[RequestRecord]) -> list[Reason]:
    """Fallbacks, errors and lost requests by run, kind and reason, in order of first appearance."""
    counts: dict[tuple[str, str, str], list[str]] = {}
    for record in records:
        text = record.error or record.fallback
        if text:
            kind = "fallback" if not record.error else LOST if record.error.startswith(LOST) else "error"
            counts.setdefault((record.run, kind, text.split(": ", 1)[0]), []).append(text)
    return [Reason(run, kind, reason, len(texts), texts[0]) for (run, kind, reason), texts in counts.items()]


def table(summaries: Sequence[Summary]) -> str:
    """The summaries as a fixed-width text table."""
    header = (
        "run", "group", "requests", "mean ms", "p50", "p95", "p99", "req/s", "bytes up", "switches", "fallbacks",
        "errors", "lost",
    )  # fmt: skip
    rows = [
        (
            s.run,
            s.group,
            str(s.count),
            f"{s.mean_ms:.1f}",
            f"{s.p50_ms:.1f}",
            f"{s.p95_ms:.1f}",
            f"{s.p99_ms:.1f}",
            f"{s.throughput_hz:.1f}",
            f"{s.bytes_up_mean:,.0f}",
            str(s.cut_switches),
            str(s.fallbacks),
            str(s.errors),
            str(s.lost),
        )
        for s in summaries
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in [header, *rows]]
    return "\n".join(line.rstrip() for line in lines)

"""A run's records: made from an agent's result."""

from __future__ import annotations

import dataclasses

import pytest

from edge_agent import InferenceResult, Timings
from simulations._report import RequestRecord


def test_a_record_of_a_result_is_the_record_its_fields_make() -> None:
    timings = Timings(
        edge_ms=1.0,
        encode_ms=2.0,
        network_ms=3.0,
        hub_queue_ms=4.0,
        hub_compute_ms=5.0,
        decode_ms=6.0,
        fallback_ms=7.0,
        total_ms=8.0,
        device_queue_ms=9.0,
    )
    result = InferenceResult(
        {},
        "pool",
        timings,
        bytes_sent=10,
        bytes_received=11,
        hub_id="hub-1",
        fallback="hub overloaded: full",
        predicted_ms=12.0,
        reason="fastest",
        hub_batch_size=3,
    )
    record = RequestRecord.of(result, run="auto", group="cams", agent="cams-2", policy="auto", start_s=13.0)
    assert record == RequestRecord(
        run="auto",
        group="cams",
        agent="cams-2",
        policy="auto",
        start_s=13.0,
        cut="pool",
        bytes_up=10,
        device_queue_ms=9.0,
        edge_ms=3.0,  # its encoding counts as edge time
        network_ms=3.0,
        hub_queue_ms=4.0,
        hub_compute_ms=5.0,
        fallback_ms=7.0,
        total_ms=8.0,
        predicted_ms=12.0,
        fallback="hub overloaded: full",
        hub="hub-1",
        hub_batch=3,
        reason="fastest",
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.run = "edge"  # type: ignore[misc]
    unanswered = dataclasses.replace(result, hub_id=None, fallback=None, hub_batch_size=None)
    made = RequestRecord.of(unanswered, run="auto", group="cams", agent="cams-2", policy="auto", start_s=13.0)
    assert (made.hub, made.fallback, made.hub_batch, made.error) == ("", "", 0, "")

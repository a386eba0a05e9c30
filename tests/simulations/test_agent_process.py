"""The emulated agent's own process: what it writes for requests that fail or never end."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time

import numpy as np
import pytest

from simulations._agent_process import AgentConfig, _report_lost, _requests
from simulations._report import LOST, RequestRecord, summarise
from tests._support import until

CONFIG = AgentConfig(
    run="cloud", name="cams-0", group="cams", policy="cloud", model="tiny", device_factor=5.4, url="mqtt://127.0.0.1:1",
    prefix="p", seed=1, arrival="poisson", rate_hz=((0.0, 50.0),), think_s=0.0, start_s=0.0, stop_s=60.0,
    deadline_s=1.0,
)  # fmt: skip


@dataclasses.dataclass
class _Spec:
    shape: tuple[int, ...] = (1, 4)
    dtype: type = np.uint8


@dataclasses.dataclass
class _Model:
    inputs: tuple[_Spec, ...] = (_Spec(),)


class _RefusingAgent:
    """Stands in for an EdgeAgent whose every request raises (the real one only does with fallback off)."""

    model = _Model()

    async def infer(self, inputs: np.ndarray) -> None:
        assert inputs.shape == (4,)
        msg = "hub unknown_model: no such model"
        raise RuntimeError(msg)


def _records(text: str) -> list[RequestRecord]:
    return [RequestRecord(**json.loads(line)["record"]) for line in text.splitlines()]


async def test_a_request_that_raises_is_a_row_naming_its_error(capsys: pytest.CaptureFixture[str]) -> None:
    task = asyncio.create_task(_requests(_RefusingAgent(), CONFIG, time.monotonic()))  # type: ignore[arg-type]
    out: list[str] = []

    def written() -> bool:
        out.append(capsys.readouterr().out)
        return bool("".join(out).strip())

    await until(written, "the first record")  # a busy machine may take a while
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    records = _records("".join(out) + capsys.readouterr().out)
    assert records
    assert all(r.error == "RuntimeError: hub unknown_model: no such model" for r in records)
    assert all(r.cut == "" and math.isnan(r.total_ms) for r in records)
    summary = summarise(records, 1.0)[0]
    assert (summary.count, summary.errors, summary.lost) == (0, len(records), 0)


def test_requests_long_past_their_deadline_are_reported_lost(capsys: pytest.CaptureFixture[str]) -> None:
    now = time.monotonic()
    _report_lost(CONFIG, now - 100.0, [now - 60.0, now - 0.5])  # one long past 2 x 1 s + 5 s, one not
    records = _records(capsys.readouterr().out)
    assert len(records) == 1
    assert records[0].error.startswith(f"{LOST}: neither an answer nor a fallback")
    assert records[0].start_s == pytest.approx(40.0, abs=0.5)
    assert records[0].total_ms >= 60_000
    summary = summarise(records, 1.0)[0]
    assert (summary.errors, summary.lost) == (0, 1)

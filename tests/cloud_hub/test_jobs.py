"""The hub's bookkeeping on its own: bounds, repeats, agents' clocks."""

from __future__ import annotations

import platform
import time

import numpy as np
import pytest

from cloud_hub._jobs import AgentClocks, Job, Ledger, RecentRequests
from protocol import EncodedRequest, EncodedTensor, InferenceRequest
from protocol.mqtt import Incoming


def _job(size: int, correlation: bytes = b"r", agent: str = "a") -> Job:
    incoming = Incoming(topic=f"p/v1/req/{agent}", payload=b"x" * size, qos=1, correlation=correlation)
    return Job(incoming=incoming, agent_id=agent, reply_topic=f"p/v1/resp/{agent}")


def _encoded(nbytes: int) -> EncodedRequest:
    header = InferenceRequest(
        request_id="r",
        agent_id="a",
        model_id="m",
        model_sha256="ab" * 32,
        cut_id="c",
        tensors={},
        sent_at=0.0,
        deadline_ms=1.0,
    )
    tensor = EncodedTensor(name="x", dtype=np.dtype(np.uint8), shape=(nbytes,), codec="zstd", data=b"", params={})
    return EncodedRequest(header, {"x": tensor})


def test_the_ledger_bounds_count_and_bytes_and_knows_when_it_is_idle() -> None:
    ledger = Ledger(max_jobs=2, max_bytes=100, max_jobs_per_agent=2)
    assert ledger.idle.is_set()
    first, second, third = _job(40), _job(40, agent="b"), _job(10, agent="c")
    for job in (first, second):
        ledger.hold(job)
        assert ledger.over_bounds(job) is None
    ledger.hold(third)
    assert ledger.over_bounds(third) == "2 requests queued (max_queue 2)"
    ledger.release(third)
    ledger.release(first)
    assert not ledger.idle.is_set()
    ledger.release(second)
    assert ledger.idle.is_set()
    ledger.release(first)  # twice: harmless
    assert len(ledger) == 0
    many = Ledger(max_jobs=10, max_bytes=100, max_jobs_per_agent=10)
    jobs = [_job(40), _job(40, agent="b"), _job(30, agent="c")]
    for job in jobs:
        many.hold(job)
    assert many.over_bounds(jobs[2]) == "110 bytes of requests queued (max_queue_bytes 100)"


def test_one_agents_jobs_hold_at_most_half_the_bytes() -> None:
    ledger = Ledger(max_jobs=10, max_bytes=100, max_jobs_per_agent=10)
    mine, more, theirs = _job(30), _job(30), _job(40, agent="b")
    for job in (mine, more, theirs):
        ledger.hold(job)
    assert ledger.over_bounds(more) == "60 bytes of requests of agent a queued (half of max_queue_bytes)"
    assert ledger.over_bounds(theirs) is None
    assert ledger.max_bytes_per_agent == 50


def test_the_ledger_bounds_each_agents_jobs() -> None:
    ledger = Ledger(max_jobs=10, max_bytes=1000, max_jobs_per_agent=2)
    mine = [_job(1), _job(1), _job(1)]
    for job in mine:
        ledger.hold(job)
    assert ledger.over_bounds(mine[2]) == "2 requests of agent a queued (max_queue_per_agent 2)"
    other = _job(1, agent="b")
    ledger.hold(other)
    assert ledger.over_bounds(other) is None  # another agent's request is still taken
    ledger.release(mine[0])
    assert ledger.over_bounds(mine[2]) is None


def test_a_compressed_request_counts_what_its_tensors_take_decoded() -> None:
    job = _job(50)
    job.request = _encoded(4096)
    assert job.size == 4096  # declared, before anything is decoded
    job.request = _encoded(10)
    assert job.size == 50  # the payload, when that is more
    ledger = Ledger(max_jobs=10, max_bytes=10_000, max_jobs_per_agent=10)
    job.request = _encoded(6000)
    ledger.hold(job)
    assert ledger.over_bounds(job) == "6,000 bytes of requests of agent a queued (half of max_queue_bytes)"


def test_a_job_without_a_decoded_request_is_named_by_its_correlation() -> None:
    assert _job(3, correlation=b"c-1").request_id == "c-1"
    assert _job(3, correlation=b"").request_id == "unknown"


def test_recent_requests_drop_repeats_while_running_and_replay_answers() -> None:
    recent = RecentRequests(max_entries=10, max_bytes=1000, ttl_s=60)
    key = ("a", "r1")
    assert recent.lookup(key) is None
    recent.start(key)
    entry = recent.lookup(key)
    assert entry is not None
    assert entry.reply is None  # running
    recent.finish(key, b"reply")
    entry = recent.lookup(key)
    assert entry is not None
    assert entry.reply == b"reply"
    recent.finish(key, b"another")  # only a running request finishes
    assert recent.lookup(key).reply == b"reply"  # type: ignore[union-attr]
    recent.finish(("a", "never-started"), b"x")
    assert recent.lookup(("a", "never-started")) is None


def test_recent_requests_are_bounded_in_count_bytes_and_time(monkeypatch: pytest.MonkeyPatch) -> None:
    recent = RecentRequests(max_entries=3, max_bytes=10, ttl_s=60)
    for index in range(4):
        recent.start(("a", str(index)))
    assert recent.lookup(("a", "0")) is None  # the oldest went
    recent.finish(("a", "1"), b"123456")
    recent.finish(("a", "2"), b"123456")  # 12 bytes: the oldest answered one goes, not a running one
    assert recent.lookup(("a", "1")) is None
    assert recent.lookup(("a", "2")) is not None
    later = time.monotonic() + 61
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert recent.lookup(("a", "2")) is None  # expired
    assert recent.lookup(("a", "3")) is not None  # still running: never expires


def test_agent_clocks_judge_age_by_the_agents_clock_and_forgive_it_slowly() -> None:
    clocks = AgentClocks(drift=0.01)
    assert clocks.age_s("cam", sent_at=0.0, now=50.0) == 0.0  # never heard of: no judgement
    clocks.note("cam", sent_at=1000.0, received_at=100.5)  # its clock is 900 s ahead, 0.5 s transit
    assert clocks.age_s("cam", sent_at=1001.0, now=102.0) == pytest.approx(0.5)
    clocks.note("cam", sent_at=1002.0, received_at=102.1)  # a quicker transit: the offset shrinks
    assert clocks.age_s("cam", sent_at=1010.0, now=115.0) == pytest.approx(4.9)
    clocks.note("cam", sent_at=500.0, received_at=200.0)  # its clock was set back 400 s ...
    assert clocks.age_s("cam", sent_at=500.0, now=200.0) > 300  # ... which looks old at first
    for step in range(1, 100):
        clocks.note("cam", sent_at=500.0 + step * 1000, received_at=200.0 + step * 1000)
    assert clocks.age_s("cam", sent_at=100_000.0, now=99_700.0) == 0.0  # forgiven by the drift


def test_agent_clocks_forget_the_least_recently_heard() -> None:
    clocks = AgentClocks(max_agents=2)
    for agent in ("a", "b", "c"):
        clocks.note(agent, sent_at=0.0, received_at=1.0)
    assert clocks.age_s("a", sent_at=0.0, now=10.0) == 0.0  # forgotten
    assert clocks.age_s("c", sent_at=0.0, now=10.0) == pytest.approx(9.0)


def test_freed_memory_goes_back_to_the_os_where_glibc_allows() -> None:
    from cloud_hub._malloc import release_freed_memory  # noqa: PLC0415

    blocks = [bytearray(1 << 20) for _ in range(64)]
    del blocks
    assert release_freed_memory() is (platform.libc_ver()[0] == "glibc")


def test_bounds_are_checked_before_holding_and_a_refused_job_holds_only_its_payload() -> None:
    ledger = Ledger(max_jobs=10, max_bytes=10_000, max_jobs_per_agent=10)
    bomb = _job(50, agent="attacker")
    bomb.request = _encoded(1_000_000)  # declares a megabyte
    assert ledger.over_bounds(bomb) == "1,000,000 bytes of requests of agent attacker queued (half of max_queue_bytes)"
    assert len(ledger) == 0  # checking held nothing
    ledger.hold(bomb, size=50)  # while its refusal goes out
    valid = _job(3000, agent="victim")
    assert ledger.over_bounds(valid) is None

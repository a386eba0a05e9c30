"""The hub's bookkeeping on its own: bounds, repeats, agents' clocks."""

from __future__ import annotations

import platform
import time

import pytest

from cloud_hub._jobs import AgentClocks, Job, Ledger, RecentRequests
from protocol.mqtt import Incoming


def _job(size: int, correlation: bytes = b"r") -> Job:
    incoming = Incoming(topic="p/v1/req/a", payload=b"x" * size, qos=1, correlation=correlation)
    return Job(incoming=incoming, agent_id="a", reply_topic="p/v1/resp/a")


def test_the_ledger_bounds_count_and_bytes_and_knows_when_it_is_idle() -> None:
    ledger = Ledger(max_jobs=2, max_bytes=100)
    assert ledger.idle.is_set()
    first, second, third = _job(40), _job(40), _job(10)
    for job in (first, second):
        ledger.hold(job)
        assert ledger.over_bounds() is None
    ledger.hold(third)
    assert ledger.over_bounds() == "2 requests queued (max_queue 2)"
    ledger.release(third)
    ledger.release(second)
    ledger.hold(big := _job(70))
    assert ledger.over_bounds() == "110 bytes of requests queued (max_queue_bytes 100)"
    ledger.release(first)
    assert not ledger.idle.is_set()
    ledger.release(big)
    assert ledger.idle.is_set()
    ledger.release(first)  # twice: harmless
    assert len(ledger) == 0


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

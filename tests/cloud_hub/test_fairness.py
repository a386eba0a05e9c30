"""Sharing a hub between agents, on its own: the fair queue and the rate budgets."""

from __future__ import annotations

import pytest

from cloud_hub._fairness import FairQueue, RateBudget


def test_the_fair_queue_takes_senders_in_turn_whatever_they_queued() -> None:
    queue: FairQueue[str] = FairQueue()
    for index in range(5):
        queue.put("greedy", f"g{index}")
    queue.put("quiet", "q0")
    queue.put("other", "o0")
    queue.put("quiet", "q1")
    taken = [queue.pop() for _ in range(len(queue))]
    # The greedy sender's first request came first; then each sender's next one in turn.
    assert taken == ["g0", "q0", "o0", "g1", "q1", "g2", "g3", "g4"]
    assert len(queue) == 0


def test_a_sender_arriving_later_waits_for_at_most_one_item_of_each_other_sender() -> None:
    queue: FairQueue[str] = FairQueue()
    for index in range(50):
        queue.put("greedy", f"g{index}")
    assert queue.pop() == "g0"  # running
    queue.put("late", "l0")
    assert [queue.pop(), queue.pop()] == ["l0", "g1"]  # next after the one in service


def test_a_sender_gains_no_turns_by_having_been_idle_nor_loses_its_turn() -> None:
    queue: FairQueue[str] = FairQueue()
    for index in range(4):
        queue.put("busy", f"b{index}")
    assert [queue.pop(), queue.pop()] == ["b0", "b1"]
    queue.put("idle", "i0")  # idle so far: no credit for the turns it did not take
    queue.put("idle", "i1")
    assert [queue.pop() for _ in range(4)] == ["i0", "b2", "i1", "b3"]


def test_an_empty_fair_queue_has_nothing_to_pop() -> None:
    queue: FairQueue[str] = FairQueue()
    assert not queue
    with pytest.raises(IndexError):
        queue.pop()
    queue.put("a", "x")
    assert queue
    assert queue.pop() == "x"
    assert not queue


def test_a_rate_budget_allows_a_burst_then_the_rate_per_agent() -> None:
    budget = RateBudget(per_agent=2.0, per_agent_burst=3.0, overall=100.0, overall_burst=100.0)
    assert [budget.take("a", 0.0) for _ in range(4)] == [None, None, None, "agent"]
    assert budget.take("b", 0.0) is None  # another agent has its own bucket
    assert budget.take("a", 0.4) == "agent"  # 0.8 of a token came back: not yet one
    assert budget.take("a", 0.5) is None  # a whole one now
    assert budget.take("a", 0.5) == "agent"
    assert budget.take("a", 10.0) is None  # refilled, up to the burst only
    assert [budget.take("a", 10.0) for _ in range(3)] == [None, None, "agent"]


def test_a_rate_budget_bounds_all_agents_together() -> None:
    budget = RateBudget(per_agent=10.0, per_agent_burst=10.0, overall=1.0, overall_burst=3.0)
    spent = [budget.take(f"agent-{index}", 0.0) for index in range(5)]
    assert spent == [None, None, None, "overall", "overall"]
    assert budget.take("agent-9", 1.0) is None

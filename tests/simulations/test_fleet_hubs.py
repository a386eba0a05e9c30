"""Fleet mode's hub replicas, driven alone on a SimPy clock: workers, dynamic batching, deadlines, stops."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

simpy = pytest.importorskip("simpy")

from protocol import ErrorCode  # noqa: E402 - after the skip
from simulations._hubs import Answer, Hub, Refused, Served, Tail, Work  # noqa: E402
from simulations._scenario import HubSpec  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Generator

TAIL = Tail("sha", "input", 100.0, {})


def _send(
    env: simpy.Environment,
    hub: Hub,
    at_s: float,
    answers: dict[str, tuple[float, Answer]],
    name: str,
    *,
    tail: Tail = TAIL,
    deadline_s: float = 2.0,
) -> None:
    """Hand ``hub`` a request at ``at_s``; note when and what it answered, under ``name``."""

    def answer(what: Answer) -> None:
        assert name not in answers  # answered once
        answers[name] = (env.now, what)

    def request(_: simpy.Event) -> None:
        hub.serve(Work(tail=tail, sent_s=at_s, deadline_s=deadline_s, answer=answer))

    env.timeout(at_s).callbacks.append(request)


def test_a_free_worker_takes_the_waiting_requests_for_its_tail_as_one_batch() -> None:
    env = simpy.Environment()
    hub = Hub(env, "hub-0", workers=1, max_queue=64, max_batch=8)
    answers: dict[str, tuple[float, Answer]] = {}
    _send(env, hub, 0.0, answers, "first")
    for index in range(3):  # arrive while the first runs
        _send(env, hub, 0.01 * (index + 1), answers, f"waiting-{index}")
    _send(env, hub, 0.05, answers, "other tail", tail=Tail("sha", "pool", 100.0, {}))
    env.run()
    assert answers["first"] == (pytest.approx(0.1), Served("hub-0", 0.0, 100.0, 1))
    for index in range(3):  # one run of three after it, every reply with the run's time and size
        done_s, served = answers[f"waiting-{index}"]
        assert done_s == pytest.approx(0.4)
        assert isinstance(served, Served)
        assert (served.batch, served.compute_ms) == (3, pytest.approx(300.0))
        assert served.queue_ms == pytest.approx(100.0 - 10.0 * (index + 1))
    assert answers["other tail"][0] == pytest.approx(0.5)  # another tail's request waits its turn, alone
    other = answers["other tail"][1]
    assert isinstance(other, Served)
    assert other.batch == 1


def test_without_batching_each_request_runs_alone_in_turn() -> None:
    env = simpy.Environment()
    hub = Hub(env, "hub-0", workers=1, max_queue=64)
    answers: dict[str, tuple[float, Answer]] = {}
    for index in range(3):
        _send(env, hub, 0.01 * index, answers, f"r{index}")
    env.run()
    assert [answers[f"r{index}"][0] for index in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert {answer.batch for _, answer in answers.values() if isinstance(answer, Served)} == {1}
    assert len(answers) == 3


def test_a_batch_leaves_out_requests_past_their_deadline_and_they_are_refused_alone() -> None:
    env = simpy.Environment()
    hub = Hub(env, "hub-0", workers=1, max_queue=64, max_batch=8)
    answers: dict[str, tuple[float, Answer]] = {}
    _send(env, hub, 0.0, answers, "long", tail=Tail("sha", "input", 3000.0, {}))
    _send(env, hub, 0.1, answers, "first", deadline_s=10.0)
    _send(env, hub, 0.2, answers, "stale", deadline_s=1.0)  # its deadline passes while the long one runs
    _send(env, hub, 2.9, answers, "fresh")
    env.run()
    for name in ("first", "fresh"):  # one batch of the two
        assert answers[name][0] == pytest.approx(3.2)
        served = answers[name][1]
        assert isinstance(served, Served)
        assert served.batch == 2
    done_s, refused = answers["stale"]
    assert done_s == pytest.approx(3.2)  # its turn came after the batch it was left out of, and nothing ran
    assert isinstance(refused, Refused)
    assert refused.code == ErrorCode.DEADLINE_EXCEEDED


def test_a_replica_that_stops_loses_what_waits_and_what_runs_and_comes_back_with_every_worker_free() -> None:
    env = simpy.Environment()
    hub = Hub(env, "hub-0", workers=1, max_queue=64, max_batch=8)
    answers: dict[str, tuple[float, Answer]] = {}
    _send(env, hub, 0.0, answers, "running")
    _send(env, hub, 0.01, answers, "waiting")

    def crash() -> Generator[simpy.Event, object, None]:
        yield env.timeout(0.05)
        hub.stop()
        yield env.timeout(0.01)
        hub.up = True

    env.process(crash())
    _send(env, hub, 0.07, answers, "after")
    env.run()
    assert "waiting" not in answers  # lost: never answered
    assert "running" not in answers
    assert answers["after"] == (pytest.approx(0.17), Served("hub-0", 0.0, 100.0, 1))  # not behind the lost run


def test_scenarios_batch_as_the_hub_does_by_default() -> None:
    from cloud_hub import HubConfig  # noqa: PLC0415 - only this test needs the hub

    assert HubSpec().max_batch_size == HubConfig(broker="mqtt://127.0.0.1:1883").max_batch_size


def test_a_status_lists_the_tails_a_replica_has_run_since_it_started() -> None:
    env = simpy.Environment()
    hub = Hub(env, "hub-0", workers=1, max_queue=64, max_batch=8)
    answers: dict[str, tuple[float, Answer]] = {}
    status = hub.status()
    assert status is not None
    assert status.tail_ms == {}  # a real hub reports only what it ran (docs/protocol.md, profile)
    timed = {"layer4.0.add": 2.9, "pool": 0.1}  # a run from a cut times every later cut too, as a chain's does
    _send(env, hub, 0.0, answers, "alone", tail=Tail("sha", "layer4.0.add", 2.9, timed))
    for index in range(2):  # a batch of two: the reply, and the status, say the whole run's time
        _send(env, hub, 0.001, answers, f"batched-{index}", tail=Tail("sha", "pool", 0.1, {"pool": 0.1}))
    env.run()
    status = hub.status()
    assert status is not None
    assert status.tail_ms == {"sha": {"layer4.0.add": 2.9, "pool": pytest.approx(0.2)}}  # median of 0.1, 0.2, 0.2
    hub.stop()
    hub.up = True
    restarted = hub.status()
    assert restarted is not None
    assert restarted.tail_ms == {}


def test_one_load_holds_every_cut_of_a_model_as_a_hubs_chain_does() -> None:
    # A hub loads a model as one chain through every candidate cut (docs/runtime.md): an agent that learned
    # the hub at pool and then sends the image finds its tail there. Fleet replicas had loaded per cut, and
    # a request at a second cut waited for a second load (the loading situation's 4x p50).
    env = simpy.Environment()
    hub = Hub(env, "hub-0", workers=1, max_queue=64, load_s=3.0)
    answers: dict[str, tuple[float, Answer]] = {}
    _send(env, hub, 0.0, answers, "pool", tail=Tail("sha", "pool", 100.0, {}), deadline_s=10.0)
    _send(env, hub, 5.0, answers, "input", tail=TAIL)
    _send(env, hub, 5.0, answers, "another model", tail=Tail("other", "input", 100.0, {}), deadline_s=10.0)
    env.run()
    assert answers["pool"][0] == pytest.approx(3.1)  # loaded, then run
    assert answers["input"][0] == pytest.approx(5.1)  # no load: the model is held
    assert answers["another model"][0] == pytest.approx(8.1)  # a model of its own: a load of its own


def test_replies_a_hang_held_leave_after_what_else_happens_as_it_ends() -> None:
    # As when each request was a process woken by its run's end: a status due at the instant a hang ends
    # reports the waits of before, not those of the runs the hang held.
    env = simpy.Environment()
    hub = Hub(env, "hub-0", workers=1, max_queue=64)
    answers: dict[str, tuple[float, Answer]] = {}
    _send(env, hub, 0.0, answers, "first")  # runs 0-0.1: waited 0 ms
    _send(env, hub, 0.01, answers, "second")  # runs 0.1-0.2, waited 90 ms: held by the hang until 1 s
    env.timeout(0.15).callbacks.append(lambda _: setattr(hub, "stalled_until", 1.0))
    reported: list[float] = []

    def status_at_the_end(_: simpy.Event) -> None:  # set after the hang held the run, for the instant it ends
        env.timeout(0.5).callbacks.append(lambda _: reported.append(hub.status().queue_wait_ms))  # type: ignore[union-attr]

    env.timeout(0.5).callbacks.append(status_at_the_end)
    env.run()
    assert answers["second"] == (1.0, Served("hub-0", pytest.approx(90.0), 100.0, 1))
    assert reported == [0.0]  # the held run's 90 ms come after
    assert hub.status().queue_wait_ms == pytest.approx(45.0)  # type: ignore[union-attr]

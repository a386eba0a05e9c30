"""The agent's core on a virtual clock: events in, commands out, no sockets, no sleeping, no ONNX Runtime."""

from __future__ import annotations

import math

import pytest

from edge_agent import (
    AgentCore,
    Candidate,
    FallBack,
    GiveUp,
    InferenceResult,
    Planner,
    Request,
    SendAgain,
    SendNew,
    SendPing,
    Timeouts,
    Timings,
)
from edge_agent._core import SEGMENT_TIMES_EVERY
from protocol import ErrorCode, NodeStatus

CHAIN = ("input", "pool", "output")
SHA = "ab" * 32
TIMEOUTS = Timeouts(request=2.0, load=10.0)


def _core() -> AgentCore:
    candidates = [
        Candidate(id="input", bytes=150_000),
        Candidate(id="pool", bytes=2_000),
        Candidate(id="output", bytes=0, edge_only=True),
    ]
    core = AgentCore(planner=Planner(candidates), chain=CHAIN, model_sha256=SHA, timeouts=TIMEOUTS)
    core.warmed_up([[10.0, 90.0]], 0.0)  # a slow device: 100 ms for the whole model
    return core


def _answered(cut: str, *, network_ms: float = 20.0, hub_ms: float = 5.0, total_ms: float = 30.0) -> InferenceResult:
    timings = Timings(network_ms=network_ms, hub_compute_ms=hub_ms, total_ms=total_ms)
    return InferenceResult(outputs={}, cut_id=cut, timings=timings, bytes_sent=150_000, hub_id="hub-0")


def _fell_back(cut: str, total_ms: float) -> InferenceResult:
    timings = Timings(fallback_ms=50.0, total_ms=total_ms)
    return InferenceResult(outputs={}, cut_id=cut, timings=timings, bytes_sent=150_000, fallback="no reply")


def _sent(core: AgentCore, now_s: float, *, can_fall_back: bool = True) -> Request:
    request = core.request(now_s)
    request.sent(now_s, can_fall_back=can_fall_back)
    return request


def _settle_the_link(core: AgentCore) -> None:
    """Answer the start's pings as a 20 ms, 100 Mbit/s link would."""
    ping = core.start(0.0)
    while ping is not None:
        ping = core.ping_answered(20.0 + ping.nbytes * 8 / 100e6 * 1000, 0.01)


def test_the_warm_up_gives_every_cut_its_head_time_from_the_segments() -> None:
    core = _core()
    core.warmed_up([[12.0, 80.0]], 1.0)
    assert core.head_times() == {"input": [0.0, 0.0], "pool": [10.0, 12.0], "output": [100.0, 92.0]}


def test_a_fixed_cut_is_used_as_it_is_and_nothing_is_pinged() -> None:
    core = AgentCore(cut="pool", codec="int8", timeouts=TIMEOUTS)
    assert core.planner is None
    assert core.start(0.0) is None
    assert not core.starting
    request = core.request(0.0)
    assert (request.decision.cut_id, request.decision.codec, request.decision.reason) == ("pool", "int8", "fixed cut")
    assert math.isnan(request.decision.predicted_ms)
    assert core.finished(request, _answered("pool"), 1.0) is None
    assert core.head_times() == {}


def test_a_core_takes_a_planner_with_its_chain_or_a_fixed_cut() -> None:
    with pytest.raises(ValueError, match="a planner or a fixed cut"):
        AgentCore()
    with pytest.raises(ValueError, match="a planner or a fixed cut"):
        AgentCore(planner=Planner([Candidate(id="input", bytes=1)]), cut="input", chain=("input",))
    with pytest.raises(ValueError, match="chain"):
        AgentCore(planner=Planner([Candidate(id="input", bytes=1)]))


def test_at_start_the_core_pings_up_to_four_times_within_two_seconds() -> None:
    core = _core()
    sizes = []
    ping = core.start(10.0)
    while ping is not None:
        sizes.append(ping.nbytes)
        ping = core.ping_answered(25.0, 10.0 + 0.1 * len(sizes))
    assert sizes[0] == 0  # the round trip first, then the bandwidth
    assert 2 <= len(sizes) <= 4
    assert not core.starting
    slow = _core()
    ping = slow.start(10.0)
    assert ping is not None
    assert slow.ping_lost(12.5) is None  # the first went unanswered: 2 s are up, no more
    assert not slow.starting


def test_a_lost_start_ping_does_not_end_the_start() -> None:
    core = _core()
    assert core.start(0.0) == SendPing(0)
    assert core.ping_lost(0.5) == SendPing(0)  # still within the 2 s: the round trip again
    assert core.starting


def test_a_request_the_planner_chose_teaches_it_and_a_caller_cut_does_not() -> None:
    core = _core()
    _settle_the_link(core)
    before = core.head_times()
    asked = core.request(1.0, cut="input")
    assert asked.decision.reason == "asked for by the caller"
    assert core.finished(asked, _answered("input"), 1.1) is None
    assert core.head_times() == before
    request = core.request(2.0)
    cut = request.decision.cut_id
    core.finished(request, _answered(cut), 2.1)
    assert len(core.head_times()[cut]) == len(before[cut]) + 1


def test_after_a_request_one_ping_chain_at_a_time_and_a_loss_ends_it() -> None:
    core = _core()
    _settle_the_link(core)
    first = core.request(1.0)
    ping = core.finished(first, _fell_back(first.decision.cut_id, 2_100.0), 3.1)
    assert ping is not None  # on the device now: nothing measures the link but pings
    second = core.request(3.2)
    assert core.finished(second, _answered("output"), 3.3) is None  # one is out already
    assert core.ping_lost(5.1) is None
    third = core.request(5.2)
    assert core.finished(third, _answered("output"), 5.3) is not None  # the chain ended: another may start


def test_a_ping_chain_follows_up_at_most_three_times() -> None:
    core = _core()
    _settle_the_link(core)
    request = core.request(1.0)
    ping = core.finished(request, _fell_back(request.decision.cut_id, 2_100.0), 3.1)
    pings = 0
    now = 3.1
    while ping is not None:  # every ping far slower than predicted: the planner wants to confirm, urgently
        pings += 1
        now += 0.01
        ping = core.ping_answered(400.0 + 10.0 * pings, now)
    assert 1 <= pings <= 4


def test_a_start_while_a_ping_is_out_waits_for_it_then_pings() -> None:
    core = _core()
    _settle_the_link(core)
    request = core.request(1.0)
    assert core.finished(request, _fell_back(request.decision.cut_id, 2_100.0), 3.1) is not None
    assert core.start(3.2) is None  # one ping out: a second chain would lose track of it
    assert core.starting
    assert core.ping_answered(25.0, 3.3) is not None  # the start's pings follow it


def test_an_abandoned_ping_ends_its_chain_and_the_next_request_may_ping() -> None:
    core = _core()
    _settle_the_link(core)
    first = core.request(1.0)
    assert core.finished(first, _fell_back(first.decision.cut_id, 2_100.0), 3.1) is not None
    core.ping_abandoned()  # its sender was stopped: no answer or loss will come
    core.ping_abandoned()  # and nothing is out now: nothing to end
    second = core.request(3.2)
    assert core.finished(second, _fell_back(second.decision.cut_id, 2_100.0), 5.3) is not None


def test_a_ping_answer_without_a_ping_out_is_a_driver_bug() -> None:
    with pytest.raises(RuntimeError, match="no ping is out"):
        _core().ping_answered(20.0, 0.0)


def test_no_answer_falls_back_at_the_deadline_and_never_before() -> None:
    core = _core()
    request = _sent(core, 10.0)
    assert request.deadline_s == 12.0
    with pytest.raises(RuntimeError, match="before its deadline"):
        request.timed_out(11.9)
    assert request.timed_out(12.0) == FallBack("no reply within the deadline")


def test_hub_errors_fall_back_send_again_or_give_up() -> None:
    core = _core()
    request = _sent(core, 0.0)
    overloaded = request.refused(ErrorCode.OVERLOADED, "hub hub-0 has 64 requests queued", 0.1)
    assert overloaded == FallBack("hub overloaded: hub hub-0 has 64 requests queued")
    assert request.refused(ErrorCode.SHUTTING_DOWN, "send it again", 1.0) == SendAgain()
    assert request.refused(ErrorCode.SHUTTING_DOWN, "send it again", 2.0) == FallBack(
        "hub shutting_down: send it again"
    )
    assert request.refused(ErrorCode.UNKNOWN_MODEL, "no such model", 0.5) == GiveUp("no such model")
    assert request.unusable("undecodable reply: junk") == FallBack("undecodable reply: junk")


def test_a_loading_model_is_asked_again_until_it_loads_unless_the_device_can_answer() -> None:
    core = _core()
    assert _sent(core, 0.0).refused(ErrorCode.LOADING, "loading", 0.1) == FallBack("hub loading: loading")
    request = _sent(core, 0.0, can_fall_back=False)
    step = request.refused(ErrorCode.LOADING, "loading", 0.1)
    assert step == SendNew(0.6)
    request.sent(0.6, can_fall_back=False)
    assert request.deadline_s == pytest.approx(2.6)  # the new request's own deadline
    assert request.refused(ErrorCode.LOADING, "loading", 9.9) == SendNew(pytest.approx(10.4))
    assert isinstance(request.refused(ErrorCode.LOADING, "loading", 10.0), FallBack)  # load time is up


def test_a_fallback_backs_off_to_the_device_and_a_straggler_does_not_lengthen_it() -> None:
    core = _core()
    _settle_the_link(core)
    for now in (0.1, 0.2, 0.3):
        request = core.request(now)
        core.finished(request, _answered(request.decision.cut_id), now + 0.05)
    first, straggler = _sent(core, 1.0), _sent(core, 1.1)
    core.finished(first, _fell_back(first.decision.cut_id, 2_000.0), 3.0)
    assert core.request(3.5).decision.cut_id == "output"
    assert "no hub answered lately" in core.request(3.5).decision.reason
    core.finished(straggler, _fell_back(straggler.decision.cut_id, 2_000.0), 3.1)  # sent before the back-off
    assert "no hub answered lately" not in core.request(4.05).decision.reason  # 1 s, not 2: the hub may be tried


def test_only_online_hub_statuses_teach_the_planner() -> None:
    core = _core()
    _settle_the_link(core)
    request = core.request(0.1)
    core.finished(request, _answered("input", network_ms=6.0, hub_ms=2.0, total_ms=8.0), 0.1)
    planner = core.planner
    assert planner is not None
    before = planner.predict_ms("input", 0.2)
    assert before is not None
    for status in (
        NodeStatus("h", "hub", "offline", 0.0, queue_wait_ms=900.0),
        NodeStatus("a", "agent", "online", 0.0, queue_wait_ms=900.0),
    ):
        core.hub_status(status, 0.2)
    assert planner.predict_ms("input", 0.2) == before
    for _ in range(2):
        core.hub_status(NodeStatus("h", "hub", "online", 0.0, queue_wait_ms=900.0, tail_ms={SHA: {}}), 0.2)
    # the mean of 900 and 900: the one answer, the first at its cut, taught no queue wait (its tail may have loaded)
    assert planner.predict_ms("input", 0.2) == pytest.approx(before + 900.0)


def test_a_hubs_tail_times_for_this_model_are_what_it_predicts_with() -> None:
    core = _core()
    _settle_the_link(core)
    status = NodeStatus("h", "hub", "online", 0.0, tail_ms={SHA: {"pool": 1.0}, "other": {"pool": 500.0}})
    core.hub_status(status, 0.1)
    planner = core.planner
    assert planner is not None
    predicted = planner.predict_ms("pool", 0.1)
    assert predicted is not None
    assert predicted < 500.0


def test_an_image_codec_is_sized_on_a_real_input_before_the_planner_chooses_on_it() -> None:
    candidates = [
        Candidate(id="input", bytes=150_000),
        Candidate(id="input", bytes=150_000, codec="jpeg"),  # the estimate before an image is seen: its raw size
        Candidate(id="pool", bytes=2_000),
        Candidate(id="output", bytes=0, edge_only=True),
    ]
    core = AgentCore(planner=Planner(candidates), chain=CHAIN, model_sha256=SHA, timeouts=TIMEOUTS)
    core.warmed_up([[10.0, 90.0]], 0.0)
    _settle_the_link(core)
    assert core.to_size() == {"input": ["jpeg"]}
    assert core.planner is not None
    core.planner.observe_hub(0.0, tail_ms={"input": 50.0})  # a hub's status: what its tail takes
    before = core.planner.predict_ms("input", 0.1, codec="jpeg")
    assert core.planner.bytes_of("input@jpeg") == core.planner.bytes_of("input")  # guessed as raw until sized
    core.sized("input", "jpeg", 15_000)
    assert core.to_size() == {}
    assert core.planner.bytes_of("input@jpeg") == 15_000
    after = core.planner.predict_ms("input", 0.1, codec="jpeg")
    assert before is not None
    assert after is not None
    assert before - after == pytest.approx(135_000 * 8 / 100e6 * 1000, rel=0.2)  # 135 KB less on a 100 Mbit/s link
    assert AgentCore(cut="input", timeouts=TIMEOUTS).to_size() == {}


def test_compressed_bytes_are_wanted_at_every_cut_and_exact_ones_nowhere() -> None:
    candidates = [
        Candidate(id="input", bytes=150_000, codec="jpeg"),
        Candidate(id="pool", bytes=8_000),
        Candidate(id="pool", bytes=2_000, codec="int8"),  # exact before anything is encoded
        Candidate(id="pool", bytes=2_000, codec="int8+zstd"),  # the compressor's saving is the data's
        Candidate(id="output", bytes=0, edge_only=True),
    ]
    core = AgentCore(planner=Planner(candidates), chain=CHAIN, model_sha256=SHA, timeouts=TIMEOUTS)
    assert core.to_size() == {"input": ["jpeg"], "pool": ["int8+zstd"]}
    core.sized("pool", "int8+zstd", 700)
    assert core.to_size() == {"input": ["jpeg"]}
    assert core.planner is not None
    assert core.planner.bytes_of("pool@int8+zstd") == 700


@pytest.mark.parametrize("abandoned", [True, False])
def test_a_request_that_gave_up_no_longer_counts_as_in_flight(abandoned: bool) -> None:  # noqa: FBT001
    core = _core()
    planner = core.planner
    assert planner is not None
    _settle_the_link(core)
    gave_up = core.request(1.0)
    if abandoned:
        core.abandoned(gave_up)
    now = 1.0
    for index in range(20):  # then one request at a time, each answered before the next is made
        now += 0.5 + 0.3 * (index % 3)
        request = _sent(core, now)
        cut = request.decision.cut_id
        if cut == "output":
            result = InferenceResult(outputs={}, cut_id=cut, timings=Timings(edge_ms=100.0, total_ms=100.0))
        else:
            result = _answered(cut)
        core.finished(request, result, now + 0.1)
    predicted = planner.predict_ms("output", now + 0.2)
    assert predicted is not None
    # Abandoned: nothing ever overlapped, the device is predicted at its 100 ms. Left in flight, every later
    # request seems to start beside it, and a wait for the device is predicted that cannot form.
    assert (predicted == pytest.approx(100.0)) == abandoned


def test_edge_only_requests_time_the_chain_one_in_eight_and_a_split_every_time() -> None:
    core = _core()  # no link known: the device runs everything, but for a look at pool now and then
    edge_only = []
    for index in range(64):
        request = core.request(float(index))
        cut = request.decision.cut_id
        if cut == "output":
            edge_only.append(request.time_segments)
            result = InferenceResult(outputs={}, cut_id=cut, timings=Timings(edge_ms=100.0, total_ms=100.0))
        else:
            assert request.time_segments  # a split's head runs on the chain: its segments are timed
            result = _answered(cut)
        core.finished(request, result, index + 0.1)
    assert edge_only[: 2 * SEGMENT_TIMES_EVERY] == ([False] * (SEGMENT_TIMES_EVERY - 1) + [True]) * 2
    assert not core.request(99.0, cut="output").time_segments  # the caller's cut: the planner asks nothing
    assert not AgentCore(cut="output").request(0.0).time_segments

"""The hub under load, at shutdown, with bad settings, and serving models from a directory.

To hold requests in the hub's queue deterministically (no sleeps, no timing
guesses), the tests park the hub's single worker thread on a gate: the tail
computation of an accepted request cannot start until the test opens the gate.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np
import pytest

from cloud_hub import Hub, HubConfig, serve_until_signalled
from edge_agent import (
    CLOUD_ONLY,
    EDGE_ONLY,
    EdgeAgent,
    HubError,
    Timeouts,
)
from edgecut._cli import main
from edgecut._exit import ExitCode
from models import partition, sha256_hex
from protocol import (
    ErrorCode,
    Ping,
    Topics,
    decode_reply,
    decode_status,
    encode_ping,
)
from protocol.errors import ConfigError
from tests._support import (
    assert_matches_full_model,
    parked,
    random_images,
    tiny_model,
    tiny_request,
    until,
    watching,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path


pytestmark = pytest.mark.broker

MODEL = "tiny"
INNER_CUT = "stem.out"
OTHER_CUT = "block.out"


# --- load and shutdown ------------------------------------------------------


async def test_overloaded_hub_answers_at_once_and_agents_fall_back(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    hub = await start_hub(max_queue=1, workers=1, preload=(f"{MODEL}:{CLOUD_ONLY}",))
    images = random_images(6, seed=1)
    patient = Timeouts(request=30)  # the accepted request waits out the parked phase, however slow the host
    async with EdgeAgent(broker_url, model=MODEL, cut=CLOUD_ONLY, prefix=prefix, threads=1, timeouts=patient) as agent:
        assert (await agent.infer(images[0])).hub_id == "hub0"  # preloaded: answered before the worker is parked
        async with parked(hub):
            tasks = [asyncio.create_task(agent.infer(image)) for image in images[1:]]
            # One request is accepted and waits for the parked worker; the other four find the
            # queue full and are answered 'overloaded' at once, while the worker is still parked.
            await until(lambda: sum(task.done() for task in tasks) == 4, "four overloaded replies")
            # A refused request is held until its reply's publish returns, which may come after the
            # agent has the reply: the one accepted request is what stays held.
            await until(lambda: hub.queue_depth == 1, "the refused requests' replies to be out")
        results = await asyncio.wait_for(asyncio.gather(*tasks), 30)
    fallbacks = [result.fallback for result in results if result.fallback is not None]
    assert len(fallbacks) == 4
    assert all(reason.startswith("hub overloaded:") for reason in fallbacks)
    assert all("hub0 has" in reason for reason in fallbacks)
    served = [result for result in results if result.fallback is None]
    assert [result.hub_id for result in served] == ["hub0"]
    for result, image in zip(results, images[1:], strict=True):
        assert_matches_full_model(result, image)
    await until(lambda: hub.queue_depth == 0, "the hub to count its last reply")  # counted once the broker acks


async def test_overloaded_without_fallback_is_an_error_naming_the_hub(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    hub = await start_hub(max_queue=1, workers=1)
    images = random_images(3, seed=2)
    async with EdgeAgent(broker_url, model=MODEL, cut=CLOUD_ONLY, prefix=prefix, fallback=False) as agent:
        await agent.infer(images[0])
        async with parked(hub):
            first = asyncio.create_task(agent.infer(images[1]))
            await until(lambda: hub.queue_depth == 1, "the first request to be queued")
            with pytest.raises(HubError, match=r"hub overloaded: .*fallback is off") as caught:
                await agent.infer(images[2])
            assert (caught.value.code, caught.value.hub_id) == (ErrorCode.OVERLOADED, "hub0")
        assert (await first).hub_id == "hub0"


async def test_shutdown_finishes_every_acceptedtiny_request(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    hub = await start_hub(workers=1, grace=30, hub_id="draining")
    images = random_images(6, seed=3)
    topics = Topics(prefix)
    timeouts = Timeouts(request=30)
    async with (
        watching(broker_url, topics.status("draining")) as watcher,
        EdgeAgent(broker_url, model=MODEL, cut=INNER_CUT, prefix=prefix, fallback=False, timeouts=timeouts) as agent,
    ):
        await watcher.status("online")
        await agent.infer(images[0])
        async with parked(hub) as gate:
            tasks = [asyncio.create_task(agent.infer(image)) for image in images[1:]]
            await until(lambda: hub.queue_depth == len(tasks), "every request to reach the hub")
            hub.request_shutdown()
            await until(lambda: not hub._accepting, "the hub to start draining")
            assert not any(task.done() for task in tasks)
            gate.set()
            results = await asyncio.wait_for(asyncio.gather(*tasks), 30)
        offline = await watcher.status("offline", 30)
    assert offline.queue_depth == 0
    assert [result.hub_id for result in results] == ["draining"] * len(tasks)
    for result, image in zip(results, images[1:], strict=True):
        assert result.fallback is None
        assert_matches_full_model(result, image)
    assert hub.replies_sent == 1 + len(tasks)
    assert hub.queue_depth == 0  # the offline status came after the drain


async def test_after_the_grace_period_every_waiting_request_is_answered_shutting_down(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    hub = await start_hub(workers=1, grace=0.2, hub_id="stuck", preload=(f"{MODEL}:{CLOUD_ONLY}",))
    topics = Topics(prefix)
    async with watching(broker_url, topics.status("stuck"), topics.response("raw")) as watcher:
        await watcher.status("online")
        await watcher.send(topics.request("raw"), tiny_request())  # preloaded: no load to wait for
        await watcher.next()
        async with parked(hub):
            stuck = [tiny_request(request_id=f"stuck-{i}") for i in range(3)]
            for request in stuck:
                await watcher.send(topics.request("raw"), request)
            await until(lambda: hub.queue_depth == len(stuck), "the requests to be queued")
            hub.request_shutdown()
            replies = [decode_reply((await watcher.next(30)).payload) for _ in stuck]
            offline = await watcher.status("offline", 30)  # the hub stops although its worker is stuck
        await asyncio.sleep(0.3)  # the parked run finishes now: its late answer must not go out
    assert sorted(reply.request_id for reply in replies) == sorted(request.request_id for request in stuck)
    assert {reply.error.code if reply.error else None for reply in replies} == {ErrorCode.SHUTTING_DOWN}
    assert watcher.received.empty()
    assert offline.queue_depth == 0


async def test_an_agent_sends_a_request_a_stopping_hub_gave_back_to_another_replica(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    stopping = await start_hub(workers=1, grace=0.2, hub_id="stopping", preload=(f"{MODEL}:{INNER_CUT}",))
    image = random_images(1, seed=4)[0]
    patient = Timeouts(request=30)  # the request's deadline spans another hub's start and the hand-back
    options = {"model": MODEL, "cut": INNER_CUT, "prefix": prefix, "fallback": False, "timeouts": patient}
    async with EdgeAgent(broker_url, **options) as agent:  # type: ignore[arg-type]
        assert (await agent.infer(image)).hub_id == "stopping"  # preloaded: no load to wait for
        async with parked(stopping):
            task = asyncio.create_task(agent.infer(image))
            await until(lambda: stopping.queue_depth == 1, "the request to reach the stopping hub")
            await start_hub(hub_id="other", preload=(f"{MODEL}:{INNER_CUT}",))  # joins; then the first hub stops
            stopping.request_shutdown()
            result = await asyncio.wait_for(task, 30)
    assert (result.hub_id, result.fallback) == ("other", None)
    assert_matches_full_model(result, image)


async def test_a_request_that_waited_past_its_deadline_is_refused(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    hub = await start_hub(workers=1, preload=(f"{MODEL}:{CLOUD_ONLY}",))
    topics = Topics(prefix)
    async with watching(broker_url, topics.response("raw")) as watcher:
        request = topics.request("raw")
        await watcher.send(request, tiny_request(), topics.response("raw"))  # preloaded: no load to wait for
        assert decode_reply((await watcher.next()).payload).ok
        async with parked(hub):
            await watcher.send(request, tiny_request(request_id="blocker"), topics.response("raw"))
            await watcher.send(request, tiny_request(request_id="hurried", deadline_ms=50), topics.response("raw"))
            await until(lambda: hub.queue_depth == 2, "both requests to be queued")
            await asyncio.sleep(0.1)  # the hurried request's 50 ms run out in the queue
        replies = {reply.request_id: reply for reply in [decode_reply((await watcher.next()).payload) for _ in "ab"]}
    assert replies["blocker"].ok
    hurried = replies["hurried"]
    assert hurried.error is not None
    assert hurried.error.code == ErrorCode.DEADLINE_EXCEEDED
    assert "past its 50 ms deadline" in hurried.error.message


async def test_status_reports_the_queue_depth_while_serving(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    # Reports not too often: a report in flight at shutdown can hang the hub (see the race below).
    hub = await start_hub(hub_id="reporter", status_interval=0.2, workers=1)
    topics = Topics(prefix)
    async with watching(broker_url, topics.status("reporter"), topics.response("raw")) as watcher:
        await watcher.send(topics.request("raw"), tiny_request(), topics.response("raw"))
        while (await watcher.next()).topic != topics.response("raw"):  # wait out the tail's loading
            pass
        async with parked(hub):
            await watcher.send(topics.request("raw"), tiny_request(), topics.response("raw"))
            await until(lambda: hub.queue_depth == 1, "the request to be queued")
            async with asyncio.timeout(20):
                while True:
                    incoming = await watcher.next()
                    if incoming.topic == topics.status("reporter"):
                        status = decode_status(incoming.payload)
                        if status.queue_depth == 1:
                            break
    assert (status.node_id, status.role, status.state) == ("reporter", "hub", "online")
    assert status.version


async def test_a_ping_is_answered_at_once_while_requests_wait(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    hub = await start_hub(workers=1)
    topics = Topics(prefix)
    async with watching(broker_url, topics.response("raw")) as watcher:
        await watcher.send(topics.request("raw"), tiny_request())
        assert decode_reply((await watcher.next()).payload).ok  # the tail is loaded
        async with parked(hub):
            await watcher.send(topics.request("raw"), tiny_request())
            await until(lambda: hub.queue_depth == 1, "the request to be queued")
            ping = Ping(request_id="probe-1", sent_at=time.time(), padding=bytes(50_000))
            await watcher.publish(topics.ping("raw"), encode_ping(ping), correlation=b"probe-1")
            pong = decode_reply((await watcher.next()).payload)  # while the request still waits
            assert (pong.request_id, pong.ok, pong.outputs, pong.queue_depth) == ("probe-1", True, {}, 1)
        assert decode_reply((await watcher.next()).payload).ok


async def test_status_reports_recent_tail_times_and_queue_waits(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    await start_hub(hub_id="profiler", status_interval=0.2)
    topics = Topics(prefix)
    async with watching(broker_url, topics.status("profiler"), topics.response("raw")) as watcher:
        for cut in (CLOUD_ONLY, INNER_CUT):
            await watcher.send(topics.request("raw"), tiny_request(cut))
        async with asyncio.timeout(20):
            while True:
                incoming = await watcher.next()
                if incoming.topic == topics.status("profiler"):
                    status = decode_status(incoming.payload)
                    if {CLOUD_ONLY, INNER_CUT} <= set(status.tail_ms.get(tiny_model().model_sha256, {})):
                        break
    # A chain's run times every later cut too: the hub knows tails nobody asked for yet.
    assert set(status.tail_ms[tiny_model().model_sha256]) == {CLOUD_ONLY, INNER_CUT, "pool"}
    assert status.queue_wait_ms is not None


# --- where replies go -------------------------------------------------------


@pytest.mark.parametrize(
    "response_topic",
    [
        None,  # no ResponseTopic
        "somewhere/else",  # not a response topic
        "RESP:victim",  # another agent's response topic: never honoured
    ],
)
async def test_replies_go_to_the_publishing_agent_whatever_the_response_topic_says(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]], response_topic: str | None
) -> None:
    await start_hub()
    topics = Topics(prefix)
    if response_topic is not None and response_topic.startswith("RESP:"):
        response_topic = topics.response(response_topic.removeprefix("RESP:"))
    async with watching(broker_url, topics.all_responses()) as watcher:
        request = tiny_request()
        await watcher.send(topics.request("raw"), request, response_topic)
        incoming = await watcher.next()
    assert incoming.topic == topics.response("raw")
    assert incoming.correlation == request.request_id.encode()
    assert decode_reply(incoming.payload).ok


async def test_a_request_naming_another_agent_is_refused(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    await start_hub()
    topics = Topics(prefix)
    async with watching(broker_url, topics.all_responses()) as watcher:
        request = tiny_request(agent_id="victim")  # published on raw's topic
        await watcher.send(topics.request("raw"), request, topics.response("victim"))
        incoming = await watcher.next()
    assert incoming.topic == topics.response("raw")
    reply = decode_reply(incoming.payload)
    assert reply.error is not None
    assert reply.error.code == ErrorCode.AGENT_MISMATCH
    assert "names agent 'victim' but was published by 'raw'" in reply.error.message


async def test_the_edge_only_cut_has_no_tail_to_serve(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    await start_hub()
    topics = Topics(prefix)
    async with watching(broker_url, topics.response("raw")) as watcher:
        edge_only = dataclasses.replace(
            tiny_request(INNER_CUT), cut_id=EDGE_ONLY
        )  # a valid request, a cut without tail
        await watcher.send(topics.request("raw"), edge_only, topics.response("raw"))
        reply = decode_reply((await watcher.next()).payload)
    assert reply.error is not None
    assert reply.error.code == ErrorCode.UNKNOWN_CUT
    assert "no tail to serve" in reply.error.message


# --- configuration ----------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"workers": 0}, "workers must be at least 1"),
        ({"max_queue": 0}, "max_queue must be at least 1"),
        ({"max_sessions": -1}, "max_sessions must be at least 1"),
        ({"use_zoo": False}, "nothing to serve"),
        ({"broker": "http://127.0.0.1:1883"}, "mqtt://"),
        ({"broker": "mqtt://127.0.0.1:1883?qos=2"}, "qos must be 0 or 1"),
        ({"hub_id": "a/b"}, "'a/b'"),
        ({"hub_id": "hub+1"}, "'hub+1'"),
        ({"hub_id": "$SYS"}, "'$SYS'"),
        ({"group": "g/h"}, "'g/h'"),
        ({"group": "g+"}, "'g+'"),
        ({"prefix": "a/#"}, "#"),
    ],
)
def test_bad_hub_settings_are_config_errors(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        HubConfig(**({"hub_id": "h"} | overrides))
    assert fragment in str(caught.value)


def test_missing_models_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        HubConfig(models_dir=tmp_path / "absent")
    a_file = tmp_path / "model.onnx"
    a_file.write_bytes(b"")
    with pytest.raises(ConfigError, match="does not exist"):
        HubConfig(models_dir=a_file)


def test_defaults_are_valid() -> None:
    config = HubConfig()
    assert config.use_zoo
    assert config.hub_id.startswith("hub-")
    assert config.hub_id.endswith(f"-{os.getpid()}")
    assert config.workers >= 1


# --- signals ----------------------------------------------------------------


async def test_sigterm_drains_and_a_second_signal_stops_at_once(broker_url: str, prefix: str) -> None:
    hub = Hub(HubConfig(broker=broker_url, prefix=prefix, hub_id="signalled", threads=1, workers=1))
    serving = asyncio.create_task(serve_until_signalled(hub))
    await asyncio.wait_for(hub.ready.wait(), 30)  # serve() runs: the handlers are installed
    topics = Topics(prefix)
    async with watching(broker_url, topics.response("raw")) as watcher:
        await watcher.send(topics.request("raw"), tiny_request(), topics.response("raw"))
        await watcher.next()
        async with parked(hub):
            await watcher.send(topics.request("raw"), tiny_request(), topics.response("raw"))
            await until(lambda: hub.queue_depth == 1, "the request to be queued")
            os.kill(os.getpid(), signal.SIGTERM)
            await until(lambda: hub.is_shutting_down, "the first signal to be handled")
            assert not serving.done()  # draining: waits for the parked request
            os.kill(os.getpid(), signal.SIGINT)
            assert await asyncio.wait_for(serving, 30) == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


async def test_sigint_once_is_a_clean_stop(broker_url: str, prefix: str) -> None:
    hub = Hub(HubConfig(broker=broker_url, prefix=prefix, hub_id="interrupted", threads=1))
    serving = asyncio.create_task(serve_until_signalled(hub))
    await asyncio.wait_for(hub.ready.wait(), 30)
    os.kill(os.getpid(), signal.SIGINT)
    assert await asyncio.wait_for(serving, 30) is None  # graceful: nothing forced
    assert hub.is_shutting_down
    assert not hub._connection.is_connected


# --- requests the hub cannot answer normally ----------------------------------


async def test_a_request_with_nowhere_to_answer_is_dropped(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]], caplog: pytest.LogCaptureFixture
) -> None:
    hub = await start_hub()
    topics = Topics(prefix)
    nameless = topics.all_requests().replace("+", "a" * 129)  # longer than an agent id may be
    async with watching(broker_url, topics.all_responses()) as watcher:
        with caplog.at_level(logging.WARNING, logger="edgecut.hub"):
            await watcher.send(nameless, tiny_request())
            good = tiny_request()
            await watcher.send(topics.request("raw"), good, topics.response("raw"))
            first = await watcher.next()  # the dropped request came first, so its reply would too
    assert first.correlation == good.request_id.encode()
    assert "names no valid agent to answer" in caplog.text
    await until(lambda: hub.queue_depth == 0, "the hub to settle")


async def test_an_undecodable_request_without_correlation_is_answered_by_its_peeked_id(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    await start_hub()
    topics = Topics(prefix)
    payload = msgpack.packb({"v": 99, "id": "peeked-1"})
    async with watching(broker_url, topics.response("raw")) as watcher:
        await watcher.publish(topics.request("raw"), payload, response_topic=topics.response("raw"))
        incoming = await watcher.next()
    assert incoming.correlation is None
    reply = decode_reply(incoming.payload)
    assert reply.request_id == "peeked-1"
    assert reply.error is not None
    assert reply.error.code == ErrorCode.UNSUPPORTED_VERSION


# --- the hub command --------------------------------------------------------


def test_hub_command_serves_until_sigterm(broker_url: str, prefix: str) -> None:
    """``edgecut hub`` in this process's main thread, stopped by a real SIGTERM once it is online."""
    topics = Topics(prefix)
    seen: list[str] = []

    async def watch_then_signal() -> None:
        async with watching(broker_url, topics.status("cli-hub"), topics.response("raw")) as watcher:
            await watcher.status("online", 60)
            seen.append("online")
            await watcher.send(topics.request("raw"), tiny_request(), topics.response("raw"))
            while (incoming := await watcher.next(30)).topic != topics.response("raw"):
                pass
            seen.append("ok" if decode_reply(incoming.payload).ok else "error")
            os.kill(os.getpid(), signal.SIGTERM)  # only now: the hub's handler is installed
            await watcher.status("offline", 30)
            seen.append("offline")

    helper = threading.Thread(target=asyncio.run, args=(watch_then_signal(),))
    helper.start()
    try:
        argv = ["hub", "--broker", broker_url, "--prefix", prefix, "--hub-id", "cli-hub", "--threads", "1"]
        code = main([*argv, "--workers", "2", "--max-queue", "8", "--max-queue-bytes", "1M", "--max-batch", "4"])
    finally:
        helper.join(60)
    assert code == ExitCode.OK
    assert seen == ["online", "ok", "offline"]


def test_hub_command_forced_by_a_second_signal_exits_130(
    broker_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two signals while a request is in flight (a cold resnet18 tail loads for ~1 s): exit 130, no traceback."""
    topics = Topics(prefix)
    signalled: list[int] = []
    caplog.set_level(logging.INFO, logger="edgecut.hub")

    def first_signal_handled() -> bool:
        return any("finishing accepted requests" in record.getMessage() for record in caplog.records)

    async def signal_twice_while_busy() -> None:
        async with watching(broker_url, topics.status("forced-hub")) as watcher:
            await watcher.status("online", 60)
            request = tiny_request(model_id="resnet18", model_sha256=_resnet18_sha256())
            request = dataclasses.replace(request, tensors={"image": np.zeros((1, 224, 224, 3), np.uint8)})
            await watcher.send(topics.request("raw"), request, None)
            async with asyncio.timeout(60):
                while decode_status((await watcher.next()).payload).queue_depth < 1:
                    pass
            os.kill(os.getpid(), signal.SIGTERM)  # graceful: waits for the request in flight
            # Pending together, SIGINT (2) would be delivered before SIGTERM (15): wait for the first.
            await until(first_signal_handled, "the hub to handle SIGTERM")
            os.kill(os.getpid(), signal.SIGINT)  # forced
            signalled.append(2)

    helper = threading.Thread(target=asyncio.run, args=(signal_twice_while_busy(),))
    helper.start()
    try:
        argv = ["hub", "--broker", broker_url, "--prefix", prefix, "--hub-id", "forced-hub", "--threads", "1"]
        code = main([*argv, "--status-interval", "0.05"])
    finally:
        helper.join(60)
    assert signalled == [2]
    assert code == ExitCode.INTERRUPTED
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def _resnet18_sha256() -> str:
    return sha256_hex(partition.load_model("resnet18")[1].SerializeToString())


# --- shutdown races ---------------------------------------------------------


@pytest.mark.slow
async def test_shutdown_never_hangs_while_a_status_report_is_in_flight(broker_url: str, prefix: str) -> None:
    hung = None
    for cycle in range(1000):  # the race hits roughly once in 10-200 cycles
        # A status report every 0.3 ms keeps the reporter inside publish() most of the time.
        config = HubConfig(broker=broker_url, prefix=prefix, hub_id=f"race{cycle}", threads=1, status_interval=0.0003)
        hub = Hub(config)
        serving = asyncio.create_task(hub.serve())
        await asyncio.wait_for(hub.ready.wait(), 10)
        await asyncio.sleep(0.002 + (cycle % 7) * 0.0003)
        hub.request_shutdown()
        done, _ = await asyncio.wait([serving], timeout=2)
        if not done:
            hung = cycle
            await _unstick(config.hub_id, serving)
            break
    assert hung is None, f"Hub.serve() did not return within 2 s of request_shutdown() (cycle {hung})"


async def _unstick(hub_id: str, serving: asyncio.Task[None]) -> None:
    """Cancel the hub's own tasks until serve() returns: a repeated cancel gets through."""
    for _ in range(100):
        for task in asyncio.all_tasks():
            if task.get_name().startswith(f"edgecut[{hub_id}].status"):
                task.cancel()
        done, _ = await asyncio.wait([serving], timeout=0.1)
        if done:
            return
    pytest.fail("the hub could not be stopped even by repeated cancels")

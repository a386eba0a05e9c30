"""EdgeAgent edge cases: input checks, odd replies from a scripted hub, no tail, resend after reconnect.

The scripted hub is a plain MQTT client on the real broker that answers the
agent's requests the way a buggy or hostile hub might; the agent cannot tell
it from a real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING

import msgpack
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from cloud_hub import Hub, HubConfig, LocalBroker
from edge_agent import (
    CLOUD_ONLY,
    EDGE_ONLY,
    EdgeAgent,
    HubError,
    InvalidReplyError,
    RequestTimeoutError,
    Timeouts,
)
from edge_agent._outbox import Pending
from models import partition
from protocol import (
    ErrorCode,
    InferenceReply,
    NodeStatus,
    ReplyError,
    Topics,
    decode_request,
    encode_reply,
    encode_status,
)
from protocol.errors import ModelError, ProtocolError, TransportError
from protocol.lifecycle import cancel_and_wait
from protocol.mqtt import Backoff, Connection, Incoming
from tests._support import tiny_logits, tiny_model, until, watching

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    from protocol import InferenceRequest

pytestmark = pytest.mark.broker

MODEL = "tiny"
INNER_CUT = "stem.out"

Answer = list[tuple[bytes, bytes | None]]
"""What the scripted hub publishes for one request: (payload, correlation) pairs."""


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def _tail_outputs(request: InferenceRequest) -> dict[str, np.ndarray]:
    tail = tiny_model().halves(request.cut_id).tail
    assert tail is not None
    return tail.run(request.tensors)


def _reply(request: InferenceRequest, *, error: ReplyError | None = None) -> bytes:
    outputs = {} if error else _tail_outputs(request)
    reply = InferenceReply(
        request_id=request.request_id,
        hub_id="scripted",
        outputs=outputs,
        error=error,
        queue_ms=0.0,
        compute_ms=0.0,
        queue_depth=0,
    )
    return encode_reply(reply)


@contextlib.asynccontextmanager
async def _scripted_hub(url: str, prefix: str, answer: Callable[[InferenceRequest], Answer]) -> AsyncIterator[None]:
    """Answer every request on ``prefix`` with whatever ``answer`` returns, on its response topic."""
    requests: asyncio.Queue[Incoming | None] = asyncio.Queue()
    connection = Connection(
        url,
        client_id=f"scripted-{uuid.uuid4().hex[:8]}",
        subscriptions=[(Topics(prefix).all_requests(), 1)],
        on_message=requests.put_nowait,
    )

    async def serve() -> None:
        while (incoming := await requests.get()) is not None:
            assert incoming.response_topic is not None
            for payload, correlation in answer(decode_request(incoming.payload)):
                await connection.publish(incoming.response_topic, payload, qos=1, correlation=correlation, timeout=5)

    async with connection:
        await connection.wait_connected(10)
        task = asyncio.create_task(serve())
        try:
            yield
        finally:
            # Stopped by a sentinel, not task.cancel(): on Python 3.11 asyncio.wait_for (inside
            # aiomqtt's publish) can swallow a cancel that lands as the PUBACK arrives.
            requests.put_nowait(None)
            await asyncio.wait_for(task, 10)


def _agent(url: str, prefix: str, **options: object) -> EdgeAgent:
    settings: dict[str, object] = {"model": MODEL, "cut": CLOUD_ONLY, "prefix": prefix, "threads": 1}
    return EdgeAgent(url, **(settings | options))  # type: ignore[arg-type]


# --- life cycle and inputs --------------------------------------------------


async def test_model_is_only_there_inside_the_block_and_the_block_runs_once(broker_url: str, prefix: str) -> None:
    agent = _agent(broker_url, prefix)
    with pytest.raises(RuntimeError, match="inside 'async with EdgeAgent"):
        _ = agent.model
    async with agent:
        assert agent.model.model_id == MODEL
        with pytest.raises(RuntimeError, match="not re-entrant"):
            await agent.__aenter__()


@pytest.mark.parametrize(
    ("url", "agent_id", "expected"),
    [
        ("mqtt://cam-07:secret@broker:1883", None, "cam-07"),  # the broker checks this name: use it
        ("mqtt://cam-07:secret@broker:1883", "other", "other"),
        ("mqtts://broker:8883", None, "agent-"),
    ],
)
def test_the_agent_id_defaults_to_the_brokers_user_name(url: str, agent_id: str | None, expected: str) -> None:
    agent = EdgeAgent(url, agent_id=agent_id)
    assert agent.agent_id.startswith(expected)
    assert agent.topics.request(agent.agent_id).endswith(f"/req/{agent.agent_id}")


async def test_an_unknown_default_cut_fails_before_connecting(prefix: str) -> None:
    agent = _agent("mqtt://127.0.0.1:1", prefix, cut="no.such.cut")  # nothing listens on port 1
    with pytest.raises(ModelError, match=r"no cut 'no\.such\.cut'"):
        await agent.__aenter__()


async def test_auto_with_no_hub_learns_with_the_fewest_bytes_then_stays_on_the_device(
    broker_url: str, prefix: str
) -> None:
    timeouts = Timeouts(request=0.3, retry=None)
    async with _agent(broker_url, prefix, cut="auto", timeouts=timeouts) as agent:
        assert agent.cut == "auto"
        remote = [cut for cut in agent.model.candidates if cut.id != EDGE_ONLY]
        first = await agent.infer(_image())
        assert first.cut_id == min(remote, key=lambda cut: cut.bytes).id
        assert "learning the link and the hub" in first.reason
        assert first.fallback is not None  # nobody answered: the agent ran the tail itself
        second = await agent.infer(_image())
        assert (second.cut_id, second.fallback) == (EDGE_ONLY, None)
        assert second.reason.startswith("no hub answered lately")
        assert second.predicted_ms > 0


async def test_inputs_are_checked_before_anything_is_sent(broker_url: str, prefix: str) -> None:
    image = _image()
    async with _agent(broker_url, prefix, cut=EDGE_ONLY) as agent:
        by_name = await agent.infer({"image": image[np.newaxis]})
        np.testing.assert_allclose(by_name.outputs["logits"], tiny_logits(image), atol=1e-5)
        with pytest.raises(ValueError, match=r"missing input 'image' \(uint8\['N', 32, 32, 3\]\)"):
            await agent.infer({"picture": image})
        with pytest.raises(ValueError, match=r"input 'image' is float32\[1, 32, 32, 3\], expected uint8"):
            await agent.infer(image.astype(np.float32))
        with pytest.raises(ValueError, match=r"input 'image' is uint8\[1, 16, 16, 3\]"):
            await agent.infer(image[:16, :16])
        with pytest.raises(ModelError, match="no cut 'nowhere'"):
            await agent.infer(image, cut="nowhere")


def _two_input_model(path: Path) -> Path:
    """y = relu(a + b): two model inputs, so a single array is ambiguous."""
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 4])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    nodes = [
        helper.make_node("Add", ["a", "b"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["y"], name="relu"),
    ]
    model = helper.make_model(helper.make_graph(nodes, "two", [a, b], [y]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


async def test_a_two_input_model_over_the_wire(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]], tmp_path: Path
) -> None:
    model = _two_input_model(tmp_path / "two.onnx")
    await start_hub(models_dir=tmp_path, use_zoo=False)
    a = np.array([[1.0, -2.0, 3.0, -4.0]], dtype=np.float32)
    b = np.array([[0.5, 0.5, -5.0, 5.0]], dtype=np.float32)
    async with EdgeAgent(broker_url, model=model, prefix=prefix, fallback=False, threads=1) as agent:
        with pytest.raises(ValueError, match="two takes 2 inputs; pass them by name"):
            await agent.infer(a)
        for cut in (CLOUD_ONLY, "s"):
            result = await agent.infer({"a": a, "b": b}, cut=cut)
            assert (result.hub_id, result.fallback) == ("hub0", None)
            np.testing.assert_allclose(result.outputs["y"], np.maximum(a + b, 0))
        unbatched = await agent.infer({"a": a[0], "b": b[0]}, cut=CLOUD_ONLY)  # a batch axis is added
    np.testing.assert_allclose(unbatched.outputs["y"], np.maximum(a + b, 0))


async def test_a_reply_of_megabytes_is_read_whole(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]], tmp_path: Path
) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1 << 19])  # 2 MiB each way: read off the loop
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1 << 19])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "wide", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "wide.onnx")
    await start_hub(models_dir=tmp_path, use_zoo=False)
    values = np.random.default_rng(3).standard_normal((1, 1 << 19)).astype(np.float32)
    async with EdgeAgent(
        broker_url, model=tmp_path / "wide.onnx", cut=CLOUD_ONLY, prefix=prefix, fallback=False
    ) as agent:
        result = await agent.infer(values)
    assert result.bytes_received > 2 << 20
    np.testing.assert_array_equal(result.outputs["y"], np.maximum(values, 0))


# --- odd replies --------------------------------------------------------------


async def test_an_undecodable_reply_falls_back(broker_url: str, prefix: str) -> None:
    image = _image(1)
    async with (
        _scripted_hub(broker_url, prefix, lambda r: [(b"\xc1garbage", r.request_id.encode())]),
        _agent(broker_url, prefix, cut=INNER_CUT) as agent,
    ):
        result = await agent.infer(image)
    assert result.fallback is not None
    assert result.fallback.startswith("undecodable reply:")
    assert result.hub_id is None
    np.testing.assert_allclose(result.outputs["logits"], tiny_logits(image), atol=1e-4)


async def test_an_undecodable_reply_without_fallback_is_an_error(broker_url: str, prefix: str) -> None:
    async with (
        _scripted_hub(broker_url, prefix, lambda r: [(b"\xc1garbage", r.request_id.encode())]),
        _agent(broker_url, prefix, fallback=False) as agent,
    ):
        with pytest.raises(InvalidReplyError, match=r"undecodable reply: .*fallback is off"):
            await agent.infer(_image())


async def test_a_reply_without_correlation_data_is_matched_by_its_id(broker_url: str, prefix: str) -> None:
    image = _image(2)
    async with (
        _scripted_hub(broker_url, prefix, lambda r: [(_reply(r), None)]),
        _agent(broker_url, prefix, cut=INNER_CUT, fallback=False) as agent,
    ):
        result = await agent.infer(image)
    assert (result.hub_id, result.fallback) == ("scripted", None)
    np.testing.assert_allclose(result.outputs["logits"], tiny_logits(image), atol=1e-4)


async def test_stray_and_duplicate_replies_are_ignored(
    broker_url: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    def answer(request: InferenceRequest) -> Answer:
        stray = _reply(request, error=ReplyError(code=ErrorCode.INTERNAL, message="for someone else"))
        return [
            (stray, b"not-a-pending-request"),
            (b"", None),  # no correlation, no id to peek: matches nothing
            (_reply(request), request.request_id.encode()),
            (_reply(request, error=ReplyError(code="bad_request", message="late")), request.request_id.encode()),
        ]

    images = [_image(3), _image(4)]
    with caplog.at_level(logging.DEBUG, logger="edgecut"):
        async with _scripted_hub(broker_url, prefix, answer), _agent(broker_url, prefix, fallback=False) as agent:
            results = [await agent.infer(image) for image in images]
            await until(lambda: _ignored(caplog) >= 2 * len(images), "the late replies to be ignored")
    # Ignored on purpose, not by accident: a handler that raised would be logged by the connection.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    for result, image in zip(results, images, strict=True):
        assert (result.hub_id, result.fallback) == ("scripted", None)
        np.testing.assert_allclose(result.outputs["logits"], tiny_logits(image), atol=1e-4)


async def test_a_second_reply_in_the_same_read_is_ignored() -> None:
    """Two replies to one request can be dispatched back to back, before the waiting task runs."""
    agent = _agent("mqtt://127.0.0.1:1", "test")  # never entered: only its reply matching is exercised
    waiting = asyncio.get_running_loop().create_future()
    agent._outbox.pending["r1"] = Pending(b"", float("inf"), waiting)
    first = Incoming(topic="t", payload=b"first", qos=1, correlation=b"r1")
    second = Incoming(topic="t", payload=b"second", qos=1, correlation=b"r1")
    agent._outbox.on_reply(first)
    agent._outbox.on_reply(second)  # the request is settled but still pending: must not raise
    assert waiting.result() == b"first"


def _ignored(caplog: pytest.LogCaptureFixture) -> int:
    return sum("late or duplicate" in record.getMessage() for record in caplog.records)


def _forged(request: InferenceRequest, *, request_id: str | None = None, **outputs: np.ndarray) -> bytes:
    """A successful reply with these outputs, as a hostile or buggy hub might send."""
    reply = InferenceReply(
        request_id=request_id or request.request_id,
        hub_id="forger",
        outputs=outputs,
        error=None,
        queue_ms=0.0,
        compute_ms=0.0,
        queue_depth=0,
    )
    return encode_reply(reply)


def _declaring(reply: bytes, shape: list[int]) -> bytes:
    """``reply`` with each output declaring ``shape`` over the data it has: decoding it would fail."""
    fields = msgpack.unpackb(reply)
    for output in fields["outputs"].values():
        output["shape"] = shape
    return msgpack.packb(fields)


MISFITS: dict[str, Callable[[InferenceRequest], bytes]] = {
    "another request's id": lambda r: _forged(r, request_id="someone-else", logits=np.zeros((2, 10), np.float32)),
    "another batch size": lambda r: _forged(r, logits=np.zeros((1, 10), np.float32)),
    "another dtype": lambda r: _forged(r, logits=np.zeros((2, 10), np.float64)),
    "another output name": lambda r: _forged(r, scores=np.zeros((2, 10), np.float32)),
    # checked before a byte is decoded: decoding would allocate 32 MiB and find 80 bytes of data
    "a shape without its data": lambda r: _declaring(_forged(r, logits=np.zeros((2, 10), np.float32)), [2, 1 << 22]),
}


@pytest.mark.parametrize("misfit", sorted(MISFITS))
async def test_a_reply_that_does_not_fit_the_request_is_not_returned(broker_url: str, prefix: str, misfit: str) -> None:
    batch = np.stack([_image(8), _image(9)])
    forge = MISFITS[misfit]
    async with (
        _scripted_hub(broker_url, prefix, lambda r: [(forge(r), r.request_id.encode())]),
        _agent(broker_url, prefix, cut=INNER_CUT) as agent,
    ):
        result = await agent.infer(batch)
        assert result.fallback is not None
        assert result.fallback.startswith("the reply does not fit the request:")
        np.testing.assert_allclose(result.outputs["logits"][1], tiny_logits(batch[1])[0], atol=1e-4)
        agent._fallback = False
        with pytest.raises(InvalidReplyError, match="does not fit the request"):
            await agent.infer(batch)


@pytest.mark.parametrize("code", [ErrorCode.INTERNAL, ErrorCode.DEADLINE_EXCEEDED, ErrorCode.OVERLOADED])
async def test_errors_the_local_tail_can_make_good_fall_back(broker_url: str, prefix: str, code: str) -> None:
    image = _image(5)
    error = ReplyError(code=code, message="scripted trouble")
    async with (
        _scripted_hub(broker_url, prefix, lambda r: [(_reply(r, error=error), r.request_id.encode())]),
        _agent(broker_url, prefix) as agent,
    ):
        result = await agent.infer(image)
    assert result.fallback == f"hub {code}: scripted trouble"
    assert result.timings.fallback_ms > 0
    np.testing.assert_allclose(result.outputs["logits"], tiny_logits(image), atol=1e-4)


@pytest.mark.parametrize("code", [ErrorCode.INTERNAL, ErrorCode.DEADLINE_EXCEEDED, ErrorCode.OVERLOADED])
async def test_those_errors_without_fallback_are_hub_errors_not_timeouts(
    broker_url: str, prefix: str, code: str
) -> None:
    error = ReplyError(code=code, message="scripted trouble")
    async with (
        _scripted_hub(broker_url, prefix, lambda r: [(_reply(r, error=error), r.request_id.encode())]),
        _agent(broker_url, prefix, fallback=False) as agent,
    ):
        with pytest.raises(HubError, match=r"hub .*: scripted trouble, and fallback is off") as caught:
            await agent.infer(_image())
    assert (caught.value.code, caught.value.hub_id) == (code, "scripted")


@pytest.mark.parametrize("code", [ErrorCode.BAD_REQUEST, ErrorCode.UNKNOWN_CUT, "some_future_code"])
async def test_other_errors_are_raised_with_their_code(broker_url: str, prefix: str, code: str) -> None:
    error = ReplyError(code=code, message="scripted refusal")
    async with (
        _scripted_hub(broker_url, prefix, lambda r: [(_reply(r, error=error), r.request_id.encode())]),
        _agent(broker_url, prefix) as agent,
    ):
        with pytest.raises(HubError) as caught:
            await agent.infer(_image())
    assert (caught.value.code, caught.value.hub_id) == (code, "scripted")
    assert str(caught.value) == f"scripted: {code}: scripted refusal"


# --- sending again --------------------------------------------------------------


def _lose_the_first(reply: Callable[[InferenceRequest], bytes]) -> Callable[[InferenceRequest], Answer]:
    """A hub that loses the first copy of each request (as a dying hub or a dropped message would)."""
    seen: set[str] = set()

    def answer(request: InferenceRequest) -> Answer:
        if request.request_id not in seen:
            seen.add(request.request_id)
            return []
        return [(reply(request), request.request_id.encode())]

    return answer


async def test_an_unanswered_request_is_sent_again_after_the_retry_interval(broker_url: str, prefix: str) -> None:
    image = _image(10)
    timeouts = Timeouts(request=10, retry=0.2)
    async with (
        _scripted_hub(broker_url, prefix, _lose_the_first(_reply)),
        _agent(broker_url, prefix, cut=INNER_CUT, fallback=False, timeouts=timeouts) as agent,
    ):
        result = await agent.infer(image)
        assert agent._outbox.publishes >= 2  # a third where the answer to the second took over 0.2 s
    assert (result.hub_id, result.fallback) == ("scripted", None)
    np.testing.assert_allclose(result.outputs["logits"], tiny_logits(image), atol=1e-4)


async def test_without_retries_a_lost_request_runs_out_its_deadline(broker_url: str, prefix: str) -> None:
    timeouts = Timeouts(request=0.5, retry=None)
    async with (
        _scripted_hub(broker_url, prefix, _lose_the_first(_reply)),
        _agent(broker_url, prefix, fallback=False, timeouts=timeouts) as agent,
    ):
        with pytest.raises(RequestTimeoutError, match="no reply within the deadline"):
            await agent.infer(_image())
        assert agent._outbox.publishes == 1


async def test_a_shutting_down_answer_sends_the_request_again(broker_url: str, prefix: str) -> None:
    image = _image(11)
    stopping = ReplyError(code=ErrorCode.SHUTTING_DOWN, message="scripted stop")
    answers = iter([[("stop", stopping)], [("ok", None)]])

    def answer(request: InferenceRequest) -> Answer:
        ((_, error),) = next(answers)
        return [(_reply(request, error=error), request.request_id.encode())]

    async with (
        _scripted_hub(broker_url, prefix, answer),
        _agent(broker_url, prefix, cut=INNER_CUT, fallback=False, timeouts=Timeouts(retry=None)) as agent,
    ):
        result = await agent.infer(image)
        assert agent._outbox.publishes == 2
    assert result.fallback is None
    np.testing.assert_allclose(result.outputs["logits"], tiny_logits(image), atol=1e-4)


# --- no tail, no hub ----------------------------------------------------------


async def test_a_head_only_split_without_a_hub_cannot_fall_back(broker_url: str, prefix: str, tmp_path: Path) -> None:
    model_id, model = partition.load_model(MODEL)
    partition.save_split(partition.split(model, INNER_CUT, model_id=model_id), tmp_path)
    (tmp_path / "tail.onnx").unlink()
    timeouts = Timeouts(request=0.3)
    async with EdgeAgent(broker_url, model=tmp_path, prefix=prefix, timeouts=timeouts) as agent:
        assert agent.model.halves(INNER_CUT).tail is None
        with pytest.raises(RequestTimeoutError, match="no reply within the deadline, and this agent does not hold"):
            await agent.infer(_image())


# --- reconnects ----------------------------------------------------------------


async def test_a_request_sent_before_a_broker_restart_is_sent_again(own_broker: LocalBroker, prefix: str) -> None:
    image = _image(6)
    # The deadline counts from the first publish and covers a broker restart, a hub's start and its first
    # load: 22 s of it on a loaded host with the embedded broker (make test-stress), so a minute.
    agent = _agent(own_broker.url, prefix, timeouts=Timeouts(request=60, retry=None), fallback=False)
    # The agent reconnects quickly, after the broker but before the hub, in two steps (the flush after
    # reconnecting, then the hub's online status); no timer can cover for it.
    agent._connection._backoff = Backoff(initial=0.01, maximum=0.05)
    hub = Hub(HubConfig(broker=own_broker.url, prefix=prefix, hub_id="late-hub", threads=1))
    serving: asyncio.Task[None] | None = None
    try:
        async with agent:
            task = asyncio.create_task(agent.infer(image))
            await until(lambda: agent._outbox.publishes == 1, "the request to be published")
            own_broker.kill()  # the request is lost with the broker: nobody had subscribed
            own_broker.start()
            await until(lambda: agent._outbox.publishes == 2, "the agent to publish again after reconnecting")
            serving = asyncio.create_task(hub.serve())  # only now: the second publish reached nobody either
            result = await asyncio.wait_for(task, 90)
            assert agent._connection.connects == 2
            assert agent._outbox.publishes == 3  # once more when the hub announced itself
    finally:
        hub.request_shutdown()
        if serving is not None:
            await serving
    assert (result.hub_id, result.fallback) == ("late-hub", None)
    np.testing.assert_allclose(result.outputs["logits"], tiny_logits(image), atol=1e-4)


async def test_a_request_a_dead_hub_held_is_sent_again_when_its_will_arrives(broker_url: str, prefix: str) -> None:
    """A hub dies holding the request: its last will (offline) makes the agent send it again at once."""
    image = _image(12)
    topics = Topics(prefix)
    agent = _agent(broker_url, prefix, cut=INNER_CUT, fallback=False, timeouts=Timeouts(request=20, retry=None))
    hub = Hub(HubConfig(broker=broker_url, prefix=prefix, hub_id="survivor", threads=1))
    serving: asyncio.Task[None] | None = None
    try:
        async with agent, watching(broker_url) as status_source:
            async with watching(broker_url, topics.shared_requests()) as doomed:  # takes requests, never answers
                online = NodeStatus(node_id="doomed", role="hub", state="online", sent_at=time.time())
                await status_source.publish(topics.status("doomed"), encode_status(online))  # as a hub would
                await until(lambda: not agent._outbox._awaiting_hub, "the agent to see a hub online")
                task = asyncio.create_task(agent.infer(image))
                await doomed.next()
            serving = asyncio.create_task(hub.serve())  # the request is gone with the doomed hub
            await asyncio.wait_for(hub.ready.wait(), 10)
            assert agent._outbox.publishes == 1
            offline = NodeStatus(node_id="doomed", role="hub", state="offline", sent_at=time.time())
            await status_source.publish(topics.status("doomed"), encode_status(offline))  # as its will would
            result = await asyncio.wait_for(task, 30)
            assert agent._outbox.publishes == 2
    finally:
        hub.request_shutdown()
        if serving is not None:
            await serving
    assert (result.hub_id, result.fallback) == ("survivor", None)
    np.testing.assert_allclose(result.outputs["logits"], tiny_logits(image), atol=1e-4)


async def test_a_failed_start_leaves_no_worker_thread(prefix: str) -> None:
    agent = _agent("mqtt://127.0.0.1:1", prefix, cut="no.such.cut")
    with pytest.raises(ModelError):
        await agent.__aenter__()
    name = f"edgecut[{agent.agent_id}].ort"
    await until(lambda: not any(t.name.startswith(name) for t in threading.enumerate()), "the thread to end", 1)


async def test_a_start_cancelled_during_its_pings_leaves_no_connection_running(broker_url: str, prefix: str) -> None:
    agent = EdgeAgent(broker_url, model="tiny", cut="auto", prefix=prefix, threads=1, agent_id="cancelled-start")
    entering = asyncio.create_task(agent.__aenter__())  # no hub: the start's first ping waits out its timeout
    await until(lambda: agent.connected, "the agent to connect and ping")
    await cancel_and_wait(entering, again_after=0.05)  # again: on 3.11 aiomqtt's publish may swallow one
    assert entering.cancelled()
    supervisors = [task for task in asyncio.all_tasks() if task.get_name() == "edgecut[cancelled-start].mqtt"]
    assert not agent.connected
    assert all(task.done() for task in supervisors)


async def test_a_request_over_the_message_limit_falls_back_and_without_fallback_says_why(
    broker_url: str, prefix: str
) -> None:
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)  # 3 KB to send as it is
    options = {"model": MODEL, "cut": CLOUD_ONLY, "prefix": prefix, "threads": 1, "max_message_bytes": 2048}
    async with EdgeAgent(broker_url, **options) as agent:  # type: ignore[arg-type]
        result = await agent.infer(image)
    assert result.fallback is not None
    assert "exceeds the 2048 byte limit" in result.fallback
    np.testing.assert_allclose(result.outputs["logits"], tiny_logits(image), atol=1e-4)
    async with EdgeAgent(broker_url, fallback=False, **options) as agent:  # type: ignore[arg-type]
        with pytest.raises(ProtocolError, match="exceeds the 2048 byte limit") as caught:
            await agent.infer(image)
    assert caught.value.code == ErrorCode.TOO_LARGE


async def test_closing_the_agent_ends_the_requests_under_way_with_results(broker_url: str, prefix: str) -> None:
    images = [np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8) for seed in range(3)]
    agent = EdgeAgent(broker_url, model=MODEL, cut=INNER_CUT, prefix=prefix, threads=1, timeouts=Timeouts(request=30))
    await agent.__aenter__()
    waiting = [asyncio.create_task(agent.infer(image)) for image in images]  # no hub: they wait for replies
    await until(lambda: len(agent._outbox.pending) == len(images), "every request to wait for its reply")
    await agent.__aexit__(None, None, None)
    for image, task in zip(images, waiting, strict=True):
        result = task.result()  # done: the close waited for them
        assert result.fallback == "the agent closed before a reply came"  # not their 30 s deadline's
        np.testing.assert_allclose(result.outputs["logits"], tiny_logits(image), atol=1e-4)
    with pytest.raises(TransportError, match="is closing"):
        await agent.infer(images[0])


async def test_closing_an_agent_without_fallback_fails_its_waiting_requests_saying_why(
    broker_url: str, prefix: str
) -> None:
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    agent = EdgeAgent(
        broker_url, model=MODEL, cut=INNER_CUT, prefix=prefix, fallback=False, timeouts=Timeouts(request=30)
    )
    await agent.__aenter__()
    waiting = asyncio.create_task(agent.infer(image))
    await until(lambda: len(agent._outbox.pending) == 1, "the request to wait for its reply")
    await agent.__aexit__(None, None, None)
    with pytest.raises(TransportError, match="the agent closed before a reply came"):
        waiting.result()


async def test_a_request_that_waited_for_the_busy_device_says_how_long(broker_url: str, prefix: str) -> None:
    busy = threading.Event()
    async with _agent(broker_url, prefix, cut=EDGE_ONLY) as agent:
        loop = asyncio.get_running_loop()
        occupied = loop.run_in_executor(agent._executor, busy.wait, 30)  # the device's one thread, held
        request = asyncio.create_task(agent.infer(_image()))
        await asyncio.sleep(0.1)  # the request is made and queued behind the held thread
        busy.set()
        result = await request
        await occupied
    timings = result.timings
    assert timings.device_queue_ms >= 50  # at least the 0.1 s it was held after the request was made, less its start
    assert timings.total_ms >= timings.device_queue_ms + timings.edge_ms

"""What a hub holds is bounded by its configuration, and a request runs at most once.

Senders choose batch sizes, payload sizes, how often they repeat a request and
what their clocks say; none of that may make the hub hold more memory than
configured, run a tail twice, or run work nobody waits for.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models import partition, sha256_hex
from protocol import ErrorCode, InferenceRequest, Topics, decode_reply, encode_request
from tests._support import TINY_TAIL, parked, tiny_request, until, watching

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from cloud_hub import Hub
    from protocol import InferenceReply
    from tests._support import Watcher

pytestmark = pytest.mark.broker


async def _ask(watcher: Watcher, topics: Topics, request: InferenceRequest) -> InferenceReply:
    await watcher.send(topics.request("raw"), request)
    return decode_reply((await watcher.next(30)).payload)


def _batch(count: int, **changes: object) -> InferenceRequest:
    """A tiny request at the input cut with ``count`` images."""
    image = np.zeros((count, 32, 32, 3), np.uint8)
    return tiny_request(tensors={"image": image}, **changes)


async def test_a_batch_over_max_batch_is_refused_naming_the_limit(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    hub = await start_hub(max_batch=4)
    topics = Topics(prefix)
    async with watching(broker_url, topics.response("raw")) as watcher:
        fits = await _ask(watcher, topics, _batch(4))
        over = await _ask(watcher, topics, _batch(5))
    assert fits.ok
    assert fits.outputs["logits"].shape == (4, 10)
    assert over.error is not None
    assert over.error.code == ErrorCode.BAD_REQUEST
    assert over.error.message == "a batch of 5 is more than this hub's max_batch of 4"
    assert hub.tails_run == 1


def _saved(graph: onnx.GraphProto, path: Path) -> Path:
    """``graph`` as an opset-17 model file at ``path``."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _positives_model(path: Path) -> Path:
    """The (row, column) of every positive x, as float: ``[count, 2]``, a first axis the data decides."""
    graph = helper.make_graph(
        [
            helper.make_node("Greater", ["x", "zero"], ["positive"]),
            helper.make_node("NonZero", ["positive"], ["where"]),
            helper.make_node("Transpose", ["where"], ["found"]),
            helper.make_node("Cast", ["found"], ["y"], to=TensorProto.FLOAT),
        ],
        "positives",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.zeros((), np.float32), "zero")],
    )
    return _saved(graph, path)


async def test_a_first_axis_the_data_decides_is_no_batch(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]], tmp_path: Path
) -> None:
    path = _positives_model(tmp_path / "positives.onnx")
    await start_hub(models_dir=tmp_path, use_zoo=False, max_batch=4)
    found = next(cut for cut in partition.enumerate_cuts(onnx.load(path)) if cut.id == "found")
    assert found.tensors[0].shape[0] != "N"  # a symbol of its own, not the batch axis
    topics = Topics(prefix)
    rows = np.stack([np.arange(100), np.arange(100) % 8], axis=1).astype(np.int64)  # 100 positives, one image
    request = tiny_request(
        model_id="positives", model_sha256=sha256_hex(path.read_bytes()), cut_id="found", tensors={"found": rows}
    )
    async with watching(broker_url, topics.response("raw")) as watcher:
        reply = await _ask(watcher, topics, request)
    assert reply.ok, reply.error  # 100 rows with max_batch 4: the batch (N) is 1 here
    np.testing.assert_array_equal(reply.outputs["y"], rows.astype(np.float32))


async def test_queued_bytes_are_bounded_as_well_as_queued_requests(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    size = len(encode_request(tiny_request()))  # ~3 KB each
    # One agent may hold 2.25 of them.
    hub = await start_hub(workers=1, max_queue=64, max_queue_bytes=size * 9 // 2, preload=(TINY_TAIL,))
    topics = Topics(prefix)
    agents = ("raw", "other", "third")
    async with watching(broker_url, *(topics.response(agent) for agent in agents)) as watcher:
        assert (await _ask(watcher, topics, tiny_request())).ok  # preloaded: no load to wait for
        refused: list[InferenceReply] = []
        queued = 0
        async with parked(hub):
            # Each agent's requests once the last one's are in: a broker keeps the order of one topic's messages
            # only (rumqttd mixes topics), and which request crosses a bound depends on what came before it.
            for agent, count, over in (("raw", 3, 1), ("other", 2, 0), ("third", 1, 1)):
                for index in range(count):
                    request = tiny_request(agent_id=agent, request_id=f"{agent}-{index}")
                    await watcher.send(topics.request(agent), request)
                refused += [decode_reply((await watcher.next()).payload) for _ in range(over)]  # at once, parked
                queued += count - over
                await until(lambda: hub.queue_depth == queued, f"{agent}'s requests within the bounds to queue")  # noqa: B023
        served = [decode_reply((await watcher.next()).payload) for _ in range(4)]
    messages = {reply.request_id: reply.error.message for reply in refused if reply.error is not None}
    assert set(messages) == {"raw-2", "third-0"}
    assert all(reply.error is not None and reply.error.code == ErrorCode.OVERLOADED for reply in refused)
    assert "bytes of requests of agent raw queued (half of max_queue_bytes)" in messages["raw-2"]
    assert "bytes of requests queued (max_queue_bytes" in messages["third-0"]
    assert all(reply.ok for reply in served)


def _widening_model(path: Path) -> Path:
    """y = x @ W with W of 4 x 2048: 8 KiB of float32 output per batch element from 16 bytes of input."""
    weight = numpy_helper.from_array(np.ones((4, 2048), np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "widen",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2048])],
        [weight],
    )
    return _saved(graph, path)


async def test_a_reply_that_would_be_too_large_is_refused_before_the_tail_runs(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]], tmp_path: Path
) -> None:
    path = _widening_model(tmp_path / "widen.onnx")
    hub = await start_hub(models_dir=tmp_path, use_zoo=False, max_message_bytes=64 * 1024, max_batch=64)
    _, model = partition.load_model(path)
    topics = Topics(prefix)

    def request(batch: int) -> InferenceRequest:
        tensors = {"x": np.ones((batch, 4), np.float32)}
        return tiny_request(model_id="widen", model_sha256=sha256_hex(path.read_bytes()), tensors=tensors)

    async with watching(broker_url, topics.response("raw")) as watcher:
        small = await _ask(watcher, topics, request(4))  # 32 KiB of output
        large = await _ask(watcher, topics, request(16))  # 128 KiB of output
    assert small.ok
    np.testing.assert_allclose(small.outputs["y"], np.full((4, 2048), 4.0))
    assert large.error is not None
    assert large.error.code == ErrorCode.TOO_LARGE
    assert "more than the 65,536 byte limit" in large.error.message
    assert hub.tails_run == 1  # the large one never ran
    assert sha256_hex(model.SerializeToString()) == sha256_hex(path.read_bytes())


async def test_a_repeated_request_runs_once_and_is_answered_again(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    hub = await start_hub(workers=1, preload=(TINY_TAIL,))
    topics = Topics(prefix)
    async with watching(broker_url, topics.response("raw")) as watcher:
        assert (await _ask(watcher, topics, tiny_request())).ok  # preloaded: no load to wait for
        runs = hub.tails_run
        request = tiny_request(request_id="again")
        async with parked(hub):
            for _ in range(3):  # sent three times while the first is queued: repeats dropped
                await watcher.send(topics.request("raw"), request)
            await until(lambda: hub.repeats == 2, "both repeats to arrive")
            assert hub.queue_depth == 1
        first = await watcher.next()
        await asyncio.sleep(0.2)
        assert watcher.received.empty()
        await watcher.send(topics.request("raw"), request)  # after the reply: the same reply again
        second = await watcher.next()
    assert hub.tails_run == runs + 1
    assert hub.repeats == 3
    assert decode_reply(first.payload).ok
    assert second.payload == first.payload


async def test_a_request_that_aged_where_the_hub_could_not_see_is_refused(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    """The agent's clock is 100 s ahead; a request then comes 3 s late (as from a stalled hub's buffer)."""
    hub = await start_hub(preload=("tiny:input",))  # the deadlines are for the requests, not for a cold load
    topics = Topics(prefix)
    skew = 100.0
    in_time = 5000.0  # however busy the host
    async with watching(broker_url, topics.response("raw")) as watcher:
        on_time = await _ask(watcher, topics, tiny_request(sent_at=time.time() + skew, deadline_ms=in_time))
        late = await _ask(watcher, topics, tiny_request(sent_at=time.time() + skew - 3, deadline_ms=1000.0))
        fresh = await _ask(watcher, topics, tiny_request(sent_at=time.time() + skew, deadline_ms=in_time))
    assert on_time.ok  # the skew alone is no reason to refuse
    assert late.error is not None
    assert late.error.code == ErrorCode.DEADLINE_EXCEEDED
    assert "past its 1000 ms deadline" in late.error.message
    assert fresh.ok
    assert hub.tails_run == 2

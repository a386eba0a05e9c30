"""Dynamic batching in a real hub on a real broker: what runs together, what it answers, what it counts.

The hub's worker is parked while the requests arrive (``parked``), so that
they are queued together when it takes the next one: no sleeps, no timing
guesses. The request the worker took before it was parked runs alone.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edge_agent import CLOUD_ONLY
from models import partition, sha256_hex
from protocol import ErrorCode, InferenceReply, InferenceRequest, Topics, decode_reply, encode_request
from protocol.mqtt import Incoming
from tests._support import (
    TINY_TAIL,
    parked,
    random_images,
    scrape,
    tiny_logits,
    tiny_model,
    tiny_request,
    until,
    watching,
)

if TYPE_CHECKING:
    from pathlib import Path

    from cloud_hub import Hub
    from cloud_hub._execution import Ran
    from cloud_hub._jobs import Job
    from cloud_hub._store import Tail
    from protocol import EncodedRequest
    from tests._support import StartHub, Watcher

pytestmark = pytest.mark.broker

INNER_CUT = "stem.out"


def _images(count: int, seed: int) -> np.ndarray:
    return np.stack(random_images(count, seed=seed))


def _request(agent: str, request_id: str, images: np.ndarray, **changes: object) -> InferenceRequest:
    return tiny_request(agent_id=agent, request_id=request_id, tensors={"image": images}, **changes)


async def _send_all(watcher: Watcher, topics: Topics, requests: list[InferenceRequest]) -> dict[str, InferenceReply]:
    for request in requests:
        await watcher.send(topics.request(request.agent_id), request)
    replies = [decode_reply((await watcher.next(60)).payload) for _ in requests]
    return {reply.request_id: reply for reply in replies}


async def _queued_together(
    hub: Hub, watcher: Watcher, topics: Topics, requests: list[InferenceRequest]
) -> dict[str, InferenceReply]:
    """Send ``requests`` while the hub's worker is parked behind a blocker; their replies, and the blocker's."""
    async with parked(hub):
        blocker = tiny_request(agent_id="blocker", request_id="blocker")
        await watcher.send(topics.request("blocker"), blocker)
        await until(lambda: hub.queue_depth == 1, "the blocker to be taken")
        for request in requests:
            await watcher.send(topics.request(request.agent_id), request)
        await until(lambda: hub.queue_depth == 1 + len(requests), "every request to be queued")
    replies = [decode_reply((await watcher.next(30)).payload) for _ in range(1 + len(requests))]
    return {reply.request_id: reply for reply in replies}


def _logits(images: np.ndarray) -> np.ndarray:
    return np.concatenate([tiny_logits(image) for image in images])


async def test_queued_requests_run_as_one_batch_and_get_what_they_get_one_by_one(
    broker_url: str, prefix: str, start_hub: StartHub
) -> None:
    hub = await start_hub(workers=1, http="127.0.0.1:0", preload=(TINY_TAIL,))  # no load to outlast a deadline
    topics = Topics(prefix)
    images = _images(6, seed=11)
    # Agents of different batch sizes and codecs: joined by their own sizes, split back by them.
    requests = [
        _request("cam-a", "a", images[:1]),
        _request("cam-b", "b", images[1:4]),
        _request("cam-c", "c", images[4:5], codec="zstd"),
        _request("cam-a", "a2", images[5:6]),
    ]
    async with watching(broker_url, topics.all_responses()) as watcher:
        await _send_all(watcher, topics, [tiny_request(agent_id="blocker")])  # the tail's first run
        together = await _queued_together(hub, watcher, topics, requests)
        alone: dict[str, InferenceReply] = {}
        for r in requests:  # one at a time: sent together, two could queue up and run as one batch
            lone = _request(r.agent_id, f"{r.request_id}-alone", np.asarray(r.tensors["image"]))
            alone |= await _send_all(watcher, topics, [lone])
    assert together["blocker"].batch_size == 1
    for request in requests:
        batched, single = together[request.request_id], alone[f"{request.request_id}-alone"]
        assert batched.ok, batched.error
        assert (batched.batch_size, single.batch_size) == (6, len(request.tensors["image"]))
        np.testing.assert_allclose(batched.outputs["logits"], single.outputs["logits"], atol=1e-4, rtol=0)
        np.testing.assert_allclose(batched.outputs["logits"], _logits(request.tensors["image"]), atol=1e-4, rtol=0)
    assert len({together[request.request_id].compute_ms for request in requests}) == 1  # one run
    assert hub.tails_run == 1 + 1 + len(requests) * 2

    await asyncio.wait_for(hub._jobs.idle.wait(), 10)
    assert hub.http is not None
    assert hub.http.address is not None
    samples = await scrape(hub.http.address)
    labels = {"cut": CLOUD_ONLY, "model": "tiny"}
    runs = 1 + 1 + 1 + len(requests)  # the load, the blocker, the batch, then one by one
    assert samples[_key("edgecut_hub_batch_requests_count", **labels)] == runs
    assert samples[_key("edgecut_hub_batch_requests_sum", **labels)] == 2 + 2 * len(requests)
    assert samples[_key("edgecut_hub_batch_size_sum", **labels)] == 2 + 2 * 6
    assert samples[_key("edgecut_hub_batch_size_bucket", **labels, le="4.0")] == runs - 1  # all but the batch of 6
    assert samples[_key("edgecut_hub_requests_total", **labels, outcome="success")] == 2 + 2 * len(requests)


async def test_a_member_whose_accounting_fails_strands_none_of_the_others(
    broker_url: str, prefix: str, start_hub: StartHub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    hub = await start_hub(workers=1, preload=(TINY_TAIL,))
    topics = Topics(prefix)
    images = _images(3, seed=14)
    requests = [_request(f"cam-{name}", name, images[index : index + 1]) for index, name in enumerate("abc")]
    note_ran = hub._note_ran

    def failing_for_b(job: Job, tail: Tail, request: EncodedRequest, ran: Ran) -> None:
        if job.request_id == "b":
            msg = "the profile is broken"
            raise RuntimeError(msg)
        note_ran(job, tail, request, ran)

    async with watching(broker_url, topics.all_responses()) as watcher:
        await _send_all(watcher, topics, [tiny_request(agent_id="blocker")])  # the tail's first run
        monkeypatch.setattr(hub, "_note_ran", failing_for_b)
        replies = await _queued_together(hub, watcher, topics, requests)
    for name, image in zip("abc", images, strict=True):  # b's run was fine: its reply too, after it
        assert replies[name].batch_size == 3
        np.testing.assert_allclose(replies[name].outputs["logits"], tiny_logits(image), atol=1e-4, rtol=0)
    assert "counting the run of request b failed" in caplog.text
    await asyncio.wait_for(hub._jobs.idle.wait(), 10)  # every job released: none left waiting for an answer


async def test_a_refusal_whose_count_fails_is_still_answered(
    broker_url: str, prefix: str, start_hub: StartHub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    hub = await start_hub(workers=1, http="127.0.0.1:0", preload=(TINY_TAIL,))
    assert hub._metrics is not None
    topics = Topics(prefix)
    images = _images(2, seed=15)
    requests = [
        _request("cam-a", "a", images[:1]),
        _request("cam-b", "wrong-tail", images[1:], tail_sha256="00" * 32),  # refused in its turn
    ]

    def broken(model: str, cut: str, code: str) -> None:
        msg = f"the metrics are broken ({model}, {cut}, {code})"
        raise RuntimeError(msg)

    async with watching(broker_url, topics.all_responses()) as watcher:
        await _send_all(watcher, topics, [tiny_request(agent_id="blocker")])  # the tail's first run
        monkeypatch.setattr(hub._metrics, "failed", broken)
        replies = await _queued_together(hub, watcher, topics, requests)
    wrong = replies["wrong-tail"].error
    assert wrong is not None
    assert wrong.code == ErrorCode.MODEL_MISMATCH
    assert replies["a"].ok
    assert "counting the refusal of request wrong-tail failed" in caplog.text


def _key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


async def test_only_what_is_truly_compatible_runs_together(broker_url: str, prefix: str, start_hub: StartHub) -> None:
    hub = await start_hub(workers=1, preload=(TINY_TAIL, f"tiny:{INNER_CUT}"))  # no load to outlast a deadline
    topics = Topics(prefix)
    images = _images(5, seed=12)
    inner = tiny_model().halves(INNER_CUT)
    assert inner.head is not None
    crossing = inner.head.run({"image": images[1:2]})
    requests = [
        _request("cam-a", "a", images[:1]),
        tiny_request(INNER_CUT, agent_id="cam-b", request_id="other-cut", tensors=crossing),  # another tail
        _request("cam-c", "c", images[2:3]),
        _request("cam-d", "wrong-tail", images[3:4], tail_sha256="00" * 32),  # refused in its turn
        _request("cam-e", "e", images[4:5], deadline_ms=60_000.0, codec="lz4"),
    ]
    async with watching(broker_url, topics.all_responses()) as watcher:
        await _send_all(watcher, topics, [tiny_request(agent_id="blocker"), tiny_request(INNER_CUT)])  # first runs
        replies = await _queued_together(hub, watcher, topics, requests)
    assert [replies[name].batch_size for name in ("a", "c", "e")] == [3, 3, 3]
    assert replies["other-cut"].batch_size == 1
    np.testing.assert_allclose(replies["other-cut"].outputs["logits"], tiny_logits(images[1]), atol=1e-4, rtol=0)
    wrong = replies["wrong-tail"]
    assert wrong.error is not None
    assert wrong.error.code == ErrorCode.MODEL_MISMATCH
    assert wrong.batch_size is None
    for name, image in (("a", images[0]), ("c", images[2]), ("e", images[4])):
        np.testing.assert_allclose(replies[name].outputs["logits"], tiny_logits(image), atol=1e-4, rtol=0)


def _model(path: Path, inputs: list[int | str], outputs: list[int | str]) -> Path:
    """y = Relu(x), float32, with the given input and output shapes."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        path.stem,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, inputs)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, outputs)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


async def test_tails_without_a_batch_axis_and_requests_of_other_sizes_run_alone(
    broker_url: str, prefix: str, start_hub: StartHub, tmp_path: Path
) -> None:
    fixed = _model(tmp_path / "fixed.onnx", [1, 4], [1, 4])  # no batch axis
    ragged = _model(tmp_path / "ragged.onnx", ["N", "L"], ["N", "L"])  # a batch axis and a length
    hub = await start_hub(workers=1, models_dir=tmp_path, use_zoo=False, preload=("fixed:input", "ragged:input"))

    def request(agent: str, name: str, path: Path, x: np.ndarray) -> InferenceRequest:
        model = {"model_id": path.stem, "model_sha256": sha256_hex(path.read_bytes())}
        return tiny_request(agent_id=agent, request_id=name, tensors={"x": x}, **model)

    rng = np.random.default_rng(13)
    requests = [
        request("cam-a", "fixed-a", fixed, rng.standard_normal((1, 4), np.float32)),
        request("cam-b", "fixed-b", fixed, rng.standard_normal((1, 4), np.float32)),
        request("cam-c", "ragged-3", ragged, rng.standard_normal((1, 3), np.float32)),
        request("cam-d", "ragged-5", ragged, rng.standard_normal((2, 5), np.float32)),
        request("cam-e", "ragged-3b", ragged, rng.standard_normal((2, 3), np.float32)),
    ]
    topics = Topics(prefix)
    async with watching(broker_url, topics.all_responses()) as watcher:
        async with parked(hub):
            blocker = request("blocker", "blocker", fixed, np.zeros((1, 4), np.float32))
            await watcher.send(topics.request("blocker"), blocker)
            await until(lambda: hub.queue_depth == 1, "the blocker to be taken")
            for each in requests:
                await watcher.send(topics.request(each.agent_id), each)
            await until(lambda: hub.queue_depth == 1 + len(requests), "every request to be queued")
        replies = {
            reply.request_id: reply for reply in [decode_reply((await watcher.next()).payload) for _ in "123456"]
        }
    expected = {"fixed-a": 1, "fixed-b": 1, "ragged-3": 3, "ragged-5": 2, "ragged-3b": 3}
    assert {name: replies[name].batch_size for name in expected} == expected
    for each in requests:
        np.testing.assert_array_equal(replies[each.request_id].outputs["y"], np.maximum(each.tensors["x"], 0))


async def test_with_a_delay_batches_wait_for_requests_and_workers_run_them_in_parallel(
    broker_url: str, prefix: str, start_hub: StartHub
) -> None:
    # Two workers, one of them busy throughout: the other forms and runs both models' batches.
    hub = await start_hub(
        workers=2, max_batch_size=2, max_batch_delay_ms=10_000.0, preload=("tiny:input", f"tiny:{INNER_CUT}")
    )
    topics = Topics(prefix)
    images = _images(4, seed=14)
    inner = tiny_model().halves(INNER_CUT)
    assert inner.head is not None
    async with watching(broker_url, topics.all_responses()) as watcher:
        gate = threading.Event()
        hub._executor.submit(gate.wait)
        try:
            requests = [
                _request("cam-a", "input-a", images[:1]),
                _request("cam-b", "input-b", images[1:2]),
                tiny_request(
                    INNER_CUT, agent_id="cam-c", request_id="inner-c", tensors=inner.head.run({"image": images[2:3]})
                ),
                tiny_request(
                    INNER_CUT, agent_id="cam-d", request_id="inner-d", tensors=inner.head.run({"image": images[3:4]})
                ),
            ]
            replies = await _send_all(watcher, topics, requests)  # while a worker thread is parked
        finally:
            gate.set()
    assert {name: reply.batch_size for name, reply in replies.items()} == {
        "input-a": 2,
        "input-b": 2,
        "inner-c": 2,
        "inner-d": 2,
    }
    for name, image in zip(("input-a", "input-b", "inner-c", "inner-d"), images, strict=True):
        np.testing.assert_allclose(replies[name].outputs["logits"], tiny_logits(image), atol=1e-4, rtol=0)


async def test_with_a_delay_requests_read_together_join_the_batch_the_first_starts(
    broker_url: str, prefix: str, start_hub: StartHub
) -> None:
    # One socket read can hand the hub several requests in one callback: the first starts a batch on the
    # free worker, and the second, queued before that batch's wait began, must join it, not end the wait.
    hub = await start_hub(workers=1, max_batch_size=2, max_batch_delay_ms=10_000.0, preload=(TINY_TAIL,))
    topics = Topics(prefix)
    images = _images(2, seed=16)
    requests = [_request(name, name, images[index : index + 1]) for index, name in enumerate(("cam-a", "cam-b"))]
    async with watching(broker_url, topics.all_responses()) as watcher:
        for request in requests:
            hub._accept(
                Incoming(
                    topic=topics.request(request.agent_id),
                    payload=encode_request(request),
                    qos=1,
                    correlation=request.request_id.encode(),
                )
            )
        replies = {reply.request_id: reply for reply in [decode_reply((await watcher.next()).payload) for _ in "ab"]}
    assert {name: reply.batch_size for name, reply in replies.items()} == {"cam-a": 2, "cam-b": 2}
    for name, image in zip(("cam-a", "cam-b"), images, strict=True):
        np.testing.assert_allclose(replies[name].outputs["logits"], tiny_logits(image), atol=1e-4, rtol=0)


async def test_a_request_pinning_the_tail_the_hub_runs_joins_a_batch(
    broker_url: str, prefix: str, start_hub: StartHub
) -> None:
    hub = await start_hub(workers=1, preload=(f"tiny:{INNER_CUT}",))  # no load to outlast a deadline
    topics = Topics(prefix)
    images = _images(3, seed=15)
    _, model = partition.load_model("tiny")
    pin = partition.split(model, INNER_CUT, model_id="tiny").manifest.tail_sha256
    head = tiny_model().halves(INNER_CUT).head
    assert head is not None

    def request(agent: str, name: str, image: np.ndarray, **changes: object) -> InferenceRequest:
        crossing = head.run({"image": image[None]})
        return tiny_request(INNER_CUT, agent_id=agent, request_id=name, tensors=crossing, **changes)

    requests = [request("cam-a", "a", images[0]), request("cam-b", "pinned", images[1], tail_sha256=pin)]
    requests.append(request("cam-c", "c", images[2]))
    async with watching(broker_url, topics.all_responses()) as watcher:
        # The pin's first use splits the model to learn the hash: a minute's deadline, for a busy machine.
        warm = [request("blocker", "warm", images[0])]
        warm.append(request("blocker", "warm-pinned", images[0], tail_sha256=pin, deadline_ms=60_000.0))
        assert all(reply.ok for reply in (await _send_all(watcher, topics, warm)).values())  # the pin is known
        replies = await _queued_together(hub, watcher, topics, requests)
    assert [replies[name].batch_size for name in ("a", "pinned", "c")] == [3, 3, 3]
    for name, image in zip(("a", "pinned", "c"), images, strict=True):
        np.testing.assert_allclose(replies[name].outputs["logits"], tiny_logits(image), atol=1e-4, rtol=0)

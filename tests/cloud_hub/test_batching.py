"""Dynamic batching on its own: which queued requests run together, and a batch's run on a real tail."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import msgpack
import numpy as np
import pytest

from cloud_hub._batching import Batch, Member, batch_axis, own_rows, pick, run_batch
from cloud_hub._execution import Ran, run_tail
from cloud_hub._fairness import FairQueue
from cloud_hub._jobs import Job
from cloud_hub._store import Tail
from edge_agent import CLOUD_ONLY
from models import Manifest, TensorSpec
from protocol import EncodedRequest, ErrorCode, ReplyError, decode_incoming, decode_reply, encode_request
from protocol.mqtt import Incoming
from tests._support import random_images, tiny_model, tiny_request

# --- pick: the pure core ----------------------------------------------------


def _rows(table: dict[str, int | None]) -> Any:  # noqa: ANN401 - a rows_of callable
    return table.__getitem__


def test_a_batch_takes_queued_items_in_order_up_to_its_room() -> None:
    queued = [(0, "a"), (0, "b"), (1, "c"), (1, "d")]
    assert pick(queued, _rows({"a": 1, "b": 1, "c": 1, "d": 1}), room=3) == ["a", "b", "c"]
    assert pick(queued, _rows({"a": 2, "b": 1, "c": 1, "d": 1}), room=3) == ["a", "b"]
    assert pick(queued, _rows({"a": 1, "b": 1, "c": 1, "d": 1}), room=0) == []
    assert pick([], _rows({}), room=8) == []


def test_an_item_passed_over_lets_only_its_own_round_go_ahead_of_it() -> None:
    # "x" cannot join: the items of its round behind it may (one per other sender), later rounds may not.
    queued = [(0, "a"), (1, "x"), (1, "b"), (2, "c"), (3, "d")]
    rows = _rows({"a": 1, "x": None, "b": 1, "c": 1, "d": 1})
    assert pick(queued, rows, room=8) == ["a", "b"]


def test_an_item_too_large_for_the_room_left_is_passed_over_and_keeps_its_turn() -> None:
    queued = [(0, "big"), (0, "small"), (1, "later")]
    assert pick(queued, _rows({"big": 4, "small": 1, "later": 1}), room=3) == ["small"]


# --- batch_axis: which tails can run a batch --------------------------------


def _manifest(crossing: list[tuple[Any, ...]], outputs: list[tuple[Any, ...]], inputs: Any = None) -> Manifest:  # noqa: ANN401
    def specs(shapes: list[tuple[Any, ...]], stem: str) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec(name=f"{stem}{i}", dtype="float32", shape=shape) for i, shape in enumerate(shapes))

    return Manifest(
        model_id="m",
        model_sha256="ab" * 32,
        cut_id="c",
        inputs=specs(inputs or [("N", 3)], "in"),
        crossing=specs(crossing, "x"),
        outputs=specs(outputs, "y"),
        head_sha256=None,
        tail_sha256=None,
    )


@pytest.mark.parametrize(
    ("crossing", "outputs", "axis"),
    [
        ([("N", 3)], [("N", 10)], "N"),
        ([("N", 3, "H", "W")], [("N", "H", "W")], "N"),  # other sizes set by the inputs
        ([("N", 3), ("N", 5)], [("N", 10), ("N",)], "N"),
        ([(1, 3)], [(1, 10)], None),  # no batch axis at all
        ([("N", 3), (4,)], [("N", 10)], None),  # a shape tensor crosses (legacy torch exports)
        ([("N", 3)], [("boxes", 4)], None),  # a data-dependent first axis
        ([("N", 3)], [("N", "boxes")], None),  # a data-dependent size: joined runs would pad it
        ([("N", 3)], [("N", "N")], None),  # the batch axis twice
        ([("B", 3)], [("B", 10)], None),  # not the model's batch axis
    ],
    ids=repr,
)
def test_only_a_tail_whose_rows_stay_apart_can_run_a_batch(
    crossing: list[tuple[Any, ...]], outputs: list[tuple[Any, ...]], axis: str | None
) -> None:
    assert batch_axis(_manifest(crossing, outputs)) == axis


def test_the_tiny_models_tails_have_a_batch_axis() -> None:
    for cut in (CLOUD_ONLY, "stem.out", "block.out"):
        assert batch_axis(tiny_model().halves(cut).manifest) == "N"


# --- the fair queue's part ----------------------------------------------------


def test_items_taken_into_a_batch_leave_the_others_their_turns() -> None:
    queue: FairQueue[str] = FairQueue()
    for sender, item in [("a", "a0"), ("a", "a1"), ("a", "a2"), ("b", "b0")]:
        queue.put(sender, item)
    assert queue.pop() == "a0"
    assert queue.queued(10) == [(0, "b0"), (1, "a1"), (2, "a2")]
    assert queue.queued(2) == [(0, "b0"), (1, "a1")]
    queue.take(["a1", "a2"])  # ran with a0
    queue.put("c", "c0")  # arrives after the batch: behind what was already queued
    assert [queue.pop() for _ in range(len(queue))] == ["b0", "c0"]


async def test_an_arrival_a_batch_claims_is_never_queued_and_others_wake_the_watcher() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.put("a", "a0")
    assert queue.pop() == "a0"  # in service, filling a batch
    queued: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    with queue.claim_arrivals(lambda item: item.startswith("same"), queued):
        queue.put("b", "same-b0")  # taken at once: never queued for a worker to start alone
        assert len(queue) == 0
        assert not queued.done()
        queue.put("c", "other-c0")
        assert queued.done()
    assert queue.pop() == "other-c0"
    queue.put("b", "same-b1")  # the block is over: queued as usual, behind b's claimed turn
    queue.put("d", "d0")
    assert [queue.pop() for _ in range(len(queue))] == ["d0", "same-b1"]


# --- run_batch: a real tail -----------------------------------------------------


def _tail(cut: str = CLOUD_ONLY) -> Tail:
    halves = tiny_model().halves(cut)
    assert halves.tail is not None
    return Tail(manifest=halves.manifest, session=halves.tail)


def _member(images: np.ndarray, request_id: str, *, codec: str = "raw", agent: str = "raw") -> Member:
    request = tiny_request(request_id=request_id, agent_id=agent, tensors={"image": images}, codec=codec)
    encoded = decode_incoming(encode_request(request))
    assert isinstance(encoded, EncodedRequest)
    incoming = Incoming(topic=f"p/v1/req/{agent}", payload=b"", qos=1)
    job = Job(incoming=incoming, agent_id=agent, reply_topic=f"p/v1/resp/{agent}", request=encoded)
    return Member(job=job, request=encoded, rows=own_rows(_tail().manifest, encoded))


def _alone(tail: Tail, member: Member) -> np.ndarray:
    ran = run_tail(tail, member.request, hub_id="h", received=time.perf_counter(), queue_depth=0)
    return decode_reply(ran.reply).outputs["logits"]


def test_a_batch_gives_each_request_what_it_would_get_alone() -> None:
    tail = _tail()
    images = np.stack(random_images(6, seed=7))
    # Requests of different agents and batch sizes, in different codecs.
    members = [
        _member(images[:1], "one"),
        _member(images[1:4], "three", agent="other"),
        _member(images[4:6], "two", codec="zstd"),
    ]
    assert [member.rows for member in members] == [1, 3, 2]
    outcomes = run_batch(Batch(tail=tail, members=members, open=False), hub_id="h", queue_depth=5)
    assert all(isinstance(outcome, Ran) for outcome in outcomes)
    for member, outcome in zip(members, outcomes, strict=True):
        assert isinstance(outcome, Ran)
        reply = decode_reply(outcome.reply)
        assert (reply.request_id, reply.batch_size, reply.queue_depth) == (member.request.header.request_id, 6, 5)
        assert reply.outputs["logits"].shape == (member.rows, 10)
        np.testing.assert_allclose(reply.outputs["logits"], _alone(tail, member), atol=1e-4, rtol=0)
    assert len({outcome.compute_ms for outcome in outcomes if isinstance(outcome, Ran)}) == 1  # one run


def test_a_request_whose_data_does_not_decode_fails_alone_and_the_others_run() -> None:
    tail = _tail()
    images = np.stack(random_images(2, seed=8))
    good = _member(images[:1], "good")
    bad = _member(images[1:], "bad")
    wire = msgpack.unpackb(encode_request(tiny_request(request_id="bad", tensors={"image": images[1:]})))
    wire["tensors"]["image"]["data"] = wire["tensors"]["image"]["data"][:-1]  # one byte short
    broken = decode_incoming(msgpack.packb(wire))
    assert isinstance(broken, EncodedRequest)
    bad = dataclasses.replace(bad, request=broken)
    outcomes = run_batch(Batch(tail=tail, members=[good, bad], open=False), hub_id="h", queue_depth=0)
    assert isinstance(outcomes[0], Ran)
    assert decode_reply(outcomes[0].reply).batch_size == 1  # ran without the broken one
    assert isinstance(outcomes[1], ReplyError)
    assert outcomes[1].code == ErrorCode.BAD_REQUEST


def test_a_batch_whose_joined_run_fails_runs_each_request_alone() -> None:
    tail = _tail()
    images = np.stack(random_images(2, seed=9))
    members = [_member(images[:1], "a"), _member(images[1:], "b")]
    wrong = dataclasses.replace(members[1], rows=2)  # splits the outputs wrongly: the joined run is refused
    outcomes = run_batch(Batch(tail=tail, members=[members[0], wrong], open=False), hub_id="h", queue_depth=0)
    for member, outcome in zip(members, outcomes, strict=True):
        assert isinstance(outcome, Ran)
        np.testing.assert_allclose(decode_reply(outcome.reply).outputs["logits"], _alone(tail, member), atol=1e-4)

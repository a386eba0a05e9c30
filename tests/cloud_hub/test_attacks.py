"""The cheap ways an outside client stopped a hub (issue 23), each answered so that it cannot come back.

Every attack here is what a client the ACL allows can send: decompression
bombs (sizes the sender declares), cut cycling (loads the sender triggers),
ping floods, and one agent's backlog in front of another's request. Each test
checks the hub's answer and that it still serves others; ``bench/attack.py``
measures what each attack costs valid requests and the hub's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
import time
import uuid
import zlib
from typing import TYPE_CHECKING, Any

import msgpack
import pytest

from edge_agent import CLOUD_ONLY, ModelHalves
from models import partition, zoo
from protocol import (
    MAX_ELEMENTS,
    ErrorCode,
    Ping,
    Topics,
    decode_reply,
    encode_ping,
    encode_request,
)
from tests._support import TINY_TAIL, parked, tiny_model, tiny_request, until, watching

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from cloud_hub import Hub
    from protocol import InferenceReply
    from tests._support import Watcher

pytestmark = pytest.mark.broker


def _bomb(codec: str, dtype: str, shape: list[int], data: bytes, params: dict[str, Any] | None = None) -> bytes:
    """A request for the tiny model's input cut whose one tensor declares ``dtype`` ``shape`` and carries ``data``."""
    wire = msgpack.unpackb(encode_request(tiny_request()))
    wire.update(id=uuid.uuid4().hex, codec=codec)
    tensor: dict[str, Any] = {"dtype": dtype, "shape": shape, "data": data}
    if params is not None:
        tensor["params"] = params
    wire["tensors"] = {"image": tensor}
    return msgpack.packb(wire)


async def _answer(watcher: Watcher, topics: Topics, payload: bytes) -> InferenceReply:
    await watcher.publish(topics.request("raw"), payload, correlation=msgpack.unpackb(payload)["id"].encode())
    return decode_reply((await watcher.next(30)).payload)


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG file whose header says an RGB image of ``width`` x ``height``, and whose pixels are junk."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"junk")) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "bomb",
    [
        # 1 GiB of uint8 declared: more than the hub holds in all, refused on receipt.
        ("zstd", "uint8", [1 << 30], ErrorCode.TOO_LARGE, "1,073,741,824 bytes decoded"),
        # The protocol's largest tensor, as float64: 16 GiB declared.
        ("zstd", "float64", [MAX_ELEMENTS], ErrorCode.TOO_LARGE, "bytes decoded, more than this hub holds"),
        # 48 MiB declared, within what the hub holds for an agent: the cut and max_batch refuse it, undecoded.
        ("int8+zstd", "float32", [1024, 32, 32, 3], ErrorCode.TENSOR_MISMATCH, "expected uint8"),
        ("zstd", "uint8", [16384, 32, 32, 3], ErrorCode.BAD_REQUEST, "a batch of 16384 is more than"),
        ("zstd", "uint8", [1, 12000, 12000, 3], ErrorCode.TOO_LARGE, "bytes decoded"),
    ],
)
async def test_a_decompression_bomb_is_refused_before_anything_is_decoded(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]], bomb: tuple[Any, ...]
) -> None:
    codec, dtype, shape, code, fragment = bomb
    pytest.importorskip("zstandard")
    hub = await start_hub()
    topics = Topics(prefix)
    # The data is not even a zstd frame: a hub that decoded before checking would answer "does not decompress".
    payload = _bomb(codec, dtype, shape, b"\x28\xb5\x2f\xfd garbage")
    async with watching(broker_url, topics.response("raw")) as watcher:
        refused = await _answer(watcher, topics, payload)
        served = await _answer(watcher, topics, encode_request(tiny_request()))
    assert refused.error is not None
    assert (refused.error.code, fragment in refused.error.message) == (code, True), refused.error.message
    assert served.ok
    assert hub.refused[code] == 1


async def test_an_image_header_beyond_the_cuts_shape_is_refused_before_its_pixels_are_decoded(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    pytest.importorskip("PIL.Image")
    await start_hub()
    topics = Topics(prefix)
    huge = _png_declaring(8000, 8000)  # 192 MB of pixels, below Pillow's own bomb limit
    declared_as_the_cut_takes = _bomb("png", "uint8", [1, 32, 32, 3], huge, {"sizes": [len(huge)]})
    declared_as_it_is = _bomb("png", "uint8", [3, 8000, 8000, 3], huge * 3, {"sizes": [len(huge)] * 3})
    async with watching(broker_url, topics.response("raw")) as watcher:
        small = await _answer(watcher, topics, declared_as_the_cut_takes)
        large = await _answer(watcher, topics, declared_as_it_is)
    assert small.error is not None
    assert small.error.code == ErrorCode.BAD_REQUEST
    assert "an image is RGB 8000x8000, not RGB 32x32" in small.error.message
    assert large.error is not None
    assert large.error.code == ErrorCode.TOO_LARGE


async def test_a_bomb_that_fits_every_bound_is_decoded_off_the_loop_and_refused_there(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    """Declared as the cut takes it, but the data is no zstd frame: refused when decoded, in the worker thread."""
    pytest.importorskip("zstandard")
    await start_hub()
    topics = Topics(prefix)
    async with watching(broker_url, topics.response("raw")) as watcher:
        refused = await _answer(watcher, topics, _bomb("zstd", "uint8", [1, 32, 32, 3], b"not zstd"))
    assert refused.error is not None
    assert refused.error.code == ErrorCode.BAD_REQUEST
    assert "tensor 'image'" in refused.error.message


def _inner_cuts(count: int) -> list[str]:
    """``count`` cuts of tiny that are not among its candidates: each is a new load for a hub."""
    model = zoo.build("tiny")
    cuts = partition.enumerate_cuts(model)
    candidates = {cut.id for cut in partition.candidate_cuts(cuts)}
    return [cut.id for cut in cuts if cut.id not in candidates and cut.single_tensor][:count]


async def test_cut_cycling_is_held_to_the_agents_load_budget_and_the_chain_to_its_extra_cuts(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    hub = await start_hub(loads_per_agent_minute=3, max_extra_cuts=2)
    topics = Topics(prefix)
    cuts = _inner_cuts(6)
    async with watching(broker_url, topics.response("raw"), topics.response("other")) as watcher:
        replies = [await _answer(watcher, topics, encode_request(tiny_request(cut))) for cut in cuts]
        other = tiny_request(cuts[-1], agent_id="other")
        await watcher.send(topics.request("other"), other)
        others = decode_reply((await watcher.next(30)).payload)
    codes = [reply.error.code if reply.error else "ok" for reply in replies]
    assert codes == ["ok", "ok", "ok", "load_refused", "load_refused", "load_refused"]
    assert replies[3].error is not None
    assert "agent raw started 3 loads lately" in replies[3].error.message
    assert others.ok  # another agent has a budget of its own
    chain = hub.store.chains.current(tiny_model().model_sha256)
    assert chain is not None
    candidates = {cut.id for cut in partition.candidate_cuts(partition.enumerate_cuts(zoo.build("tiny")))}
    assert len(set(chain.manifest.cut_ids) - candidates) <= 2  # the chain keeps only the latest extra cuts
    assert hub.refused[ErrorCode.LOAD_REFUSED] == 3


async def test_a_hub_that_serves_only_its_preloaded_tails_loads_nothing_else(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    hub = await start_hub(preload=("tiny:input",), load_on_demand=False)
    topics = Topics(prefix)
    candidates = partition.candidate_cuts(partition.enumerate_cuts(zoo.build("tiny")))
    another_candidate = next(cut.id for cut in candidates if cut.id not in {CLOUD_ONLY, "output"})
    async with watching(broker_url, topics.response("raw")) as watcher:
        preloaded = await _answer(watcher, topics, encode_request(tiny_request()))
        on_its_chain = await _answer(watcher, topics, encode_request(tiny_request(another_candidate)))
        elsewhere = await _answer(watcher, topics, encode_request(tiny_request(_inner_cuts(1)[0])))
    assert preloaded.ok
    assert on_its_chain.ok
    assert elsewhere.error is not None
    assert elsewhere.error.code == ErrorCode.LOAD_REFUSED
    assert "serves only the tails it preloaded" in elsewhere.error.message
    assert hub.store.loading(time.monotonic()) == {}


async def _all_that_arrive(watcher: Watcher, quiet_s: float = 2.0) -> list[InferenceReply]:
    """Every reply until none has come for ``quiet_s``."""
    answers = []
    while True:
        try:
            incoming = await watcher.next(quiet_s)
        except TimeoutError:
            return answers
        answers.append(decode_reply(incoming.payload))


async def test_a_ping_flood_is_dropped_past_the_agents_rate_and_others_are_still_answered(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    hub = await start_hub(pings_per_agent_s=5, preload=(TINY_TAIL,))  # the request's answer comes at once
    topics = Topics(prefix)
    flood = 200
    async with watching(broker_url, topics.response("raw"), topics.response("other")) as watcher:
        started = time.monotonic()
        for index in range(flood):
            ping = encode_ping(Ping(request_id=f"flood-{index}", sent_at=time.time()))
            await watcher.publish(topics.ping("raw"), ping, correlation=f"flood-{index}".encode())
        await until(lambda: hub.refused["ping_dropped"] + hub.pings.answered >= flood, "every ping to be handled")
        refilled = 5 * (time.monotonic() - started)  # at most, however slowly a busy host handled the flood
        await watcher.publish(topics.ping("other"), encode_ping(Ping("theirs", time.time())), correlation=b"theirs")
        await watcher.send(topics.request("raw"), tiny_request())
        answers = await _all_that_arrive(watcher)
    ids = [answer.request_id for answer in answers]
    answered_flood = [i for i in ids if i.startswith("flood-")]
    assert 10 <= len(answered_flood) <= 10 + refilled + 1  # the burst (2 x 5 per second) and what refilled meanwhile
    assert "theirs" in ids  # another agent's ping is answered
    assert sum(1 for answer in answers if answer.outputs) == 1  # and the request too
    assert hub.refused["ping_dropped"] == flood - len(answered_flood)


async def test_a_ping_over_the_padding_limit_or_on_a_request_topic_is_dropped(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    hub = await start_hub()
    topics = Topics(prefix)
    oversized = msgpack.packb({"v": 1, "t": "ping", "id": "huge", "sent_at": 1.0, "pad": bytes((1 << 20) + 1)})
    misplaced = encode_ping(Ping("misplaced", time.time()))
    async with watching(broker_url, topics.response("raw")) as watcher:
        await watcher.publish(topics.ping("raw"), oversized, correlation=b"huge")
        await watcher.publish(topics.request("raw"), misplaced, correlation=b"misplaced")
        await watcher.publish(topics.ping("raw"), encode_ping(Ping("fine", time.time())), correlation=b"fine")
        answers = await _all_that_arrive(watcher)
    assert [answer.request_id for answer in answers] == ["fine"]
    # The misplaced one is dropped by the hub; the oversized one by mosquitto (the ping connection's packet
    # limit), or by the hub where the broker delivers it anyway (rumqttd).
    assert hub.refused["ping_dropped"] in {1, 2}


async def _one_run_at_a_time(hub: Hub, gate: threading.Event, watcher: Watcher, runs: int) -> list[str]:
    """Let the parked hub run ``runs`` requests one at a time: their ids, in the order it ran them.

    Each reply is read before the next run may start, so that the order is
    the hub's: a broker keeps the order of messages on one topic only, and
    rumqttd delivers two agents' replies in either order.
    """
    ran = []
    for _ in range(runs):
        next_gate = threading.Event()
        hub._executor.submit(next_gate.wait)  # the thread parks again after the run the gate lets through
        gate.set()
        ran.append(decode_reply((await watcher.next()).payload).request_id)
        gate = next_gate
    gate.set()
    return ran


async def test_an_agents_backlog_delays_another_agents_request_by_one_request_at_most(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    hub = await start_hub(workers=1, max_queue_per_agent=6, max_batch_size=1)  # one request a run
    topics = Topics(prefix)
    async with watching(broker_url, topics.response("raw"), topics.response("quiet")) as watcher:
        await _answer(watcher, topics, encode_request(tiny_request()))  # the tail is loaded
        async with parked(hub) as gate:
            for index in range(8):  # one over the agent's bound, and one more
                await watcher.send(topics.request("raw"), tiny_request(request_id=f"greedy-{index}"))
            await until(lambda: hub.queue_depth == 6, "the greedy agent's bound to be reached")
            await watcher.send(topics.request("quiet"), tiny_request(agent_id="quiet", request_id="quiet-0"))
            await until(lambda: hub.queue_depth == 7, "the quiet agent's request to be queued")
            overloaded = [decode_reply((await watcher.next()).payload) for _ in range(2)]
            served = await _one_run_at_a_time(hub, gate, watcher, 7)
    assert {reply.request_id for reply in overloaded} == {"greedy-6", "greedy-7"}
    assert all(reply.error is not None and reply.error.code == ErrorCode.OVERLOADED for reply in overloaded)
    assert "requests of agent raw queued (max_queue_per_agent 6)" in str(overloaded[0].error)
    # Round robin: the greedy agent's first request, then the quiet one's, then the rest of the backlog.
    assert served[:2] == ["greedy-0", "quiet-0"]


async def test_a_worker_never_waits_on_the_network_for_a_reply(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    """Replies go out from the loop: while one is stuck publishing, the worker runs the next request."""
    hub = await start_hub(workers=1, preload=(TINY_TAIL,))
    topics = Topics(prefix)
    stuck = asyncio.Event()
    publish = hub._connection.publish

    async def slow_for_the_first(topic: str, payload: bytes, **kwargs: Any) -> None:  # noqa: ANN401
        if not stuck.is_set() and topic == topics.response("raw"):
            stuck.set()
            await asyncio.sleep(3600)  # as a publish on a dead connection once did
        await publish(topic, payload, **kwargs)

    async with watching(broker_url, topics.response("raw")) as watcher:
        await _answer(watcher, topics, encode_request(tiny_request()))  # preloaded: no load to wait for
        hub._connection.publish = slow_for_the_first  # type: ignore[method-assign]
        await watcher.send(topics.request("raw"), tiny_request(request_id="first"))
        await asyncio.wait_for(stuck.wait(), 10)
        await watcher.send(topics.request("raw"), tiny_request(request_id="second"))
        second = decode_reply((await watcher.next(10)).payload)
    assert (second.request_id, second.ok) == ("second", True)
    assert hub.tails_run == 3


async def test_a_load_never_holds_up_the_requests_of_loaded_models(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    """One worker: while a request waits for its model to load, the worker serves loaded models."""
    await start_hub(workers=1, preload=("tiny:input",))
    topics = Topics(prefix)
    cold = msgpack.unpackb(encode_request(tiny_request(deadline_ms=60_000.0)))  # loaded in time, however busy
    resnet18 = ModelHalves.open("resnet18", threads=1)  # a model the hub loads for a second or more
    cold.update(id="cold", model="resnet18", model_sha256=resnet18.model_sha256)
    cold["tensors"] = {"image": {"dtype": "uint8", "shape": [1, 224, 224, 3], "data": bytes(224 * 224 * 3)}}
    async with watching(broker_url, topics.response("raw")) as watcher:
        await watcher.publish(topics.request("raw"), msgpack.packb(cold), correlation=b"cold")
        await watcher.send(topics.request("raw"), tiny_request(request_id="warm"))
        replies = [decode_reply((await watcher.next(60)).payload) for _ in range(2)]
    assert [reply.request_id for reply in replies] == ["warm", "cold"]
    assert all(reply.ok for reply in replies)


async def test_pings_are_answered_while_a_model_loads(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    """Pings sent while the hub loads a model are answered while it still loads, not once it is done.

    How fast is ``bench/pings_during_load.py``'s to say (a timing claim); a
    hub whose loop the load held up would answer none of them before the load
    ended.
    """
    hub = await start_hub(pings_per_agent_s=1000)
    topics = Topics(prefix)
    resnet18 = ModelHalves.open("resnet18", threads=1)  # a model the hub loads for a second or more
    cold = msgpack.unpackb(encode_request(tiny_request(deadline_ms=60_000.0)))
    cold.update(id="cold", model="resnet18", model_sha256=resnet18.model_sha256)
    cold["tensors"] = {"image": {"dtype": "uint8", "shape": [1, 224, 224, 3], "data": bytes(224 * 224 * 3)}}
    sent, answered_while_loading, answered = 0, 0, []
    async with watching(broker_url, topics.response("raw")) as watcher:
        await watcher.publish(topics.request("raw"), msgpack.packb(cold), correlation=b"cold")
        while "cold" not in answered:
            ping = Ping(f"during-{sent}", time.time())
            await watcher.publish(topics.ping("raw"), encode_ping(ping), correlation=ping.request_id.encode())
            sent += 1
            with contextlib.suppress(TimeoutError):
                while True:  # what has come back so far
                    answered.append(decode_reply((await watcher.next(0.02)).payload).request_id)
                    answered_while_loading += hub.store.is_loading(resnet18.model_sha256, CLOUD_ONLY)
    assert answered_while_loading >= 3, f"{answered_while_loading} of {sent} pings answered during the load"


async def test_a_request_that_does_not_fit_a_loaded_tail_is_refused_on_receipt_not_queued(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    """With its tail loaded, a bomb is refused by the loop at once: it never holds a place in the queue."""
    pytest.importorskip("zstandard")
    hub = await start_hub(workers=1, preload=("tiny:input",))
    topics = Topics(prefix)
    async with watching(broker_url, topics.response("raw")) as watcher, parked(hub):
        # Answered while the one worker is parked: it never reached the queue.
        refused = await _answer(watcher, topics, _bomb("zstd", "uint8", [16384, 32, 32, 3], b"junk"))
    assert refused.error is not None
    assert refused.error.code == ErrorCode.BAD_REQUEST
    assert "a batch of 16384 is more than" in refused.error.message

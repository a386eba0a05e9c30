"""A hub runs its most used cuts on fused tails: the same answers, fewer segments."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from cloud_hub._fusing import FUSE_AFTER, FusedTails
from models import ChainPart, Session, partition, zoo
from protocol import Topics, decode_reply
from tests._support import random_images, tiny_logits, tiny_model, tiny_request, until, watching

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from cloud_hub import Hub

pytestmark = pytest.mark.broker


def _inner_candidate() -> str:
    candidates = partition.candidate_cuts(partition.enumerate_cuts(zoo.build("tiny")))
    return next(cut.id for cut in candidates if cut.id not in {"input", "output"})


async def _ask_many(broker_url: str, prefix: str, cut: str, count: int) -> list[np.ndarray]:
    topics = Topics(prefix)
    images = random_images(count, seed=7)
    logits = []
    async with watching(broker_url, topics.response("raw")) as watcher:
        for image in images:
            await watcher.send(topics.request("raw"), tiny_request(cut, tensors=_crossing(cut, image)))
            reply = decode_reply((await watcher.next()).payload)
            assert reply.ok, reply.error
            logits.append(reply.outputs["logits"])
    for image, got in zip(images, logits, strict=True):
        np.testing.assert_allclose(got, tiny_logits(image), atol=1e-4)
    return logits


def _crossing(cut: str, image: np.ndarray) -> dict[str, np.ndarray]:
    halves = tiny_model().halves(cut)
    assert halves.head is not None
    return halves.head.run({"image": image[np.newaxis]})


async def test_a_cut_used_often_runs_on_a_fused_tail_with_the_same_answers(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    hub = await start_hub()
    cut = _inner_candidate()
    key = (tiny_model().model_sha256, cut)
    await _ask_many(broker_url, prefix, cut, FUSE_AFTER)
    await until(lambda: hub.store.fused.get(key) is not None, "the cut's tail to be fused")
    fused = hub.store.ready_now(*key, pinned=False)
    assert fused is not None
    assert isinstance(fused.session, Session)
    assert fused.manifest.tail_sha256 is not None  # a real split's tail, as `edgecut models split` writes it
    await _ask_many(broker_url, prefix, cut, 4)  # answered by the fused tail, checked against the full model


async def test_no_tail_is_fused_when_the_hub_fuses_none(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    hub = await start_hub(fused_tails=0)
    cut = _inner_candidate()
    await _ask_many(broker_url, prefix, cut, FUSE_AFTER + 2)
    tail = hub.store.ready_now(tiny_model().model_sha256, cut, pinned=False)
    assert tail is not None
    assert isinstance(tail.session, ChainPart)


async def test_a_newcomer_replaces_the_least_used_fused_tail_only_when_used_twice_as_often() -> None:
    fused_keys: list[tuple[str, str]] = []

    def fuse(model_id: str, key: tuple[str, str]) -> Any:  # noqa: ANN401 - a stand-in for a Tail
        fused_keys.append(key)
        return SimpleNamespace(manifest=SimpleNamespace(model_id=model_id))

    with ThreadPoolExecutor(1) as executor:
        tails = FusedTails(capacity=1, executor=executor, fuse=fuse)
        first, second = ("m", "a"), ("m", "b")
        for _ in range(FUSE_AFTER):
            tails.note_use(first, "m")
        await until(lambda: tails.get(first) is not None, "the first cut to be fused")
        for _ in range(2 * FUSE_AFTER):
            tails.note_use(second, "m")
        assert tails.get(second) is None  # used as often as twice the first, not more
        tails.note_use(second, "m")
        await until(lambda: tails.get(second) is not None, "the second cut to take the first's place")
        assert tails.get(first) is None
    assert fused_keys == [first, second]

"""Which models a hub serves, and how: split directories, model files, the zoo, by sha256.

The sha256 of the full model is what identifies it; the name a request gives
is a hint. A cold hub (nothing loaded) and a warm one must answer alike.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from typing import TYPE_CHECKING

import numpy as np
import onnx
import pytest

from edge_agent import CLOUD_ONLY, EdgeAgent, HubError
from edgecut._cli import main
from edgecut._exit import ExitCode
from models import partition, sha256_hex
from protocol import ErrorCode, Topics, decode_reply
from protocol.errors import ModelError
from tests._support import assert_matches_full_model, random_images, tiny_model, tiny_request, until, watching

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from cloud_hub import Hub
    from protocol import InferenceReply, InferenceRequest

pytestmark = pytest.mark.broker

MODEL = "tiny"
INNER_CUT = "stem.out"
OTHER_CUT = "block.out"


def _split_with_the_cli(directory: Path, cut: str) -> Path:
    assert main(["models", "split", MODEL, "--cut", cut, "--out", str(directory)]) == ExitCode.OK
    return directory


async def _ask(url: str, prefix: str, **changes: object) -> InferenceReply:
    """Send one tiny request (with ``changes``) as agent ``raw`` and return the hub's reply."""
    topics = Topics(prefix)
    async with watching(url, topics.response("raw")) as watcher:
        await watcher.send(topics.request("raw"), tiny_request(**changes))  # type: ignore[arg-type]
        return decode_reply((await watcher.next(30)).payload)


async def test_hub_serves_a_split_directory_without_the_zoo(
    broker_url: str,
    prefix: str,
    start_hub: Callable[..., Awaitable[Hub]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    split = _split_with_the_cli(tmp_path / "models" / "tiny-stem", INNER_CUT)
    capsys.readouterr()
    broken = tmp_path / "models" / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{ not json")  # skipped, not fatal
    hub = await start_hub(models_dir=tmp_path / "models", use_zoo=False)
    images = random_images(3, seed=5)
    async with EdgeAgent(broker_url, model=split, prefix=prefix, fallback=False) as agent:
        assert agent.cut == INNER_CUT
        results = [await agent.infer(image) for image in images]
    for result, image in zip(results, images, strict=True):
        assert (result.hub_id, result.cut_id, result.fallback) == ("hub0", INNER_CUT, None)
        assert_matches_full_model(result, image)
    assert len(hub.store) == 1


async def test_hub_refuses_a_tail_that_does_not_match_its_manifest(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]], tmp_path: Path
) -> None:
    agent_dir = _split_with_the_cli(tmp_path / "agent", INNER_CUT)
    hub_dir = tmp_path / "hub" / "tiny"
    shutil.copytree(agent_dir, hub_dir)
    tail = hub_dir / "tail.onnx"
    tail.write_bytes(tail.read_bytes() + b"\x00")
    await start_hub(models_dir=tmp_path / "hub", use_zoo=False)
    async with EdgeAgent(broker_url, model=agent_dir, prefix=prefix, fallback=False) as agent:
        with pytest.raises(HubError) as caught:
            await agent.infer(random_images(1)[0])
    assert caught.value.code == ErrorCode.MODEL_MISMATCH
    assert "does not match the sha256 in its manifest" in str(caught.value)


async def test_hub_serves_a_full_model_file_by_its_hash(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]], tmp_path: Path
) -> None:
    _, model = partition.load_model(MODEL)
    model.graph.doc_string = "a model only this directory has"
    data = model.SerializeToString()
    models_dir = tmp_path / "models"
    (models_dir / "nested").mkdir(parents=True)
    path = models_dir / "nested" / "custom.onnx"
    path.write_bytes(data)
    _split_with_the_cli(models_dir / "some-split", OTHER_CUT)  # its head/tail files are not full models
    hub = await start_hub(models_dir=models_dir, use_zoo=False)
    images = random_images(2, seed=6)
    async with EdgeAgent(broker_url, model=path, prefix=prefix, fallback=False, threads=1) as agent:
        assert agent.model.model_sha256 == sha256_hex(data)
        assert agent.model.model_id == "custom"
        for cut in (CLOUD_ONLY, INNER_CUT):
            for image in images:
                result = await agent.infer(image, cut=cut)
                assert (result.hub_id, result.fallback) == ("hub0", None)
                assert_matches_full_model(result, image)  # same weights, other doc string
    chain = hub.store.chains.held(sha256_hex(data), INNER_CUT)  # one chain holds both tails: the weights once
    assert chain is not None
    assert {CLOUD_ONLY, INNER_CUT} <= set(chain.manifest.cut_ids)


async def test_a_segments_directory_serves_auto_agents_on_both_sides_without_the_zoo(
    broker_url: str,
    prefix: str,
    start_hub: Callable[..., Awaitable[Hub]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    chain_dir = tmp_path / "models" / "tiny-chain"
    assert main(["models", "split", MODEL, "--cuts", f"{INNER_CUT},pool", "--out", str(chain_dir)]) == ExitCode.OK
    capsys.readouterr()
    hub = await start_hub(models_dir=tmp_path / "models", use_zoo=False)
    images = random_images(2, seed=9)
    async with EdgeAgent(broker_url, model=chain_dir, prefix=prefix, fallback=False, threads=1) as agent:
        for cut in (CLOUD_ONLY, INNER_CUT, "pool"):
            for image in images:
                result = await agent.infer(image, cut=cut)
                assert (result.hub_id, result.fallback) == ("hub0", None)
                assert_matches_full_model(result, image)
        auto = await agent.infer(images[0])  # the planner's choice, among the directory's cuts
        assert auto.cut_id in {CLOUD_ONLY, INNER_CUT, "pool", "output"}
    assert len(list((tmp_path / "models").rglob("*.onnx"))) == 3  # no segment was taken for a full model
    reply = await _ask(broker_url, prefix, cut=OTHER_CUT)
    assert reply.error is not None
    assert reply.error.code == ErrorCode.UNKNOWN_CUT
    assert f"split at input, pool, {INNER_CUT} only" in reply.error.message
    assert len(hub.store.chains.current(tiny_model().model_sha256).manifest.segments) == 3  # type: ignore[union-attr]


async def test_a_chain_grows_for_a_new_cut_and_keeps_the_sessions_of_the_segments_it_shares(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    hub = await start_hub()
    sha = tiny_model().model_sha256
    assert (await _ask(broker_url, prefix, cut=CLOUD_ONLY)).ok
    before = hub.store.chains.current(sha)
    assert before is not None
    assert before.manifest.cut_ids == (CLOUD_ONLY, "pool", "output")  # the candidates
    assert (await _ask(broker_url, prefix, cut=INNER_CUT)).ok
    after = hub.store.chains.current(sha)
    assert after is not None
    assert after.manifest.cut_ids == (CLOUD_ONLY, INNER_CUT, "pool", "output")
    assert after._segments[-1] is before._segments[-1]  # pool -> output was not loaded again
    assert (await _ask(broker_url, prefix, cut=CLOUD_ONLY)).ok  # its tail now runs on the grown chain
    assert hub.store.chains.current(sha) is after


async def test_a_request_naming_its_tail_is_checked_against_a_chain(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    await start_hub()
    _, model = partition.load_model(MODEL)
    fused = partition.split(model, INNER_CUT, model_id=MODEL).manifest.tail_sha256
    assert (await _ask(broker_url, prefix, cut=INNER_CUT, tail_sha256=fused)).ok
    wrong = await _ask(broker_url, prefix, cut=INNER_CUT, tail_sha256="0" * 64)
    assert wrong.error is not None
    assert wrong.error.code == ErrorCode.MODEL_MISMATCH


async def test_hub_without_the_zoo_does_not_know_zoo_models(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]], tmp_path: Path
) -> None:
    await start_hub(models_dir=tmp_path, use_zoo=False)
    async with EdgeAgent(broker_url, model=MODEL, cut=INNER_CUT, prefix=prefix, fallback=False) as agent:
        with pytest.raises(HubError) as caught:
            await agent.infer(random_images(1)[0])
    assert caught.value.code == ErrorCode.UNKNOWN_MODEL
    assert "'tiny'" in str(caught.value)


async def test_least_recently_used_tails_are_unloaded(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    hub = await start_hub(max_sessions=1)
    image = random_images(1, seed=7)[0]
    async with EdgeAgent(broker_url, model=MODEL, prefix=prefix, fallback=False, threads=1) as agent:
        for cut in (INNER_CUT, OTHER_CUT, INNER_CUT, CLOUD_ONLY):
            result = await agent.infer(image, cut=cut)
            assert_matches_full_model(result, image)
            assert len(hub.store) == 1


async def test_concurrent_first_requests_load_a_tail_once(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    hub = await start_hub(workers=4)
    images = random_images(8, seed=8)
    async with EdgeAgent(broker_url, model=MODEL, cut=OTHER_CUT, prefix=prefix, fallback=False) as agent:
        results = await asyncio.gather(*(agent.infer(image) for image in images))
    for result, image in zip(results, images, strict=True):
        assert_matches_full_model(result, image)
    assert len(hub.store) == 1


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
async def test_the_sha256_decides_and_a_cold_hub_answers_as_a_warm_one(
    broker_url: str,
    prefix: str,
    start_hub: Callable[..., Awaitable[Hub]],
    warm: bool,  # noqa: FBT001
) -> None:
    hub = await start_hub()
    if warm:
        assert (await _ask(broker_url, prefix, model_id=MODEL)).ok
        assert len(hub.store) == 1
    cases = [
        ({"model_id": "renamed"}, None),  # a name the hub does not know, the sha256 of a model it has
        ({"model_id": MODEL}, None),
        ({"model_id": MODEL, "model_sha256": "1" * 64}, ErrorCode.UNKNOWN_MODEL),  # its name, another model
        ({"model_id": "nope", "model_sha256": "1" * 64}, ErrorCode.UNKNOWN_MODEL),
    ]
    for changes, code in cases:
        reply = await _ask(broker_url, prefix, **changes)
        assert (reply.error.code if reply.error else None) == code, changes


async def test_a_repeated_miss_is_answered_from_memory(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]]
) -> None:
    hub = await start_hub()
    loads: list[str] = []
    source = hub.store.catalog.source

    def counted(model_sha256: str, name_hint: str) -> object:
        loads.append(model_sha256)
        return source(model_sha256, name_hint)

    hub.store.catalog.source = counted  # type: ignore[method-assign]
    for _ in range(5):
        reply = await _ask(broker_url, prefix, cut_id="no-such-cut")
        assert reply.error is not None
        assert reply.error.code == ErrorCode.UNKNOWN_CUT
    for cut in ("other-bogus-cut", "and-another"):  # an unknown cut of a model split once: nothing to load
        reply = await _ask(broker_url, prefix, cut_id=cut)
        assert reply.error is not None
        assert reply.error.code == ErrorCode.UNKNOWN_CUT
    assert loads == [tiny_model().model_sha256]


async def test_a_load_failing_after_its_request_was_answered_loading_is_logged_and_remembered(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]], caplog: pytest.LogCaptureFixture
) -> None:
    hub = await start_hub(workers=1)  # tiny loads on first use
    loads: list[float] = []
    ended = threading.Event()

    def failing(*_: object) -> object:  # as a session that runs out of memory: no TailUnavailableError
        loads.append(time.monotonic())
        time.sleep(0.5)  # past the first request's wait: it is answered loading, the load goes on
        ended.set()
        msg = "ORT could not create the session: out of memory"
        raise RuntimeError(msg)

    hub.store._load = failing  # type: ignore[method-assign]
    topics = Topics(prefix)
    async with watching(broker_url, topics.response("raw")) as watcher:
        await watcher.send(topics.request("raw"), tiny_request(request_id="first", deadline_ms=300.0))
        first = decode_reply((await watcher.next(30)).payload)
        await asyncio.to_thread(ended.wait, 30)
        await until(lambda: any("out of memory" in record.getMessage() for record in caplog.records), "the log")
        await watcher.send(topics.request("raw"), tiny_request(request_id="second", deadline_ms=300.0))
        second = decode_reply((await watcher.next(30)).payload)
    assert first.error is not None
    assert first.error.code == ErrorCode.LOADING
    assert second.error is not None
    assert second.error.code == ErrorCode.INTERNAL  # the failure remembered: no second load
    assert "out of memory" in second.error.message
    assert len(loads) == 1
    logged = [record for record in caplog.records if "out of memory" in record.getMessage()]
    assert [record.levelname for record in logged] == ["ERROR"]


async def test_preloaded_tails_are_loaded_before_the_hub_goes_online(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]], tmp_path: Path
) -> None:
    _split_with_the_cli(tmp_path / "split", INNER_CUT)
    hub = await start_hub(models_dir=tmp_path, preload=(f"{MODEL}:{OTHER_CUT}", f"{MODEL}:{INNER_CUT}"))
    assert len(hub.store) == 2  # before any request
    assert (await _ask(broker_url, prefix, cut=INNER_CUT)).ok


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("tiny:no-such-cut", "no usable cut 'no-such-cut'"),
        ("nothing:input", "no model of that name"),
    ],
)
async def test_preloading_what_the_hub_does_not_have_fails_its_start(
    start_hub: Callable[..., Awaitable[Hub]], spec: str, fragment: str
) -> None:
    with pytest.raises(ModelError, match=fragment):
        await start_hub(preload=(spec,))


def test_a_malformed_preload_is_a_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hub", "--preload", "resnet18"]) == ExitCode.CONFIG
    assert "must be MODEL:CUT" in capsys.readouterr().err


async def test_a_model_file_added_while_the_hub_runs_is_found(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]], tmp_path: Path
) -> None:
    _, model = partition.load_model(MODEL)
    model.graph.doc_string = "added later"
    await start_hub(models_dir=tmp_path, use_zoo=False, miss_ttl=0.0)
    sha = sha256_hex(model.SerializeToString())
    before = await _ask(broker_url, prefix, model_sha256=sha)
    assert before.error is not None
    assert before.error.code == ErrorCode.UNKNOWN_MODEL
    (tmp_path / "later.onnx").write_bytes(model.SerializeToString())
    assert (await _ask(broker_url, prefix, model_sha256=sha)).ok


def _saved(graph: onnx.GraphProto, path: Path) -> str:
    """``graph`` as an opset-17 model file at ``path``; its sha256 as a hub names it."""
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), path)
    return partition.model_file_sha256(path)


def _reshaping_model(path: Path) -> str:
    """A model whose input's width is open but which reshapes it to four wide: other widths fail at run time."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, "width"])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    shape = onnx.numpy_helper.from_array(np.array([1, 4], np.int64), "shape")
    nodes = [onnx.helper.make_node("Reshape", ["x", "shape"], ["r"]), onnx.helper.make_node("Relu", ["r"], ["y"])]
    return _saved(onnx.helper.make_graph(nodes, "reshaping", [x], [y], [shape]), path)


async def test_a_tail_that_fails_at_run_time_is_answered_internal_and_its_worker_serves_on(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]], tmp_path: Path
) -> None:
    sha = _reshaping_model(tmp_path / "reshaping.onnx")
    await start_hub(models_dir=tmp_path, use_zoo=False, workers=1)
    topics = Topics(prefix)

    def request(width: int) -> InferenceRequest:
        x = np.arange(width, dtype=np.float32)[np.newaxis] - 1
        return tiny_request(model_id="reshaping", model_sha256=sha, tensors={"x": x})

    async with watching(broker_url, topics.response("raw")) as watcher:
        await watcher.send(topics.request("raw"), request(3))  # fits the cut as declared; ORT cannot run it
        failed = decode_reply((await watcher.next(30)).payload)
        await watcher.send(topics.request("raw"), request(4))  # the one worker is free again
        ran = decode_reply((await watcher.next(30)).payload)
    assert failed.error is not None
    assert failed.error.code == ErrorCode.INTERNAL
    assert "Reshape" in failed.error.message or "reshape" in failed.error.message
    assert ran.ok
    np.testing.assert_array_equal(ran.outputs["y"], [[0.0, 0.0, 1.0, 2.0]])


def _nonzero_model(path: Path) -> str:
    """The int64 indices of a float input's positive entries: an output whose size only the data decides."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, "width"])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.INT64, [2, "count"])
    zero = onnx.numpy_helper.from_array(np.zeros((), np.float32), "zero")
    nodes = [
        onnx.helper.make_node("Greater", ["x", "zero"], ["positive"]),
        onnx.helper.make_node("NonZero", ["positive"], ["y"]),
    ]
    return _saved(onnx.helper.make_graph(nodes, "nonzero", [x], [y], [zero]), path)


async def test_a_reply_the_data_makes_too_large_is_answered_too_large(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]], tmp_path: Path
) -> None:
    sha = _nonzero_model(tmp_path / "nonzero.onnx")
    await start_hub(models_dir=tmp_path, use_zoo=False, deliver_models=False, max_message_bytes=64 * 1024, workers=1)
    topics = Topics(prefix)

    def request(request_id: str, positive: int) -> InferenceRequest:
        x = np.zeros((1, 8000), np.float32)
        x[0, :positive] = 1.0  # 16 bytes of indices out for each: 8,000 of them make 128 KB, 10 make 160 bytes
        return tiny_request(model_id="nonzero", model_sha256=sha, request_id=request_id, tensors={"x": x})

    async with watching(broker_url, topics.response("raw")) as watcher:
        await watcher.send(topics.request("raw"), request("all", 8000))
        too_large = decode_reply((await watcher.next(30)).payload)
        await watcher.send(topics.request("raw"), request("few", 10))
        ran = decode_reply((await watcher.next(30)).payload)
    assert too_large.error is not None
    assert too_large.error.code == ErrorCode.TOO_LARGE
    assert "more than the 65,536 byte limit" in too_large.error.message
    assert ran.ok
    np.testing.assert_array_equal(ran.outputs["y"], [[0] * 10, list(range(10))])

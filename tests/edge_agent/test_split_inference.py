"""End to end over a real mosquitto: agent head -> MQTT -> hub tail -> reply."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import numpy as np
import pytest

from edge_agent import CLOUD_ONLY, EDGE_ONLY, EdgeAgent, HubError, RequestTimeoutError, SyncEdgeAgent, Timeouts
from models import partition
from protocol import ErrorCode
from tests._support import LOADS_IN_TIME

if TYPE_CHECKING:
    from pathlib import Path

    from tests._support import StartHub

pytestmark = pytest.mark.broker

MODEL = "tiny"


def _images(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(count)]


def _inner_cuts(agent: EdgeAgent, count: int = 3) -> list[str]:
    inner = [c.id for c in agent.model.cuts if c.id not in {CLOUD_ONLY, EDGE_ONLY}]
    return [inner[i * len(inner) // count] for i in range(count)] + [inner[-1]]


async def test_results_match_local_inference_at_every_kind_of_cut(
    broker_url: str, prefix: str, start_hub: StartHub
) -> None:
    await start_hub()
    async with EdgeAgent(
        broker_url, model=MODEL, cut=CLOUD_ONLY, prefix=prefix, threads=1, timeouts=LOADS_IN_TIME
    ) as agent:
        full = agent.model.halves(EDGE_ONLY).head
        for cut in [CLOUD_ONLY, *_inner_cuts(agent), EDGE_ONLY]:
            for image in _images(2):
                expected = full.run({"image": image[np.newaxis]})["logits"]
                result = await agent.infer(image, cut=cut)
                assert result.cut_id == cut
                assert result.fallback is None
                np.testing.assert_allclose(result.outputs["logits"], expected, atol=1e-4, rtol=0)
                if cut == EDGE_ONLY:
                    assert result.hub_id is None
                    assert result.bytes_sent == 0
                    assert result.hub_batch_size is None
                else:
                    assert result.hub_id == "hub0"
                    assert result.bytes_sent > 0
                    assert result.timings.hub_compute_ms > 0
                    assert result.hub_batch_size == 1  # one request at a time: each ran alone


@pytest.mark.parametrize(
    ("codec", "tolerance"),
    [("zstd", 1e-4), ("lz4", 1e-4), ("png", 1e-4), ("fp16", 0.01), ("int8-channel+zstd", 0.1), ("jpeg", 0.5)],
)
async def test_every_codec_crosses_the_wire_and_lossy_ones_stay_close(
    broker_url: str, prefix: str, start_hub: StartHub, codec: str, tolerance: float
) -> None:
    await start_hub()
    async with (
        EdgeAgent(broker_url, model=MODEL, prefix=prefix, threads=1, codec=codec, timeouts=LOADS_IN_TIME) as agent,
        EdgeAgent(broker_url, model=MODEL, prefix=prefix, threads=1, timeouts=LOADS_IN_TIME) as raw,
    ):
        full = agent.model.halves(EDGE_ONLY).head
        rows, cols = np.mgrid[0:32, 0:32]
        smooth = np.stack([rows * 8, cols * 8, (rows + cols) * 4], axis=-1).astype(np.uint8)  # JPEG's kind of image
        cut = _inner_cuts(agent)[1]
        for at in (CLOUD_ONLY, cut):
            expected = full.run({"image": smooth[np.newaxis]})["logits"]
            result = await agent.infer(smooth, cut=at)
            assert result.fallback is None
            error = np.abs(result.outputs["logits"] - expected).max() / np.abs(expected).max()
            assert error <= tolerance, (at, error)
            if (codec, at) in {("fp16", cut), ("int8-channel+zstd", cut), ("jpeg", CLOUD_ONLY)}:
                assert result.bytes_sent < (await raw.infer(smooth, cut=at)).bytes_sent * 0.6


async def test_with_an_allow_list_auto_chooses_codecs_from_it(
    broker_url: str, prefix: str, start_hub: StartHub
) -> None:
    await start_hub()
    allowed = ["raw", "fp16", "int8+zstd"]
    async with EdgeAgent(
        broker_url, model=MODEL, prefix=prefix, threads=1, codec=allowed, timeouts=LOADS_IN_TIME
    ) as agent:
        assert agent.codec == "raw"  # a fixed cut uses the first
        full = agent.model.halves(EDGE_ONLY).head
        for image in _images(6):
            expected = full.run({"image": image[np.newaxis]})["logits"]
            result = await agent.infer(image)
            assert result.codec in allowed
            assert result.fallback is None
            np.testing.assert_allclose(result.outputs["logits"], expected, atol=0.1 * np.abs(expected).max())
        fixed = await agent.infer(_images(1)[0], cut=_inner_cuts(agent)[0])
        assert fixed.codec == "raw"
    with pytest.raises(ValueError, match="non-empty list"):
        EdgeAgent(broker_url, model=MODEL, codec=[])
    with pytest.raises(ValueError, match="unknown codec 'brotli'"):
        EdgeAgent(broker_url, model=MODEL, codec=["raw", "brotli"])


async def test_multi_tensor_cut_crosses_every_tensor(broker_url: str, prefix: str, start_hub: StartHub) -> None:
    await start_hub()
    async with EdgeAgent(broker_url, model=MODEL, prefix=prefix, threads=1) as agent:
        multi = [c.id for c in agent.model.cuts if not c.single_tensor]
        assert multi, "the tiny model is a DAG with multi-tensor cuts"
        image = _images(1)[0]
        expected = agent.model.halves(EDGE_ONLY).head.run({"image": image[np.newaxis]})["logits"]
        result = await agent.infer(image, cut=multi[len(multi) // 2])
        np.testing.assert_allclose(result.outputs["logits"], expected, atol=1e-4, rtol=0)


async def test_two_replicas_share_the_requests(broker_url: str, prefix: str, start_hub: StartHub) -> None:
    await start_hub(hub_id="replica-a")
    await start_hub(hub_id="replica-b")
    options = {"model": MODEL, "cut": CLOUD_ONLY, "prefix": prefix, "threads": 1, "timeouts": LOADS_IN_TIME}
    async with EdgeAgent(broker_url, **options) as agent:  # type: ignore[arg-type]
        results = await asyncio.gather(*(agent.infer(image) for image in _images(12)))
    served_by = {result.hub_id for result in results}
    assert served_by == {"replica-a", "replica-b"}


async def test_unknown_model_gets_an_error_reply(
    broker_url: str, prefix: str, start_hub: StartHub, tmp_path: Path
) -> None:
    _, model = partition.load_model(MODEL)
    model.graph.doc_string = "a model no hub knows"
    path = tmp_path / "mystery.onnx"
    path.write_bytes(model.SerializeToString())
    await start_hub()
    async with EdgeAgent(broker_url, model=path, cut=CLOUD_ONLY, prefix=prefix, fallback=False) as agent:
        with pytest.raises(HubError) as caught:
            await agent.infer(_images(1)[0])
    assert caught.value.code == ErrorCode.UNKNOWN_MODEL
    assert "mystery" in str(caught.value)


async def test_changed_zoo_model_is_unknown_whatever_its_name(
    broker_url: str, prefix: str, start_hub: StartHub, tmp_path: Path
) -> None:
    _, model = partition.load_model(MODEL)
    model.graph.doc_string = "retrained elsewhere"
    path = tmp_path / f"{MODEL}.onnx"  # same name as the zoo model, other bytes
    path.write_bytes(model.SerializeToString())
    await start_hub()
    async with EdgeAgent(broker_url, model=path, cut=CLOUD_ONLY, prefix=prefix, fallback=False) as agent:
        with pytest.raises(HubError) as caught:
            await agent.infer(_images(1)[0])
    assert caught.value.code == ErrorCode.UNKNOWN_MODEL  # the sha256 decides, not the name
    assert "its 'tiny' has sha256" in str(caught.value)  # ... which still helps the message


async def test_agent_runs_from_a_split_directory_without_the_full_model(
    broker_url: str, prefix: str, start_hub: StartHub, tmp_path: Path
) -> None:
    model_id, model = partition.load_model(MODEL)
    cut = next(c.id for c in partition.enumerate_cuts(model) if c.single_tensor and c.position > 2)
    split = partition.split(model, cut, model_id=model_id)
    partition.save_split(split, tmp_path)
    (tmp_path / "tail.onnx").unlink()  # the device ships only head + manifest
    await start_hub()
    async with EdgeAgent(broker_url, model=tmp_path, prefix=prefix) as agent:
        assert agent.cut == cut
        assert not agent.model.holds_full_model
        result = await agent.infer(_images(1)[0])
    assert result.hub_id == "hub0"
    assert result.cut_id == cut


async def test_no_hub_falls_back_to_the_local_tail(broker_url: str, prefix: str) -> None:
    timeouts = Timeouts(request=0.3)
    async with EdgeAgent(broker_url, model=MODEL, cut=CLOUD_ONLY, prefix=prefix, timeouts=timeouts) as agent:
        image = _images(1)[0]
        result = await agent.infer(image)
        expected = agent.model.halves(EDGE_ONLY).head.run({"image": image[np.newaxis]})["logits"]
    assert result.fallback is not None
    assert "deadline" in result.fallback
    np.testing.assert_allclose(result.outputs["logits"], expected, atol=1e-4, rtol=0)


async def test_no_hub_and_no_fallback_is_a_clear_timeout(broker_url: str, prefix: str) -> None:
    timeouts = Timeouts(request=0.3)
    async with EdgeAgent(
        broker_url, model=MODEL, cut=CLOUD_ONLY, prefix=prefix, timeouts=timeouts, fallback=False
    ) as agent:
        with pytest.raises(RequestTimeoutError, match="no reply within the deadline"):
            await agent.infer(_images(1)[0])


def test_sync_agent_for_scripts(broker_url: str, prefix: str) -> None:
    with SyncEdgeAgent(broker_url, model=MODEL, cut=CLOUD_ONLY, prefix=prefix, timeouts=Timeouts(request=0.3)) as agent:
        result = agent.infer(_images(1)[0])
    assert result.outputs["logits"].shape == (1, 10)
    assert result.fallback is not None  # no hub runs in this test

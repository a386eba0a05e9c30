"""The agent service over raw HTTP (KServe v2), with a real broker, a real hub and the tiny zoo model."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from PIL import Image

from cloud_hub import Hub, HubConfig, LocalBroker, free_port
from edge_agent import EDGE_ONLY, AgentService, EdgeAgent, ModelConfig, ServiceConfig, decode_image
from edge_agent._service import OFFLINE_REASON
from protocol.errors import ConfigError
from tests._support import (
    TINY,
    get_json,
    http_exchange,
    infer_json,
    output_logits,
    parked,
    post_json,
    random_images,
    scrape,
    tiny_logits,
    until,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from tests._support import StartHub

INNER_CUT = "stem.out"
TOLERANCE = 1e-5


def _config(broker: str, prefix: str, **changes: Any) -> ServiceConfig:  # noqa: ANN401 - ServiceConfig's fields
    models = (ModelConfig(name=TINY, model=TINY, cut=INNER_CUT, threads=1),)
    options: dict[str, Any] = {"models": models, "broker": broker, "prefix": prefix, "listen": "127.0.0.1:0"}
    return ServiceConfig(**(options | changes))


@contextlib.asynccontextmanager
async def serving(config: ServiceConfig, **options: Any) -> AsyncIterator[AgentService]:  # noqa: ANN401
    """The service running on this loop until the block ends (then shut down gracefully)."""
    service = AgentService(config, **options)
    task = asyncio.create_task(service.serve())
    ready = asyncio.create_task(service.ready.wait())
    await asyncio.wait([task, ready], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()
    try:
        yield service
    finally:
        service.request_shutdown()
        await asyncio.wait_for(task, 30)


async def _post(service: AgentService, path: str, body: bytes, content_type: str = "application/json") -> Any:  # noqa: ANN401
    assert service.http.address is not None
    return await post_json(service.http.address, path, body, content_type)


async def _get(service: AgentService, path: str) -> Any:  # noqa: ANN401
    assert service.http.address is not None
    return await get_json(service.http.address, path)


def _png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.broker
async def test_json_and_image_infer_over_raw_http_answer_as_the_edge_agent_does(
    broker_url: str, prefix: str, start_hub: StartHub
) -> None:
    await start_hub(preload=(f"{TINY}:{INNER_CUT}",))
    image = random_images(1, seed=11)[0]
    png = _png(image)
    async with serving(_config(broker_url, prefix)) as service:
        await until(lambda: service.agents[TINY].connected, "the service's agent to reach the broker")
        status, answer = await _post(service, f"/v2/models/{TINY}/infer", infer_json(image, id="req-1"))
        image_status, image_answer = await _post(service, f"/v2/models/{TINY}/infer", png, "image/png")
        _, metadata = await _get(service, f"/v2/models/{TINY}")
    async with EdgeAgent(broker_url, model=TINY, cut=INNER_CUT, prefix=prefix, threads=1) as agent:
        expected = await agent.infer(image)
    assert status == 200
    assert (answer["model_name"], answer["id"]) == (TINY, "req-1")
    np.testing.assert_allclose(output_logits(answer), expected.outputs["logits"], atol=TOLERANCE, rtol=0)
    parameters = answer["parameters"]
    assert (parameters["cut"], parameters["hub"], parameters["fallback"]) == (INNER_CUT, "hub0", None)
    assert parameters["reason"] == expected.reason
    assert set(parameters["timings_ms"]) == {
        "edge_ms",
        "encode_ms",
        "network_ms",
        "hub_queue_ms",
        "hub_compute_ms",
        "decode_ms",
        "fallback_ms",
        "total_ms",
        "device_queue_ms",
    }
    assert image_status == 200
    decoded = decode_image(png, service.agents[TINY].inputs[0])
    np.testing.assert_allclose(output_logits(image_answer), tiny_logits(decoded), atol=1e-4, rtol=0)
    assert metadata["parameters"]["cut"] == INNER_CUT
    assert metadata["parameters"]["last_cut"] == INNER_CUT
    assert metadata["parameters"]["connected"] is True
    assert INNER_CUT in metadata["parameters"]["cuts"]
    assert metadata["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, 32, 32, 3]}]


@pytest.mark.broker
async def test_requests_run_concurrently_and_each_gets_its_own_answer(
    broker_url: str, prefix: str, start_hub: StartHub
) -> None:
    await start_hub(preload=(f"{TINY}:{INNER_CUT}",))
    images = random_images(6, seed=12)
    async with serving(_config(broker_url, prefix)) as service:
        await until(lambda: service.agents[TINY].connected, "the service's agent to reach the broker")
        answers = await asyncio.gather(
            *(
                _post(service, f"/v2/models/{TINY}/infer", infer_json(image, id=str(i)))
                for i, image in enumerate(images)
            )
        )
    for i, (status, answer) in enumerate(answers):
        assert (status, answer["id"]) == (200, str(i))
        np.testing.assert_allclose(output_logits(answer), tiny_logits(images[i]), atol=1e-4, rtol=0)


@pytest.mark.broker
async def test_a_shutdown_answers_the_requests_under_way_and_refuses_new_ones(
    broker_url: str, prefix: str, start_hub: StartHub
) -> None:
    hub = await start_hub(preload=(f"{TINY}:{INNER_CUT}",))
    image = random_images(1, seed=17)[0]
    service = AgentService(_config(broker_url, prefix))
    serving = asyncio.create_task(service.serve())
    await asyncio.wait_for(service.ready.wait(), 30)
    await until(lambda: service.agents[TINY].connected, "the service's agent to reach the broker")
    async with parked(hub) as gate:
        under_way = asyncio.create_task(_post(service, f"/v2/models/{TINY}/infer", infer_json(image)))
        await until(lambda: hub.queue_depth == 1, "the request to wait in the parked hub")
        service.request_shutdown()
        refused = await _post(service, f"/v2/models/{TINY}/infer", infer_json(image))
        gate.set()
        status, answer = await under_way
    await asyncio.wait_for(serving, 30)
    assert refused == (503, {"error": "shutting down"})
    assert (status, answer["parameters"]["hub"], answer["parameters"]["fallback"]) == (200, "hub0", None)


async def test_bad_requests_get_kserve_errors_and_the_service_keeps_serving(prefix: str) -> None:
    image = random_images(1, seed=13)[0]
    good = infer_json(image)
    wrong_datatype = good.replace(b'"UINT8"', b'"FP32"')
    wrong_shape = json.dumps(
        {"inputs": [{"name": "image", "shape": [1, 2, 2, 3], "datatype": "UINT8", "data": [0] * 12}]}
    ).encode()
    short_data = json.dumps({"inputs": [{"name": "image", "shape": [1, 32], "datatype": "UINT8", "data": [0]}]})
    unknown_input = good.replace(b'"name": "image"', b'"name": "photo"')
    config = _config("mqtt://127.0.0.1:9", prefix, max_body_bytes=len(good))  # no broker there: offline
    async with serving(config) as service:
        cases = {
            "unknown model": await _post(service, "/v2/models/nope/infer", good),
            "not JSON": await _post(service, f"/v2/models/{TINY}/infer", b"{not json"),
            "no inputs": await _post(service, f"/v2/models/{TINY}/infer", b"[]"),
            "datatype": await _post(service, f"/v2/models/{TINY}/infer", wrong_datatype),
            "shape": await _post(service, f"/v2/models/{TINY}/infer", wrong_shape),
            "data size": await _post(service, f"/v2/models/{TINY}/infer", short_data.encode()),
            "input name": await _post(service, f"/v2/models/{TINY}/infer", unknown_input),
            "not an image": await _post(service, f"/v2/models/{TINY}/infer", b"GIF89a?", "image/png"),
            "too large": await _post(service, f"/v2/models/{TINY}/infer", good + b" "),
        }
        status, answer = await _post(service, f"/v2/models/{TINY}/infer", good)
    assert {what: status for what, (status, _) in cases.items()} == {
        "unknown model": 404,
        "not JSON": 400,
        "no inputs": 400,
        "datatype": 400,
        "shape": 400,
        "data size": 400,
        "input name": 400,
        "not an image": 400,
        "too large": 413,
    } or pytest.fail(str(cases))
    assert all(set(answer) == {"error"} for _, answer in cases.values() if isinstance(answer, dict))
    assert "takes UINT8, not 'FP32'" in cases["datatype"][1]["error"]
    assert status == 200
    assert answer["parameters"]["reason"] == OFFLINE_REASON


async def test_one_process_serves_several_models_with_one_metrics_registry(prefix: str) -> None:
    models = (ModelConfig(name="front", model=TINY, threads=1), ModelConfig(name="back", model=TINY, threads=1))
    image = random_images(1, seed=18)[0]
    async with serving(_config("mqtt://127.0.0.1:9", prefix, models=models, agent_id="cam")) as service:
        answers = [await _post(service, f"/v2/models/{name}/infer", infer_json(image)) for name in ("front", "back")]
        await _post(service, "/v2/models/back/infer", infer_json(image))
        assert service.http.address is not None
        samples = await scrape(service.http.address)
    assert [agent.agent_id for agent in service.agents.values()] == ["cam-front", "cam-back"]
    assert [(status, answer["model_name"]) for status, answer in answers] == [(200, "front"), (200, "back")]
    requests = "edgecut_agent_requests_total"
    for model, count in (("front", 1), ("back", 2)):
        labels = frozenset({"model": model, "cut": EDGE_ONLY, "codec": "raw", "outcome": "success"}.items())
        assert samples[requests, labels] == count
    assert samples["edgecut_agent_broker_connected", frozenset()] == 0


async def test_health_and_model_readiness_paths(prefix: str) -> None:
    async with serving(_config("mqtt://127.0.0.1:9", prefix)) as service:
        live = await _get(service, "/v2/health/live")
        ready = await _get(service, "/v2/health/ready")
        model_ready = await _get(service, f"/v2/models/{TINY}/ready")
        unknown = await _get(service, "/v2/models/nope")
        server = await _get(service, "/v2")
        assert service.http.address is not None
        wrong_method, headers, _ = await http_exchange(
            service.http.address, f"GET /v2/models/{TINY}/infer HTTP/1.1\r\n\r\n".encode()
        )
    assert live == (200, {"live": True})
    assert ready == (200, {"ready": True})
    assert model_ready == (200, {"ready": True})
    assert unknown[0] == 404
    assert server[1]["name"] == "edgecut-agent"
    assert (wrong_method, headers["allow"]) == (405, "POST")


async def test_an_agent_started_without_a_broker_serves_edge_only_and_joins_when_it_appears(
    prefix: str, tmp_path: Path, broker_at: Callable[[int], LocalBroker]
) -> None:
    port = free_port("127.0.0.1")
    url = f"mqtt://127.0.0.1:{port}"
    image = random_images(1, seed=14)[0]
    async with serving(_config(url, prefix, state_dir=tmp_path)) as service:
        offline_status, offline = await _post(service, f"/v2/models/{TINY}/infer", infer_json(image))
        _, before = await _get(service, f"/v2/models/{TINY}")
        with broker_at(port) as broker:
            hub = Hub(
                HubConfig(
                    broker=broker.url, prefix=prefix, threads=1, hub_id="late-hub", preload=(f"{TINY}:{INNER_CUT}",)
                )
            )
            hub_task = asyncio.create_task(hub.serve())
            try:
                await asyncio.wait_for(hub.ready.wait(), 30)
                await until(lambda: service.agents[TINY].connected, "the agent to join the broker that appeared")
                online_status, online = await _post(service, f"/v2/models/{TINY}/infer", infer_json(image))
            finally:
                hub.request_shutdown()
                await hub_task
    assert offline_status == 200
    assert (offline["parameters"]["cut"], offline["parameters"]["reason"]) == (EDGE_ONLY, OFFLINE_REASON)
    assert before["parameters"]["connected"] is False
    assert online_status == 200
    assert (online["parameters"]["cut"], online["parameters"]["hub"]) == (INNER_CUT, "late-hub")
    assert online["parameters"]["fallback"] is None
    np.testing.assert_allclose(output_logits(online), output_logits(offline), atol=1e-4, rtol=0)


def _drop_in(directory: Path, name: str, image: np.ndarray) -> None:
    """Write an image the way a camera should: under a hidden name, then renamed in."""
    hidden = directory / f".{name}"
    Image.fromarray(image).save(hidden, format="PNG")
    hidden.rename(directory / name)


async def test_the_watched_directory_gets_a_json_result_beside_each_image(prefix: str, tmp_path: Path) -> None:
    images = random_images(3, seed=15)
    (tmp_path / "notes.txt").write_text("not an image")
    config = _config("mqtt://127.0.0.1:9", prefix, watch_dir=tmp_path, watch_rate_hz=50.0)
    async with serving(config):
        for i, image in enumerate(images):
            _drop_in(tmp_path, f"frame{i}.png", image)
        (tmp_path / "broken.png").write_bytes(b"not a png")
        await until(lambda: len(list(tmp_path.glob("*.json"))) == 4, "a result beside each image")
    for i, image in enumerate(images):
        answer = json.loads((tmp_path / f"frame{i}.png.json").read_text())
        assert answer["parameters"]["reason"] == OFFLINE_REASON
        np.testing.assert_allclose(output_logits(answer), tiny_logits(image), atol=1e-4, rtol=0)
    assert "cannot read the image" in json.loads((tmp_path / "broken.png.json").read_text())["error"]
    assert not (tmp_path / "notes.txt.json").exists()
    assert not list(tmp_path.glob(".*"))  # noqa: ASYNC240 - no partial results left


async def test_a_full_watch_queue_skips_files_and_says_so(prefix: str, tmp_path: Path) -> None:
    images = random_images(5, seed=16)
    for i, image in enumerate(images):  # all there before the first listing: found at once
        _drop_in(tmp_path, f"frame{i}.png", image)
    config = _config("mqtt://127.0.0.1:9", prefix, watch_dir=tmp_path, watch_queue=1, watch_rate_hz=20.0)
    async with serving(config):
        await until(lambda: len(list(tmp_path.glob("*.json"))) == len(images), "a result for every file")
    answers = [json.loads((tmp_path / f"frame{i}.png.json").read_text()) for i in range(len(images))]
    skipped = [answer for answer in answers if "error" in answer]
    assert skipped, "five files at once into a queue of one: some must be skipped"
    assert all("skipped" in answer["error"] for answer in skipped)
    assert len(skipped) < len(images)


# A device's install (edgecut[agent]): no onnx, a segments directory made elsewhere, no broker yet.
_DEVICE_SCRIPT = """
import asyncio, json, sys
sys.modules["onnx"] = None  # any import of onnx now raises ImportError
import numpy as np
from edge_agent import AgentService, load_service_config

async def main():
    service = AgentService(load_service_config(None, models=[sys.argv[1]], flags={"listen": "127.0.0.1:0",
        "broker": "mqtt://127.0.0.1:9"}))
    serving = asyncio.create_task(service.serve())
    await service.ready.wait()
    result = await service.infer("segments", np.zeros((32, 32, 3), np.uint8))
    service.request_shutdown()
    await serving
    print(json.dumps({"cut": result.cut_id, "onnx_loaded": sys.modules.get("onnx") is not None}))

asyncio.run(main())
"""


def test_the_service_serves_a_segments_directory_with_onnx_unavailable(tmp_path: Path) -> None:
    from edgecut._cli import main  # noqa: PLC0415 - this machine has onnx: split here, serve "there"

    segments = tmp_path / "segments"
    assert main(["models", "split", TINY, "--cuts", "auto", "--out", str(segments)]) == 0
    completed = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", _DEVICE_SCRIPT, str(segments)], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout.splitlines()[-1]) == {"cut": EDGE_ONLY, "onnx_loaded": False}


async def test_a_missing_watched_directory_stops_the_start_before_readiness(prefix: str, tmp_path: Path) -> None:
    service = AgentService(_config("mqtt://127.0.0.1:9", prefix, watch_dir=tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"watch_dir: .*nowhere is not a directory"):
        await service.serve()
    assert not service.ready.is_set()


async def test_a_watched_directory_that_goes_away_is_watched_again_when_it_is_back(
    prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    image = random_images(1, seed=19)[0]
    async with serving(_config("mqtt://127.0.0.1:9", prefix, watch_dir=inbox, watch_rate_hz=50.0)):
        inbox.rmdir()
        await until(lambda: "cannot list the watched directory" in caplog.text, "the loss to be noticed")
        inbox.mkdir()
        _drop_in(inbox, "back.png", image)
        await until((inbox / "back.png.json").exists, "a result once the directory is back")
    np.testing.assert_allclose(
        output_logits(json.loads((inbox / "back.png.json").read_text())), tiny_logits(image), atol=1e-4
    )

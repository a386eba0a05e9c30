"""A served model switched to the version a hub publishes, under a steady stream of requests, and rolled back.

Real mosquitto, a real hub delivering segments directories, ONNX Runtime on
both sides. A version is the tiny model with other weights; every answer is
checked against the full model of the version it names.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

import pytest

from cloud_hub import ModelDelivery, publish_version
from edge_agent import ModelConfig, ServiceConfig
from protocol import Topics, canary_position, decode_status
from tests._support import (
    TINY,
    RequestStream,
    damage_file,
    infer_json,
    parked,
    random_images,
    save_tiny_version,
    until,
    version_logits,
    watching,
)
from tests.edge_agent.test_service import _get, _post, serving

if TYPE_CHECKING:
    from pathlib import Path

    from cloud_hub import LocalBroker
    from edge_agent import AgentService
    from tests._support import StartHub

pytestmark = pytest.mark.broker

CUT = "pool"  # a candidate cut of the tiny model's segments: the hub runs the tail
IMAGES = random_images(4, seed=31)


def _config(broker: str, prefix: str, state_dir: Path, **model: Any) -> ServiceConfig:  # noqa: ANN401
    options = {"cut": CUT, "threads": 1, "trial_requests": 3} | model
    entry = ModelConfig(name=TINY, model=TINY, fetch=True, **options)
    return ServiceConfig(
        models=(entry,), broker=broker, prefix=prefix, listen="127.0.0.1:0", state_dir=state_dir, agent_id="cam"
    )


def stream_of(service: AgentService) -> RequestStream:
    assert service.http.address is not None
    return RequestStream(service.http.address, IMAGES, seconds=120.0)


async def _status_models(broker: str, prefix: str) -> dict[str, str]:
    async with watching(broker, Topics(prefix).agent_status(f"cam-{TINY}")) as watcher:
        status = decode_status((await watcher.next()).payload)  # retained
    assert status.state == "online"
    return dict(status.models)


async def test_a_published_version_is_switched_to_under_a_request_stream_none_dropped_none_mixed(
    broker_url: str, prefix: str, start_hub: StartHub, tmp_path: Path
) -> None:
    models = tmp_path / "hub-models"
    v1, v1_dir = save_tiny_version(models, "v1", scale=1.0)
    hub = await start_hub(models_dir=models, use_zoo=False, hub_id="delivering-hub")
    assert hub.delivery is not None
    async with serving(_config(broker_url, prefix, tmp_path / "state", timeout_s=60.0)) as service:
        await until(lambda: service.agents[TINY].connected, "the agent to connect")
        assert service.version(TINY) == v1
        served, old = service.served[TINY], service.agents[TINY]
        async with stream_of(service).running() as stream:
            await until(lambda: stream.count(v1) >= 4, "answers from v1")
            async with parked(hub):  # the stream's next two requests wait at the hub, on v1's halves
                await until(lambda: served._in_flight.get(old) == 2, "two requests under way on v1")
                v2, v2_dir = save_tiny_version(models, "v2", scale=0.5)
                assert await hub.delivery.rescan() == [TINY]
                await until(lambda: served.version == v2, "the switch to v2", 60)
                assert served._in_flight.get(old) == 2  # switched with them under way
            await until(served.settled.is_set, "v2's trial", 60)
            stream.marked = True
            await until(lambda: len(stream.after_mark()) >= 6, "answers after the switch")
        _, described = await _get_model(service)
    stream.check({v1: version_logits(v1_dir, IMAGES), v2: version_logits(v2_dir, IMAGES)})
    assert stream.count(v1) >= 6  # the two under way at the switch finished on v1
    assert all(answer["model_version"] == v2 for answer in stream.after_mark())
    assert described["versions"] == [v2]
    update = described["parameters"]["update"]
    assert (update["version"], update["state"], update["previous"], update["bad"]) == (v2, "serving", v1, {})
    assert sorted(path.name for path in (tmp_path / "state" / "models" / TINY).iterdir()) == sorted([v1, v2])


async def test_a_version_published_after_a_broker_restart_is_switched_to(
    own_broker: LocalBroker, prefix: str, start_hub: StartHub, tmp_path: Path
) -> None:
    models = tmp_path / "hub-models"
    v1, v1_dir = save_tiny_version(models, "v1", scale=1.0)
    hub = await start_hub(broker=own_broker.url, models_dir=models, use_zoo=False)
    assert hub.delivery is not None
    async with serving(_config(own_broker.url, prefix, tmp_path / "state")) as service:
        await until(lambda: service.agents[TINY].connected, "the agent to connect")
        async with stream_of(service).running() as stream:
            await until(lambda: stream.count(v1) >= 2, "answers from v1")
            own_broker.kill()
            await until(lambda: not service.agents[TINY].connected, "the agent to see the broker go")
            await asyncio.to_thread(own_broker.start)
            await until(lambda: service.agents[TINY].connected and hub.delivery.connection.is_connected, "reconnects")
            v2, v2_dir = save_tiny_version(models, "v2", scale=0.5)
            await hub.delivery.rescan()
            served = service.served[TINY]
            await until(lambda: served.version == v2 and served.settled.is_set(), "the switch to v2", 60)
            stream.marked = True
            await until(lambda: len(stream.after_mark()) >= 4, "answers after the switch")
    stream.check(
        {v1: version_logits(v1_dir, IMAGES), v2: version_logits(v2_dir, IMAGES)}, hub_ran=False
    )  # some ran offline
    assert all(answer["model_version"] == v2 for answer in stream.after_mark())


async def test_the_agent_status_names_the_version_switched_to(
    broker_url: str, prefix: str, start_hub: StartHub, tmp_path: Path
) -> None:
    models = tmp_path / "hub-models"
    v1, _ = save_tiny_version(models, "v1", scale=1.0)
    hub = await start_hub(models_dir=models, use_zoo=False)
    assert hub.delivery is not None
    config = _config(broker_url, prefix, tmp_path / "state", trial_requests=0)
    async with serving(config) as service:
        await until(lambda: service.agents[TINY].connected, "the agent to connect")
        assert await _status_models(broker_url, prefix) == {TINY: v1}
        v2, _ = save_tiny_version(models, "v2", scale=2.0)
        await hub.delivery.rescan()
        await until(lambda: service.version(TINY) == v2, "the switch to v2", 60)
        await until(lambda: len(service.served[TINY]._closing) == 0, "v1's agent to close")
        assert await _status_models(broker_url, prefix) == {TINY: v2}  # v1 left without a goodbye over it


async def test_a_corrupted_version_is_refused_and_the_running_one_keeps_serving(
    broker_url: str, prefix: str, start_hub: StartHub, tmp_path: Path
) -> None:
    models = tmp_path / "hub-models"
    v1, v1_dir = save_tiny_version(models, "v1", scale=1.0)
    hub = await start_hub(models_dir=models, use_zoo=False)
    assert hub.delivery is not None
    async with serving(_config(broker_url, prefix, tmp_path / "state", timeout_s=60.0)) as service:  # loads in time
        await until(lambda: service.agents[TINY].connected, "the agent to connect")
        async with stream_of(service).running() as stream:
            v2, v2_dir = save_tiny_version(models, "v2", scale=0.5)
            damaged = max(v2_dir.glob("*.onnx"), key=lambda path: path.stat().st_size)
            hub.delivery._hashes.sha256(damaged)  # the hub hashed it intact; then its disk changed it
            damage_file(damaged)
            await hub.delivery.rescan()
            served = service.served[TINY]
            await until(lambda: v2 in served.bad, "v2 to be refused", 60)
            await until(lambda: stream.count(v1) >= 8, "answers from v1")
        _, described = await _get_model(service)
    stream.check({v1: version_logits(v1_dir, IMAGES)})
    assert "sha256" in served.bad[v2]
    assert served.version == v1
    assert described["parameters"]["update"]["bad"] == {v2: served.bad[v2]}
    assert [path.name for path in (tmp_path / "state" / "models" / TINY).iterdir() if path.is_dir()] != [v2]


async def test_a_version_failing_its_first_requests_is_rolled_back_and_they_are_answered_by_the_previous(
    broker_url: str, prefix: str, start_hub: StartHub, tmp_path: Path
) -> None:
    hub_models, registry_models = tmp_path / "hub-models", tmp_path / "registry"
    v1, v1_dir = save_tiny_version(hub_models, "v1", scale=1.0)
    save_tiny_version(registry_models, "v1", scale=1.0)
    await start_hub(models_dir=hub_models, use_zoo=False, deliver_models=False)  # it will not hold v2's tails
    config = _config(broker_url, prefix, tmp_path / "state", fallback=False)
    registry = ModelDelivery(broker_url, node_id="registry", models_dir=registry_models, prefix=prefix, rescan_s=None)
    async with registry, serving(config) as service:
        await until(lambda: service.agents[TINY].connected, "the agent to connect")
        async with stream_of(service).running() as stream:
            await until(lambda: stream.count(v1) >= 2, "answers from v1")
            v2, _ = save_tiny_version(registry_models, "v2", scale=0.5)
            await registry.rescan()
            served = service.served[TINY]
            await until(lambda: v2 in served.bad, "v2 to be rolled back", 60)
            stream.marked = True
            await until(lambda: len(stream.after_mark()) >= 4, "answers after the rollback")
        _, described = await _get_model(service)
        async with serving(config) as restarted:  # v2 still the newest offered: the device remembers it is bad
            assert restarted.version(TINY) == v1
            assert restarted.served[TINY].bad == served.bad
    stream.check({v1: version_logits(v1_dir, IMAGES)})  # the failed requests too: run again on v1
    assert "unknown_model" in served.bad[v2]
    update = described["parameters"]["update"]
    assert (update["version"], update["state"], update["previous"]) == (v1, "serving", v2)
    assert update["why"].startswith(f"rolled back from {v2}")


async def _get_model(service: AgentService) -> Any:  # noqa: ANN401
    return await _get(service, f"/v2/models/{TINY}")


async def test_a_canary_goes_to_the_agents_it_draws_first_then_to_every_agent_once_promoted(
    broker_url: str, prefix: str, start_hub: StartHub, tmp_path: Path
) -> None:
    models = tmp_path / "hub-models"
    v1, _ = save_tiny_version(models, "v1", scale=1.0)
    v2, built = save_tiny_version(tmp_path / "built", "v2", scale=0.5)
    devices = [f"cam{n}" for n in range(40)]  # a model's agent is DEVICE-NAME: its position decides
    inside = next(device for device in devices if canary_position(f"{device}-{TINY}", v2) < 0.5)
    outside = next(device for device in devices if canary_position(f"{device}-{TINY}", v2) >= 0.5)
    hub = await start_hub(models_dir=models, use_zoo=False)
    assert hub.delivery is not None
    configs = [
        dataclasses.replace(_config(broker_url, prefix, tmp_path / device, trial_requests=0), agent_id=device)
        for device in (inside, outside)
    ]
    async with serving(configs[0]) as first, serving(configs[1]) as second:
        publish_version(built, models, canary=0.5)
        assert await hub.delivery.rescan() == [TINY]
        await until(lambda: first.version(TINY) == v2, "the canary's agent to switch", 60)
        assert second.version(TINY) == v1
        answers = [
            await _post(service, f"/v2/models/{TINY}/infer", infer_json(IMAGES[0])) for service in (first, second)
        ]
        assert [answer["model_version"] for _, answer in answers] == [v2, v1]
        publish_version(built, models)  # promoted: every agent
        assert await hub.delivery.rescan() == [TINY]
        await until(lambda: second.version(TINY) == v2, "the other agent to switch", 60)

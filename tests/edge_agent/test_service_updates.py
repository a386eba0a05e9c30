"""A served model switched to the version a hub publishes, under a steady stream of requests, and rolled back.

Real mosquitto, a real hub delivering segments directories, ONNX Runtime on
both sides. A version is the tiny model with other weights; every answer is
checked against the full model of the version it names.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from cloud_hub import ModelDelivery, publish_version
from edge_agent import EDGE_ONLY, ModelConfig, ServiceConfig
from edge_agent._halves import ModelHalves
from protocol import Topics, canary_position, decode_status
from tests._support import TINY, parked, random_images, save_tiny_version, until, watching
from tests.edge_agent.test_service import _get, _infer_json, _logits, _post, serving

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    from cloud_hub import Hub, LocalBroker
    from edge_agent import AgentService

    StartHub = Callable[..., Awaitable[Hub]]

pytestmark = pytest.mark.broker

CUT = "pool"  # a candidate cut of the tiny model's segments: the hub runs the tail
IMAGES = random_images(4, seed=31)
MAX_REQUESTS = 600  # the stream's bound, whatever happens
STREAM_S = 120.0


def full_logits(directory: Path) -> dict[int, np.ndarray]:
    """The logits of each test image from the version's full model, run locally."""
    head = ModelHalves.open(directory, threads=1).halves(EDGE_ONLY).head
    assert head is not None
    return {index: head.run({"image": image[None]})["logits"] for index, image in enumerate(IMAGES)}


def _config(broker: str, prefix: str, state_dir: Path, **model: Any) -> ServiceConfig:  # noqa: ANN401
    options = {"cut": CUT, "threads": 1, "trial_requests": 3} | model
    entry = ModelConfig(name=TINY, model=TINY, fetch=True, **options)
    return ServiceConfig(
        models=(entry,), broker=broker, prefix=prefix, listen="127.0.0.1:0", state_dir=state_dir, agent_id="cam"
    )


class Stream:
    """Requests over HTTP, two at a time, one after another, until stopped: each image index with its answer."""

    def __init__(self, service: AgentService) -> None:
        self.service = service
        self.answers: list[tuple[int, bool, int, dict[str, Any]]] = []  # image, sent after `mark`, status, answer
        self.marked = False
        self._stop = asyncio.Event()
        self._sent = 0

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Stream]:
        clients = [asyncio.create_task(self._client()) for _ in range(2)]
        try:
            yield self
        finally:
            self._stop.set()
            await asyncio.gather(*clients)

    async def _client(self) -> None:
        deadline = time.monotonic() + STREAM_S
        while not self._stop.is_set() and self._sent < MAX_REQUESTS and time.monotonic() < deadline:
            index = self._sent % len(IMAGES)
            self._sent += 1
            after = self.marked
            status, answer = await _post(self.service, f"/v2/models/{TINY}/infer", _infer_json(IMAGES[index]))
            self.answers.append((index, after, status, answer))

    def count(self, version: str) -> int:
        return sum(1 for _, _, status, answer in self.answers if status == 200 and answer["model_version"] == version)

    def check(self, expected: dict[str, dict[int, np.ndarray]], *, hub_ran: bool = True) -> None:
        """Every request answered 200 by one of ``expected``'s versions, its outputs that version's full model's.

        With ``hub_ran``, the hub ran every tail (the versions it delivers: both of them).
        """
        assert self.answers
        for index, _, status, answer in self.answers:
            assert status == 200, answer
            assert answer["model_version"] in expected
            assert answer["parameters"]["fallback"] is None or not hub_ran
            np.testing.assert_allclose(_logits(answer), expected[answer["model_version"]][index], atol=1e-4, rtol=0)


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
        async with Stream(service).running() as stream:
            await until(lambda: stream.count(v1) >= 4, "answers from v1")
            async with parked(hub):  # the stream's next two requests wait at the hub, on v1's halves
                await until(lambda: served._in_flight.get(old) == 2, "two requests under way on v1")
                v2, v2_dir = save_tiny_version(models, "v2", scale=0.5)
                assert await hub.delivery.rescan() == [TINY]
                await until(lambda: served.version == v2, "the switch to v2", 60)
                assert served._in_flight.get(old) == 2  # switched with them under way
            await until(served.settled.is_set, "v2's trial", 60)
            stream.marked = True
            await until(lambda: sum(after for _, after, _, _ in stream.answers) >= 6, "answers after the switch")
        _, described = await _get_model(service)
    stream.check({v1: full_logits(v1_dir), v2: full_logits(v2_dir)})
    assert stream.count(v1) >= 6  # the two under way at the switch finished on v1
    assert all(answer["model_version"] == v2 for _, after, _, answer in stream.answers if after)
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
        async with Stream(service).running() as stream:
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
            await until(lambda: sum(after for _, after, _, _ in stream.answers) >= 4, "answers after the switch")
    stream.check({v1: full_logits(v1_dir), v2: full_logits(v2_dir)}, hub_ran=False)  # some ran offline
    assert all(answer["model_version"] == v2 for _, after, _, answer in stream.answers if after)


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
    async with serving(_config(broker_url, prefix, tmp_path / "state")) as service:
        await until(lambda: service.agents[TINY].connected, "the agent to connect")
        async with Stream(service).running() as stream:
            v2, v2_dir = save_tiny_version(models, "v2", scale=0.5)
            damaged = max(v2_dir.glob("*.onnx"), key=lambda path: path.stat().st_size)
            hub.delivery._hashes.sha256(damaged)  # the hub hashed it intact; then its disk changed it
            _damage(damaged)
            await hub.delivery.rescan()
            served = service.served[TINY]
            await until(lambda: v2 in served.bad, "v2 to be refused", 60)
            await until(lambda: stream.count(v1) >= 8, "answers from v1")
        _, described = await _get_model(service)
    stream.check({v1: full_logits(v1_dir)})
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
        async with Stream(service).running() as stream:
            await until(lambda: stream.count(v1) >= 2, "answers from v1")
            v2, _ = save_tiny_version(registry_models, "v2", scale=0.5)
            await registry.rescan()
            served = service.served[TINY]
            await until(lambda: v2 in served.bad, "v2 to be rolled back", 60)
            stream.marked = True
            await until(lambda: sum(after for _, after, _, _ in stream.answers) >= 4, "answers after the rollback")
        _, described = await _get_model(service)
        async with serving(config) as restarted:  # v2 still the newest offered: the device remembers it is bad
            assert restarted.version(TINY) == v1
            assert restarted.served[TINY].bad == served.bad
    stream.check({v1: full_logits(v1_dir)})  # the failed requests too: run again on v1
    assert "unknown_model" in served.bad[v2]
    update = described["parameters"]["update"]
    assert (update["version"], update["state"], update["previous"]) == (v1, "serving", v2)
    assert update["why"].startswith(f"rolled back from {v2}")


def _damage(path: Path) -> None:
    """Change bytes in the middle of ``path``, its size and modification time kept."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(255 - byte for byte in data[middle : middle + 16])
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


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
            await _post(service, f"/v2/models/{TINY}/infer", _infer_json(IMAGES[0])) for service in (first, second)
        ]
        assert [answer["model_version"] for _, answer in answers] == [v2, v1]
        publish_version(built, models)  # promoted: every agent
        assert await hub.delivery.rescan() == [TINY]
        await until(lambda: second.version(TINY) == v2, "the other agent to switch", 60)

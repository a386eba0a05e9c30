"""Issue 26's whole story through the real ``edgecut agent serve`` process, one step after another.

A real broker of this test's own, a real hub holding version v1 of the tiny
model as a segments directory, and the agent as a child process started with
an empty state directory. The agent must fetch and check v1, answer over HTTP
as the library does, keep serving through a broker restart, switch to a v2
published under a steady stream of requests with none dropped and none
answered by a mix of versions, and refuse a v3 whose bytes were damaged on the
hub's disk, serving v2 on. The in-process tests (tests/edge_agent/test_service_*)
take each step apart; this one runs them in a row, as a device meets them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from cloud_hub import free_port
from edge_agent import EdgeAgent
from tests._support import (
    TINY,
    RequestStream,
    damage_file,
    get_json,
    infer_json,
    output_logits,
    post_json,
    random_images,
    save_tiny_version,
    until,
    version_logits,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from cloud_hub import LocalBroker
    from tests._support import StartHub

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[1]
CUT = "pool"  # the hub runs the tail: every answer crosses the broker
IMAGES = random_images(4, seed=47)


def _config(path: Path, broker: LocalBroker, prefix: str, port: int) -> Path:
    path.write_text(
        f'broker = "{broker.url}"\nprefix = "{prefix}"\nagent_id = "cam"\nlisten = "127.0.0.1:{port}"\n'
        f'state_dir = "{path.parent / "state"}"\n\n'
        f'[[models]]\nname = "{TINY}"\nmodel = "{TINY}"\nfetch = true\ncut = "{CUT}"\nthreads = 1\n'
        "trial_requests = 3\ntimeout_s = 60.0\n"
    )
    return path


@contextlib.asynccontextmanager
async def agent_process(config: Path, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """``edgecut agent serve --config CONFIG`` as a child process, stopped with SIGTERM at the end (exit 0)."""
    command = [sys.executable, "-m", "edgecut", "agent", "serve", "--config", str(config)]
    env = {name: value for name, value in os.environ.items() if not name.startswith("EDGECUT_")}  # the file decides
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(*command, stdout=out, stderr=out, cwd=ROOT, env=env)
        try:
            yield process
        finally:
            if process.returncode is None:
                process.terminate()
            try:
                returncode = await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                process.kill()
                raise
    assert returncode == 0, log.read_text()  # noqa: ASYNC240 - read only when it failed


async def _described(address: tuple[str, int]) -> dict[str, Any]:
    status, described = await get_json(address, f"/v2/models/{TINY}")
    assert status == 200, described
    return described


async def _until_described(
    address: tuple[str, int], condition: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """The model's description once ``condition`` holds of it (polled; failing after 90 s)."""
    deadline = time.monotonic() + 90
    while not condition(described := await _described(address)):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}: {described}")
        await asyncio.sleep(0.05)
    return described


async def _reachable(address: tuple[str, int], process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 120  # the fetch and a cold ORT start on a loaded host
    while time.monotonic() < deadline:
        assert process.returncode is None, "the agent process exited"
        with contextlib.suppress(OSError):
            status, _ = await get_json(address, "/v2/health/ready")
            if status == 200:
                return
        await asyncio.sleep(0.1)
    pytest.fail("the agent process did not get ready")


async def test_agent_serve_fetches_serves_survives_a_restart_updates_and_refuses_a_damaged_version(
    own_broker: LocalBroker, prefix: str, start_hub: StartHub, tmp_path: Path
) -> None:
    models = tmp_path / "hub-models"
    v1, v1_dir = save_tiny_version(models, "v1", scale=1.0)
    hub = await start_hub(broker=own_broker.url, models_dir=models, use_zoo=False, hub_id="delivering-hub")
    assert hub.delivery is not None
    port = free_port("127.0.0.1")
    address = ("127.0.0.1", port)
    (tmp_path / "device").mkdir()
    config = _config(tmp_path / "device" / "agent.toml", own_broker, prefix, port)
    expected = {v1: version_logits(v1_dir, IMAGES)}

    async with agent_process(config, tmp_path / "agent.log") as process:
        # Fetched and checked from an empty cache, then served at the cut.
        await _reachable(address, process)
        described = await _described(address)
        assert described["versions"] == [v1]
        fetched = tmp_path / "device" / "state" / "models" / TINY / v1
        for path in v1_dir.iterdir():  # byte for byte (the cache keeps the hub's offer beside them)
            assert (fetched / path.name).read_bytes() == path.read_bytes()

        # Answered as the library answers, the hub running the tail: once connected (ready is the models
        # opened, offline first: a request before the connection runs on the device, as it should).
        await _until_described(address, lambda d: d["parameters"]["connected"], "the agent to connect")
        status, answer = await post_json(address, f"/v2/models/{TINY}/infer", infer_json(IMAGES[0], id="first"))
        assert status == 200, answer
        async with EdgeAgent(own_broker.url, model=v1_dir, cut=CUT, prefix=prefix, threads=1) as library:
            by_library = await library.infer(IMAGES[0])
        np.testing.assert_allclose(output_logits(answer), by_library.outputs["logits"], atol=1e-5, rtol=0)
        assert (answer["id"], answer["model_version"]) == ("first", v1)
        assert (answer["parameters"]["cut"], answer["parameters"]["hub"]) == (CUT, "delivering-hub")
        assert answer["parameters"]["fallback"] is None

        async with RequestStream(address, IMAGES, limit=400).running() as stream:
            # A broker restart under the stream: the agent sees it go and comes back, no request lost.
            await until(lambda: stream.count(v1) >= 2, "answers from v1", 60)
            own_broker.kill()
            await _until_described(address, lambda described: not described["parameters"]["connected"], "it sees it go")
            await asyncio.to_thread(own_broker.start)
            await until(lambda: hub.delivery is not None and hub.delivery.connection.is_connected, "the hub back", 60)
            answered = len(stream.answers)
            await until(lambda: len(stream.answers) >= answered + 2, "answers after the restart", 60)

            # v2 published under the stream: switched to between requests, none dropped, none mixed.
            v2, v2_dir = save_tiny_version(models, "v2", scale=0.5)
            expected[v2] = version_logits(v2_dir, IMAGES)
            assert await hub.delivery.rescan() == [TINY]
            await until(lambda: stream.count(v2) >= 6, "answers from v2", 90)

            # v3, damaged on the hub's disk after it was hashed: refused, v2 serves on.
            v3, v3_dir = save_tiny_version(models, "v3", scale=2.0)
            damaged = max(v3_dir.glob("*.onnx"), key=lambda path: path.stat().st_size)
            hub.delivery._hashes.sha256(damaged)  # the hub hashed it intact; then its disk changed it
            damage_file(damaged)
            await hub.delivery.rescan()
            described = await _until_described(
                address, lambda described: v3 in described["parameters"]["update"]["bad"], "v3 refused"
            )
            stream.marked = True
            await until(lambda: len(stream.after_mark()) >= 4, "answers after the refusal", 60)

    stream.check(expected, hub_ran=False)  # every request answered, by v1 or by v2, as its full model does
    # Switched between requests: none sent after the switch ran on v1. Judged by the order the requests went
    # out, not the order answers came back (a v1 request under way at the switch may finish after several
    # quick v2 ones); one more may be v1, the other client's, handled first though sent just after.
    assert max(stream.sent(v1)) < min(stream.sent(v2)) + 2
    assert "sha256" in described["parameters"]["update"]["bad"][v3]
    assert (described["versions"], described["parameters"]["update"]["version"]) == ([v2], v2)
    after_refusal = stream.after_mark()
    assert {answer["model_version"] for answer in after_refusal} == {v2}
    assert all(answer["parameters"]["fallback"] is None for answer in after_refusal)

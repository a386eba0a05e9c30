"""The agent service's camera input: a video file read at its own rate, the newest frame taken, the rest dropped."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pytest

from cloud_hub import free_port
from edge_agent import EDGE_ONLY, ModelConfig, ServiceConfig
from protocol.errors import ConfigError
from tests._support import TINY, output_logits, tiny_logits, until
from tests.edge_agent.test_service import serving

if TYPE_CHECKING:
    from pathlib import Path

cv2 = pytest.importorskip("cv2", reason="the camera input needs OpenCV: pip install 'edgecut[camera]'")

FRAMES, FPS = 40, 40.0  # a second of video


def _frame(index: int) -> np.ndarray:
    """Frame ``index`` (from 1, as the results count them): one colour of its own, so a result tells its frame."""
    return np.full((32, 32, 3), 5 * index, dtype=np.uint8)


def _video(path: Path) -> list[np.ndarray]:
    """Write the clip; return its frames as a reader decodes them (MJPG is lossy), RGB."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (32, 32))
    for index in range(1, FRAMES + 1):
        writer.write(cv2.cvtColor(_frame(index), cv2.COLOR_RGB2BGR))
    writer.release()
    reader, decoded = cv2.VideoCapture(str(path)), []
    while (frame := reader.read())[0]:
        decoded.append(cv2.cvtColor(frame[1], cv2.COLOR_BGR2RGB))
    reader.release()
    return decoded


def _config(tmp_path: Path, camera: str) -> ServiceConfig:
    return ServiceConfig(
        models=(ModelConfig(name=TINY, model=TINY, threads=1),),
        broker=f"mqtt://127.0.0.1:{free_port('127.0.0.1')}",  # offline: the device runs everything
        listen="127.0.0.1:0",
        camera=camera,
        camera_rate_hz=4.0,
        camera_results=tmp_path / "results.jsonl",
    )


async def test_a_video_files_newest_frames_are_answered_and_the_rest_dropped(tmp_path: Path) -> None:
    decoded = _video(tmp_path / "clip.avi")
    assert len(decoded) == FRAMES
    results = tmp_path / "results.jsonl"
    async with serving(_config(tmp_path, str(tmp_path / "clip.avi"))):
        await until(lambda: results.is_file() and results.read_text().count("\n") >= 2, "two frames answered")
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    frames = [line["frame"] for line in lines]
    assert frames == sorted(set(frames))  # the newest each time, never one twice
    assert len(frames) < FRAMES // 2  # 4 a second from a 40 fps source: most are dropped, none queued
    for line in lines:
        assert line["parameters"]["cut"] == EDGE_ONLY
        np.testing.assert_allclose(output_logits(line), tiny_logits(decoded[line["frame"] - 1]), atol=1e-5, rtol=0)


async def test_a_camera_that_cannot_be_opened_stops_the_service_before_it_is_ready(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open"):
        async with serving(_config(tmp_path, str(tmp_path / "no-such.avi"))):
            pass

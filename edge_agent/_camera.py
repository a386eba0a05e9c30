"""Frames from a camera or a video file as a device's input, through OpenCV (the ``camera`` extra).

A thread grabs frames as the source gives them (a video file at its own
frame rate, as a camera would) and keeps only the newest. Requests take the
newest frame at most ``rate_hz`` a second, so a device slower than its
camera drops frames, never queues them: memory stays one frame. Each
result is appended, as one JSON line with the frame's number and time, to
a results file. The source ending (a file's last frame) ends the input.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from edge_agent._files import resize_image
from protocol.errors import ConfigError, EdgecutError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    import numpy as np

    from models import TensorSpec

logger = logging.getLogger("edgecut.agent")

_WAIT_S = 0.01
"""How often a request waiting for a frame newer than the last looks again."""


@dataclasses.dataclass
class CameraCounts:
    """What the camera gave and what was taken.

    Attributes:
        grabbed: Frames the source gave.
        taken: Frames sent to the model.
    """

    grabbed: int = 0
    taken: int = 0

    @property
    def dropped(self) -> int:
        """Frames never taken: newer ones came first."""
        return self.grabbed - self.taken


class _Grabber(threading.Thread):
    """Grabs frames from an OpenCV capture and keeps the newest (a file paced at its frame rate)."""

    def __init__(self, capture: Any, fps: float | None) -> None:  # noqa: ANN401 - cv2.VideoCapture
        super().__init__(name="edgecut[service].camera", daemon=True)
        self._capture = capture
        self._fps = fps
        self._lock = threading.Lock()
        self._frame: np.ndarray | None = None
        self.grabbed = 0
        self.ended = threading.Event()
        self._stop = threading.Event()

    def run(self) -> None:
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                if self._fps:
                    self._stop.wait(max(0.0, next_at - time.monotonic()))
                    next_at += 1 / self._fps
                ok, frame = self._capture.read()
                if not ok:
                    return
                with self._lock:
                    self._frame, self.grabbed = frame, self.grabbed + 1
        finally:
            self.ended.set()

    def newest(self, after: int) -> tuple[int, np.ndarray] | None:
        """The newest frame and its number, if it is newer than frame ``after``."""
        with self._lock:
            return (self.grabbed, self._frame) if self.grabbed > after and self._frame is not None else None

    def stop(self) -> None:
        self._stop.set()
        self.join()
        self._capture.release()


def open_camera(source: str) -> Any:  # noqa: ANN401 - cv2.VideoCapture
    """An OpenCV capture of ``source``: a camera's index (``"0"``), a video file or a stream URL (blocking).

    Raises:
        ConfigError: OpenCV is not installed, or the source cannot be opened.
    """
    try:
        import cv2  # noqa: PLC0415 - optional: edgecut[camera]
    except ImportError as exc:
        msg = "a camera input needs OpenCV: pip install 'edgecut[camera]'"
        raise ConfigError(msg) from exc
    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not capture.isOpened():
        capture.release()
        msg = f"camera: cannot open {source!r}"
        raise ConfigError(msg)
    return capture


async def watch_camera(
    capture: Any,  # noqa: ANN401 - cv2.VideoCapture
    spec: TensorSpec,
    infer: Callable[[np.ndarray], Awaitable[dict[str, Any]]],
    *,
    rate_hz: float,
    results: Path | None,
    live: bool,
) -> CameraCounts:
    """Run ``infer`` on the newest frame of ``capture`` at most ``rate_hz`` a second, until it ends or is cancelled.

    Args:
        capture: From :func:`open_camera` (released here).
        spec: The model input a frame becomes (an NHWC uint8 image: the frame resized to it, as RGB).
        infer: Returns the result to write; an :class:`EdgecutError` or
            ``ValueError`` it raises is written as ``{"error": ...}``.
        rate_hz: The most frames taken a second.
        results: A JSON Lines file each result is appended to (``None``: results are only counted).
        live: A camera (frames as it gives them); else a file, read at its own frame rate.

    Returns:
        How many frames the source gave and how many were taken.
    """
    import cv2  # noqa: PLC0415 - open_camera checked it is there

    fps = None if live else (capture.get(cv2.CAP_PROP_FPS) or 25.0)
    grabber = _Grabber(capture, fps)
    grabber.start()
    counts = CameraCounts()
    seen = 0
    try:
        while True:
            started = time.monotonic()
            newest = grabber.newest(seen)
            if newest is None:
                if grabber.ended.is_set():
                    break
                await asyncio.sleep(_WAIT_S)
                continue
            seen, frame = newest
            counts.taken += 1
            try:
                array = await asyncio.to_thread(resize_image, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), spec)
                answer = await infer(array)
            except (EdgecutError, ValueError) as exc:
                answer = {"error": str(exc)}
            if results is not None:
                line = json.dumps({"frame": seen, "at": time.time(), **answer})
                await asyncio.to_thread(_append, results, line)
            await asyncio.sleep(max(0.0, 1 / rate_hz - (time.monotonic() - started)))
    finally:
        await asyncio.to_thread(grabber.stop)
        counts.grabbed = grabber.grabbed
    logger.info("camera ended: %d frames, %d taken, %d dropped", counts.grabbed, counts.taken, counts.dropped)
    return counts


def _append(path: Path, line: str) -> None:
    try:
        with path.open("a", encoding="utf-8") as file:
            file.write(line + "\n")
    except OSError as exc:
        logger.warning("cannot write a camera result to %s: %s", path, exc.strerror or exc)

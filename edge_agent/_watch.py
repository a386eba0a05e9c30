"""A watched directory as a device's input: new image files in, a JSON result written beside each.

The directory is listed every ``poll_s`` (no inotify: it works on every
filesystem and needs nothing installed); while it cannot be listed (removed,
unmounted), it is listed again until it can. An image file (PNG, JPEG, ...)
without a result beside it is new, at start-up too, so nothing is lost across
a restart; a file is taken once. Files are taken at most ``rate_hz`` a
second, one at a time; at most ``queue`` wait, and a new file that finds the
queue full is skipped, its result saying so: a camera that writes faster
than the device computes loses frames, never memory. Results are written
whole (to a temporary name, then renamed), so a reader never sees half of
one. Writers should do the same: write the image elsewhere (or under a name
starting with ``.``) and rename it in.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from edge_agent._files import IMAGE_SUFFIXES, decode_image
from protocol.errors import ConfigError, EdgecutError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    import numpy as np

    from models import TensorSpec

logger = logging.getLogger("edgecut.agent")

RESULT_SUFFIX = ".json"
"""A result's name: its image's name and this (``photo.jpg.json``)."""


def result_path(image: Path) -> Path:
    """Where the result of ``image`` is written."""
    return image.with_name(image.name + RESULT_SUFFIX)


async def watch_directory(
    directory: Path,
    spec: TensorSpec,
    infer: Callable[[np.ndarray], Awaitable[dict[str, Any]]],
    *,
    rate_hz: float,
    queue: int,
    poll_s: float = 0.25,
) -> None:
    """Run ``infer`` on each new image in ``directory`` (decoded for the input ``spec``), until cancelled.

    ``infer`` returns the result to write as JSON; an error it raises from
    the :class:`EdgecutError` tree, or a ``ValueError``, is written as
    ``{"error": "..."}`` instead. Anything else ends the loop: a file then
    has no result, and is taken again at the next start.
    """
    waiting: asyncio.Queue[Path] = asyncio.Queue(queue)
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(_take(waiting, spec, infer, 1 / rate_hz), name="edgecut[service].watch.take")
        await _list(directory, waiting, poll_s)


async def _list(directory: Path, waiting: asyncio.Queue[Path], poll_s: float) -> None:
    taken: set[str] = set()
    unlistable = False
    while True:
        try:
            new = await asyncio.to_thread(_new_images, directory, taken)
        except OSError as exc:  # gone or unmounted: said once, and listed again until it is back
            if not unlistable:
                logger.warning("cannot list the watched directory %s: %s", directory, exc.strerror or exc)
            unlistable, new = True, []
        else:
            unlistable = False
        for path in new:
            taken.add(path.name)
            try:
                waiting.put_nowait(path)
            except asyncio.QueueFull:
                why = f"skipped: {waiting.maxsize} files were already waiting (watch_queue)"
                logger.info("%s %s", path, why)
                await asyncio.to_thread(_write, path, {"error": why})
        await asyncio.sleep(poll_s)


def _new_images(directory: Path, taken: set[str]) -> list[Path]:
    """The image files in ``directory`` not taken yet and without a result, oldest first."""
    names = {path.name for path in directory.iterdir()}
    new = [
        directory / name
        for name in names
        if name not in taken
        and not name.startswith(".")
        and (directory / name).suffix.lower() in IMAGE_SUFFIXES
        and name + RESULT_SUFFIX not in names
    ]
    return sorted(new, key=_modified)


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # gone since the listing: it fails when read, and says so
        return 0.0


async def _take(
    waiting: asyncio.Queue[Path],
    spec: TensorSpec,
    infer: Callable[[np.ndarray], Awaitable[dict[str, Any]]],
    interval_s: float,
) -> None:
    while True:
        path = await waiting.get()
        started = time.monotonic()
        try:
            array = await asyncio.to_thread(_read, path, spec)
            answer = await infer(array)
        except (EdgecutError, ValueError) as exc:
            logger.warning("%s: %s", path, exc)
            answer = {"error": str(exc)}
        await asyncio.to_thread(_write, path, answer)
        await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))


def _read(path: Path, spec: TensorSpec) -> np.ndarray:
    try:
        data = path.read_bytes()
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror or exc}"
        raise ConfigError(msg) from exc
    return decode_image(data, spec)


def _write(image: Path, answer: dict[str, Any]) -> None:
    final = result_path(image)
    partial = final.with_name(f".{final.name}.partial")
    try:
        partial.write_text(json.dumps(answer), encoding="utf-8")
        partial.replace(final)
    except OSError as exc:
        logger.warning("cannot write the result of %s: %s", image, exc.strerror or exc)

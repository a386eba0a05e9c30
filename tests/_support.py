"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import functools
import time
from typing import TYPE_CHECKING

import pytest

from edge_agent import EDGE_ONLY, ModelHalves

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

TINY = "tiny"


@functools.cache
def tiny_model() -> ModelHalves:
    """The tiny zoo model, opened once per test run."""
    return ModelHalves.open(TINY, threads=1)


def tiny_logits(image: np.ndarray) -> np.ndarray:
    """Logits of the full tiny model run locally on one image (no batch axis)."""
    full = tiny_model().halves(EDGE_ONLY).head
    assert full is not None
    return full.run({"image": image[None]})["logits"]


async def until(condition: Callable[[], bool], what: str, seconds: float = 20) -> None:
    """Yield to the event loop until ``condition()`` holds; fail (not hang) after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)

"""Stopping a task that swallows a cancellation, as aiomqtt's publish can on Python 3.11 (gh-86296)."""

from __future__ import annotations

import asyncio

import pytest

from protocol.lifecycle import cancel_and_wait


async def _swallowing_once(started: asyncio.Event, ran_on: asyncio.Event, cleanup_s: float = 0.0) -> None:
    """Loops like a follower: the first cancel is lost, then it parks on an event nobody sets.

    Cancelled there, it takes ``cleanup_s`` to end, as a connection's goodbye does.
    """
    started.set()
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        asyncio.current_task().uncancel()  # type: ignore[union-attr] - what a swallowed cancel leaves
    ran_on.set()
    try:
        await asyncio.Event().wait()
    finally:
        await asyncio.sleep(cleanup_s)


async def test_a_task_that_swallows_a_cancel_is_cancelled_again_until_it_ends() -> None:
    started, ran_on = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(_swallowing_once(started, ran_on))
    await started.wait()
    await asyncio.wait_for(cancel_and_wait(task, again_after=0.01), 10)
    assert ran_on.is_set()  # it did get past the first cancel
    assert task.cancelled()


async def test_a_task_that_failed_is_waited_for_and_its_error_retrieved_not_raised() -> None:
    async def failing() -> None:
        msg = "broken"
        raise ValueError(msg)

    task = asyncio.create_task(failing())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert isinstance(task.exception(), ValueError)


async def test_a_cancelled_caller_still_sees_the_task_to_its_end_before_it_is_cancelled() -> None:
    started, ran_on = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(_swallowing_once(started, ran_on, cleanup_s=0.05))
    await started.wait()
    stopping = asyncio.create_task(cancel_and_wait(task, again_after=3600))
    await ran_on.wait()  # the first cancel was swallowed; the next would come in an hour
    stopping.cancel()  # as a teardown is when its own caller cancels it again
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert task.cancelled()  # ended, not merely asked to: nothing runs on after the teardown

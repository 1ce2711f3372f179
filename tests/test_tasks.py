"""emulators/core/tasks.py: ending a task from outside keeps the caller's own cancellation
(the iotda-device loop that swallowed it kept reconnecting, and a farm reset hung on it)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from emulators.core.tasks import cancel_and_wait


async def _slow_to_end(ended: asyncio.Event) -> None:
    try:
        await asyncio.sleep(3600)
    finally:
        await asyncio.sleep(0.05)  # like a session closing its connection
        ended.set()


async def test_the_task_is_ended_and_an_error_of_its_own_is_not_raised() -> None:
    ended = asyncio.Event()
    slow = asyncio.ensure_future(_slow_to_end(ended))
    await asyncio.sleep(0)
    await cancel_and_wait(slow)
    assert ended.is_set() and slow.cancelled()

    async def fails() -> None:
        raise ConnectionError("the connection ended")

    failed = asyncio.ensure_future(fails())
    await asyncio.sleep(0)
    await cancel_and_wait(failed)  # already ended with its own error: nothing raised
    assert isinstance(failed.exception(), ConnectionError)


async def _closer(inner: asyncio.Future[None], wait: object) -> str:
    """A loop's cleanup: end the inner task, then carry on, as a reconnect loop does."""
    await wait(inner)  # type: ignore[operator]
    return "carried on"


async def _suppressing(task: asyncio.Future[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.mark.parametrize(("wait", "swallowed"), [(_suppressing, True), (cancel_and_wait, False)])
async def test_a_cancellation_of_the_caller_while_it_waits_is_not_swallowed(
        wait: object, swallowed: bool) -> None:
    inner = asyncio.ensure_future(_slow_to_end(asyncio.Event()))
    await asyncio.sleep(0)
    outer = asyncio.ensure_future(_closer(inner, wait))
    await asyncio.sleep(0.01)  # the outer now waits for the inner to finish ending
    outer.cancel()
    await asyncio.wait({outer}, timeout=5)
    assert outer.done()
    # The suppress pattern (what the device did) swallowed it and the loop carried on.
    assert outer.cancelled() is not swallowed
    if swallowed:
        assert outer.result() == "carried on"

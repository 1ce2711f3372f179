"""Ending a task from the outside without losing the caller's own cancellation."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and return once it has ended, however it ended (an error of its own
    is its done callback's to report). Not ``with suppress(CancelledError): await task``:
    that also swallows a cancellation of the caller arriving meanwhile, and a loop that
    swallowed its own cancellation so ran on for ever (an iotda-device cancelled while
    closing its session kept reconnecting, and the farm reset that waited for it hung)."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: it ended by itself before the cancel reached it

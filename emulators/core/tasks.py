"""Ending a task from the outside without losing the caller's own cancellation; where a
started asyncio server listens."""

from __future__ import annotations

import asyncio
import resource
from typing import Any


def listening_address(server: asyncio.AbstractServer, name: str) -> tuple[str, int]:
    """Where ``server`` listens (the real port when it was asked for port 0). asyncio's
    create_server takes a failing socket() for a bad address family and goes on, leaving a
    server with no socket: in practice the open-file limit was reached, and the farm says so
    instead of an IndexError."""
    sockets = getattr(server, "sockets", ())
    if not sockets:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        raise OSError(f"{name}: no socket could be made (the open-file limit, {soft}, "
                      "reached?)")
    bound = sockets[0].getsockname()
    return bound[0], bound[1]


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

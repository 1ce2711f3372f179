"""What every serving process (a farm, a sharded farm's coordinator, one shard) does around
its members: one bring-up (``bring_up``: start, control plane, ready file, wait, stop), stop
on SIGINT / SIGTERM, and hand the memory freed at start-up back.

``release_free_memory`` is a performance shortcut, measured. Starting a farm makes and drops a
lot (the scenario's stamping, every member's initial state, the ready document: the
coordinator of 100,000 cameras parses and merges 171 MB of member descriptions to write it).
glibc keeps what Python frees in its heap for later, so the RSS stayed at the start-up peak;
``malloc_trim(0)`` once the process is ready returns the free pages (bench/shards.py, 100,000
cameras on 8 shards: 2,043 MB -> 2,001 MB; bench/README.md "Shards"). Elsewhere than glibc it
does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

_libc_name = ctypes.util.find_library("c")
try:
    _trim = ctypes.CDLL(_libc_name).malloc_trim if _libc_name else None
except (OSError, AttributeError):  # not glibc
    _trim = None


def stop_on_signals() -> asyncio.Event:
    """An event SIGINT and SIGTERM set: the serving loop waits on it, then stops what it runs."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def release_free_memory() -> None:
    """Give the heap's free pages back to the system (glibc's ``malloc_trim``)."""
    if _trim is not None:
        _trim(0)


class Served(Protocol):
    """What a serving process brings up: a farm, or a sharded farm's coordinator."""

    @property
    def exit_status(self) -> int: ...

    async def start(self) -> object: ...

    async def stop(self) -> None: ...

    def write_ready_file(self, path: Path | str) -> None: ...


async def bring_up(served: Served, start_control: Callable[[], Awaitable[object]], *,
                   start_errors: tuple[type[Exception], ...],
                   start_failed: Callable[[Exception], str],
                   control_failed: Callable[[OSError], str],
                   announce: Callable[[], None],
                   ready_file: Path | None = None, remove_ready_file: bool = True,
                   settle: Callable[[], Awaitable[None]] | None = None,
                   watch: Callable[[asyncio.Event], Coroutine[Any, Any, None]] | None = None,
                   stopped: str | None = None) -> int:
    """Serve ``served`` until SIGINT / SIGTERM and say what its process exits with.

    Start it (``start_errors`` become ``start_failed``'s line on stderr and exit status 1), then
    its control plane with ``start_control``, which attaches the plane; when that fails the
    started members are stopped again (nothing is left listening) and ``control_failed``'s line
    ends the process with 1. Once both listen: the ready file, ``announce`` (what the process
    prints on ready), the start-up's free memory back, ``settle`` (work that waits for ready),
    then ``watch`` (a task that may set the stop event) until a signal. At stop the ready file
    goes again (unless ``remove_ready_file`` is false: a shard's coordinator reads it) and
    ``stopped`` is the last line on stderr.
    """
    stop = stop_on_signals()
    try:
        await served.start()
    except start_errors as exc:
        print(start_failed(exc), file=sys.stderr)
        return 1
    try:
        await start_control()
    except OSError as exc:
        await served.stop()
        print(control_failed(exc), file=sys.stderr)
        return 1
    if ready_file is not None:
        served.write_ready_file(ready_file)
    announce()
    release_free_memory()
    if settle is not None:
        await settle()
    watching = asyncio.create_task(watch(stop)) if watch is not None else None
    try:
        await stop.wait()
    finally:
        if watching is not None:
            watching.cancel()
        await served.stop()
        if ready_file is not None and remove_ready_file:
            ready_file.unlink(missing_ok=True)  # noqa: ASYNC240 - the loop is shutting down
    if stopped is not None:
        print(stopped, file=sys.stderr)
    return served.exit_status

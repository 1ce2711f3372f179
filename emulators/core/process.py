"""What every serving process (a farm, a sharded farm's coordinator, one shard) does around
its members: stop on SIGINT / SIGTERM, and hand the memory freed at start-up back.

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

"""Handing memory freed at start-up back to the system: one performance shortcut, measured.

Starting a farm makes and drops a lot (the scenario's stamping, every member's initial state,
the ready document: the coordinator of 100,000 cameras parses and merges 171 MB of member
descriptions to write it). glibc keeps what Python frees in its heap for later, so the RSS
stays at the start-up peak. ``malloc_trim(0)`` once a farm, a shard or a coordinator is ready
returns the free pages: bench/shards.py, 100,000 cameras on 8 shards, 2,043 MB -> see
bench/README.md "Shards" for the figure after. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_libc_name = ctypes.util.find_library("c")
try:
    _trim = ctypes.CDLL(_libc_name).malloc_trim if _libc_name else None
except (OSError, AttributeError):  # not glibc
    _trim = None


def release_free_memory() -> None:
    """Give the heap's free pages back to the system (glibc's ``malloc_trim``)."""
    if _trim is not None:
        _trim(0)

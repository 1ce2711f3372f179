"""What the leak checks count: the sockets this process has open."""

from __future__ import annotations

import os


def open_sockets() -> set[str]:
    """Every open socket of this process, as ``<fd>-><socket:[inode]>``."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(f"{fd}->{target}")
    return found

"""A farm started as its own process (``python -m emulators run --ready-file …``), as the CLI
tests start it: the wait for its ready file."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any


def wait_ready(proc: subprocess.Popen[Any], ready_file: Path, seconds: float,
               poll: float = 0.02) -> dict[str, Any]:
    """The ready file's document, once the farm has written it; fails when the farm exits
    first (with what it wrote on stderr, where the test keeps it) or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while not ready_file.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "farm exited early"
        assert time.monotonic() < deadline, f"no ready file in {seconds:g} s"
        time.sleep(poll)
    return json.loads(ready_file.read_text())  # type: ignore[no-any-return]

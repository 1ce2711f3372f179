"""Running ``emulators capture`` / ``drift`` as a user does: a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def emulators(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "emulators", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env, check=False)

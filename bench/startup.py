"""Target 2: start-up. `emulators run` with the default scenario until it listens (process start
to ready file), against a bare aiohttp process until it accepts; and in pytest terms, starting
one emulator in-process and resetting it.

    python bench/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BASELINE, ROOT, env_note, farm_process, show

from emulators import scenario as scenario_mod


def process_start_to_ready(runs: int, *, bytecode: bool) -> list[float]:
    """``emulators run`` from process start to its ready file. With ``bytecode``, as an
    installed package starts (pip compiles it; an editable checkout writes it on its first
    run): a warm-up run first writes every module's bytecode under a private prefix. Without,
    the package is a copy with no bytecode and none is written, as every start of a checkout
    is where PYTHONDONTWRITEBYTECODE is set (CI images often set it): the project's own
    modules are compiled from source each time; its dependencies keep their bytecode."""
    default = scenario_mod.builtin_scenario_path("default")
    import yaml

    data = yaml.safe_load(default.read_text())
    data["control"] = {"port": 0}
    for section in ("emulators", "servers"):  # free ports: the bench may run beside a farm
        for entry in data.get(section, []):
            entry["port"] = 0
            for key in [k for k in entry if k.endswith("_port")]:
                entry[key] = 0
            entry.pop("passive_ports", None)
    times = []
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        env = dict(os.environ)
        cwd = ROOT
        if bytecode:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
            with farm_process(data, env=env):
                pass  # the warm-up run writes the bytecode
        else:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            cwd = Path(tmp)  # `python -m emulators` imports the copy in its working directory
            shutil.copytree(ROOT / "emulators", cwd / "emulators",
                            ignore=shutil.ignore_patterns("__pycache__"))
        for _ in range(runs):
            with farm_process(data, env=env, cwd=cwd) as (_p, _ready, elapsed):
                times.append(elapsed)
    return times


def baseline_start(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", BASELINE, "/", "00", "text/plain",
                                 "127.0.0.1", str(port)])
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.002)
        times.append(time.perf_counter() - t0)
        proc.terminate()
        proc.wait()
    return times


# The least each kind needs to start alone.
MINIMAL: dict[str, dict[str, object]] = {
    "ftp": {"users": [{"name": "u", "password": "p"}]},
    "sftp": {"users": [{"name": "u", "password": "p"}]},
}


def in_process(kind: str, runs: int, *, keys_ready: bool = True) -> tuple[float, float]:
    """Median start and reset of one member alone. With ``keys_ready`` each start waits until
    the process's pool of fresh RSA keys is full again, as it is at a test suite's pace (a
    test body runs between two starts); without, starts come back to back."""
    from emulators import keypool
    from emulators.testing import RunningFarm, shared_loop, single_member_scenario

    loop = shared_loop()
    starts, resets = [], []
    for _ in range(runs):
        deadline = time.monotonic() + 10
        while keys_ready and len(keypool._pool) < keypool.POOL_SIZE and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.perf_counter()
        farm = RunningFarm.start(single_member_scenario(kind, **MINIMAL.get(kind, {})),
                                 loop=loop, control=False)
        starts.append(time.perf_counter() - t0)
        handle = next(iter(farm.members.values()))
        for _ in range(5):
            t0 = time.perf_counter()
            handle.reset()
            resets.append(time.perf_counter() - t0)
        farm.stop()
    return statistics.median(starts), statistics.median(resets)


def snapshot_restore(runs: int) -> tuple[float, float]:
    """Median time to reset the whole default farm, and to restore a named snapshot of it."""
    from emulators.testing import RunningFarm, shared_loop

    farm = RunningFarm.start("default", loop=shared_loop())
    farm.snapshot("bench")
    resets, restores = [], []
    for _ in range(runs * 4):
        t0 = time.perf_counter()
        farm.reset()
        resets.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        farm.restore("bench")
        restores.append(time.perf_counter() - t0)
    farm.stop()
    return statistics.median(resets), statistics.median(restores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    farm = statistics.median(process_start_to_ready(args.runs, bytecode=True))
    source = statistics.median(process_start_to_ready(args.runs, bytecode=False))
    base = statistics.median(baseline_start(args.runs))
    show(f"emulators run default: process start to listening ({env_note()}, median of "
         f"{args.runs})", [
        ("default farm", f"{farm * 1000:.0f} ms  (target < 1500 ms; bytecode cached, as "
                         "installed)"),
        ("  no bytecode", f"{source * 1000:.0f} ms  (the package compiled from source at "
                          "every start)"),
        ("bare aiohttp process", f"{base * 1000:.0f} ms"),
        ("ratio", f"{farm / base:.1f}x the bare process"),
    ])
    rows = []
    from emulators.kinds import KINDS

    for kind in sorted(KINDS):
        start, reset = in_process(kind, args.runs)
        rows.append((kind, f"start {start * 1000:6.1f} ms (target < 20)   "
                           f"reset {reset * 1000:5.2f} ms (target < 5)"))
    cold, _ = in_process("enos", args.runs, keys_ready=False)
    rows.append(("enos, back to back", f"start {cold * 1000:6.1f} ms (no fresh RSA key ready: "
                                       "it makes its root key)"))
    show("in pytest: one emulator alone, in-process (median; RSA key pool refilled between "
         "starts)", rows)
    reset, restore = snapshot_restore(args.runs)
    show("the whole default farm, in-process (median)", [
        ("reset every member", f"{reset * 1000:.1f} ms"),
        ("restore a snapshot", f"{restore * 1000:.1f} ms"),
    ])


if __name__ == "__main__":
    main()

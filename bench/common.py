"""Shared pieces of the benchmarks: a farm in its own process, wrk as the load generator,
a bare aiohttp baseline, medians. Every script prints its figures and, where there is one,
the ratio against a baseline measured in the same run on the same machine."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def ensure_wrk() -> str:
    """wrk (Debian's package) is the load generator: a separate process, C, multi-connection."""
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk (apt-get install wrk)...", file=sys.stderr)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("bench: wrk is needed and could not be installed")
    return found


@contextmanager
def farm_process(
    scenario: dict[str, Any], *, state_dir: Path | None = None, timeout: float = 120,
    env: dict[str, str] | None = None, cwd: Path = ROOT, extra: tuple[str, ...] = (),
    stop_timeout: float = 30, report_stop: bool = False,
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Any], float]]:
    """Run `emulators run` on ``scenario`` (plus ``extra`` arguments) in its own process;
    yield (process, ready document, seconds from process start to the ready file). With
    ``report_stop`` it prints how long SIGTERM took to end it."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        path = Path(tmp) / "scenario.yaml"
        path.write_text(yaml.safe_dump(scenario))
        ready_file = Path(tmp) / "ready.json"
        args = [sys.executable, "-m", "emulators", "run", str(path), "--ready-file",
                str(ready_file), "--control-port", "0", *extra]
        if state_dir is not None:
            args += ["--state-dir", str(state_dir)]
        started = time.perf_counter()
        proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=env)
        try:
            while not ready_file.exists():
                if proc.poll() is not None:
                    raise SystemExit(f"farm exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
                if time.perf_counter() - started > timeout:
                    raise SystemExit(f"farm not ready after {timeout} s")
                time.sleep(0.002)
            elapsed = time.perf_counter() - started
            yield proc, json.loads(ready_file.read_text()), elapsed
        finally:
            if proc.poll() is None:
                stopping = time.perf_counter()
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(stop_timeout)
                    if report_stop:
                        print(f"  (SIGTERM to exit {proc.returncode}: "
                              f"{time.perf_counter() - stopping:.1f} s)", flush=True)
                except subprocess.TimeoutExpired:
                    if report_stop:
                        print(f"  (SIGTERM: not stopped after {stop_timeout:g} s; killed)",
                              flush=True)
                    proc.kill()
                    proc.wait()
            if proc.stderr:
                proc.stderr.close()


BASELINE = r'''
import sys
from aiohttp import web
path, body, ctype = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3]
host, port = sys.argv[4], int(sys.argv[5])
close = len(sys.argv) > 6 and sys.argv[6] == "close"
async def handler(request):
    response = web.Response(body=body, content_type=ctype.split(";")[0],
                            charset=(ctype.split("charset=")[1] if "charset=" in ctype else None))
    if close:  # the emulated device answers HTTP/1.0 and closes: so does the baseline
        response.force_close()
    return response
app = web.Application()
app.router.add_get(path, handler)
web.run_app(app, host=host, port=port, access_log=None, print=None)
'''


@contextmanager
def baseline_process(path: str, body: bytes, content_type: str,
                     close: bool = False) -> Iterator[tuple[str, int]]:
    """A bare aiohttp application answering ``path`` with the same bytes (and closing the
    connection after each reply when ``close``, as an HTTP/1.0 device does); yields its URL
    and process id."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", BASELINE, path, body.hex(), content_type,
                             "127.0.0.1", str(port), "close" if close else "keep-alive"])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("baseline server did not start") from None
                time.sleep(0.02)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def server_and_load_cores() -> tuple[set[int], list[str]]:
    """On a machine with two cores or more, the server under test runs on one core and wrk on
    another, so neither steals the other's: (the server's cores, the prefix that pins wrk).
    The baseline and the farm get the same treatment."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2 or not shutil.which("taskset"):
        return set(cores), []
    return {cores[0]}, ["taskset", "-c", ",".join(map(str, cores[1:]))]


def pin(pid: int, cores: set[int]) -> None:
    """Pin a process and every thread it has to ``cores``."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cores)


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU a process has used so far (every thread), or one of its threads (the
    main thread, ``thread=pid``, runs the event loop)."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, *, seconds: float = 5, connections: int = 32, threads: int = 1,
        prefix: list[str] | None = None) -> dict[str, float]:
    """Requests per second, p50/p99 latency (ms) and the request count of one wrk run."""
    out = subprocess.run([*(prefix or []), ensure_wrk(), f"-t{threads}", f"-c{connections}",
                          f"-d{seconds:g}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:.*", out)
    if errors or socket_errors:
        raise SystemExit(f"wrk saw errors against {url}:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "requests": requests}


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def show(title: str, rows: list[tuple[str, str]]) -> None:
    print(f"\n== {title}")
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key.ljust(width)}  {value}")


def env_note() -> str:
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"

"""Shared pieces of the benchmarks: the one farm launcher (a farm in its own process, its log
in a file), wrk as the load generator, a bare aiohttp baseline, CPU and RSS readings, medians.
Every script prints its figures and, where there is one, the ratio against a baseline measured
in the same run on the same machine."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


LOG_PROBLEM = re.compile(r"Traceback|\b(ERROR|CRITICAL)\b")


@dataclass
class Farm:
    """A farm started by ``launch``: its process, ready document and log."""

    proc: subprocess.Popen[bytes]
    ready: dict[str, Any]
    log_path: Path
    state_dir: Path | None
    elapsed: float = 0.0  # seconds from the process's start to its ready file

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def control(self) -> str:
        return str(self.ready["control"]["api"])

    def member(self, name: str) -> dict[str, Any]:
        for entry in self.ready["emulators"] + self.ready.get("servers", []):
            if entry["name"] == name:
                return dict(entry)
        raise LookupError(name)

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def call(self, method: str, path: str) -> Any:
        request = urllib.request.Request(self.control + path, method=method,
                                         headers={"X-Requested-With": "bench"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())


def launch(scenario: Path | str, state_dir: Path | None, ready_file: Path, log_path: Path,
           *, timeout: float = 60, log_level: str | None = "INFO", extra: tuple[str, ...] = (),
           env: dict[str, str] | None = None, cwd: Path | None = None,
           prefix: tuple[str, ...] = ()) -> Farm:
    """`python -m emulators run` on ``scenario`` (a file, or a built-in's name) with ``extra``
    arguments, its stderr to ``log_path`` (a file: an undrained pipe would stop the farm once
    64 KiB of log piled up), ``prefix`` before the interpreter (taskset); returns once the
    ready file is there, RuntimeError with the log's tail when the farm exits or is not ready
    in ``timeout`` seconds."""
    ready_file.unlink(missing_ok=True)
    args = [*prefix, sys.executable, "-m", "emulators", "run", str(scenario), "--ready-file",
            str(ready_file), "--control-port", "0", *extra]
    if state_dir is not None:
        args += ["--state-dir", str(state_dir)]
    if log_level is not None:
        args += ["--log-level", log_level]
    # EMULATORS_SOURCE: run the farm from another checkout (e.g. `git archive HEAD` unpacked)
    # while the working tree is being edited; `python -m` puts that folder first on sys.path.
    source = cwd or os.environ.get("EMULATORS_SOURCE") or ROOT
    started = time.perf_counter()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(args, cwd=source, stdout=subprocess.DEVNULL, stderr=log, env=env)
    while True:
        if ready_file.exists():
            try:
                ready = json.loads(ready_file.read_text())
                break
            except ValueError:  # written while we read it
                pass
        if proc.poll() is not None:
            raise RuntimeError(f"farm exited {proc.returncode}: {log_tail(log_path)}")
        if time.perf_counter() - started > timeout:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"farm not ready after {timeout} s: {log_tail(log_path)}")
        time.sleep(0.002)
    return Farm(proc, ready, log_path, state_dir, time.perf_counter() - started)


def log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def log_problems(path: Path) -> list[str]:
    """Lines of the farm's log that show an unhandled exception or an error."""
    with open(path, errors="replace") as fh:
        return [line.rstrip() for line in fh if LOG_PROBLEM.search(line)]


def stop(farm: Farm, timeout: float = 30, *, report: bool = False) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; with ``report`` it prints how long
    SIGTERM took to end the farm."""
    if farm.proc.poll() is not None:
        return
    stopping = time.perf_counter()
    farm.proc.send_signal(signal.SIGTERM)
    try:
        farm.proc.wait(timeout)
        if report:
            print(f"  (SIGTERM to exit {farm.proc.returncode}: "
                  f"{time.perf_counter() - stopping:.1f} s)", flush=True)
    except subprocess.TimeoutExpired:
        if report:
            print(f"  (SIGTERM: not stopped after {timeout:g} s; killed)", flush=True)
        farm.proc.kill()
        farm.proc.wait()


@contextmanager
def farm_process(
    scenario: dict[str, Any], *, state_dir: Path | None = None, timeout: float = 120,
    env: dict[str, str] | None = None, cwd: Path | None = None, extra: tuple[str, ...] = (),
    stop_timeout: float = 30, report_stop: bool = False,
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Any], float]]:
    """Run `emulators run` on ``scenario`` (plus ``extra`` arguments) in its own process;
    yield (process, ready document, seconds from process start to the ready file). With
    ``report_stop`` it prints how long SIGTERM took to end it."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        path = Path(tmp) / "scenario.yaml"
        path.write_text(yaml.safe_dump(scenario))
        try:
            farm = launch(path, state_dir, Path(tmp) / "ready.json", Path(tmp) / "farm.log",
                          timeout=timeout, log_level=None, extra=extra, env=env, cwd=cwd)
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from None
        try:
            yield farm.proc, farm.ready, farm.elapsed
        finally:
            stop(farm, stop_timeout, report=report_stop)


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit; returns (soft, hard) now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


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


def wait_port(port: int, timeout: float = 30) -> None:
    """Until something on 127.0.0.1 accepts connections on ``port``; exit when nothing does
    within ``timeout`` seconds."""
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing listens on {port} after {timeout} s") from None
            time.sleep(0.02)


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
        wait_port(port, 20)
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

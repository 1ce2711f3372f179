"""`emulators run` as a user runs it: a real process, a ready file, signals, a clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.farm_process import wait_ready

ROOT = Path(__file__).parent.parent


def write_scenario(tmp_path: Path) -> Path:
    path = tmp_path / "farm.yaml"
    path.write_text(
        "name: cli\n"
        "control: {port: 0}\n"
        "emulators:\n"
        "  - {name: c, kind: 'tests.kinds:Counter', start: 3}\n"
        "  - {name: fleet, kind: 'tests.kinds:Counter', host: 127.0.20.1, count: 3}\n")
    return path


class Farm:
    def __init__(self, proc: subprocess.Popen[str], ready: dict) -> None:  # type: ignore[type-arg]
        self.proc = proc
        self.ready = ready

    def url(self, name: str) -> str:
        member = next(m for m in self.ready["emulators"] if m["name"] == name)
        return str(member["urls"]["http"])


@pytest.fixture
def start_farm(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    procs: list[subprocess.Popen[str]] = []

    def start(*extra: str, state_dir: Path | None = None) -> Farm:
        ready_file = tmp_path / "ready.json"
        ready_file.unlink(missing_ok=True)
        args = [sys.executable, "-m", "emulators", "run", str(write_scenario(tmp_path)),
                "--ready-file", str(ready_file), *extra]
        if state_dir is not None:
            args += ["--state-dir", str(state_dir)]
        proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        procs.append(proc)
        return Farm(proc, wait_ready(proc, ready_file, 30))

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def test_ready_file_describes_every_member_and_the_control_plane(start_farm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    farm = start_farm(state_dir=tmp_path / "state")
    ready = farm.ready
    assert ready["version"] == 1 and ready["scenario"] == "cli"
    assert ready["state_dir"] == str((tmp_path / "state").resolve())
    assert ready["control"]["url"].startswith("http://127.0.0.1:")
    assert ready["control"]["api"] == ready["control"]["url"] + "/v1"
    assert [m["name"] for m in ready["emulators"]] == ["c", "fleet-1", "fleet-2", "fleet-3"]
    member = ready["emulators"][1]
    assert member["kind"] == "tests.kinds:Counter" and member["group"] == "fleet"
    assert member["host"] == "127.0.20.1" and member["urls"]["http"].startswith("http://127.0.20.1:")
    assert ready["servers"] == []
    with urllib.request.urlopen(farm.url("fleet-3"), timeout=5) as resp:
        assert resp.read() == b"0"
    # No member here takes an RSA key: the farm still reaps the child that made them.
    deadline = time.monotonic() + 10
    while children(farm.proc.pid):
        assert time.monotonic() < deadline, f"children left: {children(farm.proc.pid)}"
        time.sleep(0.05)
    farm.proc.send_signal(signal.SIGTERM)
    out, err = farm.proc.communicate(timeout=30)
    assert json.loads(out) == ready  # the same document was printed on stdout


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_lets_requests_in_flight_finish_and_saves_state(start_farm, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                               sig: signal.Signals) -> None:
    state = tmp_path / "state"
    farm = start_farm(state_dir=state)
    req = urllib.request.Request(farm.url("c"), method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.read() == b"4"
    result: dict[str, bytes] = {}

    def slow() -> None:
        with urllib.request.urlopen(farm.url("c") + "/slow?seconds=1", timeout=10) as resp:
            result["body"] = resp.read()

    client = threading.Thread(target=slow)
    client.start()
    time.sleep(0.3)  # the request is now in flight
    farm.proc.send_signal(sig)
    client.join(15)
    out, err = farm.proc.communicate(timeout=30)
    assert result.get("body") == b"finished"
    assert farm.proc.returncode == 0
    assert "Traceback" not in err and "emulators: stopped" in err
    assert json.loads((state / "c.json").read_text()) == {"value": 4}
    assert not (tmp_path / "ready.json").exists()  # a stopped farm leaves no stale ready file
    # ... and a restarted farm serves the saved state.
    again = start_farm(state_dir=state)
    with urllib.request.urlopen(again.url("c"), timeout=5) as resp:
        assert resp.read() == b"4"
    again.proc.send_signal(signal.SIGTERM)
    again.proc.communicate(timeout=30)


def test_invalid_scenario_never_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("emulators:\n  - {name: a, kind: nope}\n")
    proc = subprocess.run([sys.executable, "-m", "emulators", "run", str(bad), "--ready-file",
                           str(tmp_path / "ready.json")], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "bad.yaml:2: emulators[0].kind: unknown kind 'nope'" in proc.stderr
    assert not (tmp_path / "ready.json").exists()


def test_console_script_and_module_are_the_same_command() -> None:
    script = subprocess.run(["emulators", "kinds"], capture_output=True, text=True, timeout=60,
                            env={**os.environ})
    module = subprocess.run([sys.executable, "-m", "emulators", "kinds"], capture_output=True,
                            text=True, timeout=60)
    assert script.stdout == module.stdout
    assert "acti-camera" in script.stdout and "sftp" in script.stdout


def children(pid: int) -> list[str]:
    """(pid, state) of the processes whose parent is ``pid``, read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(f"{stat.parent.name} {fields[0]}")
    return found


def test_readme_command_runs_the_whole_default_farm(tmp_path: Path) -> None:
    ready_file = tmp_path / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "emulators", "run", "--ready-file",
                             str(ready_file)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30  # for the ready file and the children's exit
        ready = wait_ready(proc, ready_file, 30)
        assert ready["scenario"] == "default"
        assert ready["control"]["url"] == "http://127.0.0.1:8700"
        kinds = {m["kind"] for m in ready["emulators"] + ready["servers"]}
        assert kinds == {"acti-camera", "instar-camera", "enos", "iotda", "ftp", "sftp"}
        with urllib.request.urlopen("http://127.0.0.1:8080/cgi-bin/update?USER=admin&PWD=123456"
                                    "&HTTPS_CER", timeout=5) as resp:
            assert resp.read() == b"HTTPS_CER='none'\n"
        with urllib.request.urlopen("http://127.0.0.1:8081/param.cgi?cmd=getftpattr&user=admin"
                                    "&pwd=instar", timeout=5) as resp:
            assert resp.read().endswith(b'response="200";\r\n')
        # The child that made the first RSA keys (keysmith) is gone, not left a zombie.
        while children(proc.pid):
            assert time.monotonic() < deadline, f"children left: {children(proc.pid)}"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param("{ broken", "saved state of 'c' is not valid JSON", id="not-json"),
        pytest.param('{"value": "x"}', "saved state of 'c' does not fit a tests.kinds:Counter: "
                     "ValueError", id="wrong-shape"),
    ],
)
def test_a_damaged_state_file_is_named_not_replaced(tmp_path: Path, content: str,
                                                   expected: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "c.json").write_text(content)
    proc = subprocess.run([sys.executable, "-m", "emulators", "run", str(write_scenario(tmp_path)),
                           "--state-dir", str(state)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert f"emulators: cannot start the farm: {expected}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (state / "c.json").read_text() == content  # left as it was, for the user to see


def test_a_farm_past_the_open_file_limit_says_so_instead_of_a_traceback(tmp_path: Path) -> None:
    """asyncio takes a failing socket() for a bad address family and leaves a server with no
    socket: the farm names the limit and exits 1 (it was an AssertionError traceback)."""
    import resource

    scenario = tmp_path / "many.yaml"
    scenario.write_text(yaml.safe_dump({"name": "many", "emulators": [
        {"name": "cam", "kind": "instar-camera", "count": 300, "fleet": "ports",
         "host": "127.0.0.1", "port": 0}]}))

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (150, 150))

    done = subprocess.run([sys.executable, "-m", "emulators", "run", str(scenario),
                           "--control-port", "0"], capture_output=True, text=True, timeout=120,
                          preexec_fn=low_limit)
    assert done.returncode == 1
    assert "no socket could be made (the open-file limit, 150, reached?)" in done.stderr
    assert "Traceback" not in done.stderr

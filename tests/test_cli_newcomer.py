"""What a newcomer meets first in `emulators run`: a port that is taken named with its member
and option, and where the dashboard is. Real processes, real sockets."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.farm_process import wait_ready

ROOT = Path(__file__).parent.parent


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def run(scenario: dict, tmp_path: Path) -> subprocess.CompletedProcess[str]:  # type: ignore[type-arg]
    path = tmp_path / "farm.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return subprocess.run([sys.executable, "-m", "emulators", "run", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("entry", "option"), [
    pytest.param({"name": "iotda", "kind": "iotda", "mqtts_port": 0}, "mqtt_port",
                 id="iotda-mqtt_port"),
    pytest.param({"name": "cam", "kind": "acti-camera"}, "port", id="camera-port"),
    pytest.param({"name": "ftp", "kind": "ftp", "users": [{"name": "u", "password": "p"}]},
                 "port", id="ftp-port"),  # pyftpdlib's own error names no address
])
def test_a_port_in_use_names_the_member_and_its_option(taken: int, tmp_path: Path,
                                                       entry: dict, option: str) -> None:  # type: ignore[type-arg]
    entry = {**entry, option: taken, **({"port": 0} if option != "port" else {})}
    role = "servers" if entry["kind"] == "ftp" else "emulators"
    out = run({"control": {"port": 0}, role: [entry]}, tmp_path)
    assert out.returncode == 1, out.stderr
    assert (f"emulators run: member '{entry['name']}': {option} {taken} is already in use "
            f"(127.0.0.1:{taken}); stop what uses it or run with --free-ports") in out.stderr
    assert "Traceback" not in out.stderr and "Errno" not in out.stderr


def test_a_control_port_in_use_says_so(taken: int, tmp_path: Path) -> None:
    out = run({"control": {"port": taken},
               "emulators": [{"name": "cam", "kind": "acti-camera"}]}, tmp_path)
    assert out.returncode == 1, out.stderr
    assert (f"emulators run: the control plane's port {taken} is already in use "
            f"(127.0.0.1:{taken}); stop what uses it, or run with --control-port 0 or "
            "--free-ports") in out.stderr


def test_run_prints_the_dashboard_url_once_ready(tmp_path: Path) -> None:
    path = tmp_path / "farm.yaml"
    path.write_text(yaml.safe_dump({"control": {"port": 0},
                                    "emulators": [{"name": "cam", "kind": "acti-camera"}]}))
    ready_file = tmp_path / "ready.json"
    with (tmp_path / "err").open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "emulators", "run", str(path),
                                 "--ready-file", str(ready_file)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=err, text=True)
    try:
        deadline = time.monotonic() + 120
        while "dashboard" not in (tmp_path / "err").read_text():
            assert proc.poll() is None, (tmp_path / "err").read_text()
            assert time.monotonic() < deadline, "no dashboard line"
            time.sleep(0.05)
        url = json.loads(ready_file.read_text())["control"]["url"] + "/ui"
        assert f"emulators run: ready; the dashboard is at {url}\n" in (
            tmp_path / "err").read_text()
        with urllib.request.urlopen(url, timeout=30) as page:  # the line names the real page
            assert page.status == 200 and b"<html" in page.read().lower()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def test_run_takes_the_control_token_from_the_environment(tmp_path: Path) -> None:
    """--control-token-env NAME: the control plane requires $NAME (a Kubernetes Secret's
    value), never written in a file or on the command line."""
    import os
    import urllib.error

    path = tmp_path / "farm.yaml"
    path.write_text(yaml.safe_dump({"control": {"port": 0},
                                    "emulators": [{"name": "cam", "kind": "acti-camera"}]}))
    command = [sys.executable, "-m", "emulators", "run", str(path), "--control-token-env",
               "FARM_TOKEN"]
    unset = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                           env={k: v for k, v in os.environ.items() if k != "FARM_TOKEN"})
    assert unset.returncode == 2
    assert ("emulators run: $FARM_TOKEN must hold the control plane's token (8 characters or "
            "more)") in unset.stderr
    ready_file = tmp_path / "ready.json"
    proc = subprocess.Popen([*command, "--ready-file", str(ready_file)], cwd=ROOT,
                            env={**os.environ, "FARM_TOKEN": "s3cret-token"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        api = wait_ready(proc, ready_file, 120, poll=0.05)["control"]["api"]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(api + "/farm", timeout=30)
        with refused.value as reply:
            assert reply.code == 401
        request = urllib.request.Request(api + "/farm",
                                         headers={"Authorization": "Bearer s3cret-token"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert json.load(reply)["control"]["token_required"] is True
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0

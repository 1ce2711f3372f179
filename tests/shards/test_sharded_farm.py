"""`emulators run --shards 2`: a fleet of INSTAR cameras dealt over two worker processes, the
FTPS server on shard 0, one control plane in front. Driven as a user does: the command, the
ready file, curl against the cameras, the control plane's HTTP API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

SCENARIO = {
    "name": "sharded", "control": {"port": 0},
    "servers": [{"name": "ftp", "kind": "ftp", "port": 0, "tls": "explicit",
                 "certificate": "farm-ca",
                 "users": [{"name": "ftpuser", "password": "123456"}]}],
    "emulators": [{"name": "cam", "kind": "instar-camera", "count": 4, "fleet": "ports",
                   "host": "127.0.0.1", "port": 0, "upload_server": "ftp",
                   "upload_user": "ftpuser", "ftp": {"ft_insecure": 0, "ft_autocreatedir": 1}}],
}


class Sharded:
    def __init__(self, tmp: Path, shards: int = 2, state_dir: Path | None = None) -> None:
        self.tmp = tmp
        path = tmp / "scenario.yaml"
        path.write_text(yaml.safe_dump(SCENARIO))
        self.ready_file = tmp / "ready.json"
        args = [sys.executable, "-m", "emulators", "run", str(path), "--shards", str(shards),
                "--ready-file", str(self.ready_file)]
        if state_dir is not None:
            args += ["--state-dir", str(state_dir)]
        with (tmp / "stderr").open("wb") as stderr:  # the child keeps its own copy
            self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 90
        while not self.ready_file.exists():
            assert self.process.poll() is None, (tmp / "stderr").read_text()
            assert time.monotonic() < deadline, "the sharded farm did not get ready"
            time.sleep(0.05)
        self.ready = json.loads(self.ready_file.read_text())
        self.api = self.ready["control"]["api"]

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else (
            b"{}" if method == "POST" else None)
        request = urllib.request.Request(self.api + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, json.load(reply)
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.load(exc)

    def get(self, path: str) -> Any:
        status, doc = self.call("GET", path)
        assert status == 200, doc
        return doc

    def camera(self, name: str) -> str:
        return next(m["urls"]["http"] for m in self.ready["emulators"] if m["name"] == name)

    def cgi(self, name: str, query: str) -> str:
        return subprocess.run(["curl", "-sS", f"{self.camera(name)}/param.cgi?{query}"
                               "&user=admin&pwd=instar"], capture_output=True, text=True,
                              timeout=30, check=True).stdout

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sharded]:
    running = Sharded(tmp_path_factory.mktemp("sharded"))
    try:
        yield running
    finally:
        running.stop()


def test_the_members_of_every_shard_are_the_farms_in_scenario_order(farm: Sharded) -> None:
    names = [m["name"] for m in farm.get("/emulators")["emulators"]]
    assert names == ["cam-1", "cam-2", "cam-3", "cam-4"]
    shards = farm.get("/farm")["shards"]
    assert [(s["index"], s["status"], s["members"]) for s in shards] == [(0, "ok", 3),
                                                                         (1, "ok", 2)]
    assert farm.get("/emulators/cam-2")["name"] == "cam-2"  # forwarded to shard 1
    status, doc = farm.call("GET", "/emulators/cam-9")
    assert (status, doc["error"]["code"]) == (404, "not_found")


def test_an_upload_across_shards_shares_one_correlation_id(farm: Sharded) -> None:
    """cam-2 runs on shard 1, the FTPS server on shard 0: the camera's testftp, the login and
    the upload it caused are one chain in the farm's journal, numbered farm-wide."""
    farm.call("DELETE", "/journal")
    assert 'result="0"' in farm.cgi("cam-2", "cmd=testftp")
    [received] = farm.get("/servers/ftp/files")["files"]
    assert received["path"].endswith("Test-Snapshot.jpeg")
    entries = farm.get("/journal")["entries"]
    [request] = [e for e in entries if e["member"] == "cam-2"]
    chain = farm.get(f"/journal?correlation_id={request['correlation_id']}")["entries"]
    assert {(e["member"], e["event"]) for e in chain} >= {
        ("cam-2", "request"), ("ftp", "login"), ("ftp", "upload")}
    seqs = [e["seq"] for e in farm.get("/journal")["entries"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_one_clock_reaches_every_shard_before_the_call_returns(farm: Sharded) -> None:
    at = 1893456000.0  # 2030-01-01
    status, doc = farm.call("POST", "/clock/freeze", {"time": at})
    assert (status, doc["frozen"]) == (200, True)
    try:
        farm.call("DELETE", "/journal")
        for name in ("cam-1", "cam-2"):  # shard 0 and shard 1
            farm.cgi(name, "cmd=getserverinfo")
        times = {e["member"]: e["time"] for e in farm.get("/journal")["entries"]}
        assert times == {"cam-1": at, "cam-2": at}
    finally:
        farm.call("POST", "/clock/reset")


def test_a_fault_rule_reaches_the_shard_of_its_member(farm: Sharded) -> None:
    status, rule = farm.call("POST", "/faults", {"fault": "status", "member": "cam-4",
                                                 "status": 503})
    assert status == 201
    try:
        code = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                               farm.camera("cam-4") + "/param.cgi?cmd=getserverinfo"],
                              capture_output=True, text=True, timeout=30).stdout
        assert code == "503"
        [listed] = farm.get("/faults")["faults"]
        assert (listed["id"], listed["fired"]) == (rule["id"], 1)
    finally:
        assert farm.call("DELETE", f"/faults/{rule['id']}")[0] == 200
    assert farm.get("/faults")["faults"] == []


def test_reset_and_snapshots_span_every_shard(farm: Sharded) -> None:
    def port(name: str) -> str:
        return farm.cgi(name, "cmd=getftpattr").split('ft_port="')[1].split('"')[0]

    original = port("cam-2")
    status, saved = farm.call("POST", "/snapshots", {"name": "before"})
    assert status == 201 and saved["members"] == ["cam-1", "cam-2", "cam-3", "cam-4", "ftp"]
    for name in ("cam-1", "cam-2"):
        farm.cgi(name, "cmd=setftpattr&ft_port=2121")
    status, doc = farm.call("POST", "/snapshots/before/restore")
    assert status == 200 and doc["restored"] == ["cam-1", "cam-2", "cam-3", "cam-4", "ftp"]
    assert port("cam-1") == port("cam-2") == original
    farm.cgi("cam-2", "cmd=setftpattr&ft_port=2121")
    status, doc = farm.call("POST", "/reset")
    assert status == 200 and doc["reset"] == ["cam-1", "cam-2", "cam-3", "cam-4", "ftp"]
    assert port("cam-2") == original
    assert farm.call("DELETE", "/snapshots/before")[0] == 200


def test_a_shard_that_dies_is_reported_and_restarted_with_its_state(tmp_path: Path) -> None:
    farm = Sharded(tmp_path, state_dir=tmp_path / "state")
    try:
        assert '"200"' in farm.cgi("cam-2", "cmd=setftpattr&ft_port=2121")
        os.kill(farm.ready["shards"][1]["pid"], signal.SIGKILL)
        assert 'cmd="getserverinfo"' in farm.cgi("cam-1", "cmd=getserverinfo")  # shard 0 serves
        deadline = time.monotonic() + 30
        while farm.get("/farm")["shards"][1]["restarts"] != 1 or \
                farm.get("/farm")["shards"][1]["status"] != "ok":
            assert time.monotonic() < deadline, farm.get("/farm")["shards"]
            time.sleep(0.1)
        events = [(e["member"], e["event"]) for e in farm.get("/journal")["entries"]]
        assert ("shard-1", "shard_failed") in events and ("shard-1", "shard_restarted") in events
        assert 'ft_port="2121"' in farm.cgi("cam-2", "cmd=getftpattr")  # on the same port
        pids = [s["pid"] for s in farm.get("/farm")["shards"]]
    finally:
        assert farm.stop() == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)

"""`emulators run --shards 2`: a fleet of INSTAR cameras dealt over two worker processes, the
FTPS server on shard 0, one control plane in front. Driven as a user does: the command, the
ready file, curl against the cameras, the control plane's HTTP API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators.scenario import load
from emulators.shards.partition import shard_of
from emulators.testing import ShardedFarm
from tests.control_support import urlopen_json
from tests.iotda.clients import SdkDevice

SCENARIO = {
    "name": "sharded", "control": {"port": 0},
    "servers": [{"name": "ftp", "kind": "ftp", "port": 0, "tls": "explicit",
                 "certificate": "farm-ca",
                 "users": [{"name": "ftpuser", "password": "123456"}]}],
    "emulators": [{"name": "cam", "kind": "instar-camera", "count": 4, "fleet": "ports",
                   "host": "127.0.0.1", "port": 0, "upload_server": "ftp",
                   "upload_user": "ftpuser", "ftp": {"ft_insecure": 0, "ft_autocreatedir": 1}}],
}


def call(farm: ShardedFarm, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else (
        b"{}" if method == "POST" else None)
    return urlopen_json(urllib.request.Request(farm.control_url + path, data=data, method=method,
                                               headers={"Content-Type": "application/json"}),
                        timeout=30)


def get(farm: ShardedFarm, path: str) -> Any:
    status, doc = call(farm, "GET", path)
    assert status == 200, doc
    return doc


def cgi(farm: ShardedFarm, name: str, query: str) -> str:
    return subprocess.run(["curl", "-sS", f"{farm[name].url}/param.cgi?{query}"
                           "&user=admin&pwd=instar"], capture_output=True, text=True,
                          timeout=30, check=True).stdout


@pytest.fixture(scope="module", params=[1, 4], ids=["one-process", "4-shards"])
def farm(request: pytest.FixtureRequest) -> Iterator[ShardedFarm]:
    """The same farm as `emulators run` runs it, on one process and on four shards: each
    test below holds for both (cam-1..cam-3 on shards 1..3; cam-4 beside the server on
    shard 0)."""
    running = ShardedFarm.start(SCENARIO, request.param)
    try:
        yield running
    finally:
        assert running.stop() == 0


def test_the_members_of_every_shard_are_the_farms_in_scenario_order(farm: ShardedFarm) -> None:
    names = [m["name"] for m in get(farm, "/emulators")["emulators"]]
    assert names == ["cam-1", "cam-2", "cam-3", "cam-4"]
    if "shards" in farm.ready:
        shards = get(farm, "/farm")["shards"]
        assert [(s["index"], s["status"], s["members"]) for s in shards] == [
            (0, "ok", 2), (1, "ok", 1), (2, "ok", 1), (3, "ok", 1)]
    else:
        assert "shards" not in get(farm, "/farm")
    assert get(farm, "/emulators/cam-2")["name"] == "cam-2"  # forwarded to shard 2
    status, doc = call(farm, "GET", "/emulators/cam-9")
    assert (status, doc["error"]["code"]) == (404, "not_found")


def test_an_upload_across_shards_shares_one_correlation_id(farm: ShardedFarm) -> None:
    """cam-2 runs on shard 2 of four, the FTPS server on shard 0: the camera's testftp, the
    login and the upload it caused are one chain in the farm's journal, numbered farm-wide."""
    call(farm, "DELETE", "/journal")
    assert 'result="0"' in cgi(farm, "cam-2", "cmd=testftp")
    [received] = get(farm, "/servers/ftp/files")["files"]
    assert received["path"].endswith("Test-Snapshot.jpeg")
    entries = get(farm, "/journal")["entries"]
    [request] = [e for e in entries if e["member"] == "cam-2"]
    chain = get(farm, f"/journal?correlation_id={request['correlation_id']}")["entries"]
    assert {(e["member"], e["event"]) for e in chain} >= {
        ("cam-2", "request"), ("ftp", "login"), ("ftp", "upload")}
    seqs = [e["seq"] for e in get(farm, "/journal")["entries"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_one_clock_reaches_every_shard_before_the_call_returns(farm: ShardedFarm) -> None:
    at = 1893456000.0  # 2030-01-01
    status, doc = call(farm, "POST", "/clock/freeze", {"time": at})
    assert (status, doc["frozen"]) == (200, True)
    try:
        call(farm, "DELETE", "/journal")
        for name in ("cam-4", "cam-1"):  # shard 0 and shard 1
            cgi(farm, name, "cmd=getserverinfo")
        times = {e["member"]: e["time"] for e in get(farm, "/journal")["entries"]}
        assert times == {"cam-4": at, "cam-1": at}
    finally:
        call(farm, "POST", "/clock/reset")


def test_a_fault_rule_reaches_the_shard_of_its_member(farm: ShardedFarm) -> None:
    status, rule = call(farm, "POST", "/faults", {"fault": "status", "member": "cam-4",
                                                 "status": 503})
    assert status == 201
    try:
        code = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                               farm["cam-4"].url + "/param.cgi?cmd=getserverinfo"],
                              capture_output=True, text=True, timeout=30).stdout
        assert code == "503"
        [listed] = get(farm, "/faults")["faults"]
        assert (listed["id"], listed["fired"]) == (rule["id"], 1)
    finally:
        assert call(farm, "DELETE", f"/faults/{rule['id']}")[0] == 200
    assert get(farm, "/faults")["faults"] == []


def test_reset_and_snapshots_span_every_shard(farm: ShardedFarm) -> None:
    def port(name: str) -> str:
        return cgi(farm, name, "cmd=getftpattr").split('ft_port="')[1].split('"')[0]

    original = port("cam-2")
    status, saved = call(farm, "POST", "/snapshots", {"name": "before"})
    assert status == 201 and saved["members"] == ["cam-1", "cam-2", "cam-3", "cam-4", "ftp"]
    for name in ("cam-1", "cam-2"):
        cgi(farm, name, "cmd=setftpattr&ft_port=2121")
    status, doc = call(farm, "POST", "/snapshots/before/restore")
    assert status == 200 and doc["restored"] == ["cam-1", "cam-2", "cam-3", "cam-4", "ftp"]
    assert port("cam-1") == port("cam-2") == original
    cgi(farm, "cam-2", "cmd=setftpattr&ft_port=2121")
    status, doc = call(farm, "POST", "/reset")
    assert status == 200 and doc["reset"] == ["cam-1", "cam-2", "cam-3", "cam-4", "ftp"]
    assert port("cam-2") == original
    assert call(farm, "DELETE", "/snapshots/before")[0] == 200


def test_a_shard_that_dies_is_reported_and_restarted_with_its_state(tmp_path: Path) -> None:
    farm = ShardedFarm.start(SCENARIO, 2, tmp_path / "state")
    try:
        assert '"200"' in cgi(farm, "cam-1", "cmd=setftpattr&ft_port=2121")
        os.kill(farm.ready["shards"][1]["pid"], signal.SIGKILL)
        assert 'cmd="getserverinfo"' in cgi(farm, "cam-2", "cmd=getserverinfo")  # shard 0 serves
        deadline = time.monotonic() + 30
        while (farm.shards()[1]["restarts"], farm.shards()[1]["status"]) != (1, "ok"):
            assert time.monotonic() < deadline, farm.shards()
            time.sleep(0.1)
        events = [(e["member"], e["event"]) for e in farm.journal(member="shard-1")]
        assert events == [("shard-1", "shard_failed"), ("shard-1", "shard_restarted")]
        assert 'ft_port="2121"' in cgi(farm, "cam-1", "cmd=getftpattr")  # on the same port
        pids = [s["pid"] for s in farm.shards()]
    finally:
        assert farm.stop() == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


def test_a_restarted_shard_keeps_the_free_ports_its_listeners_had(tmp_path: Path) -> None:
    """An IoTDA cloud on free MQTT ports (``mqtt_port: 0``): after its shard is killed and
    restarted, the MQTT and MQTTS listeners are where they were, and a device connecting
    as the vendor's SDK does reaches the broker there."""
    scenario = {"name": "ports", "control": {"port": 0}, "emulators": [
        {"name": "iot", "kind": "iotda", "port": 0, "mqtt_port": 0, "mqtts_port": 0},
        {"name": "cam", "kind": "instar-camera", "port": 0}]}
    assert shard_of(load(scenario), 2)["iot"] == 1
    farm = ShardedFarm.start(scenario, 2, tmp_path / "state")
    try:
        before = farm["iot"].urls
        assert {"mqtt", "mqtts"} <= set(before)
        os.kill(farm.ready["shards"][1]["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (farm.shards()[1]["restarts"], farm.shards()[1]["status"]) != (1, "ok"):
            assert time.monotonic() < deadline, farm.shards()
            time.sleep(0.1)
        assert farm["iot"].urls == before
        port = int(before["mqtt"].rsplit(":", 1)[1])
        device = SdkDevice("sensor_unknown", "127.0.0.1", port, secret="NotRegistered1")
        try:
            assert device.connect() == 4  # a broker answers there: bad user name or password
        finally:
            device.close()
    finally:
        assert farm.stop() == 0


def test_the_pytest_plugin_starts_a_sharded_farm(farm_factory: Any) -> None:
    farm = farm_factory(SCENARIO, shards=2)
    assert isinstance(farm, ShardedFarm)
    assert [s["status"] for s in farm.shards()] == ["ok", "ok"]
    assert 'result="0"' in cgi(farm, "cam-2", "cmd=testftp")
    upload = farm.wait_for_upload("ftp", path="*Test-Snapshot.jpeg")
    [request] = farm.journal(member="cam-2", path="/param.cgi")
    assert upload["correlation_id"] == request["correlation_id"]
    rule = farm.add_fault(fault="status", member="cam-1", status=503, times=1)
    assert [f["id"] for f in farm.faults()] == [rule]
    farm.clock.freeze(1893456000.0)
    assert farm.clock.time() == 1893456000.0 and farm.clock.frozen
    with pytest.raises(TypeError):
        farm["cam-1"].call(lambda m: m)

"""Journal, faults, clock and snapshots through the control plane, seen from real clients."""

from __future__ import annotations

import ftplib
import http.client
import io
import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from emulators import pki
from emulators.control.openapi import document
from emulators.testing import RunningFarm
from tests.control_support import control, params
from tests.mqtt_clients import close_paho

COUNTER = "tests.kinds:Counter"
ROOT = Path(__file__).parent.parent


def call(method: str, url: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else
                                 {"X-Requested-With": "tests"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw[:1] in (b"{", b"[") else raw
    except urllib.error.HTTPError as exc:
        with exc:
            raw = exc.read()
        return exc.code, json.loads(raw) if raw[:1] == b"{" else raw


@pytest.fixture
def farm(farm_factory: Callable[..., RunningFarm]) -> RunningFarm:
    return farm_factory({"emulators": [{"name": "a", "kind": COUNTER},
                                       {"name": "cam", "kind": COUNTER, "count": 2,
                                        "host": "127.0.40.1"}]})


# -- journal --------------------------------------------------------------------------------

def test_journal_records_requests_with_secrets_masked(farm: RunningFarm) -> None:
    url = farm["a"].url + "/?USER=admin&PWD=123456&cmd=setftpattr&ft_password=hunter2"
    req = urllib.request.Request(url, data=b"private_key=abc&x=1", method="POST",
                                 headers={"Authorization": "Basic YWRtaW46aW5zdGFy"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.read() == b"1"
    [entry] = farm.journal(member="a", method="POST")
    assert entry["kind"] == COUNTER and entry["protocol"] == "http" and entry["status"] == 200
    assert ["PWD", "***"] in entry["query"] and ["ft_password", "***"] in entry["query"]
    assert ["USER", "admin"] in entry["query"] and ["cmd", "setftpattr"] in entry["query"]
    assert ["Authorization", "Basic ***"] in entry["headers"]
    assert entry["reply_excerpt"] == "1" and entry["client"].startswith("127.0.0.1:")
    assert "123456" not in json.dumps(entry) and "YWRtaW46" not in json.dumps(entry)
    assert entry["correlation_id"] and entry["seq"] >= 1
    # The control plane answers the same query, with filters.
    status, body = call("GET", f"{farm.control_url}/journal?member=a&method=POST")
    assert status == 200 and [e["seq"] for e in body["entries"]] == [entry["seq"]]


@pytest.mark.parametrize(("target", "path", "query"), [
    ("/?a=1&b=x%26y", "/", [["a", "1"], ["b", "x&y"]]),
    ("/a%20b?pwd=secret", "/a b", [["pwd", "***"]]),
    ("//double/slash?y=2", "//double/slash", [["y", "2"]]),  # a path, not a host
    ("/p?q=1#fragment", "/p", [["q", "1"]]),
    ("http://example.com/proxied?z=3", "/proxied", [["z", "3"]]),  # absolute-form
])
def test_journal_path_and_query_are_the_ones_aiohttp_routed(
        farm: RunningFarm, target: str, path: str, query: list[list[str]]) -> None:
    """The journal keeps the request line's target as sent and parses it when read: the path
    and query it shows are the ones the request was routed by."""
    with socket.create_connection(("127.0.0.1", farm["a"].port), timeout=5) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    assert status == (200 if path == "/" else 404)
    [entry] = farm.journal(member="a")
    assert (entry["path"], entry.get("query", []), entry["status"]) == (path, query, status)


def test_journal_is_a_bounded_ring_and_can_be_cleared(farm: RunningFarm) -> None:
    assert call("PUT", f"{farm.control_url}/journal/config", {"capacity": 5})[0] == 200
    for _ in range(12):
        urllib.request.urlopen(farm["a"].url, timeout=5).close()
    entries = farm.journal()
    assert len(entries) == 5
    assert [e["seq"] for e in entries] == list(range(entries[0]["seq"], entries[0]["seq"] + 5))
    assert call("DELETE", f"{farm.control_url}/journal")[0] == 200
    assert farm.journal() == []


def test_journal_filters_by_fleet_pattern_path_and_status(farm: RunningFarm) -> None:
    for member in farm.group("cam"):
        urllib.request.urlopen(member.url + "/", timeout=5).close()
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(farm["cam-2"].url + "/nowhere", timeout=5)
    assert len(farm.journal(member="cam-*")) == 3
    assert [e["member"] for e in farm.journal(path="/nowhere")] == ["cam-2"]
    assert [e["status"] for e in farm.journal(member="cam-*", status=404)] == [404]
    farm.assert_requested(count=2, member="cam-*", status=200)
    farm.assert_not_requested(member="a")
    with pytest.raises(AssertionError, match="expected no journal entry"):
        farm.assert_not_requested(member="cam-1")


# -- faults ---------------------------------------------------------------------------------

def test_latency_fault_delays_the_reply(farm: RunningFarm) -> None:
    farm.add_fault(fault="latency", member="a", latency_ms=300, times=1)
    t0 = time.perf_counter()
    urllib.request.urlopen(farm["a"].url, timeout=5).close()
    assert time.perf_counter() - t0 >= 0.3
    t0 = time.perf_counter()
    urllib.request.urlopen(farm["a"].url, timeout=5).close()
    assert time.perf_counter() - t0 < 0.3  # `times: 1` is used up


def test_status_and_vendor_error_faults(farm: RunningFarm) -> None:
    status, body = call("POST", f"{farm.control_url}/faults",
                        {"fault": "status", "member": "a", "status": 503, "times": 1})
    assert status == 201 and body["id"] == "fault-1"
    assert call("GET", farm["a"].url)[0] == 503
    farm.add_fault(fault="vendor_error", member="a", message="disk on fire", times=1)
    assert call("GET", farm["a"].url) == (500, b"disk on fire")
    assert call("GET", farm["a"].url) == (200, b"0")
    faults = farm.journal(event="fault")
    assert [f["detail"]["fault_type"] for f in faults] == ["status", "vendor_error"]


def test_reset_fault_is_a_connection_reset_for_the_client(farm: RunningFarm) -> None:
    farm.add_fault(fault="reset", member="a", path="/", times=1)
    with pytest.raises(ConnectionResetError):
        urllib.request.urlopen(farm["a"].url, timeout=5)
    assert call("GET", farm["a"].url) == (200, b"0")


def test_truncated_reply_is_an_incomplete_read(farm: RunningFarm) -> None:
    farm.add_fault(fault="truncate", member="a", times=1)
    conn = http.client.HTTPConnection(farm["a"].host, farm["a"].port, timeout=5)
    conn.request("GET", "/slow?seconds=0")
    resp = conn.getresponse()
    with pytest.raises(http.client.IncompleteRead):
        resp.read()
    conn.close()


def test_hang_fault_gives_no_reply_until_the_client_gives_up(farm: RunningFarm) -> None:
    farm.add_fault(fault="hang", member="a", times=1)
    with socket.create_connection((farm["a"].host, farm["a"].port), timeout=0.5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(TimeoutError):
            sock.recv(100)
    # The farm keeps serving others meanwhile and after.
    assert call("GET", farm["a"].url) == (200, b"0")


def test_probabilistic_faults_reproduce_with_a_seed(farm_factory: Callable[..., RunningFarm]) -> None:
    outcomes = []
    for _ in range(2):
        farm = farm_factory({"emulators": [{"name": "a", "kind": COUNTER}]})
        farm.add_fault(fault="status", member="a", status=500, probability=0.5, seed=42)
        outcomes.append([call("GET", farm["a"].url)[0] for _ in range(30)])
        farm.stop()
    assert outcomes[0] == outcomes[1]
    assert 5 < outcomes[0].count(500) < 25


def test_fault_ttl_runs_on_the_farm_clock(farm: RunningFarm) -> None:
    farm.freeze_clock()
    farm.add_fault(fault="status", member="a", status=418, ttl=60)
    assert call("GET", farm["a"].url)[0] == 418
    farm.advance_clock(61)
    assert call("GET", farm["a"].url)[0] == 200
    assert farm.faults() == []


def test_faults_from_the_scenario_and_bad_rules(farm_factory: Callable[..., RunningFarm]) -> None:
    farm = farm_factory({"faults": [{"fault": "status", "member": "a", "status": 502,
                                     "times": 1}],
                         "emulators": [{"name": "a", "kind": COUNTER}]})
    assert call("GET", farm["a"].url)[0] == 502
    status, body = call("POST", f"{farm.control_url}/faults", {"fault": "explode"})
    assert status == 400 and body["error"]["message"].startswith("fault: Input should be")
    status, body = call("POST", f"{farm.control_url}/faults", {"fault": "latency"})
    assert status == 400 and "latency_ms" in body["error"]["message"]
    assert call("DELETE", f"{farm.control_url}/faults/nope")[0] == 404


# -- clock ----------------------------------------------------------------------------------

def test_clock_freeze_set_advance_and_back(farm: RunningFarm) -> None:
    base = f"{farm.control_url}/clock"
    status, body = call("POST", f"{base}/freeze", {"at": "2030-01-01T00:00:00Z"})
    assert status == 200 and body["frozen"] and body["now"] == "2030-01-01T00:00:00+00:00"
    time.sleep(0.05)
    assert call("GET", base)[1]["time"] == 1893456000.0
    assert call("POST", f"{base}/advance", {"seconds": 86400})[1]["now"].startswith("2030-01-02")
    assert call("POST", f"{base}/set", {"time": 0})[1]["time"] == 0
    assert call("POST", f"{base}/advance", {"seconds": -1})[0] == 400
    assert call("POST", f"{base}/set", {"at": "2030-01-01T00:00:00"})[0] == 400  # no zone
    body = call("POST", f"{base}/reset")[1]
    assert not body["frozen"] and abs(body["time"] - time.time()) < 5


def test_journal_times_follow_a_running_shifted_clock(farm: RunningFarm) -> None:
    """Set (not frozen), the clock keeps running from the new instant, and journal entries
    carry its time; unfrozen, it runs on from where it stood; reset, it is real again."""
    base = f"{farm.control_url}/clock"
    shifted = call("POST", f"{base}/set", {"time": 1893456000})[1]  # 2030-01-01
    assert not shifted["frozen"]
    time.sleep(0.2)
    urllib.request.urlopen(farm["a"].url, timeout=5).close()
    entry = farm.journal(member="a")[-1]
    assert 1893456000.2 <= entry["time"] < 1893456000 + 5
    call("POST", f"{base}/freeze", {"at": "2040-01-01T00:00:00Z"})
    call("POST", f"{base}/unfreeze")
    time.sleep(0.1)
    running = call("GET", base)[1]
    assert not running["frozen"] and 2208988800.1 <= running["time"] < 2208988800 + 5
    call("POST", f"{base}/reset")
    urllib.request.urlopen(farm["a"].url, timeout=5).close()
    assert abs(farm.journal(member="a")[-1]["time"] - time.time()) < 5


# -- snapshots ------------------------------------------------------------------------------

def test_snapshot_round_trip_survives_a_restart(farm_factory: Callable[..., RunningFarm],
                                                tmp_path: Path) -> None:
    scenario = {"emulators": [{"name": "a", "kind": COUNTER}, {"name": "b", "kind": COUNTER}]}
    farm = farm_factory(scenario, tmp_path)
    for _ in range(3):
        call("POST", farm["a"].url)
    status, body = call("POST", f"{farm.control_url}/snapshots", {"name": "three"})
    assert status == 201 and body["members"] == ["a", "b"]
    call("POST", farm["a"].url), call("POST", farm["b"].url)
    farm.stop()
    again = farm_factory(scenario, tmp_path)
    assert [s["name"] for s in call("GET", f"{again.control_url}/snapshots")[1]["snapshots"]] \
        == ["three"]
    assert call("POST", f"{again.control_url}/snapshots/three/restore")[1] == {
        "restored": ["a", "b"]}
    assert call("GET", again["a"].url)[1] == b"3" and call("GET", again["b"].url)[1] == b"0"
    assert json.loads((tmp_path / "a.json").read_text()) == {"value": 3}  # restored = saved
    assert call("DELETE", f"{again.control_url}/snapshots/three")[0] == 200
    assert call("POST", f"{again.control_url}/snapshots/three/restore")[0] == 404


def test_snapshot_of_one_member_and_in_memory_farms(farm: RunningFarm) -> None:
    call("POST", farm["a"].url)
    farm.snapshot("one", ["a"])
    call("POST", farm["a"].url), call("POST", farm["cam-1"].url)
    assert farm.restore("one") == ["a"]
    assert farm["a"].state() == {"value": 1} and farm["cam-1"].state() == {"value": 1}
    assert call("POST", f"{farm.control_url}/snapshots", {"name": "x", "members": ["zz"]})[0] \
        == 404
    assert call("POST", f"{farm.control_url}/snapshots", {"name": "../evil"})[0] == 400


# -- interface ------------------------------------------------------------------------------

def test_openapi_document_describes_every_route(farm: RunningFarm) -> None:
    status, index = call("GET", farm.control_url)
    described = call("GET", f"{farm.control_url}/openapi.json")[1]
    assert described["openapi"].startswith("3.")
    served = {tuple(r.split(" ", 1)) for r in index["routes"]}
    documented = {(m.upper(), p) for p, ops in described["paths"].items() for m in ops}
    assert served == documented, (served - documented, documented - served)
    assert document(farm.farm)["paths"].keys() == described["paths"].keys()


def _ftp_upload(farm: RunningFarm) -> dict[str, str]:
    ftp = farm["ftp"]
    with ftplib.FTP() as client:
        client.connect(ftp.host, ftp.port, timeout=15)
        client.login("ftpuser", "123456")
        client.storbinary("STOR hello.txt", io.BytesIO(b"hello"))
    return {"name": "ftp", "user": "ftpuser", "path": "hello.txt"}


def _connected_meter(farm: RunningFarm) -> dict[str, str]:
    """The default scenario's one-way EnOS meter connected over MQTT (paho, the SDK's login),
    answering every service call with code 200: a service route then succeeds."""
    import paho.mqtt.client as mqtt

    from emulators.enos.models.access import Login, signature

    ts = str(time.time() * 1000)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=(
        f"meter01|securemode=2,signmethod=hmacsha256,timestamp={ts}|"),
        reconnect_on_failure=False)
    client.username_pw_set("meter01&Pl4inPrd", signature(
        Login("meter01", 2, "hmacsha256", ts), "meter01", "Pl4inPrd", "MeterSecret01"))

    def answer(c: Any, userdata: Any, message: Any) -> None:
        request = json.loads(message.payload)
        c.publish(message.topic + "_reply", json.dumps({"id": request["id"], "code": 200,
                                                         "data": {}}), 1)

    client.on_message = answer
    port = int(farm["enos"].urls["mqtt"].rsplit(":", 1)[1])
    client.connect("127.0.0.1", port)
    client.loop_start()
    deadline = time.monotonic() + 10
    while not farm["enos"].state()["mqtt_sessions"] and time.monotonic() < deadline:
        time.sleep(0.02)
    farm._mqtt_helpers = [*getattr(farm, "_mqtt_helpers", []), client]  # type: ignore[attr-defined]
    return {"name": "enos", "asset_id": "mTr9pLq2", "service_id": "reboot"}


def _device_ca(farm: RunningFarm) -> dict[str, str]:
    pem = pki.cert_pem(pki.make_ca(pki.name(CN="in-step CA"), pki.ec_key()))

    def add(member: Any) -> str:
        project = member.credentials()["project_id"]
        return str(member.device_cas.add(project, {"content": pem}, member.clock.time())
                   .certificate_id)
    return {"name": "iotda", "certificate_id": farm["iotda"].call(add)}


def _saved(name: str) -> Callable[[RunningFarm], dict[str, str]]:
    def save(farm: RunningFarm) -> dict[str, str]:
        farm.snapshot(name)
        return {"name": name}
    return save


def _fault(farm: RunningFarm) -> dict[str, str]:
    farm.add_fault(id="in-step", fault="latency", member="nobody", latency_ms=1)
    return {"id": "in-step"}


# What a route needs to succeed, where filling its parameters with a member's name is not
# enough: (a setup returning parameter values, a JSON body). A route added without an entry
# here is called with {name} = a member of its family and an empty body.
SUCCEEDS: dict[tuple[str, str], tuple[Callable[[RunningFarm], dict[str, str]] | None, Any]] = {
    ("POST", "/v1/faults"): (None, {"fault": "latency", "member": "nobody", "latency_ms": 1}),
    ("DELETE", "/v1/faults/{id}"): (_fault, None),
    ("PUT", "/v1/journal/config"): (None, {"capacity": 10_000}),
    ("POST", "/v1/clock/set"): (None, {"at": "2030-01-01T00:00:00Z"}),
    ("POST", "/v1/clock/advance"): (None, {"seconds": 1}),
    ("POST", "/v1/snapshots"): (None, {"name": "in-step-new"}),
    ("POST", "/v1/snapshots/{name}/restore"): (_saved("in-step-restore"), {}),
    ("DELETE", "/v1/snapshots/{name}"): (_saved("in-step-delete"), None),
    ("GET", "/v1/servers/{name}/files/{user}/{path}"): (_ftp_upload, None),
    ("GET", "/v1/servers/{name}/users/{user}/authorized_keys"): (
        lambda farm: {"name": "sftp", "user": "ipcamera"}, None),
    ("PUT", "/v1/servers/{name}/users/{user}/authorized_keys"): (
        lambda farm: {"name": "sftp", "user": "ipcamera"}, {"authorized_keys": []}),
    ("POST", "/v1/servers/{name}/users/{user}/authorized_keys"): (
        lambda farm: {"name": "sftp", "user": "ipcamera"},
        {"key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
                " in-step"}),
    ("POST", "/v1/emulators/{name}/iotda/certificates/{certificate_id}/verify-code"): (
        _device_ca, None),
    ("POST", "/v1/emulators/{name}/enos/faults"): (lambda farm: {"name": "enos"},
                                                   {"internal_errors": 0}),
    ("GET", "/v1/emulators/{name}/iotda/sessions"): (lambda farm: {"name": "iotda"}, None),
    ("POST", "/v1/emulators/{name}/enos/devices/{asset_id}/services/{service_id}"): (
        _connected_meter, {"params": {}}),
    ("POST", "/v1/emulators/{name}/enos/devices/{asset_id}/measurepoints"): (
        _connected_meter, {"measurepoints": {"setpoint": 1}}),
    ("GET", "/v1/emulators/{name}/enos/devices/{asset_id}/keys"): (
        lambda farm: {"name": "enos", "asset_id": "zBrjuW7q"}, None),
    ("GET", "/v1/emulators/{name}/iotda/devices/{device_id}/keys"): (
        lambda farm: {"name": "iotda", "device_id": "EmulatorSensor_camera01"}, None),
    ("POST", "/v1/emulators/{name}/video/clock"): (None, {"offset": 0}),
    ("POST", "/v1/emulators/{name}/video/discoverable"): (None, {"discoverable": True}),
}
FAMILY = {"emulators": "instar-camera", "servers": "ftp", "snapshots": "nosuch"}


def _target(route: str, values: dict[str, str]) -> str:
    family = route.split("/")[2] if route.count("/") >= 2 else ""
    return re.sub(r"\{(\w+)\}", lambda m: urllib.parse.quote(
        values.get(m.group(1), FAMILY.get(family, "")), safe=""), route)


def _media(reply: Any) -> str:
    return str(reply.headers.get("content-type", "")).split(";")[0].strip()


def test_openapi_document_matches_what_every_route_answers(
        farm_factory: Callable[..., RunningFarm]) -> None:
    """For every route: its method and path template, its path parameters (names, in order,
    required), and the status and media type a real successful request gets are the ones the
    document gives; a request naming no such member gets the documented error form."""
    farm = farm_factory("default")
    index = control(farm, "GET", "/v1").json()
    described = control(farm, "GET", "/v1/openapi.json").json()["paths"]
    served = [tuple(r.split(" ", 1)) for r in index["routes"]]
    assert {(m.upper(), p) for p, ops in described.items() for m in ops} == set(served)
    checked = []
    for method, route in served:
        op = described[route][method.lower()]
        declared = [p for p in op.get("parameters", []) if p["in"] == "path"]
        assert [p["name"] for p in declared] == params(route), (method, route)
        assert all(p["required"] for p in declared), (method, route)
        [(ok, documented)] = [(code, r) for code, r in op["responses"].items() if code != "default"]
        setup, body = SUCCEEDS.get((method, route), (None, None))
        values = setup(farm) if setup else {}
        if body is None and method in ("POST", "PUT"):
            body = {}
        target = _target(route, values)
        if route == "/v1/journal/stream":
            target += "?seconds=0.3"  # a stream ends only when asked to
        reply = control(farm, method, target, body=body)
        what = f"{method} {target}: {reply.status} {reply.body[:200]!r}"
        assert str(reply.status) == ok, what
        assert _media(reply) in documented["content"], what
        if "{name}" in route and not route.startswith("/v1/snapshots"):
            missing = control(farm, method, _target(route, {**values, "name": "no-such-member"}),
                              body=body)
            assert op["responses"]["default"] == {"$ref": "#/components/responses/Error"}
            assert missing.status == 404, (method, route, missing.status, missing.body[:200])
            assert _media(missing) == "application/json" and missing.json()["error"]["code"]
        checked.append((method, route))
    control(farm, "POST", "/v1/clock/reset", body={})
    for client in getattr(farm, "_mqtt_helpers", []):
        close_paho(client)
    assert len(checked) == len(served) > 30


def test_ctl_command_drives_a_running_farm(farm: RunningFarm) -> None:
    def ctl(*args: str) -> Any:
        out = subprocess.run([sys.executable, "-m", "emulators", "ctl", "--url",
                              farm.control_url.removesuffix("/v1"), *args], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    assert [m["name"] for m in ctl("members")["emulators"]] == ["a", "cam-1", "cam-2"]
    call("POST", farm["a"].url)
    assert ctl("state", "a") == {"value": 1}
    assert ctl("snapshot", "save", "s1")["name"] == "s1"
    assert ctl("reset", "a") == {"reset": "a"}
    assert ctl("snapshot", "restore", "s1") == {"restored": ["a", "cam-1", "cam-2"]}
    assert ctl("fault", "add", '{"fault": "status", "status": 500, "id": "boom"}')["id"] == "boom"
    assert [f["id"] for f in ctl("fault", "list")["faults"]] == ["boom"]
    ctl("fault", "clear")
    assert ctl("clock", "advance", "3600")["time"] > time.time() + 3000
    assert ctl("journal", "--member", "a", "--method", "POST")["entries"][0]["status"] == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/clock/advance", {"seconds": 1e300}, id="advance-past-year-9998"),
        pytest.param("/clock/set", {"time": -1e20}, id="set-before-the-epoch"),
        pytest.param("/clock/set", {"at": "1969-12-31T23:59:59Z"}, id="set-iso-before-epoch"),
        pytest.param("/clock/freeze", {"at": "9999-12-31T23:59:59Z"}, id="freeze-in-year-9999"),
        pytest.param("/clock/set", {"time": 1e20}, id="set-far-future"),
    ],
)
def test_clock_refuses_instants_it_cannot_hold(farm: RunningFarm, path: str, body: Any) -> None:
    before = call("GET", f"{farm.control_url}/clock")[1]["frozen"]
    status, reply = call("POST", f"{farm.control_url}{path}", body)
    assert status == 400
    assert reply["error"]["message"] == ("the farm clock runs from 1970-01-01 to 9998-12-31 "
                                         "(UTC)")
    status, now = call("GET", f"{farm.control_url}/clock")  # still readable, unchanged
    assert status == 200 and now["frozen"] == before and abs(now["time"] - time.time()) < 60
    assert call("GET", farm["a"].url) == (200, b"0")  # and the members still tell the time


def test_clock_advance_refuses_nan(farm: RunningFarm) -> None:
    req = urllib.request.Request(f"{farm.control_url}/clock/advance", method="POST",
                                 data=b'{"seconds": NaN}',
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    with info.value as exc:
        assert exc.code == 400


def test_journal_capacity_must_be_a_number_not_a_boolean(farm: RunningFarm) -> None:
    status, reply = call("PUT", f"{farm.control_url}/journal/config", {"capacity": True})
    assert status == 400 and "capacity" in reply["error"]["message"]

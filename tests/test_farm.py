"""The farm in-process: fleets on real sockets, state across restarts, reset, the control plane."""

from __future__ import annotations

import errno
import json
import time
import urllib.request
from collections.abc import Callable
from http.client import RemoteDisconnected
from pathlib import Path
from typing import Any

import pytest

from emulators.testing import RunningFarm
from tests.control_support import urlopen_reply

COUNTER = "tests.kinds:Counter"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "scenarios"


def http(method: str, url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method)
    if method != "GET":  # a state change says so (control/origin.py)
        req.add_header("X-Requested-With", "tests")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    return urlopen_reply(req)


def bump(url: str) -> int:
    return int(http("POST", url)[1])


def test_fleet_members_answer_on_their_own_addresses(farm_factory: Callable[..., RunningFarm]) -> None:
    farm = farm_factory(FIXTURES / "good-fleet.yaml")
    cams = farm.group("cam")
    assert len(cams) == 12
    assert len({c.port for c in cams}) == 1  # one port, twelve addresses
    for i, cam in enumerate(cams, start=1):
        assert cam.url == f"http://127.0.10.{i}:{cams[0].port}"
    # Each is its own device: bumping one leaves the others alone.
    assert bump(cams[3].url) == 8
    assert [int(http("GET", c.url)[1]) for c in cams[2:5]] == [7, 8, 7]
    rows = farm.group("row")
    assert len({r.port for r in rows}) == 3 and {r.host for r in rows} == {"127.0.0.1"}


def test_state_survives_a_restart_of_the_farm(farm_factory: Callable[..., RunningFarm],
                                              tmp_path: Path) -> None:
    scenario = {"emulators": [{"name": "c", "kind": COUNTER, "start": 10}]}
    first = farm_factory(scenario, tmp_path)
    assert bump(first["c"].url) == 11
    assert bump(first["c"].url) == 12
    first.stop()
    second = farm_factory(scenario, tmp_path)
    assert int(http("GET", second["c"].url)[1]) == 12
    assert second["c"].state() == {"value": 12}


def test_without_state_dir_state_lives_in_memory_only(
        farm_factory: Callable[..., RunningFarm]) -> None:
    scenario = {"emulators": [{"name": "c", "kind": COUNTER}]}
    first = farm_factory(scenario)
    bump(first["c"].url)
    first.stop()
    assert farm_factory(scenario)["c"].state() == {"value": 0}


def test_reset_one_member_or_all_through_the_control_plane(
        farm_factory: Callable[..., RunningFarm], tmp_path: Path) -> None:
    farm = farm_factory({"emulators": [{"name": "a", "kind": COUNTER, "start": 1},
                                       {"name": "b", "kind": COUNTER, "start": 2}]}, tmp_path)
    bump(farm["a"].url), bump(farm["b"].url)
    status, body = http("POST", f"{farm.control_url}/emulators/a/reset")
    assert (status, json.loads(body)) == (200, {"reset": "a"})
    assert farm["a"].state() == {"value": 1} and farm["b"].state() == {"value": 3}
    assert json.loads((tmp_path / "a.json").read_text()) == {"value": 1}  # reset is saved too
    status, body = http("POST", f"{farm.control_url}/reset")
    assert json.loads(body) == {"reset": ["a", "b"]}
    assert farm["b"].state() == {"value": 2}



def test_an_untouched_camera_writes_nothing_at_start_or_reset_and_a_changed_one_does(
        farm_factory: Callable[..., RunningFarm], tmp_path: Path) -> None:
    """A start or reset of a member that never saved leaves no file (the initial state is made
    again at the next start); once it saved, a farm reset writes its initial state."""
    scenario = {"emulators": [{"name": "cam", "kind": "instar-camera", "count": 2,
                               "fleet": "ports", "host": "127.0.0.1", "port": 0}]}
    farm = farm_factory(scenario, tmp_path)
    assert not list(tmp_path.glob("cam-*.json"))
    farm.reset()
    assert not list(tmp_path.glob("cam-*.json"))
    url = farm["cam-1"].url + "/param.cgi?user=admin&pwd=instar&cmd="
    with urllib.request.urlopen(url + "setftpattr&ft_port=2121", timeout=10) as reply:
        assert b'response="200"' in reply.read()
    assert json.loads((tmp_path / "cam-1.json").read_text())["ftp"]["ft_port"] == 2121
    farm.reset()
    assert json.loads((tmp_path / "cam-1.json").read_text())["ftp"]["ft_port"] == 21
    assert not (tmp_path / "cam-2.json").exists()
    with urllib.request.urlopen(url + "getftpattr", timeout=10) as reply:
        assert b'ft_port="21"' in reply.read()

def test_control_plane_lists_describes_and_reads_state(
        farm_factory: Callable[..., RunningFarm]) -> None:
    farm = farm_factory({"emulators": [{"name": "a", "kind": COUNTER, "start": 4}]})
    status, body = http("GET", f"{farm.control_url}/emulators")
    listed = json.loads(body)["emulators"]
    assert status == 200 and [e["name"] for e in listed] == ["a"]
    assert listed[0]["urls"]["http"] == farm["a"].url
    assert json.loads(http("GET", f"{farm.control_url}/emulators/a/state")[1]) == {"value": 4}
    status, body = http("GET", f"{farm.control_url}/emulators/nope/state")
    assert status == 404
    assert json.loads(body) == {"error": {"code": "not_found",
                                          "message": "no emulator named 'nope'"}}
    status, body = http("GET", f"{farm.control_url}/servers/a")
    assert status == 404  # 'a' is an emulator, not a server
    routes = json.loads(http("GET", farm.control_url)[1])["routes"]
    assert "POST /v1/emulators/{name}/reset" in routes


def test_control_plane_can_require_a_token(farm_factory: Callable[..., RunningFarm]) -> None:
    farm = farm_factory({"control": {"token": "s3cret-token"},
                         "emulators": [{"name": "a", "kind": COUNTER}]})
    assert farm.ready["control"]["token_required"] is True
    status, body = http("GET", f"{farm.control_url}/emulators")
    assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized"
    assert http("GET", f"{farm.control_url}/emulators", token="wrong-token")[0] == 401
    assert http("GET", f"{farm.control_url}/emulators", token="s3cret-token")[0] == 200


def test_control_plane_binds_loopback_by_default(farm_factory: Callable[..., RunningFarm]) -> None:
    farm = farm_factory({"emulators": [{"name": "a", "kind": COUNTER}]})
    assert farm.control_url.startswith("http://127.0.0.1:")


def test_a_member_that_cannot_start_stops_the_others(
        farm_factory: Callable[..., RunningFarm]) -> None:
    blocker = farm_factory({"emulators": [{"name": "x", "kind": COUNTER}]})
    taken = blocker["x"].port
    scenario: dict[str, Any] = {"emulators": [
        {"name": "first", "kind": COUNTER, "port": 0},
        {"name": "second", "kind": COUNTER, "port": taken}]}
    with pytest.raises(OSError, match=f"member 'second': port {taken} is already in use") as caught:
        farm_factory(scenario, free_ports=False)
    assert caught.value.errno == errno.EADDRINUSE
    # Nothing of the failed farm is left listening: a fresh farm on those ports starts fine.
    assert bump(blocker["x"].url) == 1


def test_test_farms_take_free_ports_whatever_the_scenario_says(
        farm_factory: Callable[..., RunningFarm]) -> None:
    scenario = {"control": {"port": 8700},
                "emulators": [{"name": "a", "kind": COUNTER, "port": 8080}]}
    one, two = farm_factory(scenario), farm_factory(scenario)  # would clash on fixed ports
    assert one["a"].port != two["a"].port and 8080 not in (one["a"].port, two["a"].port)
    assert bump(one["a"].url) == 1


def test_a_request_past_its_deadline_is_cut_and_others_are_served(
        farm_factory: Callable[..., RunningFarm], monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.kinds import Counter

    monkeypatch.setattr(Counter, "request_deadline", 1.0)
    farm = farm_factory({"emulators": [{"name": "a", "kind": COUNTER}]})
    started = time.monotonic()
    with pytest.raises((ConnectionResetError, RemoteDisconnected)):
        urllib.request.urlopen(farm["a"].url + "/slow?seconds=30", timeout=10)
    assert 0.9 < time.monotonic() - started < 4
    assert bump(farm["a"].url) == 1
    [cut] = farm.journal(path="/slow")
    assert cut["status"] == 499

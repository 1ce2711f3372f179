"""README.md's MQTT first steps, run as written: every `<!-- recipe: ... -->` block (mosquitto
command lines, paho snippets) against the default farm on free ports, with the ports and the
farm CA's path swapped for the test farm's."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators.testing import RunningFarm

ROOT = Path(__file__).parent.parent
RECIPE = re.compile(r"<!-- recipe: (?P<name>[\w-]+) -->\n```(?P<lang>\w+)\n(?P<body>.*?)\n```",
                    re.DOTALL)
# The default scenario's ports as README writes them -> (member, url label)
PORTS = {1883: ("iotda", "mqtt"), 8883: ("iotda", "mqtts"),
         11883: ("enos", "mqtt"), 18883: ("enos", "mqtts")}


def recipes() -> dict[str, tuple[str, str]]:
    found = {m["name"]: (m["lang"], m["body"])
             for m in RECIPE.finditer((ROOT / "README.md").read_text())}
    assert set(found) == {"iotda-mosquitto-pub", "iotda-mosquitto-sub", "iotda-paho",
                          "enos-mosquitto-pub", "enos-mosquitto-sub", "enos-paho",
                          "iotda-certificate", "enos-certificate"}
    return found


@pytest.fixture(scope="module")
def farm(farm_factory_module: Any) -> RunningFarm:
    return farm_factory_module


@pytest.fixture(scope="module")
def farm_factory_module(emulators_loop: Any, tmp_path_factory: pytest.TempPathFactory
                        ) -> Iterator[RunningFarm]:
    running = RunningFarm.start("default", tmp_path_factory.mktemp("state"),
                                loop=emulators_loop)
    try:
        yield running
    finally:
        running.stop()


def as_here(body: str, farm: RunningFarm) -> str:
    """The recipe with the test farm's ports and CA file for README's."""
    def port(match: re.Match[str]) -> str:
        member, label = PORTS[int(match.group(0))]
        return farm[member].urls[label].rsplit(":", 1)[1]

    body = re.sub(r"(?<![\d.])(?:1883|8883|11883|18883)(?!\d)", port, body)
    body = body.replace("http://127.0.0.1:8700/v1", farm.control_url)
    return body.replace("state/farm-ca.pem", farm.ready["ca"]["file"])


def run(name: str, farm: RunningFarm, cwd: Path | None = None) -> subprocess.Popen[str]:
    lang, body = recipes()[name]
    command = ["bash", "-c", "set -eo pipefail\n" + as_here(body, farm)] if lang == "sh" else [
        sys.executable, "-c", as_here(body, farm)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ}, cwd=cwd)


def finish(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out


@contextlib.contextmanager
def subscriber(name: str, farm: RunningFarm) -> Iterator[subprocess.Popen[str]]:
    """The recipe ``name`` running while the test publishes to it; killed if it has not
    ended when the test does."""
    sub = run(name, farm)
    try:
        yield sub
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.communicate()


def connected(farm: RunningFarm, member: str, identity: str) -> None:
    """Wait until the device's session is open (the cloud's session list says so)."""
    deadline = time.monotonic() + 60
    while True:
        if member == "iotda":  # its session list is a control route
            with urllib.request.urlopen(farm.control_url + "/emulators/iotda/iotda/sessions",
                                        timeout=30) as reply:
                sessions = json.load(reply)
        else:
            sessions = farm[member].state()["mqtt_sessions"]
        if identity in json.dumps(sessions):
            return
        assert time.monotonic() < deadline, sessions
        time.sleep(0.1)


def test_the_ready_file_gives_readmes_logins(farm: RunningFarm) -> None:
    iotda = farm["iotda"].credentials["devices"]
    assert [(d["client_id"], d["username"], d.get("password"), d.get("keys")) for d in iotda] == [
        ("EmulatorSensor_sensor01_0_0_2018072417", "EmulatorSensor_sensor01",
         "e707c6df9f757deae85f13726abc74e2537639261f4c53467a99a4478550a22c", None),
        ("EmulatorSensor_camera01_0_0_2018072417", "EmulatorSensor_camera01", None,
         "/v1/emulators/iotda/iotda/devices/EmulatorSensor_camera01/keys")]
    enos = {d["deviceKey"]: d for d in farm["enos"].credentials["devices"]}
    assert (enos["meter01"]["client_id"], enos["meter01"]["username"],
            enos["meter01"]["password"]) == (
        "meter01|securemode=2,signmethod=sha256,timestamp=1700000000000|", "meter01&Pl4inPrd",
        "d5d9fd14dd35eedc4db890fb5881021927d6acc958f9765d9807601942b59554")
    assert enos["inverter01"]["certificate_required"] is True
    readme = (ROOT / "README.md").read_text()
    for login in (iotda[0], enos["meter01"], enos["inverter01"]):
        assert login["password"] in readme
    assert iotda[1]["keys"] in readme


def test_iotda_mosquitto_pub_reports_a_property(farm: RunningFarm) -> None:
    finish(run("iotda-mosquitto-pub", farm))
    [device] = [d for d in farm["iotda"].state()["devices"]
                if d["device_id"] == "EmulatorSensor_sensor01"]
    assert "21.5" in json.dumps(device), device  # the reported side of its shadow


def test_iotda_mosquitto_sub_receives_a_message(farm: RunningFarm) -> None:
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkiotda.v5 import CreateMessageRequest, DeviceMessageRequest, IoTDAClient

    from tests.sdk_clients import close_iotda

    with subscriber("iotda-mosquitto-sub", farm) as sub:
        connected(farm, "iotda", "EmulatorSensor_sensor01")
        keys = farm["iotda"].credentials
        client = (IoTDAClient.new_builder()
                  .with_credentials(BasicCredentials(keys["ak"], keys["sk"], keys["project_id"]))
                  .with_endpoints([farm["iotda"].url]).build())
        try:
            client.create_message(CreateMessageRequest(
                device_id="EmulatorSensor_sensor01",
                body=DeviceMessageRequest(message_id="m-1", message={"hello": "device"})))
        finally:
            close_iotda(client)
        assert json.loads(finish(sub)) == {"object_device_id": "EmulatorSensor_sensor01",
                                           "id": "m-1", "name": None,
                                           "content": {"hello": "device"}}


def test_iotda_paho_reports_and_reads_its_shadow(farm: RunningFarm) -> None:
    shadow = json.loads(finish(run("iotda-paho", farm)))
    assert shadow["object_device_id"] == "EmulatorSensor_sensor01"
    [entry] = shadow["shadow"]
    assert entry["reported"]["properties"] == {"temperature": 21.5}


def test_enos_mosquitto_pub_posts_a_measure_point(farm: RunningFarm) -> None:
    finish(run("enos-mosquitto-pub", farm))
    things = farm["enos"].state()["things"]
    assert "12.5" in json.dumps(things), things


def test_enos_mosquitto_sub_receives_a_service_call(farm: RunningFarm) -> None:
    with subscriber("enos-mosquitto-sub", farm) as sub:
        connected(farm, "enos", "meter01")
        request = urllib.request.Request(
            farm.control_url + "/emulators/enos/enos/devices/mTr9pLq2/measurepoints",
            data=json.dumps({"measurepoints": {"power": 3}, "timeout": 1}).encode(),
            method="POST", headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=60).close()
        except urllib.error.HTTPError as exc:  # the device does not answer: mosquitto_sub cannot
            exc.close()
        topic, _, payload = finish(sub).strip().partition(" ")
        assert topic == "/sys/Pl4inPrd/meter01/thing/service/measurepoint/set"
        assert json.loads(payload)["params"] == {"power": 3}, payload


def test_enos_paho_posts_and_reads_the_reply(farm: RunningFarm) -> None:
    reply = json.loads(finish(run("enos-paho", farm)))
    assert (reply["id"], reply["code"]) == ("1", 200)


def test_iotda_certificate_device_reports_with_the_keys_the_control_plane_gives(
        farm: RunningFarm, tmp_path: Path) -> None:
    finish(run("iotda-certificate", farm, cwd=tmp_path))
    [device] = [d for d in farm["iotda"].state()["devices"]
                if d["device_id"] == "EmulatorSensor_camera01"]
    assert '"zoom": 3' in json.dumps(device), device


def test_enos_certificate_device_posts_with_the_keys_the_control_plane_gives(
        farm: RunningFarm, tmp_path: Path) -> None:
    finish(run("enos-certificate", farm, cwd=tmp_path))
    things = farm["enos"].state()["things"]
    assert "7.5" in json.dumps(things), things

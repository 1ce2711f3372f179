"""A certificate device the scenario asks the member to issue a certificate for
(``auth_info.issue_certificate``): ready to connect over MQTTS with the certificate and key the
control plane hands out, the same ones after a reset and a restart."""

from __future__ import annotations

import json
import ssl
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from pydantic import ValidationError

from emulators.iotda.options import ScenarioAuthInfo
from emulators.testing import RunningFarm

DEVICE = "EmulatorSensor_camera01"


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.load(reply)


def connect(farm: RunningFarm, login: dict[str, Any], keys: dict[str, str],
            tmp_path: Path) -> tuple[int, list[bytes]]:
    """CONNECT as paho does over TLS with the device's certificate; report a property and read
    the shadow back. Answers the CONNACK code and what came back."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name in ("cert", "key", "ca_cert"):
        (tmp_path / f"{name}.pem").write_text(keys[name])
    (tmp_path / "farm-ca.pem").write_text(farm.ready["ca"]["pem"])
    host, port = farm["iotda"].urls["mqtts"].removeprefix("mqtts://").rsplit(":", 1)
    done, codes, got = threading.Event(), [], []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=login["client_id"])
    client.username_pw_set(login["username"])
    client.tls_set(ca_certs=str(tmp_path / "farm-ca.pem"), certfile=str(tmp_path / "cert.pem"),
                   keyfile=str(tmp_path / "key.pem"), cert_reqs=ssl.CERT_REQUIRED)
    client.tls_insecure_set(True)  # the farm CA names 127.0.0.1 and localhost; host may differ

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        codes.append(reason.value)
        if reason.value:
            done.set()
            return
        c.subscribe(f"$oc/devices/{DEVICE}/sys/shadow/get/response/#", qos=1)

    def on_subscribe(c: Any, *args: Any) -> None:
        report = {"services": [{"service_id": "default", "properties": {"zoom": 3}}]}
        c.publish(f"$oc/devices/{DEVICE}/sys/properties/report", json.dumps(report), qos=1)
        c.publish(f"$oc/devices/{DEVICE}/sys/shadow/get/request_id=1", "{}", qos=1)

    def on_message(c: Any, userdata: Any, message: Any) -> None:
        got.append(message.payload)
        done.set()

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    client.connect(host, int(port))
    client.loop_start()
    try:
        assert done.wait(30), "no CONNACK refusal and no shadow reply"
    finally:
        client.disconnect()
        client.loop_stop()
    return codes[0], got


def test_the_default_certificate_device_connects_with_what_the_control_plane_hands_out(
        farm_factory: Any, tmp_path: Path) -> None:
    farm: RunningFarm = farm_factory("default")
    iotda = farm["iotda"]
    [login] = [d for d in iotda.credentials["devices"] if d["device_id"] == DEVICE]
    assert login == {"device_id": DEVICE, "node_id": "camera01", "product_id": "EmulatorSensor",
                     "project_id": iotda.credentials["project_id"], "auth_type": "CERTIFICATES",
                     "secure_access": True, "client_id": f"{DEVICE}_0_0_2018072417",
                     "username": DEVICE, "keys": f"/v1/emulators/iotda/iotda/devices/{DEVICE}/keys"}
    keys = get(farm.control_url.removesuffix("/v1") + login["keys"])
    assert keys["device_id"] == DEVICE and "PRIVATE KEY" in keys["key"]
    cert = x509.load_pem_x509_certificate(keys["cert"].encode())
    assert cert.subject.rfc4514_string() == f"CN={DEVICE}"
    # The member recorded its fingerprint and holds its CA as uploaded and verified.
    state = get(f"{farm.control_url}/emulators/iotda/state")
    [device] = [d for d in state["devices"] if d["device_id"] == DEVICE]
    assert device["fingerprint"] == cert.fingerprint(hashes.SHA256()).hex()
    [ca] = state["device_cas"]["records"]
    assert (ca["content"], ca["status"]) == (keys["ca_cert"], True)
    assert keys["key"] not in json.dumps(state)  # state views withhold private keys
    code, got = connect(farm, login, keys, tmp_path / "first")
    assert code == 0
    [shadow] = json.loads(got[0])["shadow"]
    assert shadow["reported"]["properties"] == {"zoom": 3}
    # A reset returns the same certificate and key: the files a user saved stay good.
    iotda.reset()
    assert get(farm.control_url.removesuffix("/v1") + login["keys"]) == keys
    assert connect(farm, login, keys, tmp_path / "after-reset")[0] == 0
    # Another device has nothing to hand out.
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{farm.control_url}/emulators/iotda/iotda/devices/"
                               "EmulatorSensor_sensor01/keys", timeout=10)
    assert caught.value.code == 404
    caught.value.close()


def test_issued_certificates_outlive_a_restart(farm_factory: Any, tmp_path: Path) -> None:
    scenario = {"name": "issued", "emulators": [{
        "name": "iotda", "kind": "iotda", "mqtt_port": 0, "mqtts_port": 0,
        "products": [{"product_id": "EmulatorSensor", "name": "Sensor"}],
        "devices": [{"node_id": "camera01", "product_id": "EmulatorSensor",
                     "auth_info": {"auth_type": "CERTIFICATES", "issue_certificate": True}}]}]}
    first = farm_factory(scenario, state_dir=tmp_path / "state")
    path = first["iotda"].credentials["devices"][0]["keys"]
    keys = get(first.control_url.removesuffix("/v1") + path)
    first.stop()
    again = farm_factory(scenario, state_dir=tmp_path / "state")
    assert get(again.control_url.removesuffix("/v1") + path) == keys


@pytest.mark.parametrize(("auth_info", "message"), [
    pytest.param({"auth_type": "SECRET", "secret": "Secret0001", "issue_certificate": True},
                 "issue_certificate is for auth_type CERTIFICATES", id="secret-device"),
    pytest.param({"auth_type": "CERTIFICATES", "fingerprint": "ab" * 32,
                  "issue_certificate": True}, "sets the fingerprint", id="with-a-fingerprint"),
])
def test_issue_certificate_is_for_certificate_devices_without_a_fingerprint(
        auth_info: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ScenarioAuthInfo(**auth_info)

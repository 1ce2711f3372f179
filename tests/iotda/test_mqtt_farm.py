"""IoTDA device access in the farm: MQTT fault rules met by a real client, the control plane's
session list, state that outlives a restart, reset and snapshots, and the done-when story on
port 8883 exactly (the vendor SDK turns TLS on for that port only)."""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkiotda.v5 import (
    CreateCommandRequest,
    DeviceCommandRequest,
    FreezeDeviceRequest,
    ShowDeviceRequest,
    ShowDeviceShadowRequest,
    UnfreezeDeviceRequest,
)

from emulators.testing import MemberHandle, RunningFarm, single_member_scenario

from .clients import (
    CA,
    DEVICE,
    MQTT_OPTIONS,
    SdkDevice,
    add_cert_device,
    device_files,
    sdk_timestamp,
    upload_ca,
    wait_for,
)


@pytest.fixture
def iotda(emulator_factory: Callable[..., MemberHandle]) -> MemberHandle:
    return emulator_factory("iotda", **MQTT_OPTIONS)


def show(client: Any, device_id: str = DEVICE) -> Any:
    return client.show_device(ShowDeviceRequest(device_id=device_id))


# -- fault rules -------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [3, 4, 5])
def test_mqtt_refuse_answers_the_rules_connack(iotda: MemberHandle,
                                               devices: Callable[..., SdkDevice],
                                               code: int) -> None:
    iotda.farm.add_fault(fault="mqtt_refuse", member=iotda.name, connack=code, times=1)
    assert devices().connect() == code
    assert devices().connect() == 0  # times: 1
    fired = iotda.farm.journal(member=iotda.name, event="fault")
    assert fired[-1]["detail"]["fault"] == "mqtt_refuse"


def test_mqtt_drop_at_connect_closes_without_a_connack(iotda: MemberHandle,
                                                       devices: Callable[..., SdkDevice]
                                                       ) -> None:
    iotda.farm.add_fault(fault="mqtt_drop", member=iotda.name, command="connect", times=1)
    device = devices()
    with pytest.raises(queue.Empty):  # no CONNACK came before the close
        device.connect(timeout=3)
    assert devices().connect() == 0


def test_mqtt_drop_on_a_report_topic_ends_the_session(iotda: MemberHandle,
                                                      devices: Callable[..., SdkDevice]
                                                      ) -> None:
    iotda.farm.add_fault(fault="mqtt_drop", member=iotda.name, command="publish",
                         path="$oc/devices/*/sys/properties/report")
    device = devices()
    assert device.connect() == 0
    device.publish(f"$oc/devices/{DEVICE}/sys/properties/report", {"services": []})
    device.disconnects.get(timeout=10)
    reason = iotda.farm.journal(member=iotda.name, event="disconnect")[-1]["detail"]["reason"]
    assert reason.startswith("closed: fault rule")


def test_puback_delay_and_drop(iotda: MemberHandle, devices: Callable[..., SdkDevice]) -> None:
    device = devices()
    assert device.connect() == 0
    topic = f"$oc/devices/{DEVICE}/sys/messages/up"
    iotda.farm.add_fault(fault="mqtt_puback_delay", member=iotda.name, latency_ms=600,
                         times=1)
    started = time.monotonic()
    device.publish(topic, {"n": 1}).wait_for_publish(10)
    assert time.monotonic() - started >= 0.6
    iotda.farm.add_fault(fault="mqtt_puback_drop", member=iotda.name, times=1)
    dropped = device.publish(topic, {"n": 2})
    time.sleep(0.5)
    assert not dropped.is_published()  # never acknowledged
    device.publish(topic, {"n": 3}).wait_for_publish(10)  # the next one is
    # Both messages were taken: the journal has them.
    ups = [e["request_excerpt"] for e in iotda.farm.journal(member=iotda.name, event="publish")
           if e["detail"]["direction"] == "up"]
    assert ups[-3:] == ['{"n": 1}', '{"n": 2}', '{"n": 3}']


def test_mqtt_hang_stops_answering(iotda: MemberHandle, devices: Callable[..., SdkDevice]
                                   ) -> None:
    iotda.farm.add_fault(fault="mqtt_hang", member=iotda.name, command="publish", times=1)
    device = devices()
    assert device.connect() == 0
    silent = device.publish(f"$oc/devices/{DEVICE}/sys/messages/up", {"n": 1})
    time.sleep(0.5)
    assert not silent.is_published()
    assert iotda.call(lambda m: [s["identity"] for s in m.access.sessions()]) == [DEVICE]


def test_fault_rule_fields_are_checked() -> None:
    from emulators.core.faults import FaultSpec

    with pytest.raises(ValueError, match="latency_ms"):
        FaultSpec(fault="mqtt_puback_delay")
    with pytest.raises(ValueError, match="connack"):
        FaultSpec(fault="mqtt_drop", connack=3)
    with pytest.raises(ValueError, match="less than or equal to 5"):
        FaultSpec(fault="mqtt_refuse", connack=7)


# -- control plane, state, snapshots -----------------------------------------------------------

def test_control_plane_lists_the_sessions(farm_factory: Callable[..., RunningFarm],
                                          tmp_path: Path) -> None:
    farm = farm_factory(single_member_scenario("iotda", "iot", **MQTT_OPTIONS))
    member = farm["iot"]
    ca = tmp_path / "root.pem"
    ca.write_text(member.member.ctx.ca.pem)
    port = int(member.urls["mqtts"].rsplit(":", 1)[1])
    device = SdkDevice(DEVICE, member.host, port, secret="CameraSecret01", ca_file=ca, tls=True)
    try:
        assert device.connect() == 0
        with urllib.request.urlopen(f"{farm.control_url}/emulators/iot/iotda/sessions",
                                    timeout=10) as reply:
            doc = json.load(reply)
        assert [s["identity"] for s in doc["sessions"]] == [DEVICE]
        assert doc["sessions"][0]["client_id"] == device.client_id
        with urllib.request.urlopen(f"{farm.control_url}/emulators/iot", timeout=10) as reply:
            described = json.load(reply)
        assert described["mqtt_sessions"] == 1
        assert described["urls"]["mqtts"] == f"mqtts://{member.host}:{port}"
    finally:
        device.close()


def test_recorded_fingerprint_and_shadow_outlive_a_restart(
        farm_factory: Callable[..., RunningFarm], make_client: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = farm_factory(single_member_scenario("iotda", "iot", **MQTT_OPTIONS), state)
    member = first["iot"]
    client = make_client(endpoint=member.url)
    ca = CA("Restart CA")
    upload_ca(client, ca)
    device_id = add_cert_device(client, "keep-1")
    cert_file, key_file, sha1 = device_files(ca, tmp_path, "keep-1", days=30)
    ca_file = tmp_path / "root.pem"
    ca_file.write_text(member.member.ctx.ca.pem)
    port = int(member.urls["mqtts"].rsplit(":", 1)[1])
    device = SdkDevice(device_id, member.host, port, ca_file=ca_file, cert_file=cert_file,
                       key_file=key_file, tls=True)
    assert device.connect() == 0
    device.report([{"service_id": "Ptz", "properties": {"zoom": 3}}])
    device.close()
    wait_for(lambda: show(client, device_id).status == "OFFLINE")
    first.stop()
    second = farm_factory(single_member_scenario("iotda", "iot", **MQTT_OPTIONS), state)
    client = make_client(endpoint=second["iot"].url)
    shown = show(client, device_id)
    assert shown.status == "OFFLINE"  # it connected once: not INACTIVE
    assert shown.auth_info.fingerprint == sha1
    shadow = client.show_device_shadow(ShowDeviceShadowRequest(device_id=device_id)).shadow
    assert shadow[0].reported.properties == {"zoom": 3}


def test_reset_ends_every_session_and_forgets_devices(iotda: MemberHandle, client: Any,
                                                      devices: Callable[..., SdkDevice]
                                                      ) -> None:
    device = devices()
    assert device.connect() == 0
    iotda.reset()
    device.disconnects.get(timeout=10)
    assert show(client).status == "INACTIVE"  # the scenario's state: never connected
    assert devices().connect() == 0


def test_snapshot_restore_brings_back_the_shadow(iotda: MemberHandle, client: Any,
                                                 devices: Callable[..., SdkDevice]) -> None:
    device = devices()
    assert device.connect() == 0
    device.report([{"service_id": "Ptz", "properties": {"pan": 5}}])
    wait_for(lambda: client.show_device_shadow(ShowDeviceShadowRequest(device_id=DEVICE)).shadow)
    iotda.farm.snapshot("reported")
    device.report([{"service_id": "Ptz", "properties": {"pan": 6}}])
    iotda.farm.restore("reported")
    device.disconnects.get(timeout=10)  # a restored state ends the sessions
    shadow = client.show_device_shadow(ShowDeviceShadowRequest(device_id=DEVICE)).shadow
    assert shadow[0].reported.properties == {"pan": 5}


# -- the done-when story -----------------------------------------------------------------------

STORY_HOST = "127.18.83.1"  # a loopback address of its own, so 8883 is free for it


def test_story_ca_device_certificate_connect_report_command_and_refusals(
        farm_factory: Callable[..., RunningFarm], make_client: Any, tmp_path: Path) -> None:
    options = {**MQTT_OPTIONS, "mqtts_port": 8883, "mqtt_port": None, "command_timeout": 5}
    farm = farm_factory({"name": "story", "emulators": [
        {"name": "iot", "kind": "iotda", "host": STORY_HOST, **options}]}, free_ports=False)
    member = farm["iot"]
    assert member.urls["mqtts"] == f"mqtts://{STORY_HOST}:8883"
    client = make_client(endpoint=member.url)
    ca_file = tmp_path / "root.pem"
    ca_file.write_text(member.member.ctx.ca.pem)
    made: list[SdkDevice] = []

    def device(device_id: str, cert: tuple[Path, Path], **kwargs: Any) -> SdkDevice:
        # port 8883: the SDK's own condition for TLS holds, no override
        sdk = SdkDevice(device_id, STORY_HOST, 8883, ca_file=ca_file, cert_file=cert[0],
                        key_file=cert[1], **kwargs)
        made.append(sdk)
        return sdk

    try:
        # 1. upload and verify a CA; issue a device certificate from it; AddDevice CERTIFICATES
        ca = CA("Story Device CA")
        upload_ca(client, ca)
        device_id = add_cert_device(client, "story-1")
        cert_file, key_file, sha1 = device_files(ca, tmp_path, "story-1", days=365)
        # 2. connect with paho over 8883 as the SDK does
        camera = device(device_id, (cert_file, key_file))
        assert camera.connect() == 0
        assert show(client, device_id).status == "ONLINE"
        assert show(client, device_id).auth_info.fingerprint == sha1
        # 3. report properties: visible in ShowDevice's shadow
        camera.report([{"service_id": "Ptz", "properties": {"pan": 12}}])
        shadow = wait_for(lambda: client.show_device_shadow(
            ShowDeviceShadowRequest(device_id=device_id)).shadow)
        assert shadow[0].reported.properties == {"pan": 12}

        # 4. answer a CreateCommand
        def answer() -> None:
            message = camera.next_message()
            request_id = message.topic.split("request_id=")[-1]
            camera.publish(f"$oc/devices/{device_id}/sys/commands/response/"
                           f"request_id={request_id}", {"result_code": 0, "paras": {"ok": 1}})

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        reply = client.create_command(CreateCommandRequest(
            device_id=device_id, body=DeviceCommandRequest(
                service_id="Ptz", command_name="home", paras={})))
        thread.join(5)
        assert reply.response == {"result_code": 0, "paras": {"ok": 1}}
        camera.close()

        # 5. each refusal gives its CONNACK
        unverified = CA("Unverified Story CA")
        upload_ca(client, unverified, verified=False)
        other_id = add_cert_device(client, "story-2")
        assert device(other_id, device_files(unverified, tmp_path, "story-2",
                                             days=365)[:2]).connect() == 5
        wrong = device_files(ca, tmp_path, "story-1-wrong", days=365)[:2]
        assert device(device_id, wrong).connect() == 5  # wrong fingerprint
        client.freeze_device(FreezeDeviceRequest(device_id=device_id))
        assert device(device_id, (cert_file, key_file)).connect() == 5  # frozen
        client.unfreeze_device(UnfreezeDeviceRequest(device_id=device_id))
        skewed = sdk_timestamp(time.time() - 5 * 3600)
        assert device(device_id, (cert_file, key_file), timestamp=skewed).connect() == 5
        assert device(device_id, (cert_file, key_file)).connect() == 0  # and back in
        reasons = [e["detail"]["reason"].split(":")[0]
                   for e in farm.journal(member="iot", event="refused")]
        assert reasons == ["unverified_ca", "fingerprint", "frozen", "clock_skew"]
    finally:
        for sdk in made:
            sdk.close()

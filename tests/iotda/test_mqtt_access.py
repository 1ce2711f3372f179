"""IoTDA device access over MQTT: paho-mqtt configured as the vendor's device SDK configures it
connects to the member's real listeners, and the official application SDK
(huaweicloudsdkiotda) sees what the device did. Both ways (tests/ways.py): one process, and the
emulator on shard 1 of four."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkiotda.v5 import (
    CreateCommandRequest,
    CreateMessageRequest,
    DeviceCommandRequest,
    DeviceMessageRequest,
    DevicePropertiesRequest,
    FreezeDeviceRequest,
    ListDeviceMessagesRequest,
    ListPropertiesRequest,
    ShowDeviceRequest,
    ShowDeviceShadowRequest,
    UpdateDesired,
    UpdateDesireds,
    UpdateDeviceShadowDesiredDataRequest,
    UpdatePropertiesRequest,
)

from emulators import pki
from emulators.testing import MemberHandle, RemoteMember, ShardedFarm
from tests.ways import WAYS, both_ways

from .clients import (
    CA,
    DEVICE,
    MQTT_OPTIONS,
    OFFLINE,
    PROJECT,
    SECRET,
    SdkDevice,
    add_cert_device,
    device_files,
    fresh_member,
    sdk_timestamp,
    upload_ca,
    wait_for,
)

# The API reference's error table, row IOTDA.014111 (status 200).
TIMEOUT_MSG = ("Command request timed out. Check whether the device returns a response within "
               "the specified time after receiving the request.")

def error_of(call: Callable[[], Any]) -> tuple[int, str, str]:
    with pytest.raises(ClientRequestException) as caught:
        call()
    return caught.value.status_code, caught.value.error_code, caught.value.error_msg


@pytest.fixture(scope="module", params=WAYS)
def iotda_farm(request: pytest.FixtureRequest) -> Iterator[ShardedFarm]:
    """One IoTDA emulator with MQTT, both ways (tests/ways.py): one process, and shard 1 of
    four."""
    yield from both_ways({"name": "iotda-mqtt", "emulators": [
        {"name": "iotda", "kind": "iotda", **MQTT_OPTIONS}]}, request.param, across=["iotda"])


@pytest.fixture
def iotda(iotda_farm: ShardedFarm) -> RemoteMember:
    """The module's emulator back at its scenario state (no devices added, no sessions), the
    farm clock at real time, no fault rules, an empty journal."""
    return fresh_member(iotda_farm)


def show(client: Any, device_id: str = DEVICE) -> Any:
    return client.show_device(ShowDeviceRequest(device_id=device_id))


# -- secret devices ----------------------------------------------------------------------------

def test_secret_device_connects_over_tls_and_shows_online(client: Any,
                                                          devices: Callable[..., SdkDevice]
                                                          ) -> None:
    assert show(client).status == "INACTIVE"
    device = devices()
    assert device.connect() == 0
    shown = show(client)
    assert shown.status == "ONLINE"
    assert shown.active_time is not None
    assert shown.connection_status_update_time is not None
    device.close()
    wait_for(lambda: show(client).status == "OFFLINE")


def test_properties_report_fills_the_shadow(client: Any, devices: Callable[..., SdkDevice]
                                            ) -> None:
    device = devices()
    assert device.connect() == 0
    device.report([{"service_id": "Ptz", "properties": {"pan": 10, "tilt": -5},
                    "event_time": "20261203T101500Z"}])
    shadow = wait_for(lambda: [s for s in client.show_device_shadow(
        ShowDeviceShadowRequest(device_id=DEVICE)).shadow if s.reported.properties])
    assert shadow[0].service_id == "Ptz"
    assert shadow[0].reported.properties == {"pan": 10, "tilt": -5}
    assert shadow[0].reported.event_time == "20261203T101500Z"


def test_desired_properties_reach_an_online_device_as_a_property_set(
        client: Any, devices: Callable[..., SdkDevice]) -> None:
    device = devices()
    assert device.connect() == 0
    device.report([{"service_id": "Ptz", "properties": {"pan": 10}}])
    client.update_device_shadow_desired_data(UpdateDeviceShadowDesiredDataRequest(
        device_id=DEVICE, body=UpdateDesireds(shadow=[UpdateDesired(
            service_id="Ptz", desired={"pan": 90})])))
    message = device.next_message()
    assert message.topic.startswith(f"$oc/devices/{DEVICE}/sys/properties/set/request_id=")
    assert json.loads(message.payload) == {
        "object_device_id": DEVICE, "services": [{"service_id": "Ptz",
                                                  "properties": {"pan": 90}}]}


def test_wrong_secret_is_connack_4(client: Any, devices: Callable[..., SdkDevice]) -> None:
    assert devices(secret="NotTheSecret").connect() == 4
    assert show(client).status == "INACTIVE"


def test_secondary_secret_also_works(iotda: MemberHandle, client: Any,
                                     devices: Callable[..., SdkDevice]) -> None:
    from huaweicloudsdkiotda.v5 import ResetDeviceSecret, ResetDeviceSecretRequest

    client.reset_device_secret(ResetDeviceSecretRequest(
        device_id=DEVICE, action_id="resetSecret",
        body=ResetDeviceSecret(secret="SecondSecret22", secret_type="SECONDARY")))
    assert devices(secret="SecondSecret22").connect() == 0


def test_unknown_device_is_connack_4(devices: Callable[..., SdkDevice]) -> None:
    assert devices("camera_nobody").connect() == 4


def test_secure_access_device_is_refused_on_the_plain_port(
        devices: Callable[..., SdkDevice]) -> None:
    assert devices(tls=False).connect() == 5
    assert devices("camera_cam-plain", tls=False).connect() == 0


def test_frozen_device_is_connack_5_and_freezing_ends_its_session(
        client: Any, devices: Callable[..., SdkDevice]) -> None:
    device = devices()
    assert device.connect() == 0
    client.freeze_device(FreezeDeviceRequest(device_id=DEVICE))
    device.disconnects.get(timeout=10)
    assert show(client).status == "FROZEN"
    assert devices().connect() == 5


def test_client_id_hour_is_checked_against_the_host_clock_or_the_farm_clock(
        iotda: MemberHandle, devices: Callable[..., SdkDevice]) -> None:
    three_hours_ago = sdk_timestamp(time.time() - 3 * 3600)
    assert devices(timestamp=three_hours_ago).connect() == 5  # _1_: checked
    assert devices(timestamp=three_hours_ago, check_timestamp="0").connect() == 0  # _0_: not
    iotda.farm.clock.advance(3 * 3600)
    # The SDK as shipped stamps the host's hour: a test that moved the farm clock keeps it in.
    assert devices().connect() == 0
    assert devices(timestamp=sdk_timestamp(iotda.farm.clock.time())).connect() == 0
    assert devices(timestamp=three_hours_ago).connect() == 5  # neither clock's hour
    iotda.farm.clock.set(time.time() - 3 * 3600)  # the farm three hours behind: its hour fits
    assert devices(timestamp=three_hours_ago).connect() == 0


def test_client_id_not_in_the_sdk_form_is_connack_2(devices: Callable[..., SdkDevice]) -> None:
    assert devices(client_id="just-a-client").connect() == 2


def test_keep_alive_outside_30_to_1200_is_refused(devices: Callable[..., SdkDevice]) -> None:
    assert devices(keep_alive=10).connect() == 5
    assert devices(keep_alive=1201).connect() == 5
    assert devices(keep_alive=30).connect() == 0


def test_a_second_connection_displaces_the_first(client: Any,
                                                 devices: Callable[..., SdkDevice]) -> None:
    first = devices()
    assert first.connect() == 0
    second = devices(check_timestamp="0")  # another client id, the same device
    assert second.connect() == 0
    first.disconnects.get(timeout=10)
    assert show(client).status == "ONLINE"


# -- commands, properties, messages ------------------------------------------------------------

def answer_commands(device: SdkDevice, reply: dict[str, Any]) -> threading.Thread:
    """The SDK's CommandListener answering with ``respond_command``."""

    def run() -> None:
        message = device.next_message()
        request_id = message.topic.split("request_id=")[-1]
        device.seen = json.loads(message.payload)  # type: ignore[attr-defined]
        device.seen_topic = message.topic  # type: ignore[attr-defined]
        device.publish(f"$oc/devices/{device.device_id}/sys/commands/response/"
                       f"request_id={request_id}", reply)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_create_command_waits_for_the_device_response(
        iotda: MemberHandle, client: Any, devices: Callable[..., SdkDevice]) -> None:
    device = devices()
    assert device.connect() == 0
    thread = answer_commands(device, {"result_code": 0, "response_name": "COMMAND_RESPONSE",
                                      "paras": {"result": "success"}})
    answer = client.create_command(CreateCommandRequest(device_id=DEVICE, body=DeviceCommandRequest(
        service_id="Ptz", command_name="move", paras={"pan": 30})))
    thread.join(5)
    assert device.seen == {"service_id": "Ptz", "command_name": "move",  # type: ignore[attr-defined]
                           "object_device_id": DEVICE, "paras": {"pan": 30}}
    assert device.seen_topic == (  # type: ignore[attr-defined]
        f"$oc/devices/{DEVICE}/sys/commands/request_id={answer.command_id}")
    assert answer.response == {"result_code": 0, "response_name": "COMMAND_RESPONSE",
                               "paras": {"result": "success"}}
    assert answer.error_code is None
    # The journal ties the REST call, the MQTT request and the device's answer together.
    chain = iotda.farm.journal(member=iotda.name)
    rest = next(e for e in chain if e.get("path", "").endswith("/commands"))
    related = [e for e in chain if e.get("correlation_id") == rest["correlation_id"]]
    directions = [(e["protocol"], e.get("detail", {}).get("direction")) for e in related
                  if e["protocol"].startswith("mqtt")]
    assert directions == [("mqtts", "down"), ("mqtts", "up")]


def test_create_command_times_out_with_014111(client: Any, devices: Callable[..., SdkDevice]
                                              ) -> None:
    device = devices()
    assert device.connect() == 0
    answer = client.create_command(CreateCommandRequest(device_id=DEVICE, body=DeviceCommandRequest(
        service_id="Ptz", command_name="move", paras={})))
    assert answer.error_code == "IOTDA.014111"
    assert answer.error_msg == TIMEOUT_MSG
    assert answer.command_id


def test_create_command_to_an_offline_device_is_014016(client: Any) -> None:
    assert error_of(lambda: client.create_command(CreateCommandRequest(
        device_id=DEVICE, body=DeviceCommandRequest(paras={})))) == OFFLINE


def test_update_and_list_properties_go_to_the_device(
        client: Any, devices: Callable[..., SdkDevice]) -> None:
    device = devices()
    assert device.connect() == 0

    def run() -> None:
        for _ in range(2):
            message = device.next_message()
            request_id = message.topic.split("request_id=")[-1]
            doc = json.loads(message.payload)
            if "/properties/set/" in message.topic:
                device.set_doc = doc  # type: ignore[attr-defined]
                device.publish(f"$oc/devices/{DEVICE}/sys/properties/set/response/"
                               f"request_id={request_id}",
                               {"result_code": 0, "result_desc": "success"})
            else:
                device.get_doc = doc  # type: ignore[attr-defined]
                device.publish(f"$oc/devices/{DEVICE}/sys/properties/get/response/"
                               f"request_id={request_id}",
                               {"services": [{"service_id": "Ptz", "properties": {"pan": 7}}]})

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    updated = client.update_properties(UpdatePropertiesRequest(
        device_id=DEVICE, body=DevicePropertiesRequest(
            services=[{"service_id": "Ptz", "properties": {"pan": 7}}])))
    listed = client.list_properties(ListPropertiesRequest(device_id=DEVICE, service_id="Ptz"))
    thread.join(5)
    assert device.set_doc == {"object_device_id": DEVICE,  # type: ignore[attr-defined]
                              "services": [{"service_id": "Ptz", "properties": {"pan": 7}}]}
    assert device.get_doc == {"object_device_id": DEVICE,  # type: ignore[attr-defined]
                              "service_id": "Ptz"}
    assert updated.response == {"result_code": 0, "result_desc": "success"}
    assert listed.response == {"services": [{"service_id": "Ptz", "properties": {"pan": 7}}]}


def test_message_to_an_online_device_is_delivered(client: Any,
                                                  devices: Callable[..., SdkDevice]) -> None:
    device = devices()
    assert device.connect() == 0
    made = client.create_message(CreateMessageRequest(device_id=DEVICE, body=DeviceMessageRequest(
        message_id="m-1", name="hello", message={"text": "hi"})))
    message = device.next_message()
    assert message.topic == f"$oc/devices/{DEVICE}/sys/messages/down"
    assert json.loads(message.payload) == {"object_device_id": DEVICE, "id": "m-1",
                                           "name": "hello", "content": {"text": "hi"}}
    assert made.result.status == "DELIVERED"
    listed = client.list_device_messages(ListDeviceMessagesRequest(device_id=DEVICE))
    assert listed.messages[0].status == "DELIVERED"


def test_message_for_an_offline_device_waits_for_it(client: Any,
                                                    devices: Callable[..., SdkDevice]) -> None:
    made = client.create_message(CreateMessageRequest(device_id=DEVICE, body=DeviceMessageRequest(
        message="raw text", payload_format="raw", topic="notices")))
    assert made.result.status == "PENDING"
    device = devices()
    device.client.subscribe(f"$oc/devices/{DEVICE}/user/notices", 1)
    assert device.connect() == 0
    message = device.next_message()
    assert message.topic == f"$oc/devices/{DEVICE}/user/notices"
    assert message.payload == b"raw text"
    # DELIVERED once the device's PUBACK is in, which paho sends after on_message.
    wait_for(lambda: client.list_device_messages(ListDeviceMessagesRequest(
        device_id=DEVICE)).messages[0].status == "DELIVERED")


def test_shadow_get_and_time_sync_are_answered(iotda: MemberHandle,
                                               devices: Callable[..., SdkDevice]) -> None:
    device = devices()
    assert device.connect() == 0
    device.report([{"service_id": "Ptz", "properties": {"pan": 1}}])
    device.publish(f"$oc/devices/{DEVICE}/sys/shadow/get/request_id=abc-1",
                   {"object_device_id": DEVICE, "service_id": "Ptz"})
    message = device.next_message()
    assert message.topic == f"$oc/devices/{DEVICE}/sys/shadow/get/response/request_id=abc-1"
    shadow = json.loads(message.payload)
    assert shadow["object_device_id"] == DEVICE
    assert shadow["shadow"][0]["reported"]["properties"] == {"pan": 1}
    iotda.farm.clock.freeze()
    device.publish(f"$oc/devices/{DEVICE}/sys/events/up", {
        "object_device_id": DEVICE, "services": [{
            "service_id": "$time_sync", "event_type": "time_sync_request",
            "event_time": "20261203T000000Z", "paras": {"device_send_time": 1234}}]})
    message = device.next_message()
    assert message.topic == f"$oc/devices/{DEVICE}/sys/events/down"
    event = json.loads(message.payload)["services"][0]
    assert event["event_type"] == "time_sync_response"
    assert event["paras"]["device_send_time"] == 1234
    assert event["paras"]["server_recv_time"] == int(iotda.farm.clock.time() * 1000)


def test_a_device_may_not_use_another_devices_topics(client: Any,
                                                     devices: Callable[..., SdkDevice]) -> None:
    device = devices()
    assert device.connect() == 0
    result, _ = device.client.subscribe("$oc/devices/camera_cam-plain/sys/#", 1)
    granted = wait_for(lambda: device.client._out_packet is not None and True)
    assert granted
    device.publish("$oc/devices/camera_cam-plain/sys/properties/report",
                   {"services": [{"service_id": "Ptz", "properties": {"pan": 99}}]}
                   ).wait_for_publish(10)
    assert not any(s.reported.properties for s in client.show_device_shadow(
        ShowDeviceShadowRequest(device_id="camera_cam-plain")).shadow)


# -- certificate devices -----------------------------------------------------------------------

def test_certificate_device_records_its_fingerprint_on_first_use(
        client: Any, devices: Callable[..., SdkDevice], tmp_path: Path) -> None:
    ca = CA("Story CA")
    upload_ca(client, ca)
    device_id = add_cert_device(client, "x509-1")
    cert_file, key_file, sha1 = device_files(ca, tmp_path, "x509-1", days=30)
    device = devices(device_id, cert_file=cert_file, key_file=key_file)
    assert device.connect() == 0
    shown = show(client, device_id)
    assert shown.status == "ONLINE"
    assert shown.auth_info.fingerprint == sha1
    device.close()
    # Another certificate of the same CA is now the wrong one.
    other_cert, other_key, _ = device_files(ca, tmp_path, "x509-1b", days=30)
    assert devices(device_id, cert_file=other_cert, key_file=other_key).connect() == 5


def test_registered_fingerprint_compares_case_insensitively_sha1_or_sha256(
        client: Any, devices: Callable[..., SdkDevice], tmp_path: Path) -> None:
    ca = CA("Fingerprint CA")
    upload_ca(client, ca)
    cert_file, key_file, sha1 = device_files(ca, tmp_path, "fp-1", days=30)
    sha256 = pki.load_cert(cert_file.read_text()).fingerprint(hashes.SHA256()).hex()
    one = add_cert_device(client, "fp-1", sha1.upper())
    two = add_cert_device(client, "fp-2", sha256.upper())
    assert devices(one, cert_file=cert_file, key_file=key_file).connect() == 0
    assert devices(two, cert_file=cert_file, key_file=key_file).connect() == 0


def test_unverified_ca_is_connack_5(client: Any, devices: Callable[..., SdkDevice],
                                    tmp_path: Path) -> None:
    ca = CA("Unverified CA")
    upload_ca(client, ca, verified=False)
    device_id = add_cert_device(client, "unv-1")
    cert_file, key_file, _ = device_files(ca, tmp_path, "unv-1", days=30)
    assert devices(device_id, cert_file=cert_file, key_file=key_file).connect() == 5


def test_certificate_expired_on_the_farm_clock_is_connack_5(
        iotda: MemberHandle, client: Any, devices: Callable[..., SdkDevice],
        tmp_path: Path) -> None:
    ca = CA("Clock CA")
    upload_ca(client, ca)
    device_id = add_cert_device(client, "exp-1")
    cert_file, key_file, _ = device_files(ca, tmp_path, "exp-1", days=2)
    iotda.farm.clock.advance(3 * 86400)
    assert devices(device_id, cert_file=cert_file, key_file=key_file,
                   check_timestamp="0").connect() == 5


def test_certificate_device_without_a_certificate_is_connack_5(
        client: Any, devices: Callable[..., SdkDevice]) -> None:
    device_id = add_cert_device(client, "nocert-1")
    assert devices(device_id, secret=None).connect() == 5


def test_journal_records_the_refusal_with_its_reason(iotda: MemberHandle,
                                                     devices: Callable[..., SdkDevice]) -> None:
    assert devices(secret="NotTheSecret").connect() == 4
    refused = [e for e in iotda.farm.journal(member=iotda.name, event="refused")]
    assert refused[-1]["protocol"] == "mqtts"
    assert refused[-1]["status"] == 4
    assert refused[-1]["detail"]["reason"].startswith("bad_password")


def test_control_plane_lists_sessions(iotda: MemberHandle,
                                      devices: Callable[..., SdkDevice]) -> None:
    device = devices()
    assert device.connect() == 0
    sessions = iotda.farm.api("GET", f"/v1/emulators/{iotda.name}/iotda/sessions")["sessions"]
    assert [s["identity"] for s in sessions] == [DEVICE]
    assert sessions[0]["tls"] is True
    assert PROJECT


def test_each_refusals_connack_is_switchable(emulator_factory: Callable[..., MemberHandle],
                                             tmp_path: Path) -> None:
    member = emulator_factory("iotda", **{**MQTT_OPTIONS, "mqtt_connack": {
        "bad_password": 5, "keep_alive": 2}})
    ca = tmp_path / "root.pem"
    ca.write_text(member.member.ctx.ca.pem)
    port = int(member.urls["mqtts"].rsplit(":", 1)[1])
    made = [SdkDevice(DEVICE, member.host, port, secret="Wrong0000", ca_file=ca, tls=True),
            SdkDevice(DEVICE, member.host, port, secret=SECRET, ca_file=ca, tls=True,
                      keep_alive=5)]
    try:
        assert [device.connect() for device in made] == [5, 2]
    finally:
        for device in made:
            device.close()

"""Products and devices (device management) through the official SDK. Both ways
(tests/ways.py): one process, and the emulator on shard 1 of four."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkiotda.v5 import (
    AddDevice,
    AddDeviceRequest,
    AddProduct,
    AuthInfo,
    AuthInfoWithoutSecret,
    CreateCommandRequest,
    CreateMessageRequest,
    CreateProductRequest,
    DeleteDeviceRequest,
    DeviceCommandRequest,
    DeviceMessageRequest,
    FreezeDeviceRequest,
    ListDeviceMessagesRequest,
    ListDevicesRequest,
    ResetDeviceSecret,
    ResetDeviceSecretRequest,
    ResetFingerprint,
    ResetFingerprintRequest,
    ServiceCapability,
    ShowDeviceRequest,
    ShowDeviceShadowRequest,
    ShowProductRequest,
    UnfreezeDeviceRequest,
    UpdateDesired,
    UpdateDesireds,
    UpdateDevice,
    UpdateDeviceRequest,
    UpdateDeviceShadowDesiredDataRequest,
)

from emulators.testing import MemberHandle, RemoteMember, ShardedFarm, single_member_scenario
from tests.ways import WAYS, both_ways

from .clients import OPTIONS, OTHER_AK, OTHER_PROJECT, OTHER_SK, ClientFactory

INVALID_INPUT = (400, "IOTDA.000006", "Invalid input data.")
DEVICE_NOT_FOUND = (404, "IOTDA.014000", "The device does not exist.")
PRODUCT_NOT_FOUND = (404, "IOTDA.014003", "The product does not exist.")
DEVICE_EXISTS = (409, "IOTDA.014002", "The device already exists.")
PRODUCT_EXISTS = (409, "IOTDA.014004", "The product already exists.")
OFFLINE = (403, "IOTDA.014016", "Operation not allowed. The device is not online.")
DATE = re.compile(r"\d{8}T\d{6}Z")
SHA1 = "A1B2C3D4E5F60718293A4B5C6D7E8F9012345678"
SHA256 = "ab" * 32


def error_of(call: Callable[[], Any]) -> tuple[int, str, str]:
    with pytest.raises(ClientRequestException) as caught:
        call()
    return caught.value.status_code, caught.value.error_code, caught.value.error_msg


def add_product(client: Any, product_id: str | None = "camera", name: str = "Camera") -> Any:
    return client.create_product(CreateProductRequest(body=AddProduct(
        product_id=product_id, name=name, device_type="Camera", protocol_type="MQTT",
        data_format="json", service_capabilities=[
            ServiceCapability(service_id="Ptz", service_type="Ptz", properties=[])])))


def add_device(client: Any, node_id: str = "cam-001", product_id: str = "camera",
               **kwargs: Any) -> Any:
    auth = kwargs.pop("auth_info", None)
    return client.add_device(AddDeviceRequest(body=AddDevice(
        node_id=node_id, product_id=product_id, auth_info=auth, **kwargs)))


def show(client: Any, device_id: str) -> Any:
    return client.show_device(ShowDeviceRequest(device_id=device_id))


@pytest.fixture(scope="module", params=WAYS)
def iotda_farm(request: pytest.FixtureRequest) -> Iterator[ShardedFarm]:
    yield from both_ways({"name": "iotda-devices", "emulators": [
        {"name": "iotda", "kind": "iotda", **OPTIONS}]}, request.param, across=["iotda"])


@pytest.fixture
def iotda(iotda_farm: ShardedFarm) -> RemoteMember:
    """The module's emulator, back at its scenario state (no products or devices added) and
    the farm clock at real time."""
    iotda_farm.reset_clock()
    handle = iotda_farm["iotda"]
    handle.reset()
    return handle


@pytest.fixture
def product(client: Any) -> Any:
    return add_product(client)


# -- products ------------------------------------------------------------------------------------

def test_product_is_stored_as_given(client: Any) -> None:
    made = add_product(client)
    assert made.product_id == "camera"
    shown = client.show_product(ShowProductRequest(product_id="camera"))
    assert (shown.name, shown.device_type, shown.protocol_type, shown.data_format) == (
        "Camera", "Camera", "MQTT", "json")
    assert shown.service_capabilities[0].service_id == "Ptz"
    assert DATE.fullmatch(shown.create_time)


def test_product_without_id_gets_one(client: Any) -> None:
    made = add_product(client, product_id=None)
    assert re.fullmatch(r"[0-9a-f]{24}", made.product_id)


def test_product_errors(client: Any) -> None:
    add_product(client)
    assert error_of(lambda: add_product(client)) == PRODUCT_EXISTS
    assert error_of(lambda: client.show_product(ShowProductRequest(product_id="nope"))) == (
        PRODUCT_NOT_FOUND)
    assert error_of(lambda: client.create_product(CreateProductRequest(body=AddProduct(
        name="x", device_type="d", protocol_type="Pigeon",
        service_capabilities=[ServiceCapability(service_id="s")])))) == INVALID_INPUT


# -- devices -------------------------------------------------------------------------------------

def test_add_device_defaults(client: Any, product: Any) -> None:
    made = add_device(client)
    assert made.device_id == "camera_cam-001"
    assert (made.node_id, made.product_id, made.product_name) == ("cam-001", "camera", "Camera")
    assert made.status == "INACTIVE"
    assert made.auth_info.auth_type == "SECRET"
    assert re.fullmatch(r"[0-9a-f]{32}", made.auth_info.secret)  # generated
    assert made.auth_info.secure_access is True
    assert made.auth_info.timeout == 0
    assert DATE.fullmatch(made.create_time)
    assert made.connection_status_update_time is None
    assert made.active_time is None
    shown = show(client, made.device_id)
    assert shown.auth_info.secret == made.auth_info.secret
    assert shown.gateway_id == made.device_id


def test_add_device_with_everything(client: Any, product: Any) -> None:
    made = add_device(client, device_id="my-cam", device_name="Front door",
                      auth_info=AuthInfo(auth_type="SECRET", secret="s3cret_-s3cret",
                                         secure_access=False, timeout=300))
    assert (made.device_id, made.device_name) == ("my-cam", "Front door")
    assert (made.auth_info.secret, made.auth_info.secure_access, made.auth_info.timeout) == (
        "s3cret_-s3cret", False, 300)


def test_certificate_device_fingerprint(make_client: ClientFactory,
                                       emulator_factory: Callable[..., MemberHandle]) -> None:
    """(One process: it reads the emulator's device record to check how a fingerprint is
    matched; what the SDK sees runs both ways in the other tests.)"""
    local = emulator_factory("iotda", **OPTIONS)
    client = make_client(endpoint=local.url)
    add_product(client)
    made = add_device(client, auth_info=AuthInfo(auth_type="CERTIFICATES", fingerprint=SHA1))
    assert made.auth_info.fingerprint == SHA1
    assert made.auth_info.secret is None
    record = local.call(lambda m: m.devices.device(m.options.credentials[0].project_id,
                                                   made.device_id))
    assert record.fingerprint_matches(SHA1.lower())
    assert not record.fingerprint_matches(SHA256)
    later = add_device(client, node_id="cam-002",
                       auth_info=AuthInfo(auth_type="CERTIFICATES", fingerprint=""))
    assert later.auth_info.fingerprint is None  # recorded on the first connection


def test_device_errors(client: Any, product: Any) -> None:
    add_device(client)
    assert error_of(lambda: add_device(client)) == DEVICE_EXISTS
    assert error_of(lambda: add_device(client, device_id="other")) == DEVICE_EXISTS  # node id
    assert error_of(lambda: add_device(client, product_id="nope")) == PRODUCT_NOT_FOUND
    assert error_of(lambda: show(client, "nope")) == DEVICE_NOT_FOUND
    assert error_of(lambda: client.delete_device(DeleteDeviceRequest(device_id="nope"))) == (
        DEVICE_NOT_FOUND)


def test_list_devices_filters_and_pages(client: Any, product: Any) -> None:
    add_product(client, product_id="sensor", name="Sensor")
    for i in range(5):
        add_device(client, node_id=f"cam-{i}")
    add_device(client, node_id="s-1", product_id="sensor")
    everything = client.list_devices(ListDevicesRequest())
    assert everything.page.count == 6
    assert [d.node_id for d in everything.devices] == [
        "s-1", "cam-4", "cam-3", "cam-2", "cam-1", "cam-0"]  # newest first
    cams = client.list_devices(ListDevicesRequest(product_id="camera", limit=2))
    assert [d.node_id for d in cams.devices] == ["cam-4", "cam-3"]
    assert cams.page.count == 5
    rest = client.list_devices(ListDevicesRequest(product_id="camera", limit=2,
                                                  marker=cams.page.marker))
    assert [d.node_id for d in rest.devices] == ["cam-2", "cam-1"]
    skipped = client.list_devices(ListDevicesRequest(product_id="camera", offset=4))
    assert [d.node_id for d in skipped.devices] == ["cam-0"]
    assert everything.devices[0].product_name == "Sensor"
    assert everything.devices[0].status == "INACTIVE"


def test_update_device(client: Any, product: Any) -> None:
    made = add_device(client)
    updated = client.update_device(UpdateDeviceRequest(device_id=made.device_id, body=UpdateDevice(
        device_name="Renamed", description="hall",
        auth_info=AuthInfoWithoutSecret(secure_access=False, timeout=60))))
    assert (updated.device_name, updated.description) == ("Renamed", "hall")
    assert (updated.auth_info.secure_access, updated.auth_info.timeout) == (False, 60)
    assert updated.auth_info.secret == made.auth_info.secret
    assert show(client, made.device_id).device_name == "Renamed"


def test_delete_device(client: Any, product: Any) -> None:
    made = add_device(client)
    client.delete_device(DeleteDeviceRequest(device_id=made.device_id))
    assert error_of(lambda: show(client, made.device_id)) == DEVICE_NOT_FOUND
    again = add_device(client)  # the node id is free again
    assert again.device_id == made.device_id


def test_freeze_and_unfreeze(client: Any, product: Any) -> None:
    made = add_device(client)
    client.freeze_device(FreezeDeviceRequest(device_id=made.device_id))
    assert show(client, made.device_id).status == "FROZEN"
    assert client.list_devices(ListDevicesRequest()).devices[0].status == "FROZEN"
    client.unfreeze_device(UnfreezeDeviceRequest(device_id=made.device_id))
    assert show(client, made.device_id).status == "INACTIVE"


def test_reset_secret(client: Any, product: Any) -> None:
    made = add_device(client)
    given = client.reset_device_secret(ResetDeviceSecretRequest(
        device_id=made.device_id, action_id="resetSecret",
        body=ResetDeviceSecret(secret="NewSecret123", force_disconnect=False)))
    assert (given.device_id, given.secret, given.secret_type) == (
        made.device_id, "NewSecret123", "PRIMARY")
    assert show(client, made.device_id).auth_info.secret == "NewSecret123"
    generated = client.reset_device_secret(ResetDeviceSecretRequest(
        device_id=made.device_id, action_id="resetSecret",
        body=ResetDeviceSecret(secret_type="SECONDARY")))
    assert re.fullmatch(r"[0-9a-f]{32}", generated.secret)
    assert show(client, made.device_id).auth_info.secondary_secret == generated.secret
    assert error_of(lambda: client.reset_device_secret(ResetDeviceSecretRequest(
        device_id=made.device_id, action_id="verify", body=ResetDeviceSecret()))) == (
        INVALID_INPUT)


def test_reset_fingerprint(client: Any, product: Any) -> None:
    made = add_device(client, auth_info=AuthInfo(auth_type="CERTIFICATES", fingerprint=SHA1))
    done = client.reset_fingerprint(ResetFingerprintRequest(
        device_id=made.device_id, body=ResetFingerprint(fingerprint=SHA256)))
    assert (done.device_id, done.fingerprint, done.fingerprint_type) == (
        made.device_id, SHA256, "PRIMARY")
    assert show(client, made.device_id).auth_info.fingerprint == SHA256
    cleared = client.reset_fingerprint(ResetFingerprintRequest(
        device_id=made.device_id, body=ResetFingerprint()))
    assert cleared.fingerprint is None
    secret_device = add_device(client, node_id="cam-2")
    assert error_of(lambda: client.reset_fingerprint(ResetFingerprintRequest(
        device_id=secret_device.device_id, body=ResetFingerprint(fingerprint=SHA1)))) == (
        INVALID_INPUT)


def test_projects_do_not_see_each_other(client: Any, make_client: ClientFactory,
                                        product: Any) -> None:
    made = add_device(client)
    other = make_client(OTHER_AK, OTHER_SK, OTHER_PROJECT)
    assert error_of(lambda: show(other, made.device_id)) == DEVICE_NOT_FOUND
    assert other.list_devices(ListDevicesRequest()).page.count == 0


# -- shadow --------------------------------------------------------------------------------------

def test_shadow_desired_with_versions(client: Any, product: Any) -> None:
    made = add_device(client)
    empty = client.show_device_shadow(ShowDeviceShadowRequest(device_id=made.device_id))
    assert (empty.device_id, empty.shadow) == (made.device_id, [])

    def update(desired: dict[str, Any], version: int | None = None) -> Any:
        return client.update_device_shadow_desired_data(UpdateDeviceShadowDesiredDataRequest(
            device_id=made.device_id, body=UpdateDesireds(shadow=[
                UpdateDesired(service_id="Ptz", desired=desired, version=version)])))

    first = update({"pan": 10, "tilt": 5})
    assert first.shadow[0].version == 1
    assert first.shadow[0].desired.properties == {"pan": 10, "tilt": 5}
    assert DATE.fullmatch(first.shadow[0].desired.event_time)
    second = update({"pan": 20, "tilt": None}, version=1)  # null removes a property
    assert second.shadow[0].version == 2
    assert second.shadow[0].desired.properties == {"pan": 20}
    assert error_of(lambda: update({"pan": 1}, version=1)) == INVALID_INPUT  # stale version
    shown = client.show_device_shadow(ShowDeviceShadowRequest(device_id=made.device_id))
    assert (shown.shadow[0].service_id, shown.shadow[0].version) == ("Ptz", 2)
    assert shown.shadow[0].reported.properties is None


# -- messages and commands -----------------------------------------------------------------------

def test_messages_are_pending_and_only_twenty_kept(client: Any, product: Any) -> None:
    made = add_device(client)
    first = client.create_message(CreateMessageRequest(device_id=made.device_id,
                                                       body=DeviceMessageRequest(
                                                           message={"n": 0}, name="m0")))
    assert first.result.status == "PENDING"
    assert DATE.fullmatch(first.result.created_time)
    for n in range(1, 22):
        client.create_message(CreateMessageRequest(
            device_id=made.device_id,
            body=DeviceMessageRequest(message=f"text {n}", message_id=f"id-{n}")))
    listed = client.list_device_messages(ListDeviceMessagesRequest(device_id=made.device_id))
    assert listed.device_id == made.device_id
    assert [m.message_id for m in listed.messages] == [f"id-{n}" for n in range(2, 22)]
    assert {m.status for m in listed.messages} == {"PENDING"}
    assert listed.messages[-1].message == "text 21"


def test_command_to_an_offline_device(client: Any, product: Any) -> None:
    made = add_device(client)
    assert error_of(lambda: client.create_command(CreateCommandRequest(
        device_id=made.device_id, body=DeviceCommandRequest(
            service_id="Ptz", command_name="move", paras={"pan": 1})))) == OFFLINE
    assert error_of(lambda: client.create_command(CreateCommandRequest(
        device_id="nope", body=DeviceCommandRequest(paras={})))) == DEVICE_NOT_FOUND


# -- state ---------------------------------------------------------------------------------------

def test_devices_survive_a_restart(farm_factory: Callable[..., Any],
                                   make_client: ClientFactory, tmp_path: Path) -> None:
    scenario = single_member_scenario("iotda", "iotda-kept", **OPTIONS)
    first = farm_factory(scenario, tmp_path, control=False)
    client = make_client(endpoint=first["iotda-kept"].url)
    add_product(client)
    made = add_device(client)
    client.freeze_device(FreezeDeviceRequest(device_id=made.device_id))
    client.update_device_shadow_desired_data(UpdateDeviceShadowDesiredDataRequest(
        device_id=made.device_id, body=UpdateDesireds(shadow=[
            UpdateDesired(service_id="Ptz", desired={"pan": 3})])))
    client.create_message(CreateMessageRequest(device_id=made.device_id,
                                               body=DeviceMessageRequest(message="hi")))
    seq = first["iotda-kept"].state()["devices"][0]["seq"]
    first.stop()
    second = farm_factory(scenario, tmp_path, control=False)
    client = make_client(endpoint=second["iotda-kept"].url)
    shown = show(client, made.device_id)
    assert (shown.status, shown.auth_info.secret) == ("FROZEN", made.auth_info.secret)
    shadow = client.show_device_shadow(ShowDeviceShadowRequest(device_id=made.device_id))
    assert shadow.shadow[0].desired.properties == {"pan": 3}
    messages = client.list_device_messages(ListDeviceMessagesRequest(device_id=made.device_id))
    assert [m.message for m in messages.messages] == ["hi"]
    newer = add_device(client, node_id="cam-2")
    assert second["iotda-kept"].state()["devices"][1]["seq"] > seq  # ids never reused
    assert newer.device_id == "camera_cam-2"


SCENARIO_OPTIONS = {
    **OPTIONS,
    "products": [{"product_id": "camera", "name": "Camera"}],
    "devices": [
        {"node_id": "cam-1", "product_id": "camera",
         "auth_info": {"secret": "ScenarioSecret1"}},
        {"node_id": "cam-2", "product_id": "camera", "device_id": "frozen-cam",
         "frozen": True, "auth_info": {"auth_type": "CERTIFICATES", "fingerprint": SHA1}},
    ],
}


def test_scenario_devices_and_reset(emulator_factory: Callable[..., MemberHandle],
                                    make_client: ClientFactory) -> None:
    member = emulator_factory("iotda", **SCENARIO_OPTIONS)
    client = make_client(endpoint=member.url)
    shown = show(client, "camera_cam-1")
    assert (shown.auth_info.secret, shown.product_name, shown.status) == (
        "ScenarioSecret1", "Camera", "INACTIVE")
    frozen = show(client, "frozen-cam")
    assert (frozen.status, frozen.auth_info.fingerprint) == ("FROZEN", SHA1)
    client.delete_device(DeleteDeviceRequest(device_id="camera_cam-1"))
    add_device(client, node_id="cam-9")
    seq = max(d["seq"] for d in member.state()["devices"])
    member.reset()
    assert show(client, "camera_cam-1").auth_info.secret == "ScenarioSecret1"
    assert error_of(lambda: show(client, "camera_cam-9")) == DEVICE_NOT_FOUND
    assert all(d["seq"] > seq for d in member.state()["devices"])  # ids only go up


def test_bad_scenario_device_is_refused(emulator_factory: Callable[..., MemberHandle]) -> None:
    with pytest.raises(ValueError, match="which products: does not list"):
        emulator_factory("iotda", **{**OPTIONS, "devices": [
            {"node_id": "x", "product_id": "missing"}]})
    with pytest.raises(ValueError, match="listed twice"):
        emulator_factory("iotda", **{**OPTIONS, "products": [{"product_id": "p", "name": "P"}],
                                     "devices": [{"node_id": "x", "product_id": "p"}] * 2})

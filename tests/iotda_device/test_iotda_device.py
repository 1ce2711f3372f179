"""The iotda-device kind: a fleet of emulated devices connects by itself to the farm's IoTDA
member over real MQTTS, and the official application SDK sees and drives them. Both ways
(tests/ways.py): one process, and four shards (the fleet and its cloud are coupled in-process,
so both run on shard 0; the control plane and the members' routes go through the front)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkiotda.v5 import (
    CreateCommandRequest,
    CreateMessageRequest,
    DeviceCommandRequest,
    DeviceMessageRequest,
    IoTDAClient,
    ListDevicesRequest,
    ShowDeviceShadowRequest,
    UpdateDesired,
    UpdateDesireds,
    UpdateDeviceShadowDesiredDataRequest,
)

from emulators.testing import RunningFarm, ShardedFarm
from tests.iotda.clients import wait_for
from tests.sdk_clients import close_iotda
from tests.ways import WAYS, both_ways

AK, SK = "IOTDAEMULATORAK00001", "IotdaEmulatorSecretKey000000000000000001"
PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"


def scenario(**device: Any) -> dict[str, Any]:
    return {"name": "fleet", "emulators": [
        {"name": "iot", "kind": "iotda", "products": [{"product_id": "sensor", "name": "Sensor"}],
         "command_timeout": 5},
        {"name": "sensor", "kind": "iotda-device", "count": 3, "cloud": "iot",
         "product_id": "sensor", "secret": "SensorSecret1", "report_seconds": 30,
         "service_id": "Climate", "properties": {"temp": 21}, "min_backoff": 0.2, **device}]}


@pytest.fixture(scope="module", params=WAYS)
def fleet_farm(request: pytest.FixtureRequest) -> Iterator[ShardedFarm]:
    yield from both_ways(scenario(), request.param, across=[])


@pytest.fixture
def fleet(fleet_farm: ShardedFarm) -> ShardedFarm:
    """The module's farm reset whole: the cloud back at its scenario state, the devices
    registering and connecting again by themselves."""
    fleet_farm.reset()
    fleet_farm.clear_journal()
    return fleet_farm


@pytest.fixture
def client(fleet: ShardedFarm) -> Iterator[IoTDAClient]:
    made = IoTDAClient.new_builder().with_credentials(BasicCredentials(AK, SK, PROJECT)) \
        .with_endpoints([fleet["iot"].url]).build()
    yield made
    close_iotda(made)


def online(client: IoTDAClient) -> list[str]:
    devices = client.list_devices(ListDevicesRequest()).devices
    return sorted(d.device_id for d in devices if d.status == "ONLINE")


def test_a_fleet_registers_connects_and_reports_by_itself(fleet: ShardedFarm,
                                                          client: IoTDAClient) -> None:
    expected = ["sensor_sensor-1", "sensor_sensor-2", "sensor_sensor-3"]
    assert wait_for(lambda: online(client) == expected, timeout=15)
    shadow = wait_for(lambda: client.show_device_shadow(ShowDeviceShadowRequest(
        device_id="sensor_sensor-2")).shadow)
    assert shadow[0].service_id == "Climate"
    assert shadow[0].reported.properties == {"temp": 21}
    assert fleet["sensor-2"].description["link"]["state"] == "connected"
    sessions = fleet.api("GET", "/v1/emulators/iot/iotda/sessions")["sessions"]
    assert len(sessions) == 3
    assert all(s["tls"] for s in sessions)  # over 8883's TLS, the farm CA checked


def test_the_device_answers_commands_and_takes_desired_properties(fleet: ShardedFarm,
                                                                  client: IoTDAClient) -> None:
    wait_for(lambda: "sensor_sensor-1" in online(client))
    answer = client.create_command(CreateCommandRequest(
        device_id="sensor_sensor-1", body=DeviceCommandRequest(
            service_id="Climate", command_name="calibrate", paras={})))
    assert answer.response == {"result_code": 0, "response_name": "COMMAND_RESPONSE",
                               "paras": {"result": "success"}}
    client.update_device_shadow_desired_data(UpdateDeviceShadowDesiredDataRequest(
        device_id="sensor_sensor-1", body=UpdateDesireds(shadow=[UpdateDesired(
            service_id="Climate", desired={"target": 19})])))

    def reported() -> Any:
        shadow = client.show_device_shadow(ShowDeviceShadowRequest(
            device_id="sensor_sensor-1")).shadow[0]
        return shadow.reported.properties.get("target") == 19
    wait_for(reported)  # set, answered, and reported back: the delta is gone
    assert fleet["sensor-1"].state()["properties"] == {"temp": 21, "target": 19}


def test_messages_reach_the_device_state(fleet: ShardedFarm, client: IoTDAClient) -> None:
    wait_for(lambda: "sensor_sensor-3" in online(client))
    client.create_message(CreateMessageRequest(device_id="sensor_sensor-3",
                                               body=DeviceMessageRequest(message="hello")))
    received = wait_for(lambda: fleet["sensor-3"].state()["received"])
    assert received[0]["topic"] == "$oc/devices/sensor_sensor-3/sys/messages/down"
    assert '"content": "hello"' in received[0]["payload"]


def test_after_the_clouds_reset_the_devices_register_and_connect_again(
        fleet: ShardedFarm, client: IoTDAClient) -> None:
    wait_for(lambda: len(online(client)) == 3)
    fleet.reset("iot")
    assert wait_for(lambda: len(online(client)) == 3, timeout=15)


@pytest.mark.parametrize("shards", WAYS)
def test_a_device_refused_with_bad_credentials_gives_up_as_the_sdk_does(
        farm_factory: Callable[..., RunningFarm | ShardedFarm], shards: int) -> None:
    farm = farm_factory({"name": "refused", "emulators": [
        {"name": "iot", "kind": "iotda", "products": [{"product_id": "sensor", "name": "S"}],
         "devices": [{"node_id": "lonely", "product_id": "sensor",
                      "auth_info": {"auth_type": "SECRET", "secret": "TheRealSecret1"}}]},
        {"name": "lonely", "kind": "iotda-device", "cloud": "iot", "product_id": "sensor",
         "secret": "NotTheSecret1", "min_backoff": 0.2}]}, shards=shards)
    link = wait_for(lambda: farm["lonely"].description["link"]["state"] == "refused"
                    and farm["lonely"].description["link"])
    assert "4" in link["reason"] or "password" in link["reason"].lower()
    refused = farm.journal(member="iot", event="refused")
    assert refused[0]["detail"]["reason"].startswith("bad_password")


def test_a_cloud_that_is_not_an_iotda_member_is_refused_before_anything_starts() -> None:
    from emulators import scenario as scenario_mod

    with pytest.raises(scenario_mod.ScenarioInvalid, match="no iotda member named 'ftp'"):
        scenario_mod.load({"name": "bad", "servers": [{"name": "ftp", "kind": "ftp"}],
                           "emulators": [{"name": "s", "kind": "iotda-device", "cloud": "ftp",
                                          "product_id": "p", "secret": "Secret0001"}]})

"""The device shadow keeps what the product model defines and a bounded number of other
properties: a device reporting new property names without end cannot grow its shadow (and the
member's state) without end. Driven as the vendor's device SDK reports (paho, sys/properties/
report); read back with huaweicloudsdkiotda's ShowDeviceShadow and through the journal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from huaweicloudsdkiotda.v5 import ShowDeviceShadowRequest

from emulators.testing import MemberHandle

from .clients import DEVICE, MQTT_OPTIONS, SdkDevice

KEPT = 3  # shadow_unmodelled_properties for these tests
MODEL = [{"service_id": "Ptz", "service_type": "Ptz", "properties": [
    {"property_name": "pan", "data_type": "int", "method": "RW"},
    {"property_name": "tilt", "data_type": "int", "method": "RW"}]}]


@pytest.fixture
def iotda(emulator_factory: Callable[..., MemberHandle]) -> MemberHandle:
    products = [{"product_id": "camera", "name": "Camera", "service_capabilities": MODEL}]
    return emulator_factory("iotda", **{**MQTT_OPTIONS, "products": products,
                                        "shadow_unmodelled_properties": KEPT})


def reported(client: Any) -> dict[str, Any]:
    shadow = client.show_device_shadow(ShowDeviceShadowRequest(device_id=DEVICE)).shadow
    return {s.service_id: s.reported.properties for s in shadow}


def test_properties_outside_the_model_are_bounded_and_the_drop_journalled(
        iotda: MemberHandle, client: Any, devices: Callable[..., SdkDevice]) -> None:
    device = devices()
    assert device.connect() == 0
    # Twenty new names a report, five reports: 100 properties outside the model.
    for n in range(5):
        device.report([{"service_id": "Ptz", "properties": {
            f"junk{n}_{i}": "x" * 100 for i in range(20)}}])
    # The modelled ones are kept whatever came before, and updated.
    device.report([{"service_id": "Ptz", "properties": {"pan": 10, "tilt": -5}}])
    device.report([{"service_id": "Other", "properties": {"more": 1}}])
    device.report([{"service_id": "Ptz", "properties": {"pan": 11, "junk0_0": "kept"}}])
    shown = reported(client)
    ptz = shown["Ptz"]
    assert ptz["pan"] == 11 and ptz["tilt"] == -5
    unmodelled = {k: v for k, v in ptz.items() if k not in ("pan", "tilt")}
    # The first three names outside the model, and one of them updated in place.
    assert unmodelled == {"junk0_0": "kept", "junk0_1": "x" * 100, "junk0_2": "x" * 100}
    assert shown.get("Other") is None  # a service outside the model is bounded the same way
    dropped = iotda.farm.journal(member=iotda.name, event="dropped")
    assert sum(e["detail"]["dropped"] for e in dropped) == 100 - KEPT + 1
    assert len(dropped) == 6  # one entry per report that dropped something
    assert dropped[0]["detail"]["properties"][0] == "Ptz/junk0_3"
    assert "shadow_unmodelled_properties" in dropped[0]["detail"]["reason"]


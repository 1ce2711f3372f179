"""One EnOS device cannot act for another over MQTT, and no session can flood the farm: forged
measure points and topics of other devices are answered 1009 (EnOS's "Publish to topic with no
write permission") and write nothing, subscriptions are capped, another device's client id
does not take a live session over, replies go where a subscription asks for them, activation
secrets stay out of the journal, and the default certificate device's key is handed out by the
control plane. Driven by enos-mqtt-sdk-python and paho, one process and on shard 1 of four."""

from __future__ import annotations

import json
import queue
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from enos.core.MqttClient import MqttClient
from enos.message.upstream.resume.MeasurepointResumeBatchRequest import (
    MeasurepointResumeBatchRequest,
)
from enos.message.upstream.resume.MeasurepointResumeRequest import MeasurepointResumeRequest
from enos.message.upstream.status.SubDeviceLoginRequest import SubDeviceLoginRequest
from enos.message.upstream.tsl.AttributeUpdateRequest import AttributeUpdateRequest
from enos.message.upstream.tsl.MeasurepointPostBatchRequest import MeasurepointPostBatchRequest
from enos.message.upstream.tsl.MeasurepointPostRequest import MeasurepointPostRequest

from emulators.enos.models.access import Login, signature
from emulators.testing import RunningFarm, ShardedFarm
from tests.enos.clients import ORG, Enos, base_options, fresh
from tests.enos.test_mqtt_access import (
    PRODUCT_SECRET,
    SECRET_M,
    activate,
    connect,
    paho_login,
    port,
    sdk_clients,
    secret_client,
    things,
)
from tests.iotda.clients import CONNACK_BY_NAME, wait_for
from tests.mqtt_clients import close_paho
from tests.ways import WAYS, both_ways

pytestmark = [
    pytest.mark.filterwarnings("ignore:Callback API version 1 is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLS is deprecated:DeprecationWarning"),
]
__all__ = ["sdk_clients"]  # a fixture, imported for this module's tests

SECRET_Q = "DevQSecret0001"
SECRET_S = "DevSSecret0001"
LIMIT = 6  # mqtt_max_subscriptions here
NO_WRITE = (1009, "Publish to topic with no write permission")


@pytest.fixture(scope="module", params=WAYS)
def iso_farm(request: pytest.FixtureRequest, roots: dict[str, Any]) -> Iterator[ShardedFarm]:
    options = base_options(roots)
    options["products"] = [dict(p) for p in options["products"]]
    options["products"][2]["productSecret"] = PRODUCT_SECRET  # POneWay1
    options["products"].append({"orgId": ORG, "productKey": "PSubOne1",
                                "biDirectionalAuth": False})
    options["devices"] = [dict(d) for d in options["devices"]] + [
        {"orgId": ORG, "assetId": "assetN", "productKey": "POneWay1", "deviceKey": "devNew"},
        {"orgId": ORG, "assetId": "assetQ", "productKey": "POneWay1", "deviceKey": "devQ",
         "deviceSecret": SECRET_Q},
        {"orgId": ORG, "assetId": "assetU", "productKey": "PSubOne1", "deviceKey": "devU",
         "deviceSecret": SECRET_S}]
    options["devices"][3]["deviceSecret"] = SECRET_M  # devM, one-way
    options["mqtt_max_subscriptions"] = LIMIT
    yield from both_ways({"name": "enos-iso", "emulators": [
        {"name": "enos", "kind": "enos", **options}]}, request.param, across=["enos"])


@pytest.fixture
def enos(iso_farm: ShardedFarm) -> Enos:
    return fresh(iso_farm)


class Paho:
    """A plain paho client logged in as the SDK logs in (client id, user name, signature)."""

    def __init__(self, enos: Enos, product_key: str, device_key: str, secret: str, *,
                 client_id: str | None = None) -> None:
        ts = str(time.time() * 1000)
        inner = device_key
        if client_id is not None:  # another session's exact string: sign with its parts
            inner, ts = client_id.split("|")[0], client_id.split("timestamp=")[1].rstrip("|")
        self.client_id = client_id or (
            f"{device_key}|securemode=2,signmethod=hmacsha256,timestamp={ts}|")
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id)
        self.client.username_pw_set(f"{device_key}&{product_key}", signature(
            Login(inner, 2, "hmacsha256", ts), device_key, product_key, secret))
        self.connacks: queue.Queue[Any] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subacks: queue.Queue[list[Any]] = queue.Queue()
        self.disconnects: queue.Queue[Any] = queue.Queue()
        self.client.on_connect = lambda c, u, f, rc, p: self.connacks.put(rc)
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subacks.put(codes)
        self.client.on_disconnect = lambda c, u, f, rc, p: self.disconnects.put(rc)
        self.client.connect("127.0.0.1", port(enos.handle, "mqtt"))
        self.client.loop_start()
        self.rc = CONNACK_BY_NAME[self.connacks.get(timeout=10).getName()]

    def publish(self, topic: str, doc: Any) -> None:
        self.client.publish(topic, json.dumps(doc), 1).wait_for_publish(timeout=10)

    def subscribe(self, filters: list[str]) -> list[int]:
        self.client.subscribe([(f, 1) for f in filters])
        return [code.value for code in self.subacks.get(timeout=10)]

    def close(self) -> None:
        close_paho(self.client)


@pytest.fixture
def pahos() -> Iterator[list[Paho]]:
    made: list[Paho] = []
    yield made
    for client in made:
        client.close()


def paho(made: list[Paho], *args: Any, **kwargs: Any) -> Paho:
    client = Paho(*args, **kwargs)
    made.append(client)
    return client


def refused(enos: Enos) -> list[dict[str, Any]]:
    return enos.handle.farm.journal(member="enos", event="refused")


def point(product_key: str, device_key: str, name: str, value: Any) -> Any:
    return (MeasurepointPostRequest.builder().set_product_key(product_key)
            .set_device_key(device_key).add_measurepoint(name, value)
            .set_timestamp(1700000000000).build())


# -- forged telemetry ------------------------------------------------------------------------

def test_a_batch_naming_another_device_is_refused_1009_and_writes_nothing(
        enos: Enos, sdk_clients: list[MqttClient]) -> None:
    client = secret_client(enos, sdk_clients, "POneWay1", "devM", SECRET_M)
    connect(client)
    forged = client.publish(MeasurepointPostBatchRequest.builder().add_requests([
        point("POneWay1", "devM", "own", 1), point("POneWay1", "devQ", "forged", 2)]).build())
    assert (forged.get_code(), forged.get_message()) == NO_WRITE
    resumed = client.publish(MeasurepointResumeBatchRequest.builder().add_requests([
        MeasurepointResumeRequest.builder().set_product_key("PBiDir01").set_device_key("devA")
        .add_measure_point("forged", 3).set_timestamp(1700000000000).build()]).build())
    assert (resumed.get_code(), resumed.get_message()) == NO_WRITE
    state = things(enos)
    assert state.get("POneWay1/devQ", {}).get("measurepoints", {}) == {}
    assert state.get("PBiDir01/devA", {}).get("measurepoints", {}) == {}
    # The whole request fails, as EnOS documents: the device's own entry is not kept either.
    assert state["POneWay1/devM"]["measurepoints"] == {}
    codes = [e["detail"].get("code") for e in refused(enos)]
    assert codes.count(1009) == 2


def test_a_gateway_reports_for_its_logged_in_sub_device_and_itself(
        enos: Enos, sdk_clients: list[MqttClient]) -> None:
    gateway = secret_client(enos, sdk_clients, "POneWay1", "devM", SECRET_M)
    connect(gateway)
    assert gateway.publish(SubDeviceLoginRequest.builder().set_sub_device_info(
        "PSubOne1", "devU", SECRET_S).build()).get_code() == 200
    batch = gateway.publish(MeasurepointPostBatchRequest.builder().add_requests([
        point("POneWay1", "devM", "own", 1), point("PSubOne1", "devU", "sub", 2)]).build())
    assert batch.get_code() == 200
    state = things(enos)
    assert state["POneWay1/devM"]["measurepoints"]["own"]["value"] == 1
    assert state["PSubOne1/devU"]["measurepoints"]["sub"]["value"] == 2


def test_a_topic_of_another_device_is_answered_1009(
        enos: Enos, sdk_clients: list[MqttClient], pahos: list[Paho]) -> None:
    # The SDK, for a device it never logged in as a sub-device.
    client = secret_client(enos, sdk_clients, "POneWay1", "devM", SECRET_M)
    connect(client)
    reply = client.publish(point("POneWay1", "devQ", "forged", 1))
    assert (reply.get_code(), reply.get_message()) == NO_WRITE
    # paho, on another device's attribute topic: answered there, though it may not
    # subscribe to it.
    device = paho(pahos, enos, "POneWay1", "devM", SECRET_M)
    assert device.rc == 0
    target = "/sys/POneWay1/devQ/thing/attribute/update"
    assert device.subscribe([target + "_reply"]) == [0x80]
    device.publish(target, {"id": "7", "version": "1.0", "method": "thing.attribute.update",
                            "params": {"attributes": {"site": "forged"}}})
    answer = device.messages.get(timeout=10)
    assert answer.topic == target + "_reply"
    assert json.loads(answer.payload) == {"id": "7", "code": 1009, "message": NO_WRITE[1],
                                          "data": None}
    assert things(enos).get("POneWay1/devQ", {}).get("attributes", {}) == {}


# -- subscriptions ---------------------------------------------------------------------------

def test_subscriptions_over_the_limit_get_0x80_and_one_journal_entry(
        enos: Enos, pahos: list[Paho]) -> None:
    device = paho(pahos, enos, "POneWay1", "devM", SECRET_M)
    own = [f"/sys/POneWay1/devM/custom/{i}" for i in range(LIMIT + 40)]
    assert device.subscribe(own[:LIMIT + 20]) == [1] * LIMIT + [0x80] * 20
    assert device.subscribe(own[LIMIT + 20:]) == [0x80] * 20
    assert device.subscribe(own[:2]) == [1, 1]  # held filters: subscribed again
    over = [e for e in refused(enos) if "subscription limit" in e["detail"]["reason"]]
    assert len(over) == 1
    assert over[0]["path"] == own[LIMIT]
    assert str(LIMIT) in over[0]["detail"]["reason"]
    device.close()
    summary = wait_for(lambda: [e for e in refused(enos) if e["detail"].get("refused")])
    assert summary[0]["detail"]["refused"] == 39


# -- client ids ------------------------------------------------------------------------------

def test_another_devices_login_with_a_live_client_id_does_not_end_that_session(
        enos: Enos, pahos: list[Paho]) -> None:
    first = paho(pahos, enos, "POneWay1", "devM", SECRET_M)
    assert first.rc == 0
    thief = paho(pahos, enos, "POneWay1", "devQ", SECRET_Q, client_id=first.client_id)
    assert thief.rc == 2  # MQTT's "Identifier rejected"
    sessions = enos.state()["mqtt_sessions"]
    assert [(s["identity"], s["client_id"]) for s in sessions] == [
        ("POneWay1/devM", first.client_id)]
    assert refused(enos)[-1]["detail"]["reason"].startswith("client_id_in_use:")
    first.publish("/sys/POneWay1/devM/thing/attribute/update", {
        "id": "1", "params": {"attributes": {"still": "here"}}})
    assert things(enos)["POneWay1/devM"]["attributes"] == {"still": "here"}
    # The same device with the same client id takes its session over, as MQTT says.
    again = paho(pahos, enos, "POneWay1", "devM", SECRET_M, client_id=first.client_id)
    assert again.rc == 0
    first.disconnects.get(timeout=10)
    wait_for(lambda: len(enos.state()["mqtt_sessions"]) == 1)


# -- replies follow subscriptions ------------------------------------------------------------

def test_a_reply_reaches_a_paho_client_only_through_its_subscription(
        enos: Enos, pahos: list[Paho], sdk_clients: list[MqttClient]) -> None:
    device = paho(pahos, enos, "POneWay1", "devM", SECRET_M)
    topic = "/sys/POneWay1/devM/thing/attribute/update"
    device.publish(topic, {"id": "1", "params": {"attributes": {"a": 1}}})
    assert device.subscribe([topic + "_reply"]) == [1]
    device.publish(topic, {"id": "2", "params": {"attributes": {"a": 2}}})
    # Messages keep their order: the first reply would have come before this one.
    assert json.loads(device.messages.get(timeout=10).payload)["id"] == "2"
    down = [e for e in enos.handle.farm.journal(member="enos", event="publish")
            if e["path"] == topic + "_reply"]
    assert [e["detail"].get("delivered", True) for e in down] == [False, True]
    device.close()
    # The SDK subscribes to each reply topic before its request, so it is answered.
    client = secret_client(enos, sdk_clients, "POneWay1", "devM", SECRET_M)
    connect(client)
    assert client.publish(AttributeUpdateRequest.builder().add_attribute("a", 3)
                          .build()).get_code() == 200


def one_way_devm(start_enos: Any, **options: Any) -> Enos:
    """An emulator of its own with the one-way device devM alone, MQTT on a free port, and
    ``options`` changed."""
    return start_enos(mqtt_port=0, mqtts_port=None, certificates=[],
                      products=[{"orgId": ORG, "productKey": "POneWay1",
                                 "biDirectionalAuth": False}],
                      devices=[{"orgId": ORG, "assetId": "assetM", "productKey": "POneWay1",
                                "deviceKey": "devM", "deviceSecret": SECRET_M}], **options)


def test_replies_without_subscription_is_an_option(start_enos: Any, pahos: list[Paho]) -> None:
    enos = one_way_devm(start_enos, replies_need_subscription=False)
    device = paho(pahos, enos, "POneWay1", "devM", SECRET_M)
    device.publish("/sys/POneWay1/devM/thing/attribute/update",
                   {"id": "1", "params": {"attributes": {"a": 1}}})
    assert json.loads(device.messages.get(timeout=10).payload) == {"id": "1", "code": 200,
                                                                   "data": {}}


# -- secrets and keys ------------------------------------------------------------------------

def test_the_activation_secret_stays_out_of_the_journal(
        enos: Enos, sdk_clients: list[MqttClient]) -> None:
    _, secret = activate(enos, sdk_clients, "POneWay1", "devNew")
    url = f"{enos.handle.farm.control_url}/journal?member=enos&event=publish"
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    assert "thing/activate/info" in text and "deviceSecret" in text
    assert secret not in text


def test_the_default_certificate_devices_key_comes_from_the_control_plane(
        farm_factory: Any, tmp_path: Path) -> None:
    farm: RunningFarm = farm_factory("default")
    enos = Enos(farm["enos"])
    base = f"{farm.control_url}/emulators/enos"
    with urllib.request.urlopen(f"{base}/state", timeout=10) as reply:
        state = json.load(reply)
    assert set(state["device_keys"].values()) == {"[private key withheld]"}
    with urllib.request.urlopen(f"{base}/enos/devices/zBrjuW7q/keys", timeout=10) as reply:
        doc = json.load(reply)
    (made,) = doc["keys"]
    assert made["key"].startswith("-----BEGIN") and "PRIVATE KEY" in made["key"]
    assert made["cert"] == next(c["cert"] for c in state["certificates"]
                                if str(c["cert_sn"]) == made["certSN"])
    assert made["key"] not in json.dumps(state)  # the farm's and the CA's keys stay withheld
    assert paho_login(enos, "Xs7eAbCd", "inverter01", "InverterSecret01",
                      tls=(made["cert"], made["key"]), tmp_path=tmp_path) == 0
    # A device the member made no key for has none to give; an unknown one is a 404.
    with urllib.request.urlopen(f"{base}/enos/devices/mTr9pLq2/keys", timeout=10) as reply:
        assert json.load(reply)["keys"] == []
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{base}/enos/devices/nobody/keys", timeout=10)
    assert caught.value.code == 404
    caught.value.close()


# -- protocol levels ---------------------------------------------------------------------------

def mosquitto_pub_31(enos: Enos) -> subprocess.CompletedProcess[str]:
    """mosquitto_pub in MQTT 3.1 mode (``MQIsdp``, level 3), logged in as devM would be."""
    ts = "1700000000000"
    client_id = f"devM|securemode=2,signmethod=hmacsha256,timestamp={ts}|"
    password = signature(Login("devM", 2, "hmacsha256", ts), "devM", "POneWay1", SECRET_M)
    return subprocess.run(
        ["mosquitto_pub", "-V", "mqttv31", "-h", "127.0.0.1", "-p", str(port(enos.handle, "mqtt")),
         "-i", client_id, "-u", "devM&POneWay1", "-P", password, "-q", "1",
         "-t", "/sys/POneWay1/devM/thing/attribute/update", "-m", '{"id": "1", "params": {}}'],
        capture_output=True, text=True, timeout=30)


def test_mqtt_31_gets_connack_1_as_envision_documents_3_1_1_only(enos: Enos) -> None:
    done = mosquitto_pub_31(enos)
    # What mosquitto_pub 2.0.11 prints for CONNACK 1 to its 3.1 CONNECT.
    assert done.returncode != 0
    assert done.stderr.startswith(
        "Connection error: Connection Refused: unacceptable protocol version."), done.stderr
    [entry] = refused(enos)
    assert (entry["status"], entry["detail"]["protocol"], entry["detail"]["protocol_level"]) \
        == (1, "MQIsdp", 3), entry


def test_mqtt_31_served_as_3_1_1_is_an_option(start_enos: Any) -> None:
    enos = one_way_devm(start_enos, mqtt_accept_31=True)
    done = mosquitto_pub_31(enos)
    assert done.returncode == 0, done.stderr

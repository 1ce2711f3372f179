"""EnOS device access over MQTT, driven by the vendor's device SDK (enos-mqtt-sdk-python, on
paho-mqtt) and by paho itself: secret login on 11883, certificates on 18883, dynamic
activation, measure points, attributes, service invocation from the cloud side, revocation.
Both ways (tests/ways.py): one process, and the emulator on shard 1 of four."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from enos.core.internal.Profile import Profile
from enos.core.message.IConnectCallback import IConnectCallback
from enos.core.MqttClient import MqttClient
from enos.message.downstream.tsl.ServiceInvocationCommand import ServiceInvocationCommand
from enos.message.downstream.tsl.ServiceInvocationReply import ServiceInvocationReply
from enos.message.upstream.tsl.AttributeQueryRequest import AttributeQueryRequest
from enos.message.upstream.tsl.AttributeUpdateRequest import AttributeUpdateRequest
from enos.message.upstream.tsl.EventPostRequest import EventPostRequest
from enos.message.upstream.tsl.MeasurepointPostRequest import MeasurepointPostRequest

from emulators import pki
from emulators.enos.models.access import Login, signature
from emulators.testing import MemberHandle, RemoteMember, RunningFarm, ShardedFarm
from tests.control_support import urlopen_json
from tests.enos.clients import ORG, Enos, base_options, ec_key, fresh, make_csr
from tests.iotda.clients import CONNACK_BY_NAME, wait_for
from tests.mqtt_clients import close_paho
from tests.ways import WAYS, both_ways

# The vendor SDK runs on paho's deprecated callback API 1 and asks for ssl.PROTOCOL_SSLv23.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Callback API version 1 is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLS is deprecated:DeprecationWarning"),
]

SECRET_A = "DevASecret0001"
SECRET_M = "DevMSecret0001"
PRODUCT_SECRET = "OneWayProductSecret1"


@pytest.fixture(scope="module", params=WAYS)
def mqtt_farm(request: pytest.FixtureRequest, roots: dict[str, Any]) -> Iterator[ShardedFarm]:
    options = base_options(roots)
    options["products"] = [dict(p) for p in options["products"]]
    options["products"][2]["productSecret"] = PRODUCT_SECRET  # POneWay1
    options["devices"] = [dict(d) for d in options["devices"]] + [
        {"orgId": ORG, "assetId": "assetN", "productKey": "POneWay1", "deviceKey": "devNew"}]
    options["devices"][0]["deviceSecret"] = SECRET_A  # devA, bi-directional
    options["devices"][1]["deviceSecret"] = "DevBSecret0001"
    options["devices"][3]["deviceSecret"] = SECRET_M  # devM, one-way
    options["devices"][2]["deviceSecret"] = "DevSSecret0001"  # devS: a sub-device of devM
    options["command_timeout"] = 3
    yield from both_ways({"name": "enos-mqtt", "emulators": [
        {"name": "enos", "kind": "enos", **options}]}, request.param, across=["enos"])


@pytest.fixture
def mqtt_enos(mqtt_farm: ShardedFarm) -> Enos:
    """The module's emulator with MQTT devices, back at its scenario state (no sessions) and
    the real time."""
    return fresh(mqtt_farm)


def port(handle: MemberHandle | RemoteMember, label: str) -> int:
    return int(handle.urls[label].rsplit(":", 1)[1])


@pytest.fixture
def sdk_clients() -> Iterator[list[MqttClient]]:
    made: list[MqttClient] = []
    yield made
    for client in made:
        # The SDK's close() stops paho's network thread only while connected; after the
        # broker dropped the client (a revoked certificate) paho's thread goes on
        # reconnecting. Stop it as close() would have (private names of the SDK and paho).
        connection = client._MqttClient__connection  # type: ignore[attr-defined]
        paho = connection._MqttConnection__paho_client
        if paho is not None:
            close_paho(paho)
        try:
            client.close()
        except Exception:  # noqa: BLE001 - a client the broker already dropped
            pass


def secret_client(enos: Enos, made: list[MqttClient], product_key: str, device_key: str,
                  secret: str) -> MqttClient:
    client = MqttClient(f"tcp://127.0.0.1:{port(enos.handle, 'mqtt')}", product_key,
                        device_key, secret)
    client.get_profile().set_auto_reconnect(False)
    made.append(client)
    return client


def activate(enos: Enos, made: list[MqttClient], product_key: str,
             device_key: str) -> tuple[MqttClient, str]:
    """Dynamic activation as the SDK does it (a profile with the product secret and no device
    secret): the connected client and the device secret the cloud answered."""
    profile = Profile(f"tcp://127.0.0.1:{port(enos.handle, 'mqtt')}", product_key,
                      device_key, None, PRODUCT_SECRET)
    profile.set_auto_reconnect(False)
    client = MqttClient(profile=profile)
    made.append(client)
    got: list[str] = []
    client.on_device_dynamic_active = got.append
    client.connect(_Quiet())
    return client, wait_for(lambda: got)[0]


def connect(client: MqttClient) -> None:
    """The SDK's own connection, waited for. ``MqttClient.connect()`` waits on a condition
    with no predicate: a CONNACK that comes before the wait starts (a quick broker, one in
    another process) is missed and connect() sits out its 10 s timeout, connected all along.
    The SDK's asynchronous connect (``connect(callback)``) and a wait for ``is_connected()``
    avoid the race."""
    client.connect(_Quiet())
    wait_for(client.is_connected)


class _Quiet(IConnectCallback):
    """The SDK's connection callbacks, without the base class's prints."""

    def on_connect(self) -> None:
        pass

    def on_disconnect(self) -> None:
        pass

    def on_connect_failed(self) -> None:
        pass


def tls_client(enos: Enos, made: list[MqttClient], tmp_path: Path, device_key: str,
               secret: str, cert_pem: str, key_pem: str) -> MqttClient:
    """As the SDK's secure_login sample: ssl://host:18883, the CA file, cert and key."""
    ca = tmp_path / "edge_ca.pem"
    ca.write_text(enos.ca_pem)
    cert_file, key_file = tmp_path / f"{device_key}.pem", tmp_path / f"{device_key}.key"
    cert_file.write_text(cert_pem)
    key_file.write_text(key_pem)
    client = MqttClient(f"ssl://127.0.0.1:{port(enos.handle, 'mqtts')}", "PBiDir01",
                        device_key, secret)
    client.get_profile().set_auto_reconnect(False)
    client.get_profile().set_ssl_context(str(ca), str(cert_file), str(key_file))
    made.append(client)
    return client


def paho_login(enos: Enos, product_key: str, device_key: str, secret: str, *,
               tls: tuple[str, str] | None = None, tmp_path: Path | None = None,
               password: str | None = None) -> int:
    """A CONNECT as the SDK builds it (client id, user name, signature), sent by paho; the
    CONNACK code. With ``tls`` (certificate PEM, key PEM): over 18883 with that certificate."""
    import paho.mqtt.client as mqtt

    ts = str(time.time() * 1000)
    login = Login(device_key, 2, "hmacsha256", ts)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=(
        f"{device_key}|securemode=2,signmethod=hmacsha256,timestamp={ts}|"))
    box: list[Any] = []
    client.on_connect = lambda c, u, f, rc, p: box.append(rc)
    client.username_pw_set(f"{device_key}&{product_key}", password or signature(
        login, device_key, product_key, secret))
    label = "mqtt"
    if tls is not None:
        assert tmp_path is not None
        cert_file, key_file = tmp_path / "paho.pem", tmp_path / "paho.key"
        cert_file.write_text(tls[0])
        key_file.write_text(tls[1])
        ctx = pki.client_context(enos.ca_pem)
        ctx.check_hostname = False
        ctx.load_cert_chain(str(cert_file), str(key_file))
        client.tls_set_context(ctx)
        label = "mqtts"
    client.connect("127.0.0.1", port(enos.handle, label))
    client.loop_start()
    try:
        wait_for(lambda: box)
    finally:
        close_paho(client)
    return CONNACK_BY_NAME[box[0].getName()]


def things(enos: Enos) -> dict[str, Any]:
    return enos.state()["things"]  # type: ignore[no-any-return]


def refusals(enos: Enos) -> list[str]:
    farm = enos.handle.farm
    return [e["detail"]["reason"].split(":")[0]
            for e in farm.journal(member="enos", event="refused")]


# -- secret login on 11883 ---------------------------------------------------------------------

def test_one_way_device_logs_in_with_its_secret_and_posts_measure_points(
        mqtt_enos: Enos, sdk_clients: list[MqttClient]) -> None:
    client = secret_client(mqtt_enos, sdk_clients, "POneWay1", "devM", SECRET_M)
    connect(client)
    assert client.is_connected()
    reply = client.publish(MeasurepointPostRequest.builder()
                           .add_measurepoint("power", 42.5).set_timestamp(1700000000000)
                           .build())
    assert reply.get_code() == 200
    record = things(mqtt_enos)["POneWay1/devM"]
    assert record["online"] is True
    assert record["measurepoints"]["power"] == {"value": 42.5, "time": 1700000000000}


def test_events_and_attributes(mqtt_enos: Enos, sdk_clients: list[MqttClient]) -> None:
    client = secret_client(mqtt_enos, sdk_clients, "POneWay1", "devM", SECRET_M)
    connect(client)
    assert client.publish(EventPostRequest.builder().set_event_identifier("overheat")
                          .add_value("temp", 90).build()).get_code() == 200
    assert client.publish(AttributeUpdateRequest.builder().add_attribute("site", "Shanghai")
                          .build()).get_code() == 200
    query = client.publish(AttributeQueryRequest.builder().add_attribute("site").build())
    assert query.get_code() == 200
    assert query.get_data() == {"site": "Shanghai"}
    record = things(mqtt_enos)["POneWay1/devM"]
    assert record["events"][-1]["event"] == "overheat"
    assert record["attributes"] == {"site": "Shanghai"}


def test_bad_signature_and_wrong_product_are_refused_with_4(mqtt_enos: Enos) -> None:
    assert paho_login(mqtt_enos, "POneWay1", "devM", SECRET_M, password="0" * 64) == 4
    assert paho_login(mqtt_enos, "PBiDir01", "devM", SECRET_M) == 4
    assert paho_login(mqtt_enos, "POneWay1", "devM", SECRET_M) == 0
    assert refusals(mqtt_enos) == ["bad_signature", "unknown_device"]


def test_upper_case_signature_and_plain_sha256_sign_method_are_accepted(
        mqtt_enos: Enos) -> None:
    """The docs' form: toUpperCase(sha256(...)) and signmethod=sha256."""
    import paho.mqtt.client as mqtt

    ts = "1700000000000"
    login = Login("meter-serial-1", 2, "sha256", ts)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"meter-serial-1|securemode=2,signmethod=sha256,timestamp={ts}|")
    box: list[Any] = []
    client.on_connect = lambda c, u, f, rc, p: box.append(rc)
    client.username_pw_set("devM&POneWay1",
                           signature(login, "devM", "POneWay1", SECRET_M).upper())
    client.connect("127.0.0.1", port(mqtt_enos.handle, "mqtt"))
    client.loop_start()
    try:
        wait_for(lambda: box)
    finally:
        client.disconnect()
        client.loop_stop()
    assert CONNACK_BY_NAME[box[0].getName()] == 0


def test_dynamic_activation_answers_the_device_secret(mqtt_enos: Enos,
                                                      sdk_clients: list[MqttClient]) -> None:
    client, secret = activate(mqtt_enos, sdk_clients, "POneWay1", "devNew")
    assert secret == things(mqtt_enos)["POneWay1/devNew"]["deviceSecret"]
    client.close()
    # With it, the device now logs in as any other (securemode 2).
    again = secret_client(mqtt_enos, sdk_clients, "POneWay1", "devNew", secret)
    connect(again)
    assert again.is_connected()


def test_bi_directional_product_on_the_plain_port_is_refused(mqtt_enos: Enos) -> None:
    assert paho_login(mqtt_enos, "PBiDir01", "devA", SECRET_A) == 5
    assert refusals(mqtt_enos) == ["insecure"]


# -- certificates on 18883: the done-when story ------------------------------------------------

def test_certificate_story_apply_connect_post_invoke_revoke(
        mqtt_enos: Enos, sdk_clients: list[MqttClient], tmp_path: Path) -> None:
    # 1. apply a certificate with enos-poseidon
    key = ec_key()
    applied = mqtt_enos.sdk("apply", {"csr": make_csr(key, "devA"), "issueAuthority": "ECC"})
    assert applied["code"] == 0, applied
    cert_pem, cert_sn = applied["data"]["cert"], int(applied["data"]["certSN"])
    # 2. connect with the EnOS device SDK over 18883 using it
    client = tls_client(mqtt_enos, sdk_clients, tmp_path, "devA", SECRET_A, cert_pem,
                        pki.key_pem(key))

    def multiply(arrived: Any, args: list[str]) -> Any:
        params = arrived.get_params()
        return ServiceInvocationReply.builder().add_output_data(
            "result", params["left"] * params["right"]).set_code(200).build()

    client.register_arrived_message_handler(ServiceInvocationCommand.get_class(), multiply)
    connect(client)
    assert client.is_connected(), mqtt_enos.handle.farm.journal(member="enos", event="refused")
    # 3. post measure points: visible in the state
    reply = client.publish(MeasurepointPostRequest.builder().add_measurepoint("temp", 21)
                           .build())
    assert reply.get_code() == 200
    assert things(mqtt_enos)["PBiDir01/devA"]["measurepoints"]["temp"]["value"] == 21
    sessions = mqtt_enos.state()["mqtt_sessions"]
    assert [(s["identity"], s["client_certificate"]) for s in sessions] == [
        ("PBiDir01/devA", True)]
    # 4. receive a service call (from the control plane) and reply
    control = mqtt_enos.handle.farm.control_url
    answer = post(f"{control}/emulators/enos/enos/devices/assetA/services/multiply",
                  {"params": {"left": 6, "right": 7}})
    assert answer[0] == 200, answer
    assert answer[1]["reply"]["code"] == 200
    assert answer[1]["reply"]["data"] == {"result": 42}
    # 5. revoke the certificate: the live session ends and the reconnect is refused
    revoked = mqtt_enos.sdk("revoke", {"certSn": cert_sn})
    assert revoked["code"] == 0, revoked
    wait_for(lambda: not mqtt_enos.state()["mqtt_sessions"])
    assert paho_login(mqtt_enos, "PBiDir01", "devA", SECRET_A, tls=(cert_pem, pki.key_pem(key)),
                      tmp_path=tmp_path) == 5
    assert refusals(mqtt_enos)[-1] == "certificate"
    # 6. a renewed (new) certificate works again
    key2 = ec_key()
    fresh = mqtt_enos.sdk("apply", {"csr": make_csr(key2, "devA"), "issueAuthority": "ECC"})
    assert paho_login(mqtt_enos, "PBiDir01", "devA", SECRET_A,
                      tls=(fresh["data"]["cert"], pki.key_pem(key2)), tmp_path=tmp_path) == 0


def test_certificate_of_another_device_and_an_expired_one_are_refused(
        mqtt_enos: Enos, tmp_path: Path) -> None:
    # devB's bound certificate (issued at genesis, its key in the state) presented by devA
    state = mqtt_enos.state()
    (bound,) = [c for c in state["certificates"] if c["asset_id"] == "assetB"]
    key_b = state["device_keys"].get(str(bound["cert_sn"])) or pki.key_pem(ec_key("secp256r1", 1))
    assert paho_login(mqtt_enos, "PBiDir01", "devA", SECRET_A, tls=(bound["cert"], key_b),
                      tmp_path=tmp_path) == 5
    # devB's own works, until the farm clock passes its end
    assert paho_login(mqtt_enos, "PBiDir01", "devB", "DevBSecret0001",
                      tls=(bound["cert"], key_b), tmp_path=tmp_path) == 0
    mqtt_enos.advance(20 * 365 * 86400)
    assert paho_login(mqtt_enos, "PBiDir01", "devB", "DevBSecret0001",
                      tls=(bound["cert"], key_b), tmp_path=tmp_path) == 5
    assert refusals(mqtt_enos) == ["certificate", "certificate"]


def test_service_invocation_of_an_offline_device_is_409(mqtt_enos: Enos) -> None:
    control = mqtt_enos.handle.farm.control_url
    status, body = post(f"{control}/emulators/enos/enos/devices/assetM/measurepoints",
                        {"measurepoints": {"setpoint": 1}})
    assert status == 409, body
    assert body["error"]["code"] == "conflict"


def post(url: str, doc: dict[str, Any]) -> tuple[int, Any]:
    return urlopen_json(urllib.request.Request(url, data=json.dumps(doc).encode(), method="POST",
                                               headers={"Content-Type": "application/json"}),
                        timeout=15)


def test_a_rest_revoke_and_the_connection_it_ends_share_a_correlation_id(
        mqtt_enos: Enos, sdk_clients: list[MqttClient], tmp_path: Path) -> None:
    key = ec_key()
    applied = mqtt_enos.sdk("apply", {"csr": make_csr(key, "devA"), "issueAuthority": "ECC"})
    client = tls_client(mqtt_enos, sdk_clients, tmp_path, "devA", SECRET_A,
                        applied["data"]["cert"], pki.key_pem(key))
    connect(client)
    assert client.is_connected()
    mqtt_enos.sdk("revoke", {"certSn": int(applied["data"]["certSN"])})
    farm = mqtt_enos.handle.farm
    ended = wait_for(lambda: farm.journal(member="enos", event="disconnect"))[-1]
    assert ended["detail"]["reason"].startswith("closed: certificate")
    (revoke,) = [e for e in farm.journal(member="enos", event="request")
                 if "action=revoke" in str(e.get("query")) or "revoke" in str(e.get("query"))]
    assert ended["correlation_id"] == revoke["correlation_id"]


def test_mqtt_fault_rules_reach_enos_devices(mqtt_enos: Enos) -> None:
    farm = mqtt_enos.handle.farm
    farm.add_fault(fault="mqtt_refuse", member="enos", connack=3, times=1)
    assert paho_login(mqtt_enos, "POneWay1", "devM", SECRET_M) == 3
    assert paho_login(mqtt_enos, "POneWay1", "devM", SECRET_M) == 0


def test_reset_ends_sessions_and_forgets_what_devices_posted(mqtt_enos: Enos,
                                                    sdk_clients: list[MqttClient]) -> None:
    client = secret_client(mqtt_enos, sdk_clients, "POneWay1", "devM", SECRET_M)
    connect(client)
    client.publish(MeasurepointPostRequest.builder().add_measurepoint("power", 1).build())
    assert things(mqtt_enos)["POneWay1/devM"]["measurepoints"]
    mqtt_enos.handle.reset()
    wait_for(lambda: not mqtt_enos.state()["mqtt_sessions"])
    # What the device posted is gone; only its going offline (after the reset) is recorded.
    record = things(mqtt_enos)["POneWay1/devM"]
    assert record["measurepoints"] == {} and record["online"] is False


def test_the_default_scenarios_inverter_connects_with_its_bound_certificate(
        farm_factory: Callable[..., RunningFarm], tmp_path: Path) -> None:
    farm = farm_factory("default")
    enos = Enos(farm["enos"])
    state = enos.state()
    (bound,) = [c for c in state["certificates"] if c["asset_id"] == "zBrjuW7q"]
    key = state["device_keys"][str(bound["cert_sn"])]
    assert paho_login(enos, "Xs7eAbCd", "inverter01", "InverterSecret01",
                      tls=(bound["cert"], key), tmp_path=tmp_path) == 0
    assert paho_login(enos, "Pl4inPrd", "meter01", "MeterSecret01") == 0  # one-way, 11883


def test_sub_device_login_lets_the_gateway_post_for_it_and_logout(
        mqtt_enos: Enos, sdk_clients: list[MqttClient]) -> None:
    from enos.message.upstream.status.SubDeviceLoginRequest import SubDeviceLoginRequest
    from enos.message.upstream.status.SubDeviceLogoutRequest import SubDeviceLogoutRequest

    gateway = secret_client(mqtt_enos, sdk_clients, "POneWay1", "devM", SECRET_M)
    connect(gateway)
    login = gateway.publish(SubDeviceLoginRequest.builder().set_sub_device_info(
        "PShort01", "devS", "DevSSecret0001").build())
    assert login.get_code() == 200
    posted = gateway.publish(MeasurepointPostRequest.builder().set_product_key("PShort01")
                             .set_device_key("devS").add_measurepoint("v", 3).build())
    assert posted.get_code() == 200
    assert things(mqtt_enos)["PShort01/devS"]["measurepoints"]["v"]["value"] == 3
    logout = gateway.publish(SubDeviceLogoutRequest.builder().set_sub_product_key("PShort01")
                             .set_sub_device_key("devS").build())
    assert logout.get_code() == 200
    # A sub-device with the wrong secret is refused with the choice's code.
    bad = gateway.publish(SubDeviceLoginRequest.builder().set_sub_device_info(
        "PShort01", "devS", "NotItsSecret1").build())
    assert bad.get_code() == 1000


def test_resume_batch_and_ota_inform(mqtt_enos: Enos, sdk_clients: list[MqttClient]) -> None:
    from enos.message.upstream.ota.OtaVersionReportRequest import OtaVersionReportRequest
    from enos.message.upstream.resume.MeasurepointResumeRequest import (
        MeasurepointResumeRequest,
    )

    client = secret_client(mqtt_enos, sdk_clients, "POneWay1", "devM", SECRET_M)
    connect(client)
    resumed = client.publish(MeasurepointResumeRequest.builder().add_measure_point("e", 7)
                             .set_timestamp(1600000000000).build())
    assert resumed.get_code() == 200
    assert client.publish(OtaVersionReportRequest.builder().set_version("1.2.3")
                          .build()).get_code() == 200
    record = things(mqtt_enos)["POneWay1/devM"]
    assert record["measurepoints"]["e"] == {"value": 7, "time": 1600000000000}
    assert record["firmware"] == "1.2.3"


def test_measure_point_set_from_the_cloud_reaches_the_sdks_handler(
        mqtt_enos: Enos, sdk_clients: list[MqttClient]) -> None:
    from enos.message.downstream.tsl.MeasurepointSetCommand import MeasurepointSetCommand
    from enos.message.downstream.tsl.MeasurepointSetReply import MeasurepointSetReply

    seen: list[Any] = []

    def on_set(arrived: Any, args: list[str]) -> Any:
        seen.append((arrived.get_params(), list(args[:2])))
        return MeasurepointSetReply().builder().set_code(200).build()

    client = secret_client(mqtt_enos, sdk_clients, "POneWay1", "devM", SECRET_M)
    client.register_arrived_message_handler(MeasurepointSetCommand.get_class(), on_set)
    connect(client)
    status, body = post(f"{mqtt_enos.handle.farm.control_url}/emulators/enos/enos/devices/"
                        "assetM/measurepoints", {"measurepoints": {"setpoint": 55}})
    assert status == 200, body
    assert body["reply"]["code"] == 200
    assert seen == [({"setpoint": 55}, ["POneWay1", "devM"])]
    chain = [e for e in mqtt_enos.handle.farm.journal(member="enos", event="publish")
             if "measurepoint/set" in e["path"]]
    assert [e["detail"]["direction"] for e in chain] == ["down", "up"]
    assert chain[0]["correlation_id"] == chain[1]["correlation_id"]


def test_a_renewed_certificate_logs_in(mqtt_enos: Enos, tmp_path: Path) -> None:
    key = ec_key()
    applied = mqtt_enos.sdk("apply", {"csr": make_csr(key, "devA"), "issueAuthority": "ECC"})
    new_key = ec_key()
    renewed = mqtt_enos.sdk("renew", {"csr": make_csr(new_key, "devA"), "issueAuthority": "ECC",
                                      "certSn": int(applied["data"]["certSN"])})
    assert renewed["code"] == 0, renewed
    assert paho_login(mqtt_enos, "PBiDir01", "devA", SECRET_A,
                      tls=(renewed["data"]["cert"], pki.key_pem(new_key)),
                      tmp_path=tmp_path) == 0

"""IoTDA data forwarding, end to end: rules and actions made with huaweicloudsdkiotda, a device
(paho-mqtt as the device SDK configures it) reporting, and a plain HTTP server in the test as
the application that receives the pushes. Both ways (tests/ways.py): one process, and the
emulator on shard 1 of four."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkiotda.v5 import (
    AddActionReq,
    AddDevice,
    AddDeviceRequest,
    AddProduct,
    AddQueueRequest,
    AddRuleReq,
    BatchShowQueueRequest,
    ChannelDetail,
    CreateAccessCodeRequest,
    CreateAccessCodeRequestBody,
    CreateMessageRequest,
    CreateProductRequest,
    CreateRoutingRuleRequest,
    CreateRuleActionRequest,
    DeleteDeviceRequest,
    DeleteQueueRequest,
    DeleteRoutingRuleRequest,
    DeleteRuleActionRequest,
    DeviceMessageRequest,
    HttpForwarding,
    ListRoutingRulesRequest,
    ListRuleActionsRequest,
    QueueInfo,
    RoutingRuleSubject,
    ServiceCapability,
    ShowQueueRequest,
    ShowRoutingRuleRequest,
    ShowRuleActionRequest,
    UpdateActionReq,
    UpdateRoutingRuleRequest,
    UpdateRuleActionRequest,
    UpdateRuleReq,
)

from emulators import pki
from emulators.testing import RemoteMember, ShardedFarm, single_member_scenario
from tests.ways import WAYS, both_ways

from .clients import CA, DEVICE, MQTT_OPTIONS, PROJECT, SdkDevice, fresh_member, upload_ca, wait_for
from .push_target import PushTarget

OPTIONS = {**MQTT_OPTIONS, "forwarding": {"blocklist_after": 2, "blocklist_retry": 60}}
EVENT_TIME = re.compile(r"\d{8}T\d{6}Z")
EVENT_TIME_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture(scope="module", params=WAYS)
def iotda_farm(request: pytest.FixtureRequest) -> Iterator[ShardedFarm]:
    yield from both_ways({"name": "iotda-forwarding", "emulators": [
        {"name": "iotda", "kind": "iotda", **OPTIONS}]}, request.param, across=["iotda"])


@pytest.fixture
def iotda(iotda_farm: ShardedFarm) -> RemoteMember:
    return fresh_member(iotda_farm)


@pytest.fixture
def target() -> Iterator[PushTarget]:
    server = PushTarget()
    yield server
    server.close()


def error_of(call: Callable[[], Any]) -> tuple[int, str, str]:
    with pytest.raises(ClientRequestException) as caught:
        call()
    return caught.value.status_code, caught.value.error_code, caught.value.error_msg


def make_rule(client: Any, resource: str, event: str, *, active: bool = True,
              **fields: Any) -> Any:
    rule = client.create_routing_rule(CreateRoutingRuleRequest(body=AddRuleReq(
        subject=RoutingRuleSubject(resource=resource, event=event), **fields)))
    if active:
        client.update_routing_rule(UpdateRoutingRuleRequest(
            rule_id=rule.rule_id, body=UpdateRuleReq(active=True)))
    return rule


def http_action(client: Any, rule_id: str, url: str, **fields: Any) -> Any:
    return client.create_rule_action(CreateRuleActionRequest(body=AddActionReq(
        rule_id=rule_id, channel="HTTP_FORWARDING",
        channel_detail=ChannelDetail(http_forwarding=HttpForwarding(url=url, **fields)))))


# -- the REST API, as the SDK calls it ----------------------------------------------------------

def test_a_rule_starts_inactive_and_its_actions_are_listed(client: Any,
                                                           target: PushTarget) -> None:
    rule = make_rule(client, "device.property", "report", active=False, rule_name="props",
                     description="to the backend")
    assert (rule.rule_name, rule.subject.resource, rule.subject.event, rule.app_type,
            rule.active) == ("props", "device.property", "report", "GLOBAL", False)
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                        rule.rule_id)
    shown = client.show_routing_rule(ShowRoutingRuleRequest(rule_id=rule.rule_id))
    assert shown.to_json_object() == rule.to_json_object()
    action = http_action(client, rule.rule_id, target.url + "/push")
    assert action.rule_id == rule.rule_id and action.channel == "HTTP_FORWARDING"
    assert action.channel_detail.http_forwarding.url == target.url + "/push"
    assert client.show_rule_action(ShowRuleActionRequest(
        action_id=action.action_id)).action_id == action.action_id
    moved = client.update_rule_action(UpdateRuleActionRequest(
        action_id=action.action_id, body=UpdateActionReq(channel_detail=ChannelDetail(
            http_forwarding=HttpForwarding(url=target.url + "/moved")))))
    assert moved.channel_detail.http_forwarding.url == target.url + "/moved"
    listed = client.list_rule_actions(ListRuleActionsRequest(rule_id=rule.rule_id))
    assert [a.action_id for a in listed.actions] == [action.action_id] and listed.count == 1
    rules = client.list_routing_rules(ListRoutingRulesRequest(active=False))
    # count and marker beside the list: ListRoutingRulesResponse has no page object
    assert rules.count == 1 and rules.marker == rule.rule_id.replace("-", "")[:24]
    updated = client.update_routing_rule(UpdateRoutingRuleRequest(
        rule_id=rule.rule_id, body=UpdateRuleReq(active=True)))
    assert updated.active is True
    assert client.list_routing_rules(ListRoutingRulesRequest(active=False)).count == 0
    client.delete_rule_action(DeleteRuleActionRequest(action_id=action.action_id))
    client.delete_routing_rule(DeleteRoutingRuleRequest(rule_id=rule.rule_id))
    assert error_of(lambda: client.show_routing_rule(ShowRoutingRuleRequest(
        rule_id=rule.rule_id))) == (404, "IOTDA.010002", "The rule does not exist.")


def test_bad_rule_and_action_bodies_get_iotdas_errors(client: Any, target: PushTarget) -> None:
    invalid = (400, "IOTDA.000006", "Invalid input data.")
    assert error_of(lambda: client.create_routing_rule(CreateRoutingRuleRequest(
        body=AddRuleReq(rule_name="no-subject")))) == invalid
    assert error_of(lambda: make_rule(client, "device.property", "delete")) == invalid
    assert error_of(lambda: make_rule(client, "device.property", "report",
                                      where="a > " + "1" * 2500)) == invalid
    assert error_of(lambda: make_rule(client, "device.property", "report",
                                      where="notify_data.body = = 1")) == invalid
    assert error_of(lambda: make_rule(client, "device.property", "report",
                                      select="'constant'")) == invalid  # a constant needs AS
    rule = make_rule(client, "device.property", "report")
    assert error_of(lambda: client.create_rule_action(CreateRuleActionRequest(
        body=AddActionReq(rule_id=rule.rule_id, channel="PIGEON_FORWARDING",
                          channel_detail=ChannelDetail())))) == invalid
    assert error_of(lambda: http_action(client, rule.rule_id, "ftp://x/y")) == invalid
    assert error_of(lambda: http_action(client, "0" * 36, target.url))[:2] == (
        404, "IOTDA.010002")
    # select and where are updated together
    assert error_of(lambda: client.update_routing_rule(UpdateRoutingRuleRequest(
        rule_id=rule.rule_id, body=UpdateRuleReq(select="notify_data")))) == invalid


def test_queues_are_added_listed_and_kept_while_an_action_uses_them(client: Any) -> None:
    queue = client.add_queue(AddQueueRequest(body=QueueInfo(queue_name="backend.queue-1")))
    assert queue.queue_name == "backend.queue-1"
    assert EVENT_TIME.fullmatch(queue.create_time) and queue.create_time == queue.last_modify_time
    listed = client.batch_show_queue(BatchShowQueueRequest(queue_name="queue"))
    assert [q.queue_id for q in listed.queues] == [queue.queue_id]
    assert listed.page.count == 1  # BatchShowQueue's paging is in a page object
    assert client.show_queue(ShowQueueRequest(queue_id=queue.queue_id)).queue_name == \
        "backend.queue-1"
    assert error_of(lambda: client.add_queue(AddQueueRequest(body=QueueInfo(
        queue_name="backend.queue-1"))))[:2] == (400, "IOTDA.016001")
    assert error_of(lambda: client.add_queue(AddQueueRequest(body=QueueInfo(
        queue_name="short")))) == (400, "IOTDA.000006", "Invalid input data.")
    rule = make_rule(client, "device.message", "report")
    action = client.create_rule_action(CreateRuleActionRequest(body=AddActionReq(
        rule_id=rule.rule_id, channel="AMQP_FORWARDING",
        channel_detail={"amqp_forwarding": {"queue_name": "backend.queue-1"}})))
    assert error_of(lambda: client.delete_queue(DeleteQueueRequest(
        queue_id=queue.queue_id))) == (403, "IOTDA.016003",
                                       "Operation not allowed, the queue is using")
    client.delete_rule_action(DeleteRuleActionRequest(action_id=action.action_id))
    client.delete_queue(DeleteQueueRequest(queue_id=queue.queue_id))
    assert error_of(lambda: client.show_queue(ShowQueueRequest(queue_id=queue.queue_id))) == (
        404, "IOTDA.016002", "The queueId does not exist.")


def test_a_new_access_code_replaces_the_old_one(client: Any) -> None:
    first = client.create_access_code(CreateAccessCodeRequest(
        body=CreateAccessCodeRequestBody(type="AMQP")))
    assert re.fullmatch(r"[A-Za-z0-9]{8}", first.access_key) and first.access_code
    second = client.create_access_code(CreateAccessCodeRequest(
        body=CreateAccessCodeRequestBody(type="AMQP")))
    assert second.access_key == first.access_key and second.access_code != first.access_code


def test_rules_and_queues_survive_a_restart_and_a_reset_clears_them(
        farm_factory: Callable[..., Any], make_client: Any, tmp_path: Path) -> None:
    scenario = single_member_scenario("iotda", "iotda-kept", **OPTIONS)
    first = farm_factory(scenario, tmp_path, control=False)
    client = make_client(endpoint=first["iotda-kept"].url)
    rule = make_rule(client, "device.status", "update")
    client.add_queue(AddQueueRequest(body=QueueInfo(queue_name="kept-queue")))
    code = client.create_access_code(CreateAccessCodeRequest(body=CreateAccessCodeRequestBody()))
    first.stop()
    second = farm_factory(scenario, tmp_path, control=False)
    client = make_client(endpoint=second["iotda-kept"].url)
    assert client.show_routing_rule(ShowRoutingRuleRequest(rule_id=rule.rule_id)).active
    assert client.batch_show_queue(BatchShowQueueRequest()).page.count == 1
    kept = second["iotda-kept"].state()["routing"]["access_codes"]
    assert [(c["access_key"], c["access_code"]) for c in kept] == [
        (code.access_key, code.access_code)]
    second["iotda-kept"].reset()
    assert client.list_routing_rules(ListRoutingRulesRequest()).count == 0


# -- pushes --------------------------------------------------------------------------------------

def test_a_property_report_is_pushed_once_the_rule_is_active(
        iotda: RemoteMember, client: Any, devices: Callable[..., SdkDevice],
        target: PushTarget) -> None:
    rule = make_rule(client, "device.property", "report", active=False)
    http_action(client, rule.rule_id, target.url + "/iot/props")
    device = devices()
    assert device.connect() == 0
    device.report([{"service_id": "Ptz", "properties": {"pan": 10}}])
    client.update_routing_rule(UpdateRoutingRuleRequest(rule_id=rule.rule_id,
                                                        body=UpdateRuleReq(active=True)))
    device.report([{"service_id": "Ptz", "properties": {"pan": 20},
                    "event_time": "20261207T101500Z"}])
    got = target.next()
    assert got.path == "/iot/props"
    assert got.headers["content-type"] == "application/json; charset=utf-8"
    doc = got.doc
    assert list(doc) == ["resource", "event", "event_time", "event_time_ms", "request_id",
                         "notify_data"]
    assert (doc["resource"], doc["event"]) == ("device.property", "report")
    assert EVENT_TIME.fullmatch(doc["event_time"])
    assert EVENT_TIME_MS.fullmatch(doc["event_time_ms"])
    assert doc["notify_data"] == {
        "header": {"app_id": "default", "device_id": DEVICE, "node_id": "cam-1",
                   "product_id": "camera", "gateway_id": DEVICE, "tags": []},
        "body": {"services": [{"service_id": "Ptz", "properties": {"pan": 20},
                               "event_time": "20261207T101500Z"}]}}
    assert target.nothing()  # the report before activation was not forwarded
    # The journal ties the report, the match and the push together.
    pushes = iotda.farm.journal(member="iotda", protocol="forwarding", event="push")
    assert len(pushes) == 1 and pushes[0]["status"] == 200
    chain = iotda.farm.journal(correlation_id=pushes[0]["correlation_id"])
    assert [e["event"] for e in chain if e["protocol"] == "forwarding"] == ["match", "push"]


def test_select_and_where_as_the_sql_guides_example(client: Any,
                                                    devices: Callable[..., SdkDevice],
                                                    target: PushTarget) -> None:
    rule = make_rule(client, "device.message", "report",
                     select="notify_data.header.device_id AS device_id, "
                            "notify_data.body.content",
                     where="notify_data.body.content.temperature > 38")
    http_action(client, rule.rule_id, target.url)
    device = devices()
    assert device.connect() == 0
    up = f"$oc/devices/{DEVICE}/sys/messages/up"
    device.publish(up, {"temperature": 30, "humidity": 20}).wait_for_publish(10)
    device.publish(up, {"temperature": 40, "humidity": 24}).wait_for_publish(10)
    # The guide's output: the AS name, and the path as written for the other item.
    assert target.next().doc == {"device_id": DEVICE,
                                 "notify_data.body.content": {"temperature": 40,
                                                              "humidity": 24}}
    assert target.nothing()


def test_status_changes_and_device_lifecycle_are_pushed(client: Any,
                                                        devices: Callable[..., SdkDevice],
                                                        target: PushTarget) -> None:
    for resource, event in (("device.status", "update"), ("device", "create"),
                            ("device", "delete")):
        http_action(client, make_rule(client, resource, event).rule_id, target.url)
    device = devices()
    assert device.connect() == 0
    online = target.next().doc
    assert online["notify_data"]["body"]["status"] == "ONLINE"
    assert EVENT_TIME_MS.fullmatch(online["notify_data"]["body"]["status_update_time"])
    device.close()
    assert target.next().doc["notify_data"]["body"]["status"] == "OFFLINE"
    added = client.add_device(AddDeviceRequest(body=AddDevice(
        node_id="cam-9", product_id="camera", device_name="Ninth")))
    created = target.next().doc
    assert (created["resource"], created["event"]) == ("device", "create")
    assert "header" not in created["notify_data"]  # device:create carries only the body
    assert created["notify_data"]["body"]["device_id"] == added.device_id
    assert created["notify_data"]["body"]["device_name"] == "Ninth"
    client.delete_device(DeleteDeviceRequest(device_id=added.device_id))
    deleted = target.next().doc
    assert deleted["notify_data"] == {"header": {
        "app_id": "default", "device_id": added.device_id, "node_id": "cam-9",
        "product_id": "camera", "gateway_id": added.device_id, "tags": []}}


def test_a_signed_action_carries_timestamp_nonce_and_signature(
        client: Any, devices: Callable[..., SdkDevice], target: PushTarget) -> None:
    rule = make_rule(client, "device.property", "report")
    http_action(client, rule.rule_id, target.url, signature_enable=True, token="abc123XYZ")
    device = devices()
    assert device.connect() == 0
    device.report([{"service_id": "Ptz", "properties": {"pan": 1}}])
    headers = target.next().headers
    expected = hashlib.sha256("".join(sorted(
        ("abc123XYZ", headers["timestamp"], headers["nonce"]))).encode()).hexdigest()
    assert headers["signature"] == expected


def test_a_failing_target_is_blocklisted_and_its_backlog_delivered_in_order(
        iotda: RemoteMember, client: Any, devices: Callable[..., SdkDevice],
        target: PushTarget) -> None:
    rule = make_rule(client, "device.property", "report")
    http_action(client, rule.rule_id, target.url)
    device = devices()
    assert device.connect() == 0
    target.status = 500
    for pan in (1, 2):  # two failures (blocklist_after: 2): discarded, then blocklisted
        device.report([{"service_id": "Ptz", "properties": {"pan": pan}}])
    wait_for(lambda: iotda.farm.journal(member="iotda", event="blocklisted"))
    failed = iotda.farm.journal(member="iotda", event="push_failed")
    assert [e["status"] for e in failed] == [500, 500]
    assert all(e["detail"]["discarded"] for e in failed)
    for pan in (3, 4, 5):  # kept in the host's backlog
        device.report([{"service_id": "Ptz", "properties": {"pan": pan}}])
    host = target.url.split("//")[1]
    wait_for(lambda: iotda.description["forwarding"]["hosts"][host]["backlog"] == 3)
    target.status = 200
    assert target.nothing()  # nothing before the retry is due on the farm clock
    iotda.farm.clock.advance(61)
    pans = [target.next().doc["notify_data"]["body"]["services"][0]["properties"]["pan"]
            for _ in range(3)]
    assert pans == [3, 4, 5]
    assert iotda.farm.journal(member="iotda", event="unblocked")


def test_a_push_drop_fault_loses_that_push_and_says_so(
        iotda: RemoteMember, client: Any, devices: Callable[..., SdkDevice],
        target: PushTarget) -> None:
    http_action(client, make_rule(client, "device.property", "report").rule_id, target.url)
    iotda.farm.add_fault(fault="push_drop", protocol="forwarding", times=1)
    device = devices()
    assert device.connect() == 0
    device.report([{"service_id": "Ptz", "properties": {"pan": 1}}])
    device.report([{"service_id": "Ptz", "properties": {"pan": 2}}])
    assert target.next().doc["notify_data"]["body"]["services"][0]["properties"] == {"pan": 2}
    dropped = iotda.farm.journal(member="iotda", protocol="forwarding", event="dropped")
    assert len(dropped) == 1 and "fault rule" in dropped[0]["detail"]["reason"]


def test_another_projects_rule_sees_nothing(make_client: Any,
                                            devices: Callable[..., SdkDevice],
                                            target: PushTarget, client: Any) -> None:
    from .clients import OTHER_AK, OTHER_PROJECT, OTHER_SK

    other = make_client(OTHER_AK, OTHER_SK, OTHER_PROJECT)
    http_action(other, make_rule(other, "device.property", "report").rule_id, target.url)
    mine = make_rule(client, "device.property", "report")
    http_action(client, mine.rule_id, target.url + "/mine")
    device = devices()
    assert device.connect() == 0
    device.report([{"service_id": "Ptz", "properties": {"pan": 1}}])
    assert target.next().path == "/mine"
    assert target.nothing()
    assert PROJECT != OTHER_PROJECT


def test_an_https_target_is_trusted_through_the_actions_cert_id(
        iotda: RemoteMember, client: Any, devices: Callable[..., SdkDevice]) -> None:
    """The console's flow: upload the application server's CA (Device CA certificates), name
    its id in the action; without it the push fails the certificate check."""
    ca = CA("Backend Root CA")
    key = pki.ec_key()
    cert = pki.issue(key.public_key(), pki.name(CN="127.0.0.1"), ca.cert, ca.key,
                     server=True, ip_addresses=["127.0.0.1"])
    secure = PushTarget(pki.server_context(pki.cert_pem(cert), pki.key_pem(key)))
    try:
        rule = make_rule(client, "device.property", "report")
        plain = http_action(client, rule.rule_id, secure.url + "/untrusted")
        device = devices()
        assert device.connect() == 0
        device.report([{"service_id": "Ptz", "properties": {"pan": 1}}])
        failed = wait_for(lambda: iotda.farm.journal(member="iotda", event="push_failed"))
        assert "certificate" in failed[0]["detail"]["error"].lower()
        client.delete_rule_action(DeleteRuleActionRequest(action_id=plain.action_id))
        http_action(client, rule.rule_id, secure.url + "/trusted", cert_id=upload_ca(client, ca))
        device.report([{"service_id": "Ptz", "properties": {"pan": 2}}])
        got = secure.next()
        assert got.path == "/trusted"
        assert got.doc["notify_data"]["body"]["services"][0]["properties"] == {"pan": 2}
    finally:
        secure.close()


def test_message_status_and_product_creation_are_pushed(
        client: Any, devices: Callable[..., SdkDevice], target: PushTarget) -> None:
    for resource, event in (("device.message.status", "update"), ("product", "create")):
        http_action(client, make_rule(client, resource, event).rule_id, target.url)
    device = devices()
    assert device.connect() == 0
    made = client.create_message(CreateMessageRequest(
        device_id=DEVICE, body=DeviceMessageRequest(message="hello", name="greeting")))
    status = target.next().doc
    assert (status["resource"], status["event"]) == ("device.message.status", "update")
    body = status["notify_data"]["body"]
    assert (body["message_id"], body["name"], body["status"]) == (
        made.message_id, "greeting", "DELIVERED")
    assert body["topic"] == f"$oc/devices/{DEVICE}/sys/messages/down"
    assert EVENT_TIME.fullmatch(body["timestamp"])
    client.create_product(CreateProductRequest(body=AddProduct(
        product_id="meter", name="Meter", device_type="Meter", protocol_type="MQTT",
        data_format="json", service_capabilities=[ServiceCapability(service_id="m")])))
    product = target.next().doc
    assert (product["resource"], product["event"]) == ("product", "create")
    assert product["notify_data"]["body"]["product_id"] == "meter"

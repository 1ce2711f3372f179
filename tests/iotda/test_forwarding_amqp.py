"""IoTDA data forwarding over AMQP: huaweicloudsdkiotda makes the queue, the access code, the
rule and its AMQP_FORWARDING action; a device reports; python-qpid-proton, configured as
Huawei's Python sample configures it (amqps, SASL PLAIN with ``accessKey=...|timestamp=...``
and the access code, the server's certificate not verified), consumes the queue. Both ways:
one process, and the emulator on shard 1 of four."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from huaweicloudsdkiotda.v5 import (
    AddActionReq,
    AddQueueRequest,
    ChannelDetail,
    CreateAccessCodeRequest,
    CreateAccessCodeRequestBody,
    CreateRuleActionRequest,
    QueueInfo,
)
from proton import ConnectionException, SSLDomain
from proton.utils import BlockingConnection, LinkDetached

from emulators.testing import RemoteMember, ShardedFarm
from tests.ways import WAYS, both_ways

from .clients import DEVICE, MQTT_OPTIONS, SdkDevice, fresh_member
from .test_forwarding import make_rule

QUEUE = "backend-queue"


@pytest.fixture(scope="module", params=WAYS)
def iotda_farm(request: pytest.FixtureRequest) -> Iterator[ShardedFarm]:
    yield from both_ways({"name": "iotda-amqp", "emulators": [
        {"name": "iotda", "kind": "iotda", **MQTT_OPTIONS}]}, request.param, across=["iotda"])


@pytest.fixture
def iotda(iotda_farm: ShardedFarm) -> RemoteMember:
    return fresh_member(iotda_farm)


def access_code(client: Any) -> Any:
    return client.create_access_code(CreateAccessCodeRequest(
        body=CreateAccessCodeRequestBody(type="AMQP")))


def forward_to_queue(client: Any, resource: str = "device.property",
                     event: str = "report") -> None:
    client.add_queue(AddQueueRequest(body=QueueInfo(queue_name=QUEUE)))
    rule = make_rule(client, resource, event)
    client.create_rule_action(CreateRuleActionRequest(body=AddActionReq(
        rule_id=rule.rule_id, channel="AMQP_FORWARDING",
        channel_detail=ChannelDetail(amqp_forwarding={"queue_name": QUEUE}))))


def consumer(iotda: RemoteMember, code: Any, *, password: str | None = None
             ) -> BlockingConnection:
    """Huawei's Python sample: amqps, the server certificate not verified (ANONYMOUS_PEER),
    SASL PLAIN with ``accessKey=...|timestamp=<13-digit ms>|instanceId=...``."""
    domain = SSLDomain(SSLDomain.MODE_CLIENT)
    domain.set_peer_authentication(SSLDomain.ANONYMOUS_PEER)
    user = (f"accessKey={code.access_key}|timestamp={int(time.time() * 1000)}"
            f"|instanceId=")
    return BlockingConnection(iotda.description["urls"]["amqps"], timeout=10, user=user,
                              password=password or code.access_code, allowed_mechs="PLAIN",
                              ssl_domain=domain)


def test_reports_wait_in_the_queue_and_arrive_in_order_when_a_receiver_attaches(
        iotda: RemoteMember, client: Any, devices: Callable[..., SdkDevice]) -> None:
    code = access_code(client)
    forward_to_queue(client)
    device = devices()
    assert device.connect() == 0
    for pan in (1, 2, 3):  # no receiver yet: kept
        device.report([{"service_id": "Ptz", "properties": {"pan": pan}}])
    connection = consumer(iotda, code)
    try:
        receiver = connection.create_receiver(QUEUE)
        assert receiver.link.remote_source.address == QUEUE  # the attach names the queue
        docs = []
        for _ in range(3):
            message = receiver.receive(timeout=10)
            assert isinstance(message.body, str)  # an amqp-value string, as JMS reads it
            docs.append(json.loads(message.body))
            receiver.accept()
        assert [d["notify_data"]["body"]["services"][0]["properties"]["pan"]
                for d in docs] == [1, 2, 3]
        assert docs[0]["notify_data"]["header"]["device_id"] == DEVICE
        assert (docs[0]["resource"], docs[0]["event"]) == ("device.property", "report")
        device.report([{"service_id": "Ptz", "properties": {"pan": 4}}])  # attached: at once
        message = receiver.receive(timeout=10)
        assert json.loads(message.body)["notify_data"]["body"]["services"][0][
            "properties"] == {"pan": 4}
        receiver.accept()
    finally:
        connection.close()
    queued = iotda.farm.journal(member="iotda", protocol="forwarding", event="queued")
    assert len(queued) == 4 and all(e["path"] == QUEUE for e in queued)
    assert iotda.farm.journal(member="iotda", event="deliver")


def test_a_wrong_or_replaced_access_code_is_refused_by_sasl(iotda: RemoteMember,
                                                            client: Any) -> None:
    old = access_code(client)
    forward_to_queue(client)
    with pytest.raises(ConnectionException, match="unauthorized-access"):
        consumer(iotda, old, password="not-the-code").create_receiver(QUEUE)
    new = access_code(client)
    assert new.access_key == old.access_key
    with pytest.raises(ConnectionException, match="unauthorized-access"):
        consumer(iotda, old).create_receiver(QUEUE)
    connection = consumer(iotda, new)
    try:
        connection.create_receiver(QUEUE)
    finally:
        connection.close()
    outcomes = [e["status"] for e in iotda.farm.journal(member="iotda", event="sasl")]
    assert outcomes == [1, 1, 0]  # sasl-outcome auth, auth, ok


def test_a_queue_that_does_not_exist_is_not_found(iotda: RemoteMember, client: Any) -> None:
    code = access_code(client)
    connection = consumer(iotda, code)
    try:
        with pytest.raises(LinkDetached) as caught:
            connection.create_receiver("no-such-queue")
        assert "amqp:not-found" in str(caught.value)
    finally:
        connection.close()


def test_a_message_unsettled_when_the_connection_drops_comes_again(
        iotda: RemoteMember, client: Any, devices: Callable[..., SdkDevice]) -> None:
    """"If the application does not respond in time ... and the connection is interrupted,
    the data will be pushed again in the next connection" (AMQP forwarding's push mechanism)."""
    code = access_code(client)
    forward_to_queue(client)
    device = devices()
    assert device.connect() == 0
    device.report([{"service_id": "Ptz", "properties": {"pan": 7}}])
    first = consumer(iotda, code)
    try:
        seen = first.create_receiver(QUEUE).receive(timeout=10)  # taken, never accepted
    finally:
        first.close()
    second = consumer(iotda, code)
    try:
        receiver = second.create_receiver(QUEUE)
        again = receiver.receive(timeout=10)
        receiver.accept()
    finally:
        second.close()
    assert json.loads(again.body) == json.loads(seen.body)
    assert again.delivery_count >= 1  # the header says it may be a duplicate

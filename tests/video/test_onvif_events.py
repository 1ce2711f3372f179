"""The ONVIF events service of a camera: pull points, WS-BaseNotification Subscribe with Notify
POSTs to a consumer, GetEventProperties and the motion topics, termination on the farm clock.

The handlers are driven with the exact requests onvif-zeep-async sends and every reply is read
back by zeep against the events WSDL the library ships (event_clients.py); the end-to-end
tests at the bottom drive the library's own pull-point and notification managers over HTTP.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from onvif import ONVIFCamera
from zeep.exceptions import Fault

from emulators.core.video.onvif import events
from emulators.core.video.onvif.events_parse import CONCRETE, CONCRETE_SET
from emulators.testing import RunningFarm

from .event_clients import (
    EventsCamera,
    EventsConsumer,
    events_parse_notify,
    events_raw,
    events_subscription_id,
    events_topic_filter,
)

NO_DISCOVERY = {"discoverable": False}
SCENARIO: dict[str, Any] = {"version": 1, "name": "events", "emulators": [
    {"name": "cam", "kind": "instar-camera", "port": 0, "video": NO_DISCOVERY},
    {"name": "quirky", "kind": "instar-camera", "port": 0,
     "video": {**NO_DISCOVERY, "quirks": {"pullpoint_fails": True}}},
]}
TT = "{http://www.onvif.org/ver10/schema}"
WSTOP = "{http://docs.oasis-open.org/wsn/t-1}"
TNS1 = "{http://www.onvif.org/ver10/topics}"


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFarm]:
    running = RunningFarm.start(SCENARIO, tmp_path_factory.mktemp("events"))
    yield running
    running.stop()


@pytest.fixture
def cam(farm: RunningFarm) -> Iterator[EventsCamera]:
    camera = EventsCamera(farm)
    farm.clear_journal()
    yield camera
    farm.reset_clock()
    # A fresh start of the service: no subscription of one test reaches the next.
    farm.loop.run(camera.service.stop())
    camera.service.motion_active = False
    farm.loop.run(camera.service.start())


def wait_until(check: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.02)


def pull_point(cam: EventsCamera, **params: Any) -> str:
    params.setdefault("InitialTerminationTime", "PT60S")
    return events_subscription_id(cam.ok("CreatePullPointSubscription", **params))


def pull(cam: EventsCamera, sub: str, timeout: str = "PT0S", limit: int = 100) -> Any:
    return cam.ok("PullMessages", sub, Timeout=timeout, MessageLimit=limit)


def summary(messages: list[Any]) -> list[tuple[str, str, dict[str, str], dict[str, str]]]:
    """(topic, PropertyOperation, source items, data items) of each NotificationMessage."""
    found = []
    for message in messages:
        body = message.Message._value_1
        found.append((message.Topic._value_1, body.PropertyOperation,
                      {i.Name: i.Value for i in body.Source.SimpleItem},
                      {i.Name: i.Value for i in body.Data.SimpleItem}))
    return found


def states(messages: list[Any]) -> list[tuple[str, str, str]]:
    return [(topic, operation, next(iter(data.values())))
            for topic, operation, _source, data in summary(messages)]


# -- the event service --------------------------------------------------------------------

def test_service_capabilities_advertise_pull_points(cam: EventsCamera) -> None:
    caps = cam.ok("GetServiceCapabilities")
    assert (caps.WSPullPointSupport, caps.WSSubscriptionPolicySupport,
            caps.MaxPullPoints, caps.PersistentNotificationStorage) == (True, False, 64, False)


def test_event_properties_declare_the_two_motion_topics(cam: EventsCamera) -> None:
    answer = cam.call("GetEventProperties")
    props = answer.result
    assert props.TopicNamespaceLocation == [
        "http://www.onvif.org/onvif/ver10/topics/topicns.xml"]
    assert props.FixedTopicSet is True
    assert props.TopicExpressionDialect == [
        "http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet",
        "http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete"]
    assert props.MessageContentFilterDialect == [
        "http://www.onvif.org/ver10/tev/messageContentFilter/ItemFilter"]
    assert props.MessageContentSchemaLocation == [
        "http://www.onvif.org/onvif/ver10/schema/onvif.xsd"]
    roots = {e.tag: e for e in props.TopicSet._value_1}
    assert set(roots) == {f"{TNS1}VideoSource", f"{TNS1}RuleEngine"}

    def described(topic: etree._Element) -> tuple[dict[str, str], dict[str, str]]:
        assert topic.get(f"{WSTOP}topic") == "true"
        description = topic.find(f"{TT}MessageDescription")
        assert description is not None and description.get("IsProperty") == "true"
        return tuple(  # type: ignore[return-value]
            {i.get("Name"): i.get("Type")
             for i in description.iterfind(f"{TT}{part}/{TT}SimpleItemDescription")}
            for part in ("Source", "Data"))

    alarm = roots[f"{TNS1}VideoSource"].find("MotionAlarm")
    assert described(alarm) == ({"Source": "tt:ReferenceToken"}, {"State": "xs:boolean"})
    motion = roots[f"{TNS1}RuleEngine"].find("CellMotionDetector/Motion")
    assert described(motion) == (
        {"VideoSourceConfigurationToken": "tt:ReferenceToken",
         "VideoAnalyticsConfigurationToken": "tt:ReferenceToken", "Rule": "xs:string"},
        {"IsMotion": "xs:boolean"})
    # The xs prefix of the types is declared where it is used.
    assert b'xmlns:xs="http://www.w3.org/2001/XMLSchema"' in answer.data
    assert ("<wsa:Action>http://www.onvif.org/ver10/events/wsdl/EventPortType/"
            "GetEventPropertiesResponse</wsa:Action>") in answer.header


# -- pull points ----------------------------------------------------------------------------

def test_a_pull_point_is_addressed_as_the_client_reached_the_camera(cam: EventsCamera) -> None:
    answer = cam.call("CreatePullPointSubscription", host="localhost",
                      InitialTerminationTime="PT60S")
    result = answer.result
    port = cam.wing.onvif_base().rsplit(":", 1)[1]
    sub = events_subscription_id(result)
    assert result.SubscriptionReference.Address._value_1 == \
        f"http://localhost:{port}/onvif/events/subscription/{sub}"
    assert result.TerminationTime - result.CurrentTime == dt.timedelta(seconds=60)
    assert result.CurrentTime.tzinfo is not None
    assert "<wsa:RelatesTo>urn:uuid:" in answer.header
    entry = cam.farm.wait_for(member="cam", protocol="onvif", event="subscribed")
    assert entry["detail"]["subscription"] == sub and entry["detail"]["kind"] == "pull"
    assert cam.farm.loop.call(cam.service.subscription_count) == 1


def test_times_are_on_the_camera_clock(cam: EventsCamera, farm: RunningFarm) -> None:
    farm.freeze_clock(dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC).timestamp())
    farm.loop.run(cam.wing.set_clock_offset(3600))
    try:
        result = cam.ok("CreatePullPointSubscription", InitialTerminationTime="PT90S")
        assert result.CurrentTime == dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
        assert result.TerminationTime == dt.datetime(2026, 11, 23, 10, 1, 30, tzinfo=dt.UTC)
        messages = pull(cam, events_subscription_id(result)).NotificationMessage
        assert {m.Message._value_1.UtcTime for m in messages} == {result.CurrentTime}
        # An absolute time is read on the camera's clock too.
        renewed = cam.ok("Renew", events_subscription_id(result),
                         TerminationTime="2026-11-23T10:05:00Z")
        assert renewed.TerminationTime == dt.datetime(2026, 11, 23, 10, 5, tzinfo=dt.UTC)
    finally:
        farm.loop.run(cam.wing.set_clock_offset(0))


def test_a_new_pull_point_first_gets_the_current_state(cam: EventsCamera) -> None:
    sub = pull_point(cam)
    messages = pull(cam, sub).NotificationMessage
    assert summary(messages) == [
        ("tns1:VideoSource/MotionAlarm", "Initialized", {"Source": "VideoSource_1"},
         {"State": "false"}),
        ("tns1:RuleEngine/CellMotionDetector/Motion", "Initialized",
         {"VideoSourceConfigurationToken": "VideoSourceConfig_1",
          "VideoAnalyticsConfigurationToken": "VideoAnalyticsConfig_1",
          "Rule": "MyMotionDetectorRule"}, {"IsMotion": "false"})]
    assert all(m.Topic.Dialect == CONCRETE_SET for m in messages)
    assert pull(cam, sub).NotificationMessage == []
    cam.motion(True)
    later = pull_point(cam)
    assert states(pull(cam, later).NotificationMessage) == [
        ("tns1:VideoSource/MotionAlarm", "Initialized", "true"),
        ("tns1:RuleEngine/CellMotionDetector/Motion", "Initialized", "true")]


def test_motion_reaches_every_pull_point_under_its_correlation_id(cam: EventsCamera) -> None:
    first, second = pull_point(cam), pull_point(cam)
    pull(cam, first), pull(cam, second)
    cam.motion(True, "corr-motion-1")
    cam.motion(False, "corr-motion-2")
    for sub in (first, second):
        assert states(pull(cam, sub).NotificationMessage) == [
            ("tns1:VideoSource/MotionAlarm", "Changed", "true"),
            ("tns1:RuleEngine/CellMotionDetector/Motion", "Changed", "true"),
            ("tns1:VideoSource/MotionAlarm", "Changed", "false"),
            ("tns1:RuleEngine/CellMotionDetector/Motion", "Changed", "false")]
    journalled = cam.farm.journal(member="cam", event="event",
                                  correlation_id="corr-motion-1")
    assert [(e["protocol"], e["detail"]) for e in journalled] == [
        ("onvif", {"topic": "tns1:VideoSource/MotionAlarm", "value": True,
                   "subscriptions": 2}),
        ("onvif", {"topic": "tns1:RuleEngine/CellMotionDetector/Motion", "value": True,
                   "subscriptions": 2})]


def test_pull_messages_waits_for_the_next_event(cam: EventsCamera) -> None:
    sub = pull_point(cam)
    pull(cam, sub)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(pull, cam, sub, "PT50S")
        wait_until(lambda: cam.farm.loop.call(
            lambda: cam.service.subscriptions[sub].puller is not None), "the pull waits")
        started = time.monotonic()
        cam.motion(True)
        messages = waiting.result(timeout=30).NotificationMessage
    assert time.monotonic() - started < 30  # answered by the event, not by its Timeout
    assert [m for _t, m, _v in states(messages)] == ["Changed", "Changed"]


def test_pull_messages_with_nothing_queued_answers_empty_at_its_timeout(
        cam: EventsCamera) -> None:
    sub = pull_point(cam)
    pull(cam, sub)
    started = time.monotonic()
    result = pull(cam, sub, "PT1S")
    assert time.monotonic() - started >= 0.9
    assert result.NotificationMessage == []


def test_a_second_pull_answers_the_waiting_one(cam: EventsCamera) -> None:
    """Chosen behaviour: the newer PullMessages takes over; the one it replaces is answered at
    once with what is queued (here nothing)."""
    sub = pull_point(cam)
    pull(cam, sub)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(pull, cam, sub, "PT50S")
        wait_until(lambda: cam.farm.loop.call(
            lambda: cam.service.subscriptions[sub].puller is not None), "the first pull")
        # In a tuple: LoopThread.call would await a bare future.
        waiting = cam.farm.loop.call(lambda: (cam.service.subscriptions[sub].puller,))[0]
        second = pool.submit(pull, cam, sub, "PT50S")
        assert first.result(timeout=30).NotificationMessage == []
        wait_until(lambda: cam.farm.loop.call(
            lambda: cam.service.subscriptions[sub].puller not in (None, waiting)),
            "the second pull")
        cam.motion(True)
        assert len(second.result(timeout=30).NotificationMessage) == 2


def test_message_limit_leaves_the_rest_queued(cam: EventsCamera) -> None:
    sub = pull_point(cam)
    assert len(pull(cam, sub, limit=1).NotificationMessage) == 1
    assert states(pull(cam, sub, limit=5).NotificationMessage) == [
        ("tns1:RuleEngine/CellMotionDetector/Motion", "Initialized", "false")]


def test_the_queue_keeps_the_newest_messages(cam: EventsCamera) -> None:
    sub = pull_point(cam)
    for i in range(events.QUEUE_LIMIT):
        cam.motion(i % 2 == 0)
    queued = cam.farm.loop.call(lambda: len(cam.service.subscriptions[sub].queue))
    assert queued == events.QUEUE_LIMIT
    messages = pull(cam, sub, limit=events.QUEUE_LIMIT).NotificationMessage
    assert len(messages) == events.QUEUE_LIMIT
    assert all(o == "Changed" for _t, o, _v in states(messages))
    assert states(messages)[-1][2] == "false"


@pytest.mark.parametrize(("expression", "dialect", "topics"), [
    ("tns1:RuleEngine/CellMotionDetector/Motion", CONCRETE,
     ["tns1:RuleEngine/CellMotionDetector/Motion"]),
    ("tns1:VideoSource//.", CONCRETE_SET, ["tns1:VideoSource/MotionAlarm"]),
    ("tns1:VideoSource/MotionAlarm|tns1:RuleEngine//.", CONCRETE_SET,
     ["tns1:VideoSource/MotionAlarm", "tns1:RuleEngine/CellMotionDetector/Motion"]),
    ("tns1:Device/Trigger/DigitalInput", CONCRETE_SET, []),
], ids=["concrete-cell-motion", "video-source-subtree", "either", "other-topic"])
def test_a_topic_filter_selects_the_messages(cam: EventsCamera, expression: str,
                                             dialect: str, topics: list[str]) -> None:
    sub = pull_point(cam, Filter=events_topic_filter(expression, dialect))
    cam.motion(True)
    messages = pull(cam, sub).NotificationMessage
    assert [t for t, o, _v in states(messages) if o == "Initialized"] == topics
    assert [t for t, o, _v in states(messages) if o == "Changed"] == topics
    journalled = cam.farm.journal(member="cam", event="event")
    assert [(e["detail"]["topic"], e["detail"]["subscriptions"]) for e in journalled] == [
        (topic, int(topic in topics)) for topic in (
            "tns1:VideoSource/MotionAlarm", "tns1:RuleEngine/CellMotionDetector/Motion")]


def test_set_synchronization_point_sends_the_state_again(cam: EventsCamera) -> None:
    sub = pull_point(cam)
    pull(cam, sub)
    cam.motion(True)
    pull(cam, sub)
    cam.ok("SetSynchronizationPoint", sub)
    assert states(pull(cam, sub).NotificationMessage) == [
        ("tns1:VideoSource/MotionAlarm", "Initialized", "true"),
        ("tns1:RuleEngine/CellMotionDetector/Motion", "Initialized", "true")]


def test_renew_moves_the_termination(cam: EventsCamera, farm: RunningFarm) -> None:
    farm.freeze_clock(dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC).timestamp())
    sub = pull_point(cam)
    result = cam.ok("Renew", sub, TerminationTime="PT300S")
    assert (result.CurrentTime, result.TerminationTime) == (
        dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 23, 9, 5, tzinfo=dt.UTC))
    assert farm.wait_for(member="cam", event="renewed")["detail"]["termination"] == \
        "2026-11-23T09:05:00Z"
    farm.advance_clock(200)  # past the first termination, before the renewed one
    assert pull(cam, sub).TerminationTime == dt.datetime(2026, 11, 23, 9, 5, tzinfo=dt.UTC)


def test_a_pull_point_expires_on_the_farm_clock(cam: EventsCamera, farm: RunningFarm) -> None:
    farm.freeze_clock(dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC).timestamp())
    sub = pull_point(cam)
    farm.advance_clock(59)
    assert len(pull(cam, sub).NotificationMessage) == 2
    farm.advance_clock(2)
    # The sweep follows the clock's jump: no request needed to end it.
    entry = farm.wait_for(member="cam", protocol="onvif", event="expired")
    assert entry["detail"] == {"subscription": sub, "kind": "pull",
                               "termination": "2026-11-23T09:01:00Z"}
    assert cam.farm.loop.call(cam.service.subscription_count) == 0
    answer = cam.call("PullMessages", sub, Timeout="PT0S", MessageLimit=1)
    assert answer.status == 400 and answer.fault is not None
    assert answer.fault.message == "The subscription is unknown or has expired"


def test_a_waiting_pull_ends_with_its_subscription(cam: EventsCamera) -> None:
    sub = pull_point(cam)
    pull(cam, sub)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(cam.call, "PullMessages", sub, Timeout="PT50S",
                              MessageLimit=10)
        wait_until(lambda: cam.farm.loop.call(
            lambda: cam.service.subscriptions[sub].puller is not None), "the pull waits")
        cam.ok("Unsubscribe", sub)
        answer = waiting.result(timeout=30)
    assert answer.status == 400 and answer.fault is not None
    assert cam.farm.wait_for(member="cam", event="unsubscribed")["detail"]["subscription"] \
        == sub


def test_unsubscribe_ends_the_subscription(cam: EventsCamera) -> None:
    sub = pull_point(cam)
    assert cam.call("Unsubscribe", sub).result is None  # an empty UnsubscribeResponse
    for operation, params in [("PullMessages", {"Timeout": "PT0S", "MessageLimit": 1}),
                              ("Renew", {"TerminationTime": "PT60S"}),
                              ("Unsubscribe", {}), ("SetSynchronizationPoint", {})]:
        answer = cam.call(operation, sub, **params)
        assert answer.status == 400 and answer.fault is not None, operation


def test_a_broken_pull_point_quirk_faults_but_is_still_advertised(farm: RunningFarm) -> None:
    quirky = EventsCamera(farm, "quirky")
    assert quirky.ok("GetServiceCapabilities").WSPullPointSupport is True
    answer = quirky.call("CreatePullPointSubscription", InitialTerminationTime="PT60S")
    assert answer.status == 500 and answer.fault is not None
    assert answer.error is not None
    assert (answer.error.code, answer.error.subcode) == ("env:Receiver", "ter:Action")
    assert answer.fault.message == "The pull point subscription could not be created"
    assert farm.loop.call(quirky.service.subscription_count) == 0


# -- hostile requests -------------------------------------------------------------------------

def _create(termination: str) -> str:
    return ("<tev:CreatePullPointSubscription><tev:InitialTerminationTime>"
            f"{termination}</tev:InitialTerminationTime></tev:CreatePullPointSubscription>")


def _pull(timeout: str, limit: str) -> str:
    return (f"<tev:PullMessages><tev:Timeout>{timeout}</tev:Timeout>"
            f"<tev:MessageLimit>{limit}</tev:MessageLimit></tev:PullMessages>")


def _subscribe(consumer: str) -> str:
    return ("<wsnt:Subscribe><wsnt:ConsumerReference><wsa:Address>"
            f"{consumer}</wsa:Address></wsnt:ConsumerReference></wsnt:Subscribe>")


def _filter(expression: str, dialect: str = CONCRETE_SET) -> str:
    return (f'<tev:CreatePullPointSubscription><tev:Filter><wsnt:TopicExpression '
            f'Dialect="{dialect}">{expression}</wsnt:TopicExpression></tev:Filter>'
            f"</tev:CreatePullPointSubscription>")


HOSTILE = [
    ("CreatePullPointSubscription", _create("PT-5S"), "InitialTerminationTime"),
    ("CreatePullPointSubscription", _create("-PT5S"), "InitialTerminationTime"),
    ("CreatePullPointSubscription", _create("P99999999Y"), "more than 86400 seconds"),
    ("CreatePullPointSubscription", _create("P9999999999999Y"), "InitialTerminationTime"),
    ("CreatePullPointSubscription", _create("garbage"), "not an xs:dateTime"),
    ("CreatePullPointSubscription", _create("PT"), "not a non-negative xs:duration"),
    ("CreatePullPointSubscription", _create("PT0S"), "not in the future"),
    ("CreatePullPointSubscription", _create("2001-01-01T00:00:00Z"), "not in the future"),
    ("CreatePullPointSubscription", _create("2026-02-30T00:00:00Z"), "not a valid date"),
    ("CreatePullPointSubscription", _create("9999-12-31T23:59:59Z"), "more than 86400"),
    ("CreatePullPointSubscription", _filter("tns1:VideoSource", "urn:xpath"),
     "TopicExpressionDialectUnknown"),
    ("CreatePullPointSubscription", _filter("tns1:Video Source"), "InvalidTopicExpression"),
    ("CreatePullPointSubscription", _filter(""), "InvalidTopicExpression"),
    ("PullMessages", _pull("garbage", "10"), "Timeout"),
    ("PullMessages", _pull("PT-5S", "10"), "Timeout"),
    ("PullMessages", _pull("PT5S", "0"), "MessageLimit"),
    ("PullMessages", _pull("PT5S", "-1"), "MessageLimit"),
    ("PullMessages", _pull("PT5S", "99999999999"), "MessageLimit"),
    ("PullMessages", _pull("PT5S", "ten"), "MessageLimit"),
    ("Renew", "<wsnt:Renew><wsnt:TerminationTime>PT-1S</wsnt:TerminationTime></wsnt:Renew>",
     "TerminationTime"),
    ("Renew", "<wsnt:Renew/>", "TerminationTime is missing"),
    ("Subscribe", _subscribe("ftp://127.0.0.1/notify"), "ConsumerReference"),
    ("Subscribe", _subscribe("not a url"), "ConsumerReference"),
    ("Subscribe", _subscribe(""), "ConsumerReference"),
    ("Subscribe", _subscribe("http://"), "ConsumerReference"),
    ("Subscribe", _subscribe("http://127.0.0.1:99999/notify"), "ConsumerReference"),
    ("Subscribe", "<wsnt:Subscribe/>", "ConsumerReference"),
]


@pytest.mark.parametrize(("operation", "body", "reason"), HOSTILE, ids=[
    "negative-seconds", "negative-duration", "ninety-million-years", "digits-overflow",
    "garbage-time", "empty-duration", "zero-duration", "absolute-past", "february-30",
    "year-9999", "unknown-dialect", "space-in-topic", "empty-topic", "garbage-timeout",
    "negative-timeout", "limit-zero", "limit-negative", "limit-beyond-int", "limit-word",
    "renew-negative", "renew-without-time", "ftp-consumer", "consumer-not-url",
    "consumer-empty", "consumer-no-host", "consumer-bad-port", "subscribe-no-consumer"])
def test_hostile_values_get_invalid_arg_faults(cam: EventsCamera, operation: str, body: str,
                                               reason: str) -> None:
    target = pull_point(cam) if operation in ("PullMessages", "Renew") else None
    before = cam.farm.loop.call(cam.service.subscription_count)
    answer = cam.call(operation, target, data=events_raw(body))
    assert answer.status == 400 and answer.error is not None
    assert (answer.error.code, answer.error.subcode) == ("env:Sender", "ter:InvalidArgVal")
    assert answer.fault is not None and reason in answer.fault.message
    assert [q.localname for q in answer.fault.subcodes] == ["InvalidArgVal"]
    assert cam.farm.loop.call(cam.service.subscription_count) == before


@pytest.mark.parametrize("operation", ["PullMessages", "Renew", "Unsubscribe",
                                       "SetSynchronizationPoint"])
@pytest.mark.parametrize("target", ["0123456789abcdef", "", "../../device_service",
                                    "x" * 300], ids=["unknown", "empty", "dots", "long"])
def test_unknown_subscriptions_get_a_fault(cam: EventsCamera, operation: str,
                                           target: str) -> None:
    params = {"PullMessages": {"Timeout": "PT1S", "MessageLimit": 1},
              "Renew": {"TerminationTime": "PT60S"}}.get(operation, {})
    answer = cam.call(operation, target, **params)
    assert answer.status == 400 and answer.fault is not None
    assert answer.fault.message == "The subscription is unknown or has expired"


def test_a_subscribe_storm_stops_at_the_cap(cam: EventsCamera) -> None:
    made = [pull_point(cam) for _ in range(events.MAX_SUBSCRIPTIONS)]
    assert len(set(made)) == events.MAX_SUBSCRIPTIONS
    for operation, params in [("CreatePullPointSubscription", {}),
                              ("Subscribe", {"ConsumerReference": {
                                  "Address": "http://127.0.0.1:9/notify"}})]:
        answer = cam.call(operation, **params)
        assert answer.status == 500 and answer.error is not None
        assert (answer.error.code, answer.error.subcode) == ("env:Receiver", "ter:Action")
        assert answer.fault is not None
        assert answer.fault.message == "The camera keeps at most 64 subscriptions"
    cam.ok("Unsubscribe", made[0])
    pull_point(cam)  # room again


def test_pull_messages_on_a_push_subscription_is_not_supported(cam: EventsCamera) -> None:
    result = cam.ok("Subscribe", ConsumerReference={"Address": "http://127.0.0.1:9/n"},
                    InitialTerminationTime="PT60S")
    answer = cam.call("PullMessages", events_subscription_id(result), Timeout="PT1S",
                      MessageLimit=1)
    assert answer.error is not None and answer.error.subcode == "ter:ActionNotSupported"


# -- WS-BaseNotification push -----------------------------------------------------------------

@pytest.fixture
def consumer(farm: RunningFarm) -> Iterator[EventsConsumer]:
    server = EventsConsumer(farm)
    yield server
    server.close()


def notified(post: tuple[dict[str, str], bytes]) -> list[tuple[str, str, str]]:
    headers, data = post
    assert headers["Content-Type"] == ('application/soap+xml; charset=utf-8; '
                                       'action="http://docs.oasis-open.org/wsn/bw-2/'
                                       'NotificationConsumer/Notify"')
    assert (b"<wsa:Action>http://docs.oasis-open.org/wsn/bw-2/NotificationConsumer/Notify"
            b"</wsa:Action>") in data
    return states(events_parse_notify(data).NotificationMessage)


def test_subscribe_posts_notify_to_the_consumer(cam: EventsCamera,
                                                consumer: EventsConsumer) -> None:
    result = cam.ok("Subscribe", ConsumerReference={"Address": consumer.url},
                    InitialTerminationTime="PT60S")
    assert result.TerminationTime - result.CurrentTime == dt.timedelta(seconds=60)
    sub = events_subscription_id(result)
    assert result.SubscriptionReference.Address._value_1.endswith(
        f"/onvif/events/subscription/{sub}")
    first = consumer.wait(1)[0]
    assert notified(first) == [
        ("tns1:VideoSource/MotionAlarm", "Initialized", "false"),
        ("tns1:RuleEngine/CellMotionDetector/Motion", "Initialized", "false")]
    cam.motion(True, "corr-push")
    wait_until(lambda: len([s for p in consumer.posts[1:] for s in notified(p)]) >= 2,
               "both changes")
    got = [s for post in consumer.posts[1:] for s in notified(post)]
    assert got == [("tns1:VideoSource/MotionAlarm", "Changed", "true"),
                   ("tns1:RuleEngine/CellMotionDetector/Motion", "Changed", "true")]
    assert cam.farm.journal(member="cam", event="event", correlation_id="corr-push")[0][
        "detail"]["subscriptions"] == 1
    cam.ok("SetSynchronizationPoint", sub)
    wait_until(lambda: any(o == "Initialized" for p in consumer.posts[2:]
                           for _t, o, _v in notified(p)), "the synchronization point")
    cam.ok("Renew", sub, TerminationTime="PT120S")
    cam.ok("Unsubscribe", sub)
    count = len(consumer.posts)
    cam.motion(False)
    assert cam.farm.journal(member="cam", event="event")[-1]["detail"]["subscriptions"] == 0
    assert len(consumer.posts) == count


@pytest.mark.parametrize("status", [None, 500], ids=["closed-port", "consumer-500"])
def test_a_failing_consumer_is_retried_then_dropped(cam: EventsCamera, farm: RunningFarm,
                                                    status: int | None) -> None:
    if status is None:
        server = EventsConsumer(farm)
        url = server.url
        server.close()  # nothing listens there any more
    else:
        server = EventsConsumer(farm, status=status)
        url = server.url
    try:
        sub = events_subscription_id(cam.ok(
            "Subscribe", ConsumerReference={"Address": url}, InitialTerminationTime="PT60S"))
        dropped = farm.wait_for(30, member="cam", event="consumer_dropped")
        assert dropped["detail"]["subscription"] == sub
        failures = farm.journal(member="cam", event="notify_failed")
        assert [f["detail"]["attempt"] for f in failures] == [1, 2, 3]
        assert all(f["detail"]["consumer"] == url for f in failures)
        if status is not None:
            assert failures[0]["detail"]["error"] == "HTTP 500"
            assert len(server.posts) == 3
        assert farm.loop.call(cam.service.subscription_count) == 0
    finally:
        if status is not None:
            server.close()


# -- the INSTAR alarm -------------------------------------------------------------------------

ALARM_SCENARIO: dict[str, Any] = {
    "version": 1, "name": "events-alarm",
    "servers": [{"name": "ftp", "kind": "ftp", "users": [{"name": "cam", "password": "s"}]}],
    "emulators": [{"name": "cam", "kind": "instar-camera", "upload_server": "ftp",
                   "ssh_key_bits": 1024, "video": NO_DISCOVERY,
                   "ftp": {"ft_dirname": "alarms", "ft_autocreatedir": 1, "ft_dirmode": 0}}],
}


def test_an_alarm_shares_its_correlation_id_with_its_upload(tmp_path: Path) -> None:
    """Whatever raises the alarm (here a task under its own correlation id, as a request to
    the camera runs) finds the motion events and the FTP upload journalled under its id."""
    from emulators.core.journal import CORRELATION
    from tests.instar.clients import cgi

    farm = RunningFarm.start(ALARM_SCENARIO, tmp_path)
    try:
        cam = EventsCamera(farm)
        url = farm.ready["emulators"][0]["urls"]["http"]
        cgi(url, "cmd=setftpaction&type=snap&enable=1&interval=5")
        cgi(url, "cmd=setftpactionattr&snapcount=1")
        sub = pull_point(cam)
        pull(cam, sub)

        async def alarm() -> dict[str, Any]:
            CORRELATION.set("alarm-corr-1")
            return await cam.member.trigger_alarm()

        assert farm.loop.run(alarm())["result"] == 0
        upload = farm.wait_for_upload("ftp")
        assert upload["correlation_id"] == "alarm-corr-1"
        assert upload["path"].startswith("alarms/A_")
        journalled = farm.journal(member="cam", event="event", correlation_id="alarm-corr-1")
        assert [(e["detail"]["topic"], e["detail"]["value"], e["detail"]["subscriptions"])
                for e in journalled] == [
            ("tns1:VideoSource/MotionAlarm", True, 1),
            ("tns1:RuleEngine/CellMotionDetector/Motion", True, 1),
            ("tns1:VideoSource/MotionAlarm", False, 1),
            ("tns1:RuleEngine/CellMotionDetector/Motion", False, 1)]
        assert states(pull(cam, sub).NotificationMessage) == [
            ("tns1:VideoSource/MotionAlarm", "Changed", "true"),
            ("tns1:RuleEngine/CellMotionDetector/Motion", "Changed", "true"),
            ("tns1:VideoSource/MotionAlarm", "Changed", "false"),
            ("tns1:RuleEngine/CellMotionDetector/Motion", "Changed", "false")]
    finally:
        farm.stop()


def test_an_alarm_through_the_control_plane_sends_the_motion_events(tmp_path: Path) -> None:
    farm = RunningFarm.start(ALARM_SCENARIO, tmp_path)
    try:
        cam = EventsCamera(farm)
        sub = pull_point(cam)
        pull(cam, sub)
        out = subprocess.run(["curl", "-sS", "-X", "POST", "-H", "X-Requested-With: curl",
                              f"{farm.control_url}/emulators/cam/alarm"],
                             capture_output=True, check=True, timeout=30).stdout
        assert json.loads(out)["alarm"] == "cam"
        assert [v for _t, _o, v in states(pull(cam, sub).NotificationMessage)] == [
            "true", "true", "false", "false"]
    finally:
        farm.stop()


# -- end to end: onvif-zeep-async's own managers over HTTP --------------------------------------

def _dispatcher_missing(farm: RunningFarm) -> str | None:
    """Why the end-to-end tests cannot run: the ONVIF dispatcher (onvif/service.py) does not
    serve the device service yet (its routes answer 404). Any other answer runs them."""
    url = farm.ready["emulators"][0]["urls"]["onvif"]
    body = events_raw('<tds:GetSystemDateAndTime xmlns:tds='
                      '"http://www.onvif.org/ver10/device/wsdl"/>')
    request = urllib.request.Request(url, data=body, headers={
        "Content-Type": "application/soap+xml; charset=utf-8"})
    try:
        with urllib.request.urlopen(request, timeout=15):
            return None
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return (f"the ONVIF dispatcher is not on this branch: {url} answers 404 "
                    "(onvif/service.py serves no routes yet)")
        return None


@pytest.fixture
def live(cam: EventsCamera) -> EventsCamera:
    missing = _dispatcher_missing(cam.farm)
    if missing:
        pytest.skip(missing)
    return cam


async def _camera(cam: EventsCamera, name: str = "cam") -> ONVIFCamera:
    url = urllib.parse.urlsplit(cam.farm.ready["emulators"][
        [m["name"] for m in cam.farm.ready["emulators"]].index(name)]["urls"]["onvif"])
    camera = ONVIFCamera(url.hostname, url.port, "admin", "instar", no_cache=True)
    await camera.update_xaddrs()
    return camera


async def test_the_pull_point_manager_pulls_the_motion_events(live: EventsCamera) -> None:
    camera = await _camera(live)
    lost: list[bool] = []
    try:
        assert camera.xaddrs["http://www.onvif.org/ver10/events/wsdl"] == \
            live.url("/onvif/events")
        manager = await camera.create_pullpoint_manager(dt.timedelta(seconds=60),
                                                        lambda: lost.append(True))
        service = manager.get_service()
        first = await service.PullMessages({"Timeout": "PT5S", "MessageLimit": 100})
        assert states(first.NotificationMessage) == [
            ("tns1:VideoSource/MotionAlarm", "Initialized", "false"),
            ("tns1:RuleEngine/CellMotionDetector/Motion", "Initialized", "false")]
        live.motion(True, "corr-live")
        changed = await service.PullMessages({"Timeout": "PT5S", "MessageLimit": 100})
        assert [v for _t, o, v in states(changed.NotificationMessage)] == ["true", "true"]
        subscription = await camera.create_subscription_service("PullPointSubscription")
        renewed = await subscription.Renew(camera.get_next_termination_time(
            dt.timedelta(seconds=120)))
        assert renewed.TerminationTime - renewed.CurrentTime == dt.timedelta(seconds=120)
        await manager.set_synchronization_point()
        again = await service.PullMessages({"Timeout": "PT5S", "MessageLimit": 100})
        assert {o for _t, o, _v in states(again.NotificationMessage)} == {"Initialized"}
        await manager.shutdown()
        assert live.farm.wait_for(member="cam", event="unsubscribed")
        assert lost == []
        with pytest.raises(Fault, match="unknown or has expired"):
            await service.PullMessages({"Timeout": "PT1S", "MessageLimit": 1})
    finally:
        await camera.close()


async def test_the_events_service_answers_the_library(live: EventsCamera) -> None:
    camera = await _camera(live)
    try:
        service = await camera.create_events_service()
        capabilities = await service.GetServiceCapabilities()
        assert capabilities.WSPullPointSupport is True
        properties = await service.GetEventProperties()
        assert properties.FixedTopicSet is True
        assert len(properties.TopicSet._value_1) == 2
    finally:
        await camera.close()


async def test_the_notification_manager_gets_notify_posts(live: EventsCamera,
                                                          consumer: EventsConsumer) -> None:
    camera = await _camera(live)
    try:
        manager = await camera.create_notification_manager(
            consumer.url, dt.timedelta(seconds=60), lambda: None)
        headers, data = (await asyncio.to_thread(consumer.wait, 1))[0]
        result = manager.process(data)
        assert states(result.NotificationMessage) == [
            ("tns1:VideoSource/MotionAlarm", "Initialized", "false"),
            ("tns1:RuleEngine/CellMotionDetector/Motion", "Initialized", "false")]
        await asyncio.to_thread(live.motion, True)
        await asyncio.to_thread(wait_until, lambda: sum(
            len(notified(p)) for p in consumer.posts) >= 4, "the changes")
        changes = [s for p in consumer.posts[1:] for s in
                   states(manager.process(p[1]).NotificationMessage)]
        assert [v for _t, _o, v in changes] == ["true", "true"]
        await manager.shutdown()
        assert live.farm.wait_for(member="cam", event="unsubscribed")
    finally:
        await camera.close()


async def test_the_pull_point_quirk_fails_the_library_manager(live: EventsCamera) -> None:
    camera = await _camera(live, "quirky")
    try:
        with pytest.raises(Fault, match="could not be created"):
            await camera.create_pullpoint_manager(dt.timedelta(seconds=60), lambda: None)
    finally:
        await camera.close()


async def test_an_unknown_subscription_path_gets_a_soap_fault(live: EventsCamera) -> None:
    data = events_raw("<wsnt:Renew><wsnt:TerminationTime>PT60S</wsnt:TerminationTime>"
                      "</wsnt:Renew>")
    url = live.url("/onvif/events/subscription/0123456789abcdef")

    def post() -> tuple[int, bytes]:
        request = urllib.request.Request(url, data=data, headers={
            "Content-Type": "application/soap+xml; charset=utf-8"})
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    status, body = await asyncio.to_thread(post)
    # Unauthenticated: the dispatcher may refuse before the subscription is looked up; either
    # way the answer is a SOAP fault, never a bare HTTP error.
    assert status in (400, 401) and b"<env:Fault>" in body

"""ONVIF events: pull-point and WS-BaseNotification subscriptions, the camera's motion topics.

``OPERATIONS`` serves ``/onvif/events`` (GetServiceCapabilities, GetEventProperties,
CreatePullPointSubscription, Subscribe); ``SUBSCRIPTION_OPERATIONS`` serves a subscription's
manager at ``/onvif/events/subscription/<id>`` (PullMessages, SetSynchronizationPoint, Renew,
Unsubscribe). Termination times run on the farm clock (shown on the camera's clock, which may
be offset from it); PullMessages waits in wall time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import aiohttp

from .. import soap
from ..soap import xml_attr, xml_text
from .call import Call, Operation, Reply
from .events_parse import (
    CONCRETE,
    CONCRETE_SET,
    TopicFilter,
    duration,
    invalid,
    iso,
    termination,
)
from .xml import SOURCE_CONFIG_TOKEN, SOURCE_TOKEN

if TYPE_CHECKING:
    from ..wing import VideoWing

log = logging.getLogger("emulators.video.events")

TEV = soap.NAMESPACES["tev"]
WSNT = soap.NAMESPACES["wsnt"]
WSA10 = soap.WSA10
XS = "http://www.w3.org/2001/XMLSchema"

# Limits of one camera: subscriptions of both kinds together, messages a subscription keeps
# unread (the oldest go first), the longest PullMessages wait, the termination time furthest
# ahead a client may ask for, and the one a subscription that names none gets.
MAX_SUBSCRIPTIONS = 64
QUEUE_LIMIT = 1000
MAX_PULL_TIMEOUT = 60.0
MAX_MESSAGE_LIMIT = 1000
MAX_TERMINATION = 86400.0
DEFAULT_TERMINATION = 60.0
# A Notify the consumer does not take (refused, unreachable, no 2xx) is sent again after
# these waits; when the last try fails too, the subscription is dropped.
NOTIFY_RETRIES = (1.0, 2.0)
NOTIFY_TIMEOUT = aiohttp.ClientTimeout(total=5, connect=3)

NOTIFY_ACTION = "http://docs.oasis-open.org/wsn/bw-2/NotificationConsumer/Notify"
# Tokens the motion messages name: the camera's one video source, its configuration and its
# motion detection rule (the rule name is the one Axis and Hikvision firmwares use).
VIDEO_SOURCE = SOURCE_TOKEN  # the media services' tokens: one camera, one source
VIDEO_SOURCE_CONFIGURATION = SOURCE_CONFIG_TOKEN
ANALYTICS_CONFIGURATION = "VideoAnalyticsConfig_1"
MOTION_RULE = "MyMotionDetectorRule"

MOTION_ALARM = "tns1:VideoSource/MotionAlarm"
CELL_MOTION = "tns1:RuleEngine/CellMotionDetector/Motion"


@dataclass(frozen=True)
class Notification:
    topic: str
    utc: float  # camera time
    operation: Literal["Initialized", "Changed"]
    source: tuple[tuple[str, str], ...]
    data: tuple[tuple[str, str], ...]


@dataclass
class Subscription:
    id: str
    kind: Literal["pull", "push"]
    address: str  # the subscription manager's URL, as the client reached the camera
    expires: float  # farm clock
    topics: TopicFilter
    user: str | None
    consumer: str | None = None  # push: where Notify goes
    queue: collections.deque[Notification] = field(
        default_factory=lambda: collections.deque(maxlen=QUEUE_LIMIT))
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    puller: asyncio.Future[None] | None = None  # the PullMessages now waiting
    sender: asyncio.Task[None] | None = None  # push: the task delivering Notify
    closed: bool = False


class EventService:
    def __init__(self, wing: VideoWing) -> None:
        self.wing = wing
        self.subscriptions: dict[str, Subscription] = {}
        self.motion_active = False
        self.motion_since: float | None = None  # camera time of the last change
        self._sweeper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._unwatch_clock: Callable[[], None] | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        if self._sweeper is None:
            self._wake = asyncio.Event()
            self._unwatch_clock = self.wing.clock.on_change(self._wake.set)
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep(), name=f"{self.wing.name}-onvif-events")

    async def stop(self) -> None:
        """The camera goes down: every subscription is lost, as on a real camera's restart."""
        if self._unwatch_clock is not None:
            self._unwatch_clock()
            self._unwatch_clock = None
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        senders = []
        for sub in list(self.subscriptions.values()):
            self._close(sub)
            if sub.sender is not None:
                senders.append(sub.sender)
        self.subscriptions.clear()
        await asyncio.gather(*senders, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def subscription_count(self) -> int:
        self._expire_due()
        return len(self.subscriptions)

    # -- the camera's events ---------------------------------------------------------------
    def motion(self, active: bool, correlation: str | None) -> None:
        """Motion starts or ends: both motion topics change on every subscription whose
        filter takes them, and the change is journalled under ``correlation``."""
        self._expire_due()
        self.motion_active = active
        now = self.wing.camera_time()
        self.motion_since = now
        for note in self._state("Changed", now):
            reached = 0
            for sub in list(self.subscriptions.values()):
                if sub.topics.matches(note.topic):
                    self._deliver(sub, [note])
                    reached += 1
            value = dict(note.data)
            self.wing.record("onvif", "event", correlation_id=correlation, detail={
                "topic": note.topic, "value": next(iter(value.values())) == "true",
                "subscriptions": reached})

    def _state(self, operation: Literal["Initialized", "Changed"],
               utc: float) -> list[Notification]:
        state = "true" if self.motion_active else "false"
        return [
            Notification(MOTION_ALARM, utc, operation, (("Source", VIDEO_SOURCE),),
                         (("State", state),)),
            Notification(CELL_MOTION, utc, operation,
                         (("VideoSourceConfigurationToken", VIDEO_SOURCE_CONFIGURATION),
                          ("VideoAnalyticsConfigurationToken", ANALYTICS_CONFIGURATION),
                          ("Rule", MOTION_RULE)),
                         (("IsMotion", state),)),
        ]

    def _synchronize(self, sub: Subscription) -> None:
        """The current state of every property topic the subscription takes ("Initialized"),
        as a new subscription and SetSynchronizationPoint get it."""
        notes = [n for n in self._state("Initialized", self.wing.camera_time())
                 if sub.topics.matches(n.topic)]
        if notes:
            self._deliver(sub, notes)

    def _deliver(self, sub: Subscription, notes: list[Notification]) -> None:
        sub.queue.extend(notes)
        sub.arrived.set()

    # -- subscriptions ---------------------------------------------------------------------
    def _create(self, call: Call, kind: Literal["pull", "push"], topics: TopicFilter,
                expires: float, consumer: str | None = None) -> Subscription:
        self._expire_due()
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            raise soap.SoapError(
                "env:Receiver", "ter:Action",
                f"The camera keeps at most {MAX_SUBSCRIPTIONS} subscriptions")
        sub_id = secrets.token_hex(8)
        address = f"{self.wing.service_url('events', call.host)}/subscription/{sub_id}"
        user = call.user.name if call.user is not None else None
        sub = Subscription(sub_id, kind, address, expires, topics, user, consumer)
        self.subscriptions[sub_id] = sub
        if kind == "push":
            sub.sender = asyncio.get_running_loop().create_task(
                self._send(sub), name=f"{self.wing.name}-notify-{sub_id}")
        self._synchronize(sub)
        self._wake.set()
        self.wing.record("onvif", "subscribed", user=user, detail=self._describe(sub))
        return sub

    def _describe(self, sub: Subscription) -> dict[str, object]:
        doc: dict[str, object] = {"subscription": sub.id, "kind": sub.kind,
                                  "termination": iso(self._camera(sub.expires))}
        if sub.consumer is not None:
            doc["consumer"] = sub.consumer
        return doc

    def _camera(self, farm_time: float) -> float:
        return farm_time + self.wing.clock_offset

    def _farm(self, camera_time: float) -> float:
        return camera_time - self.wing.clock_offset

    def _lookup(self, call: Call) -> Subscription:
        sub = self.subscriptions.get(call.target or "")
        if sub is not None and sub.expires <= self.wing.clock.time():
            self._end(sub, "expired")
            sub = None
        if sub is None:
            raise unknown_subscription()
        return sub

    def _end(self, sub: Subscription, event: str) -> None:
        if self.subscriptions.get(sub.id) is sub:
            del self.subscriptions[sub.id]
        self._close(sub)
        self.wing.record("onvif", event, user=sub.user, detail=self._describe(sub))

    def _close(self, sub: Subscription) -> None:
        sub.closed = True
        sub.arrived.set()
        if sub.puller is not None and not sub.puller.done():
            sub.puller.set_result(None)
        if sub.sender is not None and sub.sender is not asyncio.current_task():
            sub.sender.cancel()

    def _expire_due(self) -> None:
        now = self.wing.clock.time()
        for sub in [s for s in self.subscriptions.values() if s.expires <= now]:
            self._end(sub, "expired")

    async def _sweep(self) -> None:
        """Ends subscriptions whose termination time the farm clock has passed; wakes at the
        next termination, or when the clock jumps."""
        clock = self.wing.clock
        while True:
            self._expire_due()
            self._wake.clear()
            timeout: float | None = None
            if self.subscriptions and not clock.frozen:
                soonest = min(s.expires for s in self.subscriptions.values())
                timeout = min(max(soonest - clock.time(), 0.05), 30.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _termination(self, element: soap.Element | None, what: str) -> float:
        """A requested termination time on the farm clock: absent or nil is the default."""
        now = self.wing.clock.time()
        if element is None or element.get(
                "{http://www.w3.org/2001/XMLSchema-instance}nil") in ("true", "1"):
            return now + DEFAULT_TERMINATION
        wanted = self._farm(termination(element.text, what, self._camera(now)))
        if wanted <= now:
            raise invalid(f"{what}: the termination time is not in the future")
        if wanted - now > MAX_TERMINATION:
            raise invalid(f"{what}: the termination time is more than {int(MAX_TERMINATION)} "
                          "seconds ahead")
        return wanted

    # -- WS-BaseNotification push ----------------------------------------------------------
    async def _send(self, sub: Subscription) -> None:
        while not sub.closed:
            await sub.arrived.wait()
            sub.arrived.clear()
            while sub.queue and not sub.closed:
                notes = list(sub.queue)
                sub.queue.clear()
                if not await self._post(sub, notes):
                    self._end(sub, "consumer_dropped")
                    return

    async def _post(self, sub: Subscription, notes: list[Notification]) -> bool:
        assert sub.consumer is not None
        header = (f"<wsa:Action>{NOTIFY_ACTION}</wsa:Action>"
                  f"<wsa:To>{xml_text(sub.consumer)}</wsa:To>")
        body = soap.envelope(f"<wsnt:Notify>{render_messages(sub, notes)}</wsnt:Notify>",
                             header)
        headers = {"Content-Type": f'application/soap+xml; charset=utf-8; '
                                   f'action="{NOTIFY_ACTION}"'}
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=NOTIFY_TIMEOUT)
        for attempt, pause in enumerate((*NOTIFY_RETRIES, None), start=1):
            problem: str
            try:
                async with self._session.post(sub.consumer, data=body, headers=headers,
                                              allow_redirects=False) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        return True
                    problem = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"[:300]
            self.wing.record("onvif", "notify_failed", user=sub.user, detail={
                "subscription": sub.id, "consumer": sub.consumer, "attempt": attempt,
                "error": problem})
            if pause is None:
                return False
            await asyncio.sleep(pause)
        return False  # pragma: no cover - the loop returns


# -- replies ------------------------------------------------------------------------------

def unknown_subscription() -> soap.SoapError:
    """A subscription manager that is not there (expired, unsubscribed, never made): the
    request names a resource the camera does not have. (WS-BaseNotification's own
    wsrf-rw:ResourceUnknownFault needs its prefix declared on the fault envelope, which the
    codec's envelopes do not declare; a client resolves a fault subcode's prefix.)"""
    return soap.SoapError("env:Sender", "ter:InvalidArgVal",
                          "The subscription is unknown or has expired")


def _simple_items(items: tuple[tuple[str, str], ...]) -> str:
    return "".join(f"<tt:SimpleItem Name={xml_attr(name)} Value={xml_attr(value)}/>"
                   for name, value in items)


def render_messages(sub: Subscription, notes: list[Notification]) -> str:
    return "".join(
        f"<wsnt:NotificationMessage>"
        f"<wsnt:SubscriptionReference><wsa:Address>{xml_text(sub.address)}</wsa:Address>"
        f"</wsnt:SubscriptionReference>"
        f"<wsnt:Topic Dialect=\"{CONCRETE_SET}\">{note.topic}</wsnt:Topic>"
        f"<wsnt:Message><tt:Message UtcTime=\"{iso(note.utc)}\" "
        f"PropertyOperation=\"{note.operation}\">"
        f"<tt:Source>{_simple_items(note.source)}</tt:Source>"
        f"<tt:Data>{_simple_items(note.data)}</tt:Data>"
        f"</tt:Message></wsnt:Message></wsnt:NotificationMessage>"
        for note in notes)


def _action(call: Call, action: str) -> str:
    """The WS-Addressing header of a reply: its Action, and RelatesTo the request's
    MessageID when it sent one."""
    header = f"<wsa:Action>{action}</wsa:Action>"
    message_id = soap.text_of(call.message.header, f"{{{WSA10}}}MessageID")
    if message_id:
        header += f"<wsa:RelatesTo>{xml_text(message_id)}</wsa:RelatesTo>"
    return header


def _events(call: Call) -> EventService:
    return call.wing.events


# -- /onvif/events ------------------------------------------------------------------------

def capabilities() -> str:
    """The events service's capabilities, as GetServiceCapabilities, GetServices and
    GetCapabilities all show them. PullPoint is advertised even where it fails (the
    pullpoint_fails quirk): the camera in the field claims it."""
    return (f"<tev:Capabilities WSSubscriptionPolicySupport=\"false\" "
            f"WSPullPointSupport=\"true\" WSPausableSubscriptionManagerInterfaceSupport=\"false\" "
            f"MaxNotificationProducers=\"{MAX_SUBSCRIPTIONS}\" "
            f"MaxPullPoints=\"{MAX_SUBSCRIPTIONS}\" PersistentNotificationStorage=\"false\"/>")


async def get_service_capabilities(call: Call) -> str | Reply:
    return (f"<tev:GetServiceCapabilitiesResponse>{capabilities()}"
            "</tev:GetServiceCapabilitiesResponse>")


def _description(source: tuple[tuple[str, str], ...], data: tuple[tuple[str, str], ...]) -> str:
    def items(pairs: tuple[tuple[str, str], ...]) -> str:
        return "".join(f"<tt:SimpleItemDescription Name=\"{name}\" Type=\"{kind}\"/>"
                       for name, kind in pairs)

    return (f"<tt:MessageDescription IsProperty=\"true\"><tt:Source>{items(source)}"
            f"</tt:Source><tt:Data>{items(data)}</tt:Data></tt:MessageDescription>")


TOPIC_SET = (
    "<wstop:TopicSet>"
    "<tns1:VideoSource wstop:topic=\"false\"><MotionAlarm wstop:topic=\"true\">"
    + _description((("Source", "tt:ReferenceToken"),), (("State", "xs:boolean"),))
    + "</MotionAlarm></tns1:VideoSource>"
    "<tns1:RuleEngine wstop:topic=\"false\"><CellMotionDetector wstop:topic=\"false\">"
    "<Motion wstop:topic=\"true\">"
    + _description((("VideoSourceConfigurationToken", "tt:ReferenceToken"),
                    ("VideoAnalyticsConfigurationToken", "tt:ReferenceToken"),
                    ("Rule", "xs:string")), (("IsMotion", "xs:boolean"),))
    + "</Motion></CellMotionDetector></tns1:RuleEngine>"
    "</wstop:TopicSet>")


async def get_event_properties(call: Call) -> str | Reply:
    # xs is declared here: the message descriptions name XML Schema types.
    body = (f"<tev:GetEventPropertiesResponse xmlns:xs=\"{XS}\">"
            "<tev:TopicNamespaceLocation>http://www.onvif.org/onvif/ver10/topics/topicns.xml"
            "</tev:TopicNamespaceLocation>"
            "<wsnt:FixedTopicSet>true</wsnt:FixedTopicSet>"
            f"{TOPIC_SET}"
            f"<wsnt:TopicExpressionDialect>{CONCRETE_SET}</wsnt:TopicExpressionDialect>"
            f"<wsnt:TopicExpressionDialect>{CONCRETE}</wsnt:TopicExpressionDialect>"
            "<tev:MessageContentFilterDialect>"
            "http://www.onvif.org/ver10/tev/messageContentFilter/ItemFilter"
            "</tev:MessageContentFilterDialect>"
            "<tev:MessageContentSchemaLocation>"
            "http://www.onvif.org/onvif/ver10/schema/onvif.xsd"
            "</tev:MessageContentSchemaLocation>"
            "</tev:GetEventPropertiesResponse>")
    return Reply(body, _action(
        call, "http://www.onvif.org/ver10/events/wsdl/EventPortType/GetEventPropertiesResponse"))


def _times(service: EventService, sub: Subscription) -> str:
    now = service.wing.camera_time()
    return (f"<wsnt:CurrentTime>{iso(now)}</wsnt:CurrentTime>"
            f"<wsnt:TerminationTime>{iso(service._camera(sub.expires))}</wsnt:TerminationTime>")


async def create_pull_point_subscription(call: Call) -> str | Reply:
    service = _events(call)
    if service.wing.options.quirks.pullpoint_fails:
        # Field reports of INSTAR IN-8015: the pull point is advertised but never made.
        raise soap.SoapError("env:Receiver", "ter:Action",
                             "The pull point subscription could not be created")
    topics = TopicFilter.parse(call.body.find(f"{{{TEV}}}Filter"))
    expires = service._termination(call.body.find(f"{{{TEV}}}InitialTerminationTime"),
                                   "InitialTerminationTime")
    sub = service._create(call, "pull", topics, expires)
    body = (f"<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference>"
            f"<wsa:Address>{xml_text(sub.address)}</wsa:Address></tev:SubscriptionReference>"
            f"{_times(service, sub)}</tev:CreatePullPointSubscriptionResponse>")
    return Reply(body, _action(call, "http://www.onvif.org/ver10/events/wsdl/EventPortType/"
                                     "CreatePullPointSubscriptionResponse"))


def _consumer(body: soap.Element) -> str:
    address = soap.text_of(body, f"{{{WSNT}}}ConsumerReference/{{{WSA10}}}Address") or ""
    try:
        parts = urlsplit(address)
        _ = parts.port  # a port that is not a number (or out of range) raises
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid or len(address) > 2048 or any(c.isspace() for c in address):
        raise invalid(f"ConsumerReference: {address[:200]!r} is not an http(s) URL")
    return address


async def subscribe(call: Call) -> str | Reply:
    service = _events(call)
    consumer = _consumer(call.body)
    topics = TopicFilter.parse(call.body.find(f"{{{WSNT}}}Filter"))
    expires = service._termination(call.body.find(f"{{{WSNT}}}InitialTerminationTime"),
                                   "InitialTerminationTime")
    sub = service._create(call, "push", topics, expires, consumer)
    body = (f"<wsnt:SubscribeResponse><wsnt:SubscriptionReference>"
            f"<wsa:Address>{xml_text(sub.address)}</wsa:Address></wsnt:SubscriptionReference>"
            f"{_times(service, sub)}</wsnt:SubscribeResponse>")
    return Reply(body, _action(
        call, "http://docs.oasis-open.org/wsn/bw-2/NotificationProducer/SubscribeResponse"))


# -- /onvif/events/subscription/<id> ------------------------------------------------------

def _message_limit(text: str | None) -> int:
    value = (text or "").strip()
    if not value.lstrip("+-").isdigit() or len(value) > 11:
        raise invalid(f"MessageLimit: {value[:64]!r} is not an xs:int")
    limit = int(value)
    if not 1 <= limit <= 2**31 - 1:
        raise invalid(f"MessageLimit: {limit} is not a positive xs:int")
    # A camera may return fewer messages than asked for (events.wsdl, PullMessages).
    return min(limit, MAX_MESSAGE_LIMIT)


async def pull_messages(call: Call) -> str | Reply:
    """Queued messages at once; with none queued, waits up to Timeout (at most a minute) for
    one. A second PullMessages on the same subscription answers the waiting one (with what is
    queued, possibly nothing) and waits in its place."""
    service = _events(call)
    sub = service._lookup(call)
    if sub.kind != "pull":
        raise soap.action_not_supported(
            "PullMessages is served by pull-point subscriptions only")
    timeout = min(duration(soap.text_of(call.body, f"{{{TEV}}}Timeout"), "Timeout"),
                  MAX_PULL_TIMEOUT)
    limit = _message_limit(soap.text_of(call.body, f"{{{TEV}}}MessageLimit"))
    if sub.puller is not None and not sub.puller.done():
        sub.puller.set_result(None)
    if not sub.queue and timeout > 0:
        puller: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sub.puller = puller
        sub.arrived.clear()
        arrived = asyncio.ensure_future(sub.arrived.wait())
        try:
            await asyncio.wait((puller, arrived), timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            arrived.cancel()
            if sub.puller is puller:
                sub.puller = None
        sub = service._lookup(call)  # it may have ended meanwhile
    notes = [sub.queue.popleft() for _ in range(min(limit, len(sub.queue)))]
    if sub.queue:
        sub.arrived.set()
    body = (f"<tev:PullMessagesResponse>"
            f"<tev:CurrentTime>{iso(service.wing.camera_time())}</tev:CurrentTime>"
            f"<tev:TerminationTime>{iso(service._camera(sub.expires))}</tev:TerminationTime>"
            f"{render_messages(sub, notes)}</tev:PullMessagesResponse>")
    return Reply(body, _action(call, "http://www.onvif.org/ver10/events/wsdl/"
                                     "PullPointSubscription/PullMessagesResponse"))


async def set_synchronization_point(call: Call) -> str | Reply:
    service = _events(call)
    sub = service._lookup(call)
    service._synchronize(sub)
    return Reply("<tev:SetSynchronizationPointResponse/>", _action(
        call, "http://www.onvif.org/ver10/events/wsdl/PullPointSubscription/"
              "SetSynchronizationPointResponse"))


async def renew(call: Call) -> str | Reply:
    service = _events(call)
    sub = service._lookup(call)
    element = call.body.find(f"{{{WSNT}}}TerminationTime")
    if element is None:
        raise invalid("Renew: TerminationTime is missing")
    sub.expires = service._termination(element, "TerminationTime")
    service._wake.set()
    service.wing.record("onvif", "renewed", user=sub.user, detail=service._describe(sub))
    now = service.wing.camera_time()
    body = (f"<wsnt:RenewResponse>"
            f"<wsnt:TerminationTime>{iso(service._camera(sub.expires))}</wsnt:TerminationTime>"
            f"<wsnt:CurrentTime>{iso(now)}</wsnt:CurrentTime></wsnt:RenewResponse>")
    return Reply(body, _action(
        call, "http://docs.oasis-open.org/wsn/bw-2/SubscriptionManager/RenewResponse"))


async def unsubscribe(call: Call) -> str | Reply:
    service = _events(call)
    sub = service._lookup(call)
    service._end(sub, "unsubscribed")
    return Reply("<wsnt:UnsubscribeResponse/>", _action(
        call, "http://docs.oasis-open.org/wsn/bw-2/SubscriptionManager/UnsubscribeResponse"))


# ONVIF Core "Access classes": the event service's operations are READ_MEDIA.
OPERATIONS: dict[str, Operation] = {
    "GetServiceCapabilities": Operation(get_service_capabilities, "read_media"),
    "GetEventProperties": Operation(get_event_properties, "read_media"),
    "CreatePullPointSubscription": Operation(create_pull_point_subscription, "read_media"),
    "Subscribe": Operation(subscribe, "read_media"),
}
SUBSCRIPTION_OPERATIONS: dict[str, Operation] = {
    "PullMessages": Operation(pull_messages, "read_media"),
    "SetSynchronizationPoint": Operation(set_synchronization_point, "read_media"),
    "Renew": Operation(renew, "read_media"),
    "Unsubscribe": Operation(unsubscribe, "read_media"),
}

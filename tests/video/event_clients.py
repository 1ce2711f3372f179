"""The events tests' view of the client side: the exact requests onvif-zeep-async sends (built
by zeep from the events WSDL the library ships, with the library's own WS-Addressing plugin and
UsernameToken), handler calls on a running camera's wing, and every reply read back by zeep
against the same WSDL, as the client reads it."""

from __future__ import annotations

import asyncio
import functools
import os
from dataclasses import dataclass, field
from typing import Any

import onvif
import zeep
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from lxml import etree
from onvif.client import UsernameDigestTokenDtDiff
from onvif.wsa import WsAddressingIfMissingPlugin
from zeep.exceptions import Fault

from emulators.core.video import soap
from emulators.core.video.onvif import events
from emulators.core.video.onvif.call import Call, Reply
from emulators.testing import RunningFarm

WSDL = os.path.join(os.path.dirname(onvif.__file__), "wsdl", "events.wsdl")
TEV = "{http://www.onvif.org/ver10/events/wsdl}"
BINDINGS = {
    "events": f"{TEV}EventBinding",
    "notification": f"{TEV}NotificationProducerBinding",
    "pullpoint": f"{TEV}PullPointSubscriptionBinding",
    "subscription": f"{TEV}SubscriptionManagerBinding",
    "consumer": f"{TEV}NotificationConsumerBinding",
}
# The binding of each operation, as onvif-zeep-async reaches it (create_events_service,
# create_notification_service, create_pullpoint_service, create_subscription_service).
BINDING_OF = {
    "GetServiceCapabilities": "events", "GetEventProperties": "events",
    "CreatePullPointSubscription": "events", "Subscribe": "notification",
    "PullMessages": "pullpoint", "SetSynchronizationPoint": "pullpoint",
    "Renew": "subscription", "Unsubscribe": "subscription",
}


@functools.cache
def events_zeep(user: str = "admin", password: str = "instar") -> zeep.Client:
    """A zeep client on the library's events.wsdl, strict: a reply that strays from the
    schema fails here even where the library's lenient parse would let it pass."""
    settings = zeep.Settings(strict=True, xml_huge_tree=True)
    return zeep.Client(WSDL, settings=settings,
                       wsse=UsernameDigestTokenDtDiff(user, password, use_digest=True),
                       plugins=[WsAddressingIfMissingPlugin()])


def events_request(operation: str, address: str, **params: Any) -> bytes:
    """The envelope onvif-zeep-async posts for ``operation`` to ``address``."""
    client = events_zeep()
    binding = client.wsdl.bindings[BINDINGS[BINDING_OF[operation]]]
    envelope, _headers = binding._create(operation, (), params, client=client,
                                         options={"address": address})
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


@dataclass
class _Response:
    """What zeep's process_reply reads of an HTTP response."""

    content: bytes
    status_code: int = 200
    headers: dict[str, str] = field(
        default_factory=lambda: {"Content-Type": soap.CONTENT_TYPE})
    encoding: str = "utf-8"


def events_parse_reply(operation: str, data: bytes, status: int = 200) -> Any:
    """The reply as the client's zeep reads it: the result object, or zeep's Fault raised."""
    client = events_zeep()
    binding = client.wsdl.bindings[BINDINGS[BINDING_OF[operation]]]
    return binding.process_reply(client, binding.get(operation), _Response(data, status))


def events_parse_notify(data: bytes) -> Any:
    """A Notify POSTed to a consumer, read strictly as the WSDL's NotificationConsumer input."""
    client = events_zeep()
    binding = client.wsdl.bindings[BINDINGS["consumer"]]
    envelope = etree.fromstring(data)
    return binding.get("Notify").input.deserialize(envelope)


@dataclass
class EventsAnswer:
    """One handler call: the HTTP status and bytes the camera sends, zeep's reading of them."""

    status: int
    data: bytes
    header: str = ""
    result: Any = None
    fault: Fault | None = None
    error: soap.SoapError | None = None


class EventsCamera:
    """Calls the events handlers of one running camera as the dispatcher does: a ``Call`` of
    the client's real request bytes, the handler's reply or SoapError made into the envelope
    the camera sends, and zeep's reading of it."""

    def __init__(self, farm: RunningFarm, name: str = "cam") -> None:
        self.farm = farm
        self.member = farm.farm.members[name]
        self.wing = self.member.video

    @property
    def service(self) -> events.EventService:
        return self.wing.events

    def url(self, path: str = "/onvif/events") -> str:
        return f"{self.wing.onvif_base()}{path}"

    def call(self, operation: str, target: str | None = None, *, host: str | None = None,
             data: bytes | None = None, user: str | None = "admin",
             **params: Any) -> EventsAnswer:
        path = "/onvif/events" if target is None else f"/onvif/events/subscription/{target}"
        if data is None:
            data = events_request(operation, self.url(path), **params)
        table = events.OPERATIONS if target is None else events.SUBSCRIPTION_OPERATIONS
        port = self.url().rsplit(":", 1)[1].split("/")[0]
        wing = self.wing

        async def run() -> EventsAnswer:
            request = make_mocked_request(
                "POST", path, headers={"Host": f"{host or wing.url_host}:{port}",
                                       "Content-Type": soap.CONTENT_TYPE})
            message = soap.parse(data)
            caller = wing.facts.user(user) if user else None
            call = Call(wing, request, message, caller,
                        "events" if target is None else "subscription", target)
            try:
                reply = await table[message.operation].handler(call)
            except soap.SoapError as exc:
                return EventsAnswer(exc.status, soap.fault_envelope(exc), error=exc)
            if isinstance(reply, Reply):
                return EventsAnswer(200, soap.envelope(reply.body, reply.header),
                                    header=reply.header)
            return EventsAnswer(200, soap.envelope(reply))

        answer = self.farm.loop.run(run(), timeout=120)
        try:
            answer.result = events_parse_reply(operation, answer.data, answer.status)
        except Fault as fault:
            answer.fault = fault
        return answer

    def ok(self, operation: str, target: str | None = None, **kwargs: Any) -> Any:
        answer = self.call(operation, target, **kwargs)
        assert answer.fault is None, (answer.status, answer.data)
        return answer.result

    def motion(self, active: bool, correlation: str | None = None) -> None:
        self.farm.loop.call(lambda: self.service.motion(active, correlation))


def events_subscription_id(result: Any) -> str:
    address = result.SubscriptionReference.Address._value_1
    return address.rsplit("/", 1)[1]


class EventsConsumer:
    """An HTTP notification consumer on the farm's loop: keeps every POST it gets and answers
    with ``status``."""

    def __init__(self, farm: RunningFarm, status: int = 200) -> None:
        self.farm = farm
        self.status = status
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self._arrived: asyncio.Event | None = None

        async def start() -> tuple[web.AppRunner, int]:
            self._arrived = asyncio.Event()
            app = web.Application()
            app.router.add_post("/notify", self._take)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert server is not None
            return runner, server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        self._runner, self.port = farm.loop.run(start())
        self.url = f"http://127.0.0.1:{self.port}/notify"

    async def _take(self, request: web.Request) -> web.Response:
        self.posts.append((dict(request.headers), await request.read()))
        assert self._arrived is not None
        self._arrived.set()
        return web.Response(status=self.status)

    def wait(self, count: int, timeout: float = 15) -> list[tuple[dict[str, str], bytes]]:
        async def wait() -> None:
            assert self._arrived is not None
            while len(self.posts) < count:
                self._arrived.clear()
                await self._arrived.wait()

        self.farm.loop.run(asyncio.wait_for(wait(), timeout), timeout + 5)
        return self.posts

    def close(self) -> None:
        self.farm.loop.run(self._runner.cleanup())


def events_topic_filter(expression: str, dialect: str) -> dict[str, Any]:
    """The Filter argument a zeep caller passes for one topic expression."""
    element = events_zeep().get_element("{http://docs.oasis-open.org/wsn/b-2}TopicExpression")
    return {"_value_1": [zeep.xsd.AnyObject(element, element(_value_1=expression,
                                                             Dialect=dialect))]}


def events_raw(body: str) -> bytes:
    """A hand-made SOAP 1.2 request with ``body`` (hostile values zeep would not send)."""
    return (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope '
            f'xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
            f'xmlns:tev="http://www.onvif.org/ver10/events/wsdl" '
            f'xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2" '
            f'xmlns:wsa="http://www.w3.org/2005/08/addressing">'
            f"<s:Body>{body}</s:Body></s:Envelope>").encode()

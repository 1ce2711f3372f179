"""IoTDA device access over MQTT: the member's listeners (1883 plain, 8883 TLS), who may
connect (``models/access.py``), what a device's messages do, and what the REST API sends down.

- A properties report updates the reported side of the shadow; the desired properties the
  device does not have yet are delivered as a property set when it connects or reports (the
  shadow page: "synchronized to the device when the device goes online or reports data").
- CreateCommand, UpdateProperties and ListProperties send their request and wait for the
  device's response on ``.../response/request_id={id}``; the journal ties request and
  response to the REST call's correlation id.
- CreateMessage delivers at once to an online device, else when it connects (within its ttl).
- ``$time_sync`` events are answered on the farm clock.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..core.journal import CORRELATION
from ..core.mqtt.access import MqttAccess, Upstream, Verdict
from ..core.mqtt.broker import MqttListener
from ..core.mqtt.hooks import ConnectInfo
from ..core.mqtt.packets import topic_matches
from ..core.mqtt.session import MqttSession
from . import topics
from .exceptions import CommandTimeout, DeviceOffline
from .models.access import (
    KEEP_ALIVE,
    CaCache,
    certificate_refusal,
    fingerprints,
    parse_client_id,
    password_matches,
    timestamp_fits,
)
from .models.devices import now_text

if TYPE_CHECKING:
    from .emulator import IotdaService
    from .models.devices import Device

log = logging.getLogger("emulators.iotda.access")

# Table "MQTT协议支持说明": 1 MB per message, QoS 0/1, no retained messages, no will.
MAX_MESSAGE = 1024 * 1024


Handler = Callable[[Upstream["Device"]], Awaitable[Awaitable[Any] | None]]


class IotdaAccess(MqttAccess):
    member: IotdaService

    def __init__(self, member: IotdaService) -> None:
        super().__init__(member)
        self.cas = CaCache()
        # Between check_connect and connected: client id -> the fingerprint to record on
        # first use (None: none to record).
        self._record_fingerprint: dict[str, str | None] = {}
        # CreateMessage records being sent now (by id()): each is delivered once.
        self._in_flight: set[int] = set()

    # -- listeners -----------------------------------------------------------------------------
    async def start(self) -> None:
        await self.start_listeners(self.member.options.mqtt_port,
                                   self.member.options.mqtts_port)

    def new_listener(self, host: str, port: int, tls: Any) -> MqttListener:
        listener = super().new_listener(host, port, tls)
        listener.max_message = MAX_MESSAGE
        options = self.member.options
        listener.handshake_timeout = options.mqtt_handshake_timeout
        listener.max_handshakes = options.mqtt_max_handshakes
        listener.write_timeout = options.mqtt_write_timeout
        return listener

    def trust(self) -> tuple[tuple[int, ...], str]:
        """Every device CA uploaded now, verified or not (the CONNECT check tells them
        apart; a certificate of no uploaded CA fails the handshake)."""
        records = list(self.member.device_cas.records.values())
        return tuple(id(r) for r in records), self.cas.trust_pem(records)

    # -- who may connect -----------------------------------------------------------------------
    async def check_connect(self, info: ConnectInfo) -> Verdict:
        low, high = KEEP_ALIVE
        if not low <= info.keep_alive <= high:
            return self.refuse("keep_alive", f"keep-alive {info.keep_alive} s is outside "
                                             f"{low}..{high}")
        client = parse_client_id(info.client_id)
        if client is None:
            return self.refuse("bad_client_id", f"client id {info.client_id!r} is not "
                                                "{device_id}_0_{0|1}_{YYYYMMDDHH}")
        if info.username != client.device_id:
            return self.refuse("unknown_device", f"user name {info.username!r} is not the "
                                                 "client id's device")
        device = self.member.devices.find(client.device_id)
        if device is None:
            return self.refuse("unknown_device", f"no device {client.device_id!r}")
        now = self.member.clock.time()
        if device.frozen:
            return self.refuse("frozen", "the device is frozen")
        tolerance = self.member.options.mqtt_clock_tolerance
        if client.check_time and not any(timestamp_fits(client.timestamp, reading, tolerance)
                                         for reading in self.member.freshness_readings()):
            return self.refuse("clock_skew", f"timestamp {client.timestamp} is not the farm "
                                             "clock's hour (nor the host's)")
        record: str | None = None
        if device.auth_type == "SECRET":
            if device.secure_access and not info.tls:
                return self.refuse("insecure", "secure_access devices connect over TLS only")
            if not password_matches(info.password, device, client.timestamp):
                return self.refuse("bad_password", "the password is not "
                                                   "HMAC-SHA256(timestamp, secret)")
        else:
            der = info.peer_certificate
            if der is None:
                return self.refuse("no_certificate", "no client certificate")
            cas = list(self.member.device_cas.records.values())
            case = certificate_refusal(der, device, cas, self.cas, now)
            if case is not None:
                return self.refuse(case, {
                    "unknown_ca": "the certificate chains to no CA of the device's project",
                    "unverified_ca": "its CA is not verified",
                    "expired_certificate": "the certificate or its CA is not valid on the "
                                           "farm clock",
                    "fingerprint": "the certificate is not the device's fingerprint",
                }.get(case, case))
            if device.fingerprint is None and device.secondary_fingerprint is None:
                record = fingerprints(der)[0]  # SHA-1, as the platform stores it
        self._record_fingerprint[info.client_id] = record
        return Verdict.accept(device.device_id)

    # -- sessions ------------------------------------------------------------------------------
    async def connected(self, session: MqttSession, identity: str) -> None:
        device = self.member.devices.find(identity)
        if device is None:
            session.close("the device was deleted")
            return
        now = self.member.clock.time()
        fingerprint = self._record_fingerprint.pop(session.client_id, None)
        self.member.devices.went_online(device, now, fingerprint)
        await self.member.save()
        self.member.forwarding.status_update(device, True, now)
        await self.push_delta(session, device)
        due = self.member.devices.due_messages(device, now)
        if due:
            # Delivered from a task of their own: DELIVERED needs the device's PUBACK, which
            # this session's task reads once this hook returns.
            self.spawn(session, self._deliver_all(session, device, due))

    async def _deliver_all(self, session: MqttSession, device: Device,
                           records: list[dict[str, Any]]) -> None:
        for record in records:
            await self.deliver(session, device, record)
        await self.member.save()

    async def disconnected(self, session: MqttSession, identity: str, reason: str) -> None:
        device = self.member.devices.find(identity)
        if device is not None and self.session_of(identity) is None:
            now = self.member.clock.time()
            self.member.devices.went_offline(device, now)
            await self.member.save()
            self.member.forwarding.status_update(device, False, now)

    def may(self, session: MqttSession, identity: str, action: str, topic: str) -> bool:
        if action == "subscribe" and topic not in session.subscriptions and len(
                session.subscriptions) >= self.member.options.mqtt_max_subscriptions:
            return False
        if topic.startswith(topics.base(identity)):
            return True
        # Other devices' and system topics are refused; custom topics outside $oc are
        # allowed (the default device policy), up to the documented 128 bytes.
        return not topic.startswith("$") and len(topic.encode()) <= 128

    def correlation_for(self, identity: str, topic: str) -> str | None:
        if "/response/" not in topic:
            return None  # only responses continue a REST call's chain
        m = topics.UPSTREAM.fullmatch(topic)
        if m is None:
            return None
        r = topics.RESPONSE.fullmatch(m["rest"])
        pending = self.pending.get(r["request_id"]) if r else None
        return pending.correlation_id if pending is not None else None

    # -- upstream ------------------------------------------------------------------------------
    async def handle(self, session: MqttSession, identity: str, topic: str,
                     payload: bytes) -> Awaitable[Any] | None:
        """What an upstream message does (``topics.HANDLERS``); a change of state returns its
        save, which the message's PUBACK waits for (the session reads on meanwhile)."""
        m = topics.UPSTREAM.fullmatch(topic)
        if m is None or m["device_id"] != identity:
            # A custom topic outside $oc: journalled, and forwarded as a device message (the
            # rule API's example filters on a custom topic).
            device = self.member.devices.find(identity) if m is None else None
            if device is not None:
                self.member.forwarding.message_report(device, topic, payload)
            return None
        device = self.member.devices.find(identity)
        if device is None:
            session.close("the device was deleted")
            return None
        found = topics.HANDLERS.route(m["rest"])
        if found is None:
            if m["rest"].startswith("user/"):  # $oc/devices/{device_id}/user/...
                self.member.forwarding.message_report(device, topic, payload)
            return None
        name, match = found
        handler: Handler = getattr(self, name)
        return await handler(Upstream(session, identity, device, topic, match, payload,
                                      self.member.clock.time()))

    async def on_properties_report(self, up: Upstream[Device]) -> Awaitable[Any] | None:
        doc = _json(up.payload)
        if not isinstance(doc, dict):
            return None
        limit = self.member.options.shadow_unmodelled_properties
        taken, dropped = self.member.devices.report(up.device, doc.get("services"), up.now,
                                                    limit)
        self.member.forwarding.property_report(up.device, doc.get("services"), up.now)
        if dropped:
            self.record(up.session.info, "dropped", path=up.topic, detail={
                "client_id": up.session.client_id, "dropped": len(dropped),
                "properties": dropped[:20],
                "reason": f"properties the product model does not define, over the "
                          f"shadow's {limit} (shadow_unmodelled_properties)"})
        if taken:
            await self.push_delta(up.session, up.device)
            return self.member.saving()
        return None

    async def on_message_up(self, up: Upstream[Device]) -> Awaitable[Any] | None:
        self.member.devices.keep_received(up.device, {
            "received_time": now_text(up.now),
            "payload": up.payload.decode("utf-8", "replace")[:4096]})
        self.member.forwarding.message_report(up.device, up.topic, up.payload)
        return self.member.saving()

    async def on_event_up(self, up: Upstream[Device]) -> Awaitable[Any] | None:
        await self._event(up.session, up.device, _json(up.payload), up.now)
        return None

    async def on_response(self, up: Upstream[Device]) -> Awaitable[Any] | None:
        assert up.match is not None
        doc = _json(up.payload)
        self.answer(up.match["request_id"], up.identity, doc if doc is not None
                    else up.payload.decode("utf-8", "replace"), up.match["what"])
        return None

    async def on_shadow_get(self, up: Upstream[Device]) -> Awaitable[Any] | None:
        assert up.match is not None
        doc = _json(up.payload)
        service_id = doc.get("service_id") if isinstance(doc, dict) else None
        reply = {"object_device_id": up.identity, "shadow": up.device.shadow_entries(
            service_id if isinstance(service_id, str) else None)}
        await self.send(up.session, topics.shadow_response(up.identity, up.match["request_id"]),
                        reply)
        return None

    async def _event(self, session: MqttSession, device: Device, doc: Any, now: float) -> None:
        services = doc.get("services") if isinstance(doc, dict) else None
        for service in services if isinstance(services, list) else ():
            if not isinstance(service, dict) or service.get("service_id") != "$time_sync":
                continue
            if service.get("event_type") != "time_sync_request":
                continue
            paras = service.get("paras")
            sent = paras.get("device_send_time") if isinstance(paras, dict) else None
            millis = int(now * 1000)
            await self.send(session, topics.events_down(device.device_id), {
                "object_device_id": device.device_id, "services": [{
                    "service_id": "$time_sync", "event_type": "time_sync_response",
                    "event_time": _event_time(now),
                    "paras": {"device_send_time": sent, "server_recv_time": millis,
                              "server_send_time": millis}}]})

    # -- downstream ----------------------------------------------------------------------------
    @staticmethod
    def qos_for(session: MqttSession, topic: str) -> int:
        """QoS 0 when a subscription of the device's at QoS 0 matches ``topic``, else 1."""
        return 0 if any(q == 0 for f, q in session.subscriptions.items()
                        if topic_matches(f, topic)) else 1

    async def send(self, session: MqttSession, topic: str, doc: Any, *,
                   raw: bytes | None = None) -> None:
        await self.send_json(session, topic, doc, qos=self.qos_for(session, topic), raw=raw)

    async def push_delta(self, session: MqttSession, device: Device) -> None:
        delta = device.shadow_delta()
        if delta:
            request_id = str(uuid.uuid4())
            await self.send(session, topics.properties_set(device.device_id, request_id),
                            {"object_device_id": device.device_id, "services": delta})

    async def deliver(self, session: MqttSession, device: Device,
                      record: dict[str, Any]) -> None:
        """One CreateMessage message to the connected device: DELIVERED once it has it. Once:
        a message created while the device's connection is being set up is both delivered by
        the call and due at the connection's start."""
        key = id(record)
        if record["status"] != "PENDING" or key in self._in_flight:
            return
        self._in_flight.add(key)
        try:
            await self.send(session, record["mqtt_topic"], None,
                            raw=self.member.devices.message_payload(device, record))
        except (ConnectionError, TimeoutError):
            return  # stays PENDING: delivered on the next connection
        finally:
            self._in_flight.discard(key)
        self.member.devices.message_done(device, record, "DELIVERED",
                                         self.member.clock.time())

    async def request(self, device: Device, what: str, topic: str, doc: dict[str, Any]
                      ) -> tuple[str, Any]:
        """Send a platform request and wait for the device's response: (request id, the
        response document) or (request id, None) when it did not answer in time."""
        session = self.session_of(device.device_id)
        if session is None:
            raise DeviceOffline(device.device_id)
        request_id = topic.rsplit("request_id=", 1)[1]
        # The send is inside the deadline: a device that stopped reading holds it up (until
        # the broker's write timeout ends its session), not the caller.
        response = await self.ask(
            session, device.device_id, request_id, topic,
            {"object_device_id": device.device_id, **doc},
            wait=self.member.options.command_timeout, qos=self.qos_for(session, topic),
            what=what, correlation_id=CORRELATION.get())
        return request_id, response

    async def command(self, device: Device, doc: dict[str, Any]) -> dict[str, Any]:
        """CreateCommand's reply."""
        request_id = str(uuid.uuid4())
        request_id, response = await self.request(
            device, "commands", topics.command(device.device_id, request_id), doc)
        if response is None:
            return {"command_id": request_id, "error_code": CommandTimeout.code,
                    "error_msg": CommandTimeout.message}
        return {"command_id": request_id, "response": response}

    async def properties(self, device: Device, what: str, doc: dict[str, Any]
                         ) -> dict[str, Any]:
        """UpdateProperties' (``properties/set``) or ListProperties' (``properties/get``)
        reply."""
        request_id = str(uuid.uuid4())
        topic = (topics.properties_set if what == "properties/set"
                 else topics.properties_get)(device.device_id, request_id)
        request_id, response = await self.request(device, what, topic, doc)
        if response is None:
            return {"request_id": request_id, "error_code": CommandTimeout.code,
                    "error_msg": CommandTimeout.message}
        return {"request_id": request_id, "response": response}


def _json(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return None


def _event_time(now: float) -> str:
    """The SDK's event time form (``DeviceEvent.event_time``: ``yyyyMMddTHHmmssZ``)."""
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y%m%dT%H%M%SZ")

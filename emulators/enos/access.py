"""EnOS device access over MQTT: 11883 (plain, secret login) and 18883 (TLS; a client
certificate issued by this emulator for bi-directional products), on the farm's broker
(``core/mqtt.py``) with the shared journal, faults and session list (``core/mqttaccess.py``).

What a device's messages do (README.md "Device access (MQTT)"): measure points (single, batch,
resume) and events are kept as the device's last values, attributes are updated, queried and
deleted, sub-devices log in and out, OTA messages are answered; each request gets
``{"id", "code": 200, "data"}`` on its topic plus ``_reply``. From the cloud side a service
invocation or a measure point set (a control-plane route) waits for the device's reply.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.journal import CORRELATION
from ..core.mqtt import ConnectInfo, MqttSession
from ..core.mqttaccess import MqttAccess, Verdict
from . import topics
from .models.access import (
    certificate_serial,
    parse_client_id,
    parse_username,
    signature_matches,
)
from .models.certificates import VALID

if TYPE_CHECKING:
    from .emulator import EnosService
    from .models.registry import Device

KEPT = 20  # events kept per device


@dataclass
class Pending:
    identity: str
    future: asyncio.Future[Any]
    correlation_id: str | None


def identity_of(device: Device) -> str:
    return f"{device.product_key}/{device.device_key}"


class EnosAccess(MqttAccess):
    member: EnosService

    def __init__(self, member: EnosService) -> None:
        super().__init__(member)
        # Between check_connect and connected: client id -> (activating?, certificate SN).
        self._accepted: dict[str, tuple[bool, int | None]] = {}
        self.serials: dict[str, int] = {}  # identity -> the certificate its session used
        self.pending: dict[str, Pending] = {}  # message id of a cloud request -> its waiter
        self._ids = iter(range(1, 1 << 62))

    # -- listeners -----------------------------------------------------------------------------
    async def start(self) -> None:
        await self.start_listeners(self.member.options.mqtt_port,
                                   self.member.options.mqtts_port)

    def trust(self) -> tuple[tuple[int, ...], str]:
        """The emulator's RSA and ECC roots (one-way products log in with secrets only, so a
        client certificate stays optional)."""
        roots = list(self.member.roots.values())
        return tuple(id(r) for r in roots), "".join(r.pem for r in roots)

    # -- who may connect -----------------------------------------------------------------------
    async def check_connect(self, info: ConnectInfo) -> Verdict:
        login = parse_client_id(info.client_id)
        if login is None:
            return self.refuse("bad_client_id", f"client id {info.client_id!r} is not "
                               "{clientId}|securemode={2|3},signmethod=...,timestamp=...|")
        keys = parse_username(info.username)
        if keys is None:
            return self.refuse("unknown_device", "user name is not {deviceKey}&{productKey}")
        device_key, product_key = keys
        device = self.member.things.device(product_key, device_key)
        if device is None:
            return self.refuse("unknown_device", f"no device {device_key!r} of product "
                                                 f"{product_key!r}")
        product = self.member.registry.product_of(device)
        activating = login.secure_mode == 3
        secret = self.member.things.secret(device)
        if activating:
            if secret is not None:
                return self.refuse("already_activated", "securemode 3 for a device that has "
                                                        "its secret")
            if not product.product_secret:
                return self.refuse("no_product_secret", "the product has no productSecret")
            secret = product.product_secret
        elif secret is None:
            return self.refuse("not_activated", "the device has no secret yet (activate it "
                                                "with securemode 3)")
        if not signature_matches(info.password, login, device_key, product_key, secret):
            return self.refuse("bad_signature", "the password is not sha256 of the sorted "
                                                "parameters and the secret")
        serial: int | None = None
        if product.bi_directional_auth:
            if not info.tls:
                return self.refuse("insecure", "a bi-directional product connects on the "
                                               "TLS port with its certificate")
            if info.peer_certificate is None:
                return self.refuse("no_certificate", "no client certificate")
            serial = certificate_serial(info.peer_certificate)
            record = self.member.book.get(serial)
            if record is None or record.owner != (device.asset_id, device.org_id):
                return self.refuse("certificate", "not a certificate bound to this device")
            if record.status(self.member.clock.now()) != VALID:
                return self.refuse("certificate", "revoked or expired on the farm clock")
        self._accepted[info.client_id] = (activating, serial)
        return Verdict.accept(identity_of(device))

    # -- sessions ------------------------------------------------------------------------------
    async def connected(self, session: MqttSession, identity: str) -> None:
        activating, serial = self._accepted.pop(session.client_id, (False, None))
        if serial is not None:
            self.serials[identity] = serial
        device = self.member.things.by_identity(identity)
        if device is None:
            session.close("the device is gone")
            return
        self.member.things.went_online(device, self.member.clock.time())
        if activating:
            secret = secrets.token_hex(16)
            self.member.things.activate(device, secret)
            await self.send(session, topics.activate_info(device.product_key,
                                                          device.device_key), {
                "id": self.next_id(), "version": "1.0", "method": "thing.activate.info",
                "params": {"productKey": device.product_key, "deviceKey": device.device_key,
                           "deviceSecret": secret}})
        await self.member.save()

    async def disconnected(self, session: MqttSession, identity: str, reason: str) -> None:
        self.serials.pop(identity, None)
        device = self.member.things.by_identity(identity)
        if device is not None and self.session_of(identity) is None:
            self.member.things.went_offline(device, self.member.clock.time())
            await self.member.save()

    def may(self, session: MqttSession, identity: str, action: str, topic: str) -> bool:
        """A device uses only its own ``/sys/{pk}/{dk}/...`` and ``/ext/session/{pk}/{dk}/...``
        topics (a gateway also those of its sub-devices that logged in)."""
        m = topics.UPSTREAM.fullmatch(topic)
        if m is None:
            return False
        return f"{m['pk']}/{m['dk']}" in (identity, *self.member.things.sub_devices(identity))

    def correlation_for(self, identity: str, topic: str) -> str | None:
        if not topic.endswith("_reply"):
            return None
        return next((p.correlation_id for p in self.pending.values()
                     if p.identity == identity), None)

    def next_id(self) -> str:
        return str(next(self._ids))

    async def send(self, session: MqttSession, topic: str, doc: Any,
                   correlation_id: str | None = None) -> None:
        payload = json.dumps(doc, ensure_ascii=False).encode()
        self.record_message(session, "down", topic, payload, 1, correlation_id)
        await session.publish(topic, payload, 1)

    # -- upstream ------------------------------------------------------------------------------
    async def handle(self, session: MqttSession, identity: str, topic: str,
                     payload: bytes) -> Awaitable[Any] | None:
        m = topics.UPSTREAM.fullmatch(topic)
        if m is None:
            return None
        device = self.member.things.device(m["pk"], m["dk"])
        if device is None:
            return None
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, ValueError):
            doc = None
        if not isinstance(doc, dict):
            return None
        rest, things = m["rest"], self.member.things
        now = self.member.clock.time()
        params = doc.get("params")
        if topics.SERVICE_REPLY.fullmatch(rest) is not None:
            waiter = self.pending.get(str(doc.get("id")))
            if waiter is not None and waiter.identity == identity and not waiter.future.done():
                waiter.future.set_result(doc)
            return None
        if rest == topics.ACTIVATE_INFO_REPLY:
            return None
        data: Any = {}
        code = 200
        if rest in (topics.MEASUREPOINT_POST, topics.MEASUREPOINT_RESUME):
            things.measure_points(device, params, now)
        elif rest in (topics.MEASUREPOINT_POST_BATCH, topics.MEASUREPOINT_RESUME_BATCH):
            for item in params if isinstance(params, list) else ():
                target = device
                if isinstance(item, dict) and item.get("deviceKey"):
                    target = things.device(str(item.get("productKey") or device.product_key),
                                           str(item["deviceKey"])) or device
                things.measure_points(target, item, now)
        elif (e := topics.EVENT_POST.fullmatch(rest)) is not None:
            things.event(device, e["event"], params, now)
        elif rest == topics.ATTRIBUTE_UPDATE:
            things.update_attributes(device, params)
        elif rest == topics.ATTRIBUTE_QUERY:
            data = things.query_attributes(device, params)
        elif rest == topics.ATTRIBUTE_DELETE:
            things.delete_attributes(device, params)
        elif rest in (topics.SUB_LOGIN, topics.SUB_LOGIN_BATCH):
            data, code = things.sub_login(identity, params)
        elif rest == topics.SUB_LOGOUT:
            data = things.sub_logout(identity, params)
        elif rest == topics.OTA_INFORM:
            things.firmware(device, params)
        elif rest in (topics.OTA_GETVERSION, topics.OTA_REQUEST):
            data = []
        elif rest != topics.OTA_PROGRESS:
            return None  # not a request of the SDK's: journalled only
        reply: dict[str, Any] = {"id": doc.get("id"), "code": code, "data": data}
        if code != 200:
            reply["message"] = data.pop("message", "") if isinstance(data, dict) else ""
        await self.send(session, topics.reply_topic(topic), reply)
        return self.member.saving()

    # -- from the cloud ------------------------------------------------------------------------
    async def invoke(self, device: Device, service_id: str, params: dict[str, Any],
                     wait: float | None = None) -> dict[str, Any] | None:
        """A service invocation (``measurepoint/set`` for a measure point set): the device's
        reply, None when it did not answer in time. LookupError when it is offline."""
        identity = identity_of(device)
        session = self.session_of(identity)
        if session is None:
            raise LookupError(f"{device.device_key} is not connected")
        message_id = self.next_id()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        correlation = CORRELATION.get() or self.member.ctx.journal.new_correlation_id()
        self.pending[message_id] = Pending(identity, future, correlation)
        method = "thing.service." + service_id.replace("/", ".")
        try:
            await self.send(session, topics.service(device.product_key, device.device_key,
                                                    service_id),
                            {"id": message_id, "version": "1.0", "method": method,
                             "params": params}, correlation)
            async with asyncio.timeout(wait or self.member.options.command_timeout):
                reply: dict[str, Any] = await future
            return reply
        except (TimeoutError, ConnectionError):
            return None
        finally:
            self.pending.pop(message_id, None)

    def revoked(self, cert_sn: int) -> None:
        """A certificate was revoked: a session it let in ends (the broker would drop it)."""
        for identity, serial in list(self.serials.items()):
            if serial == cert_sn:
                session = self.session_of(identity)
                if session is not None:
                    self.close(session, f"certificate {cert_sn} was revoked")

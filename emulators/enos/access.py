"""EnOS device access over MQTT: 11883 (plain, secret login) and 18883 (TLS; a client
certificate issued by this emulator for bi-directional products), on the farm's broker
(``core/mqtt/broker.py``) with the shared journal, faults, session list and requests waiting
for a reply (``core/mqtt/access.py``).

What a device's messages do (README.md "Device access (MQTT)"): measure points (single, batch,
resume) and events are kept as the device's last values, attributes are updated, queried and
deleted, sub-devices log in and out, OTA messages are answered; each request gets
``{"id", "code": 200, "data"}`` on its topic plus ``_reply`` (through a subscription to it).
A message for a device that is neither the session's nor one of its logged-in sub-devices
writes nothing and is answered 1009 ``Publish to topic with no write permission``. From the
cloud side a service invocation or a measure point set (a control-plane route) waits for the
device's reply.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..core.journal import CORRELATION
from ..core.mqtt.access import MqttAccess, Upstream, Verdict
from ..core.mqtt.broker import MqttListener
from ..core.mqtt.hooks import Action, ConnectInfo
from ..core.mqtt.packets import PROTOCOL_LEVELS
from ..core.mqtt.session import MqttSession
from . import topics
from .exceptions import MqttReplyError, NoWritePermission
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


# A handler's answer: the reply's data and code, or None for no reply.
Answer = tuple[Any, int] | None
Handler = Callable[[Upstream["Device"]], Awaitable[Answer]]


def identity_of(device: Device) -> str:
    return f"{device.product_key}/{device.device_key}"


class EnosAccess(MqttAccess):
    member: EnosService

    def __init__(self, member: EnosService) -> None:
        super().__init__(member)
        # Between check_connect and connected: client id -> (activating?, certificate SN).
        self._accepted: dict[str, tuple[bool, int | None]] = {}
        self.serials: dict[str, int] = {}  # identity -> the certificate its session used
        self._ids = iter(range(1, 1 << 62))
        # Sessions at their subscription limit: id(session) -> filters refused since the one
        # journalled (the first of a burst is journalled, the rest counted).
        self._capped: dict[int, int] = {}

    # -- listeners -----------------------------------------------------------------------------
    async def start(self) -> None:
        await self.start_listeners(self.member.options.mqtt_port,
                                   self.member.options.mqtts_port)

    def new_listener(self, host: str, port: int, tls: Any) -> MqttListener:
        listener = super().new_listener(host, port, tls)
        if not self.member.options.mqtt_accept_31:
            listener.protocol_levels = frozenset({PROTOCOL_LEVELS["MQTT"]})
        return listener

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
        holder = self._client_id_holder(info)
        if holder is not None and holder != identity_of(device):
            # MQTT's take-over by client id (3.1.4-2) is for the same client; EnOS knows a
            # device by its login, so another device's reuse of the string must not end it.
            return self.refuse("client_id_in_use", f"client id {info.client_id!r} is the live "
                                                   f"session of {holder}")
        self._accepted[info.client_id] = (activating, serial)
        return Verdict.accept(identity_of(device))

    def _client_id_holder(self, info: ConnectInfo) -> str | None:
        """The device whose session on this connection's listener has ``info``'s client id
        (the broker would displace it), accepted or between its CONNECT and CONNACK."""
        listener = self.listeners.get(self.protocol(info))
        old = listener.sessions.get(info.client_id) if listener is not None else None
        if old is None:
            return None
        return self._identity.get(id(old)) or self._pending_identity.get(info.client_id)

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
            await self.send_json(session, topics.activate_info(device.product_key,
                                                               device.device_key), {
                "id": self.next_id(), "version": "1.0", "method": "thing.activate.info",
                "params": {"productKey": device.product_key, "deviceKey": device.device_key,
                           "deviceSecret": secret}})
        await self.member.save()

    async def disconnected(self, session: MqttSession, identity: str, reason: str) -> None:
        more = self._capped.pop(id(session), 0)
        if more:
            self.record(session.info, "refused", detail={
                "client_id": session.client_id, "action": "subscribe", "refused": more,
                "reason": f"{more} more subscriptions over the limit of "
                          f"{self.member.options.mqtt_max_subscriptions} were refused"})
        self.serials.pop(identity, None)
        device = self.member.things.by_identity(identity)
        if device is not None and self.session_of(identity) is None:
            self.member.things.went_offline(device, self.member.clock.time())
            await self.member.save()

    def may(self, session: MqttSession, identity: str, action: Action, topic: str) -> bool:
        """A device subscribes only to its own ``/sys/{pk}/{dk}/...`` and
        ``/ext/session/{pk}/{dk}/...`` topics (a gateway also those of its sub-devices that
        logged in). It may publish to any such topic: ``handle`` answers one that is not its
        own with 1009, as EnOS does; other topics are refused here (journalled, dropped)."""
        m = topics.UPSTREAM.fullmatch(topic)
        if m is None:
            return False
        return action == "publish" or self.speaks_for(identity, m["pk"], m["dk"])

    def speaks_for(self, identity: str, product_key: str, device_key: str) -> bool:
        """Whether the session of ``identity`` may write for that device: itself, or a
        sub-device it logged in."""
        key = f"{product_key}/{device_key}"
        return key == identity or key in self.member.things.sub_devices(identity)

    async def authorize(self, session: MqttSession, action: Action, topic: str) -> bool:
        """A subscription over ``mqtt_max_subscriptions`` is refused (SUBACK 0x80 for that filter,
        all MQTT 3.1.1 has), journalled once when the session reaches the limit and counted
        after that, so a flood of SUBSCRIBEs cannot flush the journal."""
        if action == "subscribe":
            limit = self.member.options.mqtt_max_subscriptions
            held = session.subscriptions
            if len(held) < limit:
                self._capped.pop(id(session), None)  # below it again: a new burst
            elif topic not in held:  # re-subscribing a held filter adds nothing
                refused = self._capped.get(id(session))
                if refused is None:
                    self._capped[id(session)] = 0
                    self.record(session.info, "refused", path=topic, detail={
                        "client_id": session.client_id, "action": action,
                        "reason": f"subscription limit of {limit} reached; further filters "
                                  "over it are counted, not journalled, until the session "
                                  "holds fewer"})
                else:
                    self._capped[id(session)] = refused + 1
                return False
        return await super().authorize(session, action, topic)

    def correlation_for(self, identity: str, topic: str) -> str | None:
        if not topic.endswith("_reply"):
            return None
        return next((p.correlation_id for p in self.pending.values()
                     if p.identity == identity), None)

    def next_id(self) -> str:
        return str(next(self._ids))

    async def reply(self, session: MqttSession, request_topic: str, doc: Any, *,
                    unsolicited: bool = False) -> None:
        """A request's answer on its ``_reply`` topic, delivered as a subscription asks for
        it (``replies_need_subscription``); journalled either way. ``unsolicited``: the
        session could not have subscribed (a topic not its own), so it is answered directly."""
        topic = topics.reply_topic(request_topic)
        if (unsolicited or not self.member.options.replies_need_subscription
                or session.subscribed(topic)):
            await self.send_json(session, topic, doc)
            return
        payload = json.dumps(doc, ensure_ascii=False).encode()
        self.record_message(session, "down", topic, payload, 1, delivered=False,
                            reason="no subscription matches the reply topic")

    async def refuse_message(self, session: MqttSession, topic: str, doc: Any,
                             error: MqttReplyError) -> None:
        """A request refused: journalled, answered with EnOS's code and message, nothing
        written. A device's own reply (``..._reply``) is not answered."""
        self.record(session.info, "refused", path=topic, detail={
            "client_id": session.client_id, "action": "publish", "code": error.code,
            "reason": f"{error.msg}: {error.detail}"})
        if topic.endswith("_reply"):
            return
        request_id = doc.get("id") if isinstance(doc, dict) else None
        await self.reply(session, topic, {"id": request_id, "code": error.code,
                                          "message": error.msg, "data": None},
                         unsolicited=True)

    # -- upstream ------------------------------------------------------------------------------
    async def handle(self, session: MqttSession, identity: str, topic: str,
                     payload: bytes) -> Awaitable[Any] | None:
        m = topics.UPSTREAM.fullmatch(topic)
        if m is None:
            return None
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, ValueError):
            doc = None
        if not self.speaks_for(identity, m["pk"], m["dk"]):
            await self.refuse_message(session, topic, doc, NoWritePermission(
                f"{m['pk']}/{m['dk']} is not {identity} nor one of its logged-in sub-devices"))
            return None
        device = self.member.things.device(m["pk"], m["dk"])
        if device is None or not isinstance(doc, dict):
            return None
        found = topics.HANDLERS.route(m["rest"])
        if found is None:
            return None  # not a request of the SDK's: journalled only
        name, match = found
        handler: Handler = getattr(self, name)
        result = await handler(Upstream(session, identity, device, topic, match, payload,
                                        self.member.clock.time(), doc))
        if result is None:
            return None
        data, code = result
        reply: dict[str, Any] = {"id": doc.get("id"), "code": code, "data": data}
        if code != 200:
            reply["message"] = data.pop("message", "") if isinstance(data, dict) else ""
        await self.reply(session, topic, reply)
        return self.member.saving()

    # -- what each upstream topic does (``topics.HANDLERS``): (data, code) of the reply --------
    async def on_service_reply(self, up: Upstream[Device]) -> Answer:
        self.answer(str(up.doc.get("id")), up.identity, up.doc)
        return None

    async def on_measure_points(self, up: Upstream[Device]) -> Answer:
        self.member.things.measure_points(up.device, up.params, up.now)
        return {}, 200

    async def on_measure_points_batch(self, up: Upstream[Device]) -> Answer:
        # "A gateway device reports the measurement point data of its sub-devices" (the
        # batch pages); "if part of the data fails to be reported, the entire request
        # will fail": every entry's device is checked before any is written.
        things, device, identity = self.member.things, up.device, up.identity
        targets: list[tuple[Device, Any]] = []
        for item in up.params if isinstance(up.params, list) else ():
            target = device
            if isinstance(item, dict) and item.get("deviceKey"):
                pk = str(item.get("productKey") or device.product_key)
                dk = str(item["deviceKey"])
                named = things.device(pk, dk) if self.speaks_for(identity, pk, dk) else None
                if named is None:
                    await self.refuse_message(up.session, up.topic, up.doc, NoWritePermission(
                        f"entry for {pk}/{dk}, which is not {identity} nor one of its "
                        "logged-in sub-devices"))
                    return None
                target = named
            targets.append((target, item))
        for target, item in targets:
            things.measure_points(target, item, up.now)
        return {}, 200

    async def on_event(self, up: Upstream[Device]) -> Answer:
        assert up.match is not None
        self.member.things.event(up.device, up.match["event"], up.params, up.now)
        return {}, 200

    async def on_attribute_update(self, up: Upstream[Device]) -> Answer:
        self.member.things.update_attributes(up.device, up.params)
        return {}, 200

    async def on_attribute_query(self, up: Upstream[Device]) -> Answer:
        return self.member.things.query_attributes(up.device, up.params), 200

    async def on_attribute_delete(self, up: Upstream[Device]) -> Answer:
        self.member.things.delete_attributes(up.device, up.params)
        return {}, 200

    async def on_sub_login(self, up: Upstream[Device]) -> Answer:
        data, code = self.member.things.sub_login(up.identity, up.params)
        return data, code

    async def on_sub_logout(self, up: Upstream[Device]) -> Answer:
        return self.member.things.sub_logout(up.identity, up.params), 200

    async def on_ota_inform(self, up: Upstream[Device]) -> Answer:
        self.member.things.firmware(up.device, up.params)
        return {}, 200

    async def on_ota_query(self, up: Upstream[Device]) -> Answer:
        return [], 200

    async def on_ota_progress(self, up: Upstream[Device]) -> Answer:
        return {}, 200

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
        correlation = CORRELATION.get() or self.member.ctx.journal.new_correlation_id()
        method = "thing.service." + service_id.replace("/", ".")
        # The wait starts once the request is written (a device that stopped reading holds
        # the caller up until the broker's write timeout ends its session).
        reply: dict[str, Any] | None = await self.ask(
            session, identity, message_id,
            topics.service(device.product_key, device.device_key, service_id),
            {"id": message_id, "version": "1.0", "method": method, "params": params},
            wait=wait or self.member.options.command_timeout, correlation_id=correlation,
            deadline_covers_send=False)
        return reply

    def revoked(self, cert_sn: int) -> None:
        """A certificate was revoked: a session it let in ends (the broker would drop it)."""
        for identity, serial in list(self.serials.items()):
            if serial == cert_sn:
                session = self.session_of(identity)
                if session is not None:
                    self.close(session, f"certificate {cert_sn} was revoked")

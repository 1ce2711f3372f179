"""What every cloud member's MQTT device access shares (IoTDA's now, EnOS's next): its
listeners, the journal of its sessions, the MQTT fault rules and the list of live sessions.

A member subclasses ``MqttAccess`` with its vendor's rules: ``check_connect`` (who may connect,
and the CONNACK code and reason of a refusal), ``may`` (which topics a device may use) and
``handle`` (what an upstream message means). The broker itself is ``broker.py``.

Journal entries (protocol ``mqtt`` or ``mqtts``): ``connect`` (accepted, with the client id,
user name and the device it authenticated as), ``refused`` (with the CONNACK code and the
reason: the member's refusals, and the broker's own before any check of the member's, a
protocol level it does not serve, a CONNECT too large or malformed, with ``code`` null where
no CONNACK was sent), ``subscribe``, ``publish`` (``detail.direction`` ``up`` or ``down``,
topic, QoS and the payload's excerpt, bounded and masked as an HTTP body's), ``disconnect``
(with the reason) and ``fault``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ...pki import server_context
from ..faults import MQTT_FAULTS, FaultRule
from ..journal import CORRELATION
from .broker import MqttListener
from .hooks import Action, ConnectInfo, MqttHooks, Refusal
from .packets import DROP, NOT_AUTHORIZED
from .session import MqttSession

if TYPE_CHECKING:
    from ..member import Member

log = logging.getLogger("emulators.mqtt")

DeviceT = TypeVar("DeviceT")

X509_NO_CHECK_TIME = 0x200000  # OpenSSL's X509_V_FLAG_NO_CHECK_TIME: the farm clock decides


@dataclass(slots=True)
class Upstream(Generic[DeviceT]):
    """One upstream message of a device's, as its topic's handler (``TopicTable``) gets it:
    the device the topic names, the pattern's match (None for an exact topic) and, for a
    vendor whose messages are JSON requests, the document. Slots, not frozen: one is made per
    report, and a frozen dataclass's ``__init__`` costs about 1 us more (bench/README.md)."""

    session: MqttSession
    identity: str
    device: DeviceT
    topic: str
    match: re.Match[str] | None
    payload: bytes
    now: float
    doc: Any = None

    @property
    def params(self) -> Any:
        return self.doc.get("params") if isinstance(self.doc, dict) else None


class TopicTable:
    """A vendor's upstream topics (the part after the device's own prefix) -> the name of the
    access layer's handler, as an HTTP ``ROUTES`` table maps paths: exact topics are looked
    up first, then the patterns (``fullmatch``) in order. Names, not functions: the table
    lives in the vendor's ``topics.py``, which its access layer imports."""

    def __init__(self, routes: list[tuple[str | re.Pattern[str], str]]) -> None:
        self.exact = {t: name for t, name in routes if isinstance(t, str)}
        self.patterns = [(t, name) for t, name in routes if not isinstance(t, str)]

    def names(self) -> set[str]:
        return set(self.exact.values()) | {name for _, name in self.patterns}

    def route(self, rest: str) -> tuple[str, re.Match[str] | None] | None:
        """The handler's name for ``rest`` and the pattern's match (None for an exact
        topic), or None when no row matches."""
        name = self.exact.get(rest)
        if name is not None:
            return name, None
        for pattern, name in self.patterns:
            match = pattern.fullmatch(rest)
            if match is not None:
                return name, match
        return None


@dataclass
class Pending:
    """A request of the platform's waiting for the device's reply: the device it went to,
    what kind of request it is (for vendors whose reply topic names it), the waiter and the
    correlation id the reply continues."""

    identity: str
    what: str | None
    future: asyncio.Future[Any]
    correlation_id: str | None


@dataclass(frozen=True)
class Verdict:
    """``check_connect``'s answer: 0 and the identity (a device id) it accepted, or a CONNACK
    code and the reason, for the journal and the control plane."""

    code: int
    reason: str = ""
    identity: str | None = None

    @classmethod
    def accept(cls, identity: str) -> Verdict:
        return cls(0, "", identity)


class MqttAccess(MqttHooks):
    """One member's MQTT listeners (plain and TLS) and the hooks the broker calls."""

    def __init__(self, member: Member) -> None:
        self.member = member
        self.listeners: dict[str, MqttListener] = {}  # "mqtt" / "mqtts" -> listener
        # Accepted sessions by the identity check_connect gave them (one per device).
        self.by_identity: dict[str, MqttSession] = {}
        self._identity: dict[int, str] = {}  # id(session) -> identity
        # Between authenticate and on_connect: client id -> the identity it was accepted as.
        self._pending_identity: dict[str, str] = {}
        # A PUBACK fault that fired for the message being handled: id(session) -> rule.
        self._ack_rule: dict[int, FaultRule] = {}
        self._tls_identity: tuple[str, str] | None = None  # (chain PEM, key PEM)
        self._context: tuple[tuple[int, ...], ssl.SSLContext] | None = None
        # A session ended by a call (close): id(session) -> that call's correlation id.
        self._close_correlation: dict[int, str] = {}
        # Work a hook started for a session (deliveries that wait for PUBACKs): cancelled when
        # the session ends or the listeners stop.
        self._tasks: dict[int, set[asyncio.Task[None]]] = {}
        # The platform's requests waiting for a device's reply, by the vendor's request id.
        self.pending: dict[str, Pending] = {}

    def spawn(self, session: MqttSession, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` beside ``session``'s own task, for as long as the session lasts."""
        task = asyncio.get_running_loop().create_task(coro)
        tasks = self._tasks.setdefault(id(session), set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        task.add_done_callback(_log_failure)

    # -- what a vendor fills in ----------------------------------------------------------------
    async def check_connect(self, info: ConnectInfo) -> Verdict:
        raise NotImplementedError

    def may(self, session: MqttSession, identity: str, action: Action, topic: str) -> bool:
        """Whether the device ``identity`` may publish to (subscribe to) ``topic``."""
        return True

    def correlation_for(self, identity: str, topic: str) -> str | None:
        """The correlation id an upstream message continues (a response to a REST call's
        request), else None: the message starts its own."""
        return None

    async def handle(self, session: MqttSession, identity: str, topic: str,
                     payload: bytes) -> Awaitable[Any] | None:
        """An upstream message the device may send; what it returns (a save of the change)
        is awaited before the message's PUBACK, without holding up the session."""
        return None

    async def connected(self, session: MqttSession, identity: str) -> None:
        """After the CONNACK of an accepted session."""

    async def disconnected(self, session: MqttSession, identity: str, reason: str) -> None:
        """After an accepted session ended (displaced, lost, closed...)."""

    def trust(self) -> tuple[tuple[int, ...], str]:
        """The client CAs the next TLS handshake trusts: a key that changes with them (the
        records' ids) and their PEM. None trusted by default."""
        return (), ""

    def refuse(self, case: str, reason: str) -> Verdict:
        """A refusal of ``case``, with the CONNACK code the member's ``mqtt_connack`` option
        gives that case."""
        options: Any = self.member.options  # the kind's Options, with mqtt_connack
        code: int = getattr(options.mqtt_connack, case)
        return Verdict(code, f"{case}: {reason}")

    # -- lifecycle -----------------------------------------------------------------------------
    async def start_listeners(self, mqtt_port: int | None, mqtts_port: int | None) -> None:
        """The plain and the TLS listener on the member's address (None: not that one). The
        TLS identity is a farm-CA certificate for that address, made off the loop."""
        host = self.member.host
        if mqtt_port is not None:
            await self.listen("mqtt", host, mqtt_port)
        if mqtts_port is not None:
            self._tls_identity = await asyncio.get_running_loop().run_in_executor(
                None, functools.partial(self.member.ctx.ca.issue_server, host,
                                        ip_addresses=(host,)
                                        if host.replace(".", "").isdigit() else ()))
            await self.listen("mqtts", host, mqtts_port, self.tls_context)

    def tls_context(self) -> ssl.SSLContext:
        """This handshake's context: the member's server certificate, ``trust()`` as the
        client CAs (a client certificate optional), without OpenSSL's date check: dates are
        judged on the farm clock after the handshake. Built again only when the CAs change."""
        key, pem = self.trust()
        if self._context is not None and self._context[0] == key:
            return self._context[1]
        assert self._tls_identity is not None
        ctx = server_context(*self._tls_identity)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        if pem:
            ctx.load_verify_locations(cadata=pem)
        ctx.verify_flags |= X509_NO_CHECK_TIME
        self._context = (key, ctx)
        return ctx

    async def listen(self, label: str, host: str, port: int,
                     tls: Callable[[], ssl.SSLContext] | None = None) -> tuple[str, int]:
        listener = self.new_listener(host, port, tls)
        bound = await listener.start()
        self.listeners[label] = listener
        return bound

    def new_listener(self, host: str, port: int,
                     tls: Callable[[], ssl.SSLContext] | None) -> MqttListener:
        """The listener for ``listen``; a vendor sets its limits on it."""
        return MqttListener(self, host, port, tls=tls)

    async def stop(self) -> None:
        listeners = list(self.listeners.values())
        self.listeners.clear()
        for listener in listeners:
            await listener.stop()
        await self._cancel_tasks(list(self._tasks))

    async def _cancel_tasks(self, keys: list[int]) -> None:
        tasks = [t for key in keys for t in self._tasks.pop(key, ())]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close_all(self, reason: str) -> None:
        for session in list(self.by_identity.values()):
            self.close(session, reason)

    def close(self, session: MqttSession, reason: str) -> None:
        """End ``session`` because of what the caller is doing (a REST revoke, a freeze): its
        disconnect entry carries the caller's correlation id, so the journal ties the call to
        the connection it ended."""
        correlation = CORRELATION.get()
        if correlation is not None:
            self._close_correlation[id(session)] = correlation
        session.close(reason)

    def session_of(self, identity: str) -> MqttSession | None:
        session = self.by_identity.get(identity)
        return session if session is not None and session.connected else None

    def urls(self) -> dict[str, str]:
        return {label: f"{label}://{listener.host}:{listener.port}"
                for label, listener in self.listeners.items()}

    def sessions(self) -> list[dict[str, Any]]:
        """The live sessions, for the control plane."""
        out = []
        for identity, session in sorted(self.by_identity.items()):
            info = session.info
            out.append({"identity": identity, "client_id": info.client_id,
                        "username": info.username, "peer": f"{info.peer[0]}:{info.peer[1]}",
                        "tls": info.tls, "client_certificate": info.peer_certificate is not None,
                        "keep_alive": info.keep_alive,
                        "subscriptions": dict(session.subscriptions)})
        return out

    # -- downstream, and requests that wait for the device's reply --------------------------
    async def send_json(self, session: MqttSession, topic: str, doc: Any, *, qos: int = 1,
                        correlation_id: str | None = None, raw: bytes | None = None) -> None:
        """A downstream message (``doc`` as JSON, or ``raw`` as it is), journalled, then
        published; ConnectionError when the session has ended."""
        payload = raw if raw is not None else json.dumps(doc, ensure_ascii=False).encode()
        self.record_message(session, "down", topic, payload, qos, correlation_id)
        await session.publish(topic, payload, qos)

    async def ask(self, session: MqttSession, identity: str, key: str, topic: str, doc: Any,
                  *, wait: float, qos: int = 1, what: str | None = None,
                  correlation_id: str | None = None, deadline_covers_send: bool = True
                  ) -> Any:
        """Send the request ``doc`` to ``session`` on ``topic`` and wait for the reply that
        ``answer`` gives ``key`` (the vendor's request id): the reply, or None when none came
        within ``wait`` seconds or the session ended. ``deadline_covers_send``: a device that
        stopped reading holds the caller up only until ``wait``; without it, the send
        waits for room until the broker's write timeout ends the session."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[key] = Pending(identity, what, future, correlation_id)
        try:
            if deadline_covers_send:
                async with asyncio.timeout(wait):
                    await self.send_json(session, topic, doc, qos=qos,
                                         correlation_id=correlation_id)
                    return await future
            await self.send_json(session, topic, doc, qos=qos, correlation_id=correlation_id)
            async with asyncio.timeout(wait):
                return await future
        except (TimeoutError, ConnectionError):
            return None
        finally:
            self.pending.pop(key, None)

    def answer(self, key: str, identity: str, reply: Any, what: str | None = None) -> None:
        """A device's reply to the request ``key``: it ends that request's wait when the
        request went to this device (and is of the kind ``what``, when given)."""
        pending = self.pending.get(key)
        if (pending is not None and pending.identity == identity
                and (what is None or pending.what == what) and not pending.future.done()):
            pending.future.set_result(reply)

    # -- journal and faults --------------------------------------------------------------------
    @staticmethod
    def protocol(info: ConnectInfo) -> str:
        return "mqtts" if info.tls else "mqtt"

    def record(self, info: ConnectInfo, event: str, **fields: Any) -> None:
        m = self.member
        m.ctx.journal.record(m.name, m.kind, self.protocol(info), event,
                             client=f"{info.peer[0]}:{info.peer[1]}", user=info.username,
                             **fields)

    def record_message(self, session: MqttSession, direction: str, topic: str, payload: bytes,
                       qos: int, correlation_id: str | None = None, **detail: Any) -> None:
        fields: dict[str, Any] = {}
        if correlation_id is not None:
            fields["correlation_id"] = correlation_id
        # The payload's head as bytes: the journal masks and cuts it when it is read.
        limit = self.member.ctx.journal.excerpt_bytes * 4
        self.record(session.info, "publish", path=topic, request_size=len(payload),
                    request_excerpt=payload[:limit],
                    detail={"direction": direction, "qos": qos,
                            "client_id": session.client_id, **detail}, **fields)

    def fault(self, info: ConnectInfo, packet: str, topic: str | None = None
              ) -> FaultRule | None:
        m = self.member
        faults = m.ctx.faults
        if not faults.rules:
            return None
        rule = faults.check(m.name, m.kind, self.protocol(info), types=MQTT_FAULTS,
                            command=packet, path=topic, group=m.spec.group)
        if rule is not None:
            self.record(info, "fault", path=topic,
                        detail={"fault": rule.fault, "rule": rule.id, "packet": packet,
                                "client_id": info.client_id})
        return rule

    @staticmethod
    async def _hang() -> None:
        """``mqtt_hang``: answer nothing more; the connection's end (or the farm's stop)
        cancels this."""
        await asyncio.get_running_loop().create_future()

    # -- the broker's hooks --------------------------------------------------------------------
    async def authenticate(self, info: ConnectInfo) -> int:
        rule = self.fault(info, "connect")
        if rule is not None:
            if rule.fault == "mqtt_refuse":
                code = rule.connack or NOT_AUTHORIZED
                self.record(info, "refused", status=code,
                            detail={"client_id": info.client_id, "code": code,
                                    "reason": f"fault rule {rule.id}"})
                return code
            if rule.fault == "mqtt_drop":
                return DROP
            if rule.fault == "mqtt_hang":
                await self._hang()
        verdict = await self.check_connect(info)  # a bug here: the broker answers 3, logged
        if verdict.code:
            self.record(info, "refused", status=verdict.code,
                        detail={"client_id": info.client_id, "code": verdict.code,
                                "reason": verdict.reason})
            return verdict.code
        assert verdict.identity is not None
        self._pending_identity[info.client_id] = verdict.identity
        return 0

    async def on_connect(self, session: MqttSession) -> None:
        identity = self._pending_identity.pop(session.client_id, session.client_id)
        old = self.by_identity.get(identity)
        if old is not None and old is not session:
            old.close("displaced by a new connection of the same device")
        self.by_identity[identity] = session
        self._identity[id(session)] = identity
        info = session.info
        self.record(info, "connect", status=0,
                    detail={"client_id": info.client_id, "identity": identity,
                            "keep_alive": info.keep_alive,
                            "client_certificate": info.peer_certificate is not None})
        await self.connected(session, identity)

    async def authorize(self, session: MqttSession, action: Action, topic: str) -> bool:
        identity = self._identity.get(id(session))
        allowed = identity is not None and self.may(session, identity, action, topic)
        if not allowed:
            self.record(session.info, "refused", path=topic,
                        detail={"client_id": session.client_id, "action": action,
                                "reason": f"{action} to {topic!r} is not allowed"})
        return allowed

    async def on_publish(self, session: MqttSession, topic: str, payload: bytes, qos: int,
                         retain: bool) -> Awaitable[Any] | None:
        rule = self.fault(session.info, "publish", topic)
        if rule is not None:
            if rule.fault == "mqtt_drop":
                session.close(f"fault rule {rule.id}")
                return None
            if rule.fault == "mqtt_hang":
                await self._hang()
            self._ack_rule[id(session)] = rule  # read by acknowledge
        identity = self._identity.get(id(session))
        correlation = None if identity is None else self.correlation_for(identity, topic)
        self.record_message(session, "up", topic, payload, qos, correlation)
        if identity is None:
            return None
        return await self.handle(session, identity, topic, payload)

    async def acknowledge(self, session: MqttSession, topic: str) -> bool:
        rule = self._ack_rule.pop(id(session), None)
        if rule is None:
            return True
        if rule.fault == "mqtt_puback_delay":
            await asyncio.sleep(rule.latency_ms / 1000)
            return True
        return rule.fault != "mqtt_puback_drop"

    async def on_refused(self, refusal: Refusal) -> None:
        m = self.member
        detail: dict[str, Any] = {"client_id": refusal.client_id, "code": refusal.code,
                                  "reason": refusal.reason}
        if refusal.protocol_level is not None:
            detail["protocol"] = refusal.protocol
            detail["protocol_level"] = refusal.protocol_level
        m.ctx.journal.record(m.name, m.kind, "mqtts" if refusal.tls else "mqtt", "refused",
                             client=f"{refusal.peer[0]}:{refusal.peer[1]}",
                             user=refusal.username, status=refusal.code, detail=detail)

    async def on_subscribe(self, session: MqttSession, topic_filter: str, qos: int) -> None:
        self.record(session.info, "subscribe", path=topic_filter,
                    detail={"client_id": session.client_id, "qos": qos})

    async def on_disconnect(self, session: MqttSession, reason: str) -> None:
        identity = self._identity.pop(id(session), None)
        self._ack_rule.pop(id(session), None)
        await self._cancel_tasks([id(session)])
        correlation = self._close_correlation.pop(id(session), None)
        self.record(session.info, "disconnect",
                    detail={"client_id": session.client_id, "identity": identity,
                            "reason": reason},
                    **({"correlation_id": correlation} if correlation else {}))
        if identity is None:
            return
        if self.by_identity.get(identity) is session:
            del self.by_identity[identity]
        await self.disconnected(session, identity, reason)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("MQTT session work failed", exc_info=task.exception())

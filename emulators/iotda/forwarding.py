"""Data forwarding: what a device does (a report, a message, going on or off line) and what the
REST API does to devices become push documents; each active rule of the subject whose
``where`` holds forwards its ``select`` of the document to its actions: an HTTP(S) POST
(``HttpPush``) or a message in an AMQP queue (``amqp.py``).

The push document is the reference's "Transition Data" form: ``resource``, ``event``,
``event_time`` (``yyyyMMdd'T'HHmmss'Z'``), ``event_time_ms``, ``request_id`` and
``notify_data`` with ``header`` and/or ``body`` as each subject documents them, all on the
farm clock. Every step is journalled under the correlation id of what caused it.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import functools
import hashlib
import json
import logging
import secrets
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from ..core.journal import CORRELATION
from .models.common import now_text
from .models.routing import Routing, RoutingRule, RuleAction
from .models.sql import Condition, Selection, parse_select, parse_where

if TYPE_CHECKING:
    from .emulator import IotdaService
    from .models.devices import Device

log = logging.getLogger("emulators.iotda.forwarding")
PROTOCOL = "forwarding"  # the journal's and the fault rules' name for this traffic
PUSH_FAULTS = ("push_drop", "push_delay")


# QueryDeviceBase's fields, in the order of the reference's device:create example's schema.
_DEVICE_BASE = ("app_id", "app_name", "device_id", "node_id", "gateway_id", "device_name",
                "node_type", "description", "fw_version", "sw_version", "device_sdk_version",
                "auth_info", "product_id", "product_name", "status", "create_time", "tags",
                "extension_info")


@functools.lru_cache(maxsize=1024)
def _selection(text: str) -> Selection:
    return parse_select(text)


@functools.lru_cache(maxsize=1024)
def _condition(text: str) -> Condition:
    return parse_where(text)


def event_time_ms(now: float) -> str:
    """``yyyy-MM-dd'T'HH:mm:ss.SSS'Z'``, the documents' ``event_time_ms``."""
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def header_of(device: Device) -> dict[str, Any]:
    """NotifyDataHeader: the device's ids (a directly connected device is its own gateway)."""
    return {"app_id": device.app_id, "device_id": device.device_id, "node_id": device.node_id,
            "product_id": device.product_id, "gateway_id": device.device_id, "tags": []}


def push_signature(token: str, timestamp: str, nonce: str) -> str:
    """The ``signature`` header of a push whose action has ``signature_enable`` and a token:
    SHA-256, in lower-case hex, of the three values sorted and joined (what receivers of the
    platform's pushes check; README says where this comes from)."""
    return hashlib.sha256("".join(sorted((token, timestamp, nonce))).encode()).hexdigest()


@dataclass
class _Host:
    """One push target host: consecutive failures, the blocklist, and its backlog."""

    failures: int = 0
    blocked_since: float | None = None
    backlog: collections.deque[_Push] = field(default_factory=collections.deque)
    backlog_bytes: int = 0
    queue: collections.deque[_Push] = field(default_factory=collections.deque)
    workers: set[asyncio.Task[None]] = field(default_factory=set)
    prober: asyncio.Task[Any] | None = None  # the one worker probing a blocklisted host


@dataclass(frozen=True)
class _Push:
    action: RuleAction
    body: bytes
    correlation_id: str | None
    made: float  # farm clock: how old a backlogged push is


class Forwarding:
    """The member's forwarding engine: rule matching and the delivery channels."""

    def __init__(self, member: IotdaService) -> None:
        self.member = member
        self.hosts: dict[str, _Host] = {}
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[tuple[str | None, str | None], ssl.SSLContext] = {}
        self.delivered = 0  # pushes a target took: for the bench and the control plane
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def routing(self) -> Routing:
        return self.member.routing

    # -- events -----------------------------------------------------------------------------
    def emit(self, project_id: str, resource: str, event: str,
             notify_data: Callable[[], dict[str, Any] | None], *, app_id: str | None = None,
             request_id: str | None = None) -> int:
        """Forward one event to every active rule of its subject in ``project_id``; the
        number of rules that matched. ``notify_data`` makes the document's ``notify_data``
        (None: nothing to forward) only when a rule is active: a device's report costs one
        scan of the rules otherwise."""
        rules = self.routing.active_rules(project_id, resource, event)
        if not rules:
            return 0
        notify = notify_data()
        if notify is None:
            return 0
        now = self.member.clock.time()
        doc: dict[str, Any] = {"resource": resource, "event": event,
                               "event_time": now_text(now), "event_time_ms": event_time_ms(now),
                               "request_id": request_id or str(uuid.uuid4()),
                               "notify_data": notify}
        journal = self.member.ctx.journal
        correlation = CORRELATION.get() or journal.new_correlation_id()
        matched = 0
        for rule in rules:
            if rule.app_type == "APP" and app_id is not None and rule.app_id != app_id:
                continue
            if rule.where and not _condition(rule.where).holds(doc):
                continue
            matched += 1
            out = _selection(rule.select).apply(doc) if rule.select else doc
            body = json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()
            actions = self.routing.actions_of(rule.rule_id)
            self._record("match", correlation, path=f"{resource}:{event}", detail={
                "rule_id": rule.rule_id, "rule_name": rule.rule_name,
                "actions": [a.action_id for a in actions]}, body=body)
            for action in actions:
                self._deliver(rule, action, body, correlation)
        return matched

    # -- what devices and the API do: the subjects' documents ----------------------------------
    def property_report(self, device: Device, services: Any, now: float) -> None:
        """``device.property:report``: the services as reported, each with its event_time
        (the platform's time where the device gave none)."""
        def notify() -> dict[str, Any] | None:
            if not isinstance(services, list):
                return None
            body = [{"service_id": s["service_id"], "properties": s["properties"],
                     "event_time": s["event_time"] if isinstance(s.get("event_time"), str)
                     else now_text(now)}
                    for s in services if isinstance(s, dict)
                    and isinstance(s.get("service_id"), str)
                    and isinstance(s.get("properties"), dict)]
            return {"header": header_of(device), "body": {"services": body}} if body else None
        self.emit(device.project_id, "device.property", "report", notify, app_id=device.app_id)

    def message_report(self, device: Device, topic: str, payload: bytes) -> None:
        """``device.message:report``: ``content`` is the message's JSON when it is JSON, else
        its text."""
        def notify() -> dict[str, Any]:
            try:
                content: Any = json.loads(payload)
            except (UnicodeDecodeError, ValueError, RecursionError):
                content = payload.decode("utf-8", "replace")
            return {"header": header_of(device), "body": {"topic": topic, "content": content}}
        self.emit(device.project_id, "device.message", "report", notify, app_id=device.app_id)

    def status_update(self, device: Device, online: bool, now: float) -> None:
        self.emit(device.project_id, "device.status", "update", lambda: {
            "header": header_of(device),
            "body": {"status": "ONLINE" if online else "OFFLINE",
                     "last_online_time": device.active_time or now_text(now),
                     "status_update_time": event_time_ms(now)}}, app_id=device.app_id)

    def message_status(self, device: Device, record: dict[str, Any]) -> None:
        """``device.message.status:update``: a CreateMessage message's final status."""
        def notify() -> dict[str, Any]:
            body: dict[str, Any] = {
                "message_id": record["message_id"], "name": record.get("name"),
                "topic": record.get("mqtt_topic"), "status": record["status"],
                "timestamp": record.get("finished_time")}
            if record.get("error_info"):
                body["error_info"] = record["error_info"]
            return {"header": header_of(device), "body": body}
        self.emit(device.project_id, "device.message.status", "update", notify,
                  app_id=device.app_id)

    def product_created(self, project_id: str, detail: dict[str, Any]) -> None:
        """``product:create``: the product as ShowProduct gives it (no header)."""
        self.emit(project_id, "product", "create", lambda: {"body": detail},
                  app_id=detail.get("app_id"))

    def device_changed(self, device: Device, event: str, detail: dict[str, Any]) -> None:
        """``device:create`` / ``device:update`` (the device as QueryDeviceBase, no header)
        and ``device:delete`` (only the header)."""
        def notify() -> dict[str, Any]:
            if event == "delete":
                return {"header": header_of(device)}
            return {"body": {k: detail[k] for k in _DEVICE_BASE if k in detail}}
        self.emit(device.project_id, "device", event, notify, app_id=device.app_id)

    def _deliver(self, rule: RoutingRule, action: RuleAction, body: bytes,
                 correlation: str | None) -> None:
        detail = action.channel_detail
        target = (detail["http_forwarding"]["url"] if action.channel == "HTTP_FORWARDING"
                  else detail["amqp_forwarding"]["queue_name"])
        fault = self.member.ctx.faults.check(
            self.member.name, self.member.kind, PROTOCOL, types=PUSH_FAULTS,
            command=action.channel, path=target)
        if fault is not None and fault.fault == "push_drop":
            self._record("dropped", correlation, path=target, detail={
                "action_id": action.action_id, "reason": f"fault rule {fault.id}"})
            return
        delay = fault.latency_ms / 1000 if fault is not None else 0.0
        if action.channel == "AMQP_FORWARDING":
            self.member.amqp.put(action.project_id, target, body, correlation, delay)
            return
        self.push(_Push(action, body, correlation, self.member.clock.time()), delay)

    # -- HTTP push ----------------------------------------------------------------------------
    def push(self, item: _Push, delay: float = 0.0) -> None:
        url = item.action.channel_detail["http_forwarding"]["url"]
        host_key = urlsplit(url).netloc.lower()
        host = self.hosts.get(host_key)
        if host is None:
            host = self.hosts[host_key] = _Host()
        options = self.member.options.forwarding
        if host.blocked_since is not None:
            self._backlog(host, item)
            self._wake(host_key, host)  # a prober, if the one there was failed
            return
        if len(host.queue) >= options.http_queue_limit:
            self._record("dropped", item.correlation_id, path=url, detail={
                "action_id": item.action.action_id,
                "reason": f"{options.http_queue_limit} pushes already wait for {host_key} "
                          f"(forwarding.http_queue_limit)"})
            return
        if delay:  # a push_delay fault: the push joins the queue late
            self.later(delay, functools.partial(self.push, item))
            return
        host.queue.append(item)
        self._wake(host_key, host)

    def later(self, delay: float, then: Any) -> None:
        self._spawn(self._after(delay, then), "a delayed delivery")

    @staticmethod
    async def _after(delay: float, then: Any) -> None:
        await asyncio.sleep(delay)
        then()

    def _wake(self, key: str, host: _Host) -> None:
        if host.blocked_since is not None:
            want = 0 if host.prober is not None else 1
        else:
            want = min(self.member.options.forwarding.http_concurrency, len(host.queue))
        while len(host.workers) < want:
            task = self._spawn(self._worker(key, host), f"pushes to {key}")
            host.workers.add(task)
            task.add_done_callback(host.workers.discard)

    def _backlog(self, host: _Host, item: _Push) -> None:
        """Keep a push for a blocklisted host, within the backlog policy (oldest dropped)."""
        options = self.member.options.forwarding
        host.backlog.append(item)
        host.backlog_bytes += len(item.body)
        now = self.member.clock.time()
        while host.backlog and (host.backlog_bytes > options.backlog_bytes
                                or now - host.backlog[0].made > options.backlog_seconds):
            old = host.backlog.popleft()
            host.backlog_bytes -= len(old.body)
            self._record("dropped", old.correlation_id,
                         path=old.action.channel_detail["http_forwarding"]["url"], detail={
                             "action_id": old.action.action_id,
                             "reason": "the backlog policy's size or age was exceeded"})

    async def _worker(self, key: str, host: _Host) -> None:
        """Sends the host's pushes (``http_concurrency`` workers a host, each taking the next
        in order); after ``blocklist_after`` consecutive failures the host is blocklisted:
        pushes wait in its backlog, one worker tries one every ``blocklist_retry`` seconds of
        the farm clock, and a success sends the backlog, in order, before anything new."""
        options = self.member.options.forwarding
        me = asyncio.current_task()
        while True:
            if host.blocked_since is not None:
                if host.prober is not None and host.prober is not me:
                    return  # one worker probes a blocklisted host
                host.prober = me
                await self.member.clock.sleep(options.blocklist_retry)
                if not host.backlog:
                    continue
                if await self._send(host.backlog[0]):
                    host.blocked_since = None
                    host.failures = 0
                    done = host.backlog.popleft()
                    host.backlog_bytes -= len(done.body)
                    self._record("unblocked", done.correlation_id, path=key, detail={
                        "backlog": len(host.backlog)})
                    while host.backlog and host.blocked_since is None:
                        item = host.backlog.popleft()
                        host.backlog_bytes -= len(item.body)
                        await self._attempt(key, host, item)
                    host.prober = None
                    self._wake(key, host)  # what waited meanwhile, at full concurrency
                continue
            if not host.queue:
                return  # the next push starts a worker again
            await self._attempt(key, host, host.queue.popleft())

    async def _attempt(self, key: str, host: _Host, item: _Push) -> None:
        options = self.member.options.forwarding
        if host.blocked_since is not None:
            self._backlog(host, item)
            return
        if await self._send(item):
            host.failures = 0
            return
        host.failures += 1
        if host.failures >= options.blocklist_after and host.blocked_since is None:
            host.blocked_since = self.member.clock.time()
            self._record("blocklisted", item.correlation_id, path=key, detail={
                "failures": host.failures,
                "retry_every": options.blocklist_retry})
            while host.queue:  # what waited behind goes to the backlog, in order
                self._backlog(host, host.queue.popleft())

    async def _send(self, item: _Push) -> bool:
        """One POST; True when the target answered 200 within the timeout. A failure is
        journalled and the push is discarded (the documented push mechanism)."""
        detail = item.action.channel_detail["http_forwarding"]
        url = detail["url"]
        headers = {"Content-Type": "application/json; charset=utf-8"}
        token = detail.get("token")
        if detail.get("signature_enable") and token:
            timestamp = str(int(time.time() * 1000))
            nonce = secrets.token_hex(16)
            headers.update(timestamp=timestamp, nonce=nonce,
                           signature=push_signature(token, timestamp, nonce))
        options = self.member.options.forwarding
        started = time.monotonic()
        status: int | None = None
        error = None
        try:
            session = self._client()
            async with session.post(url, data=item.body, headers=headers,
                                    ssl=self._tls(item.action) if url.startswith("https:")
                                    else False,
                                    server_hostname=self._sni(detail),
                                    timeout=aiohttp.ClientTimeout(total=options.http_timeout),
                                    allow_redirects=False) as response:
                status = response.status
                await response.content.read(64 * 1024)
        except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        ok = status == 200
        self._record("push" if ok else "push_failed", item.correlation_id, path=url,
                     status=status, body=item.body, seconds=time.monotonic() - started,
                     detail={"action_id": item.action.action_id, "rule_id": item.action.rule_id,
                             **({"error": error} if error else {}),
                             **({} if ok else {"discarded": True})})
        if ok:
            self.delivered += 1
        return ok

    @staticmethod
    def _sni(detail: dict[str, Any]) -> str | None:
        if detail.get("sni_enable") and detail.get("cn_name"):
            return str(detail["cn_name"]).rsplit(":", 1)[0]
        return None

    def _tls(self, action: RuleAction) -> ssl.SSLContext:
        """The system's trust store, plus the scenario's ``forwarding.ca_file``, plus the
        device CA the action's ``cert_id`` names (the console's "push certificate")."""
        cert_id = action.channel_detail["http_forwarding"].get("cert_id")
        key = (cert_id, self.member.options.forwarding.ca_file)
        context = self._contexts.get(key)
        if context is None:
            context = ssl.create_default_context()
            if key[1]:
                context.load_verify_locations(cafile=key[1])
            record = self.member.device_cas.records.get(cert_id) if cert_id else None
            if record is not None and record.project_id == action.project_id:
                context.load_verify_locations(cadata=record.content)
            self._contexts[key] = context
        return context

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                limit_per_host=self.member.options.forwarding.http_concurrency),
                headers={"User-Agent": "IoTDA-forwarding"}, skip_auto_headers=("User-Agent",))
        return self._session

    def _spawn(self, coro: Any, what: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._ended, what))
        return task

    def _ended(self, what: str, task: asyncio.Task[None]) -> None:
        """A worker that failed is said so (log and journal); the next push starts another."""
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        log.error("iotda forwarding: %s failed", what, exc_info=task.exception())
        self._record("failed", None, path=what, detail={
            "error": f"{type(task.exception()).__name__}: {task.exception()}",
            "restarts": "with the next push"})

    # -- lifecycle ----------------------------------------------------------------------------
    async def stop(self) -> None:
        self.reset()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def reset(self) -> None:
        """A reset or a restored snapshot: pushes in flight and backlogs are gone."""
        for task in list(self._tasks):
            task.cancel()
        self.hosts.clear()
        self._contexts.clear()

    def describe(self) -> dict[str, Any]:
        return {"hosts": {k: {"failures": h.failures, "blocklisted": h.blocked_since is not None,
                              "waiting": len(h.queue), "backlog": len(h.backlog)}
                          for k, h in self.hosts.items()},
                "delivered": self.delivered}

    # -- the journal --------------------------------------------------------------------------
    def _record(self, event: str, correlation: str | None, *, path: str,
                detail: dict[str, Any], status: int | None = None, body: bytes | None = None,
                seconds: float | None = None) -> None:
        m = self.member
        fields: dict[str, Any] = {"path": path, "detail": detail, "correlation_id": correlation}
        if status is not None:
            fields["status"] = status
        if body is not None:
            limit = m.ctx.journal.excerpt_bytes * 4
            fields.update(request_size=len(body), request_excerpt=body[:limit])
        if seconds is not None:
            fields["duration_ms"] = round(seconds * 1000, 3)
        m.ctx.journal.record(m.name, m.kind, PROTOCOL, event, **fields)

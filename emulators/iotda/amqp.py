"""IoTDA's AMQP side: the queues data forwarding fills, and the AMQPS listener a backend
consumes them from, as the user guide "AMQP Client Access" describes it: AMQP 1.0 over TLS on
port 5671, SASL PLAIN with the user name ``accessKey=${accessKey}|timestamp=${timestamp}``
(optionally ``|instanceId=${instanceId}``) and the access code (CreateAccessCode) as the
password, a receiver link on a queue's name attached within 15 s, no sender links, ten
receiver links a connection, 32 connections an access key.

The protocol is the farm's AMQP server (``core/amqp``); this module is what IoTDA decides:
who may connect, which address is which queue, and what goes in.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.amqp.hooks import (
    CONNECTION_FORCED,
    NOT_ALLOWED,
    RESOURCE_DELETED,
    AmqpApplication,
    Denied,
    Peer,
    Refusal,
)
from ..core.amqp.options import AmqpOptions
from ..core.amqp.queue import Queue
from ..core.amqp.server import AmqpServer, farm_tls

if TYPE_CHECKING:
    from .emulator import IotdaService

# "accessKey=...|timestamp=...|instanceId=...": the guide's form; older samples end the
# name with "|" and leave instanceId out.
_USERNAME = re.compile(r"accessKey=(?P<key>[^|]+)\|timestamp=(?P<ts>[^|]*)"
                       r"(?:\|instanceId=(?P<instance>[^|]*))?\|?")
TIMESTAMP_SKEW = 300.0  # "时间戳相差不能超过5分钟"
CONNECTIONS_PER_KEY = 32  # "单个键值最多能和32个客户端同时进行建链"
RECEIVERS_PER_CONNECTION = 10  # "一个Connection上最多能够创建十个Receiver Link"


@dataclass(frozen=True)
class Principal:
    project_id: str
    access_key: str


class IotdaAmqp(AmqpApplication):
    def __init__(self, member: IotdaService) -> None:
        self.member = member
        self.server: AmqpServer | None = None
        self.queues: dict[tuple[str, str], Queue] = {}

    # -- the listener ---------------------------------------------------------------------------
    async def start(self) -> None:
        options = self.member.options
        if options.amqps_port is None:
            return
        host = self.member.host
        limits = options.amqp
        self.server = AmqpServer(
            self, host, options.amqps_port, tls=await farm_tls(self.member.ctx.ca, host),
            journal=functools.partial(self.member.ctx.journal.record, self.member.name,
                                      self.member.kind),
            options=AmqpOptions(attach_deadline=limits.attach_deadline,
                                idle_timeout=limits.idle_timeout,
                                max_links=RECEIVERS_PER_CONNECTION,
                                container_id="iotda-amqp"))
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    def urls(self) -> dict[str, str]:
        if self.server is None:
            return {}
        return {"amqps": f"amqps://{self.server.host}:{self.server.port}"}

    # -- who may connect ------------------------------------------------------------------------
    def authenticate(self, username: str, password: str, peer: Peer) -> Any:
        m = _USERNAME.fullmatch(username)
        if m is None:
            return Denied("the user name is not accessKey=...|timestamp=...")
        code = self.member.routing.access_code(m["key"])
        if code is None or code.access_code != password:
            return Denied(f"no AMQP access code of access key {m['key']!r} is that password")
        if not re.fullmatch(r"\d{13}", m["ts"]):
            return Denied("timestamp is not a 13-digit millisecond time")
        moment = int(m["ts"]) / 1000
        if not any(abs(moment - now) <= TIMESTAMP_SKEW
                   for now in self.member.freshness_readings()):
            return Denied("timestamp is more than 5 minutes from the platform's time")
        instance = m["instance"]
        if instance and self.member.options.instances and \
                instance not in self.member.options.instances:
            return Denied(f"instanceId {instance!r} is not an instance of this account")
        if self.server is not None and sum(
                1 for c in self.server.connections
                if getattr(c.principal, "access_key", None) == code.access_key) >= \
                CONNECTIONS_PER_KEY:
            return Denied(f"access key {code.access_key} has {CONNECTIONS_PER_KEY} connections")
        return Principal(code.project_id, code.access_key)

    def open_queue(self, address: str, principal: Any) -> Queue | None:
        if not isinstance(principal, Principal):
            return None
        if self.member.routing.queue_named(principal.project_id, address) is None:
            return None
        return self.queue(principal.project_id, address)

    def refuse_sender(self, address: str | None, principal: Any) -> Refusal:
        return Refusal(NOT_ALLOWED,
                       "sender links are not supported: the platform pushes, clients receive")

    # -- the queues -----------------------------------------------------------------------------
    def queue(self, project_id: str, name: str) -> Queue:
        queue = self.queues.get((project_id, name))
        if queue is None or queue.closed:
            queue = self.queues[(project_id, name)] = Queue(
                name, limit=self.member.options.amqp.queue_limit, on_drop=self._dropped)
        return queue

    def put(self, project_id: str, name: str, body: bytes, correlation_id: str | None,
            delay: float = 0.0) -> None:
        """A forwarded document into queue ``name``: an amqp-value string (what Huawei's Java
        sample reads with ``getBody(String.class)``), kept while no receiver is attached."""
        if self.member.routing.queue_named(project_id, name) is None:
            return  # deleted meanwhile: the action is gone too
        if delay:
            self.member.forwarding.later(delay, functools.partial(
                self.put, project_id, name, body, correlation_id))
            return
        queue = self.queue(project_id, name)
        queue.put(body.decode("utf-8"), properties={"content_type": "application/json"},
                  application_properties={"correlation_id": correlation_id}
                  if correlation_id else None)
        m = self.member
        limit = m.ctx.journal.excerpt_bytes * 4
        m.ctx.journal.record(m.name, m.kind, "forwarding", "queued", path=name,
                             correlation_id=correlation_id, request_size=len(body),
                             request_excerpt=body[:limit],
                             detail={"queue": name, "waiting": queue.waiting,
                                     "consumers": len(queue.consumers)})

    def _dropped(self, queue: Queue, message: Any, reason: str) -> None:
        m = self.member
        m.ctx.journal.record(m.name, m.kind, "forwarding", "dropped", path=queue.name,
                             detail={"queue": queue.name, "reason": reason})

    def queue_deleted(self, project_id: str, name: str) -> None:
        queue = self.queues.pop((project_id, name), None)
        if queue is not None:
            queue.close()

    def disconnect(self, access_key: str, reason: str) -> None:
        if self.server is None:
            return
        for connection in list(self.server.connections):
            if getattr(connection.principal, "access_key", None) == access_key:
                connection.close(CONNECTION_FORCED, reason)

    def reset(self) -> None:
        """A reset or a restored snapshot: every queue's messages are gone, consumers too."""
        for queue in self.queues.values():
            queue.close(RESOURCE_DELETED, "the member's state was replaced")
        self.queues.clear()

    def describe(self) -> dict[str, Any]:
        return {f"{project}/{name}": {"waiting": q.waiting, "unsettled": q.unsettled,
                                      "consumers": len(q.consumers)}
                for (project, name), q in self.queues.items()}

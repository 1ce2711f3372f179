"""One authenticated AMQP 1.0 connection, after the SASL layer (``sasl.py``): bytes from the
asyncio stream are pushed into a proton ``Transport`` (server mode, no SASL layer of its own),
proton's events (open, begin, attach, flow, disposition, detach, end, close) are answered
here, and whatever proton has to send is popped and written. Proton owns AMQP's framing and
state machines; this module owns what the server decides: which link consumes which queue
(``links.py``), which attach is refused, the deadlines, and what ends the connection.

What a client gets for what:

- its open: an open (container ``options.container_id``, max-frame-size, idle time-out);
  begin: a begin; a receiver link on an address the application knows: an attach with that
  source, then messages as its credit allows;
- a receiver link on an unknown address: an attach with a null source, then a detach with
  ``amqp:not-found``; a sender link: an attach with a null target, then a detach with the
  application's refusal (``amqp:not-allowed`` by default); a link over ``max_links``:
  ``amqp:resource-limit-exceeded``;
- no receiver link attached within ``attach_deadline`` of the accept: a close with
  ``amqp:resource-limit-exceeded`` saying so; no open within ``handshake_timeout``, or a
  begin before the open: this server's open, then the socket closed (proton sends no close
  before the client's open), the condition journalled;
- a frame that breaks AMQP (garbage, out of order, larger than max-frame-size): proton's
  close with ``amqp:connection:framing-error`` (or the condition proton gives);
- nothing received for ``idle_timeout``: proton's close with
  ``amqp:resource-limit-exceeded``; a client that announced an idle time-out gets empty
  frames often enough;
- a client that stops reading: no more messages once ``write_high_water`` bytes wait, and
  the socket is aborted after ``write_timeout``.

After its own close the server waits ``close_grace`` for the client's, then closes the socket.
Unsettled deliveries of a link or a connection that ends go back to their queues.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from proton import (
    Collector,
    Condition,
    Connection,
    Endpoint,
    Event,
    Link,
    Sender,
    Session,
    Terminus,
)
from proton import Transport as ProtonTransport

from .hooks import (
    FRAMING_ERROR,
    INTERNAL_ERROR,
    NOT_FOUND,
    RESOURCE_LIMIT_EXCEEDED,
    Peer,
    Refusal,
)
from .links import LinkConsumer
from .queue import Message, Queue
from .sasl import AMQP_HEADER

if TYPE_CHECKING:
    from ..acceptor import Accepted
    from .server import AmqpServer

log = logging.getLogger("emulators.amqp")

READ_CHUNK = 64 * 1024
# Output one turn of the loop may queue in proton before consumers are given no more until
# the next turn: a consumer with a large credit over a full queue does not hold the loop for
# thousands of messages (about 600 small ones, 20 ms, per turn).
TURN_OUTPUT = 64 * 1024
EXCERPT = 4096  # the body's head kept in a deliver entry (the journal masks and cuts it)


class AmqpConnection:
    """One client connection past SASL, with the principal it authenticated as."""

    def __init__(self, server: AmqpServer, accepted: Accepted, username: str, principal: Any,
                 peer: Peer) -> None:
        options = self.options = server.options
        self.server = server
        self.reader, self.writer = accepted.reader, accepted.writer
        self.accepted_at = accepted.accepted_at
        self.username = username
        self.principal = principal
        self.peer = peer
        self.hostname: str | None = None  # the open's hostname
        self.remote_container: str | None = None
        self.consumers: dict[Link, LinkConsumer] = {}
        self._blocked = False  # the socket's buffer is past write_high_water
        self._yielded = False  # consumers were held back for this turn's output
        transport = self.transport = ProtonTransport(ProtonTransport.SERVER)
        transport.max_frame_size = options.max_frame_size
        transport.channel_max = options.max_sessions - 1
        if options.idle_timeout:
            transport.idle_timeout = options.idle_timeout
        connection = self.connection = Connection()
        connection.container = options.container_id
        self.collector = Collector()
        connection.collect(self.collector)
        transport.bind(connection)
        self._loop = asyncio.get_running_loop()
        self._opened = False  # the client's open arrived
        self._attached = False  # a receiver link was attached to a queue
        self._closing = False  # this server closed the connection
        self._io_closed = False
        self._end: tuple[str, str | None, str] | None = None  # reason, condition, who
        self._in_service = False
        self._wake: asyncio.Handle | None = None
        self._tick: asyncio.TimerHandle | None = None
        self._tick_at = 0.0
        self._timers: list[asyncio.TimerHandle] = []
        self._drainer: asyncio.Task[None] | None = None
        self._handlers: dict[Any, Callable[[Event], None]] = {
            Event.CONNECTION_REMOTE_OPEN: self._on_open,
            Event.CONNECTION_REMOTE_CLOSE: self._on_close,
            Event.SESSION_REMOTE_OPEN: self._on_begin,
            Event.SESSION_REMOTE_CLOSE: self._on_end,
            Event.LINK_REMOTE_OPEN: self._on_attach,
            Event.LINK_REMOTE_DETACH: self._on_detach,
            Event.LINK_REMOTE_CLOSE: self._on_detach,
            Event.LINK_FLOW: self._on_flow,
            Event.DELIVERY: self._on_delivery,
            Event.TRANSPORT_ERROR: self._on_transport_error,
            Event.TRANSPORT_CLOSED: self._on_transport_closed,
        }

    def __repr__(self) -> str:
        return f"<AmqpConnection {self.peer.client} user={self.username!r}>"

    # -- the public face -------------------------------------------------------------------
    def close(self, condition: str, description: str) -> None:
        """End the connection with a close frame carrying ``condition``; the socket closes
        when the client has answered (or after ``close_grace``). Before the client's open,
        proton sends this server's open but holds the close until an open has come: the
        socket is closed once the open is out."""
        if self._closing or self._io_closed:
            return
        self._closing = True
        self._set_end(description, condition, "server")
        connection = self.connection
        connection.condition = Condition(condition, description)
        if connection.state & Endpoint.LOCAL_UNINIT:
            connection.open()  # a close follows an open (AMQP 1.0 2.4.5)
        connection.close()
        self.wake()
        if not self._opened:
            self._loop.call_soon(self.writer.close)  # after the service wake() asked for
            return
        self._timers.append(self._loop.call_later(self.options.close_grace,
                                                  self.writer.transport.abort))

    def info(self) -> dict[str, Any]:
        """What the control plane shows of the connection."""
        return {"client": self.peer.client, "user": self.username, "tls": self.peer.tls,
                "hostname": self.hostname, "container": self.remote_container,
                "links": [{"address": c.address, "unsettled": len(c.unsettled),
                           "presettled": c.presettled, "credit": c.link.credit}
                          for c in self.consumers.values()]}

    @property
    def congested(self) -> bool:
        """Whether consumers are to be given nothing now: the client is not taking what was
        written, or this turn has queued enough (they are served again next turn)."""
        if self._blocked:
            return True
        if self.transport.pending() >= TURN_OUTPUT:
            self._yielded = True
            return True
        return False

    def wake(self) -> None:
        """Have proton's output written (and its events answered) soon: after a queue handed
        a consumer a message from outside this connection's own turn."""
        if self._in_service or self._wake is not None or self._io_closed:
            return
        self._wake = self._loop.call_soon(self._service)

    # -- the pump ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve until the connection ends; unsettled deliveries go back to their queues."""
        try:
            self._start_timers()
            self._push(AMQP_HEADER)  # read and checked by the server before proton
            self._service()
            reader = self.reader
            while not self._io_closed:
                capacity = self.transport.capacity()
                if capacity <= 0:
                    self._stopped_reading()
                    break
                data = await reader.read(min(capacity, READ_CHUNK))
                if not data:
                    self._set_end("connection lost", None, "client")
                    self.transport.close_tail()
                    self._service()
                    break
                self._push(data)
                self._service()
            await self._shut_writer()
        except (ConnectionError, OSError):
            self._set_end("connection lost", None, "client")
        finally:
            self._finish()

    def _stopped_reading(self) -> None:
        """Proton reads no more: after the client's close, after an error it reported (and
        answered with a close), or, silently, after a frame it does not know (an unknown
        performative): that last one is answered here, as the framing error it is."""
        if (self.transport.condition is None and not self._closing
                and not self.connection.state & Endpoint.REMOTE_CLOSED):
            self.close(FRAMING_ERROR, "a frame that is not an AMQP 1.0 performative")
            self._service()

    def _push(self, data: bytes) -> None:
        try:
            self.transport.push(data)
        except Exception as exc:  # proton refused input: its condition says why
            log.debug("proton refused input from %s: %s", self.peer.client, exc)

    def _service(self) -> None:
        """Answer proton's events, run its timers, write what it has to send."""
        self._wake = None
        if self._io_closed:
            return
        self._in_service = True
        try:
            self._events()
            deadline = self.transport.tick(self._loop.time())
            self._events()
            self._schedule_tick(deadline)
            self._flush()
            if self._yielded and not self._blocked:
                self._yielded = False
                self._loop.call_soon(self._redispatch)
        except Exception:  # a bug here costs this connection, not the server
            log.exception("AMQP connection %s failed", self.peer.client)
            self._set_end("internal error", INTERNAL_ERROR, "server")
            self.writer.transport.abort()
            self._io_closed = True
        finally:
            self._in_service = False

    def _events(self) -> None:
        collector, handlers = self.collector, self._handlers
        while True:
            event = collector.peek()
            if event is None:
                return
            handler = handlers.get(event.type)
            if handler is not None:
                handler(event)
            collector.pop()

    def _schedule_tick(self, deadline: float) -> None:
        """Run proton's timers (idle time-out, heartbeats) at ``deadline``: one timer, moved
        only when the deadline moves."""
        if not deadline:
            if self._tick is not None:
                self._tick.cancel()
                self._tick = None
            return
        if self._tick is not None and abs(self._tick_at - deadline) < 0.001:
            return
        if self._tick is not None:
            self._tick.cancel()
        self._tick_at = deadline
        # A millisecond late: asyncio may run a timer up to its clock's resolution early,
        # and proton, counting in milliseconds, would find nothing due yet.
        self._tick = self._loop.call_at(deadline + 0.001, self._on_tick)

    def _on_tick(self) -> None:
        self._tick = None  # fired: the next deadline, even the same one, gets a new timer
        self._service()

    def _flush(self) -> None:
        transport, out = self.transport, self.writer.transport
        if out.is_closing():
            return
        while True:
            pending = transport.pending()
            if pending <= 0:
                break
            data = transport.peek(pending)
            if data:
                self.writer.write(data)
            transport.pop(pending)
        if (not self._blocked
                and out.get_write_buffer_size() > self.options.write_high_water):
            self._blocked = True
            self._drainer = self._loop.create_task(self._drain())

    async def _drain(self) -> None:
        """Wait for a client that stopped reading; give the consumers credit again when it
        took the backlog, abort when it did not within ``write_timeout``."""
        try:
            async with asyncio.timeout(self.options.write_timeout):
                await self.writer.drain()
        except TimeoutError:
            waiting = self.writer.transport.get_write_buffer_size()
            self._set_end(f"write timeout: {waiting} bytes unsent after "
                          f"{self.options.write_timeout:g} s (the client stopped reading)",
                          None, "server")
            self.writer.transport.abort()
            return
        except ConnectionError:
            return
        self._blocked = False
        self._redispatch()

    def _redispatch(self) -> None:
        """Give the consumers held back by ``congested`` what their credit allows."""
        if self._io_closed:
            return
        for queue in {c.queue for c in self.consumers.values()}:
            queue.dispatch()
        self.wake()

    async def _shut_writer(self) -> None:
        """Close the socket once what was written is sent (a close frame must arrive)."""
        if not self.writer.transport.is_closing():
            await shut(self.writer, self.options.close_grace)

    def _start_timers(self) -> None:
        now, options, loop = self._loop.time(), self.options, self._loop
        self._timers.append(loop.call_later(
            max(0.0, self.accepted_at + options.handshake_timeout - now), self._open_due))
        if options.attach_deadline is not None:
            self._timers.append(loop.call_later(
                max(0.0, self.accepted_at + options.attach_deadline - now), self._attach_due))

    def _open_due(self) -> None:
        if not self._opened:
            self.close(RESOURCE_LIMIT_EXCEEDED, f"no open within "
                                                f"{self.options.handshake_timeout:g} s of "
                                                "connecting")

    def _attach_due(self) -> None:
        if not self._attached:
            self.close(RESOURCE_LIMIT_EXCEEDED, f"no receiver link attached within "
                                                f"{self.options.attach_deadline:g} s of "
                                                "connecting")

    def _set_end(self, reason: str, condition: str | None, by: str) -> None:
        if self._end is None:
            self._end = (reason, condition, by)

    def _finish(self) -> None:
        self._io_closed = True
        for timer in (*self._timers, self._tick, self._wake):
            if timer is not None:
                timer.cancel()
        if self._drainer is not None:
            self._drainer.cancel()
        for consumer in list(self.consumers.values()):
            self._lose(consumer, "the connection ended", "client")
        reason, condition, by = self._end or ("connection lost", None, "client")
        self.record("close", detail={"reason": reason, "condition": condition, "by": by})

    # -- proton's events ---------------------------------------------------------------------
    def _on_open(self, event: Event) -> None:
        connection = self.connection
        self._opened = True
        self.hostname = connection.remote_hostname
        self.remote_container = connection.remote_container
        self.record("open", detail={
            "hostname": self.hostname, "container": self.remote_container,
            "idle_timeout": self.transport.remote_idle_timeout,
            "max_frame_size": self.transport.remote_max_frame_size})
        if connection.state & Endpoint.LOCAL_UNINIT:
            connection.open()

    def _on_close(self, event: Event) -> None:
        connection = self.connection
        remote = connection.remote_condition
        if remote is None:
            self._set_end("closed by the client", None, "client")
        else:
            self._set_end(remote.description or "closed by the client", remote.name, "client")
        if not connection.state & Endpoint.LOCAL_CLOSED:
            connection.close()

    def _on_begin(self, event: Event) -> None:
        session = event.session
        assert session is not None
        if not self._opened:  # proton lets a begin before the open through
            self.close(FRAMING_ERROR, "a begin before the open (the open is the first frame, "
                                      "AMQP 1.0 2.4.1)")
            return
        if session.state & Endpoint.LOCAL_UNINIT:
            session.open()

    def _on_end(self, event: Event) -> None:
        session = event.session
        assert session is not None
        for link, consumer in list(self.consumers.items()):
            if link.session == session:
                self._lose(consumer, "its session ended", "client")
        if not session.state & Endpoint.LOCAL_CLOSED:
            session.close()
        _free(session)

    def _on_attach(self, event: Event) -> None:
        link = event.link
        assert link is not None
        if not link.state & Endpoint.LOCAL_UNINIT:
            return
        if not isinstance(link, Sender):  # the client would send
            address = link.remote_target.address
            try:
                refusal = self.server.app.refuse_sender(address, self.principal)
            except Exception:
                log.exception("refuse_sender failed for %s", self.peer.client)
                refusal = Refusal(INTERNAL_ERROR, "the server failed to answer the attach")
            self._refuse(link, refusal, "sender", address)
            return
        address = link.remote_source.address
        found = self._queue_for(link, address)
        if isinstance(found, Refusal):
            self._refuse(link, found, "receiver", address)
            return
        assert address is not None
        presettled = link.remote_snd_settle_mode == Link.SND_SETTLED
        link.source.address = address
        link.target.copy(link.remote_target)
        link.snd_settle_mode = Link.SND_SETTLED if presettled else Link.SND_UNSETTLED
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        link.open()
        consumer = LinkConsumer(self, link, found, address, presettled)
        self.consumers[link] = consumer
        self._attached = True
        self.record("attach", path=address, detail={
            "role": "receiver", "name": link.name, "queue": found.name,
            "settle_mode": "settled" if presettled else "unsettled"})
        found.attach(consumer)

    def _queue_for(self, link: Sender, address: str | None) -> Queue | Refusal:
        """The queue a receiver link of the client's consumes, or why it is refused."""
        if len(self.consumers) >= self.options.max_links:
            return Refusal(RESOURCE_LIMIT_EXCEEDED,
                           f"at most {self.options.max_links} links per connection")
        if link.remote_source.dynamic or not address:
            return Refusal(NOT_FOUND, "a receiver link names the queue it consumes as its "
                                      "source address (no dynamic sources)")
        try:
            queue = self.server.app.open_queue(address, self.principal)
        except Exception:
            log.exception("open_queue failed for %s", self.peer.client)
            return Refusal(INTERNAL_ERROR, "the server failed to open the queue")
        if queue is None or queue.closed:
            return Refusal(NOT_FOUND, f"no queue {address!r}")
        return queue

    def _refuse(self, link: Link, refusal: Refusal, role: str, address: str | None) -> None:
        """Answer the attach with a null terminus of ours, then detach with ``refusal``
        (AMQP 1.0 2.6.3: the attach is answered, the link then detached with the error)."""
        if link.is_sender:
            link.source.type = Terminus.UNSPECIFIED
        else:
            link.target.type = Terminus.UNSPECIFIED
        link.open()
        link.condition = Condition(refusal.condition, refusal.description)
        link.close()
        self.record("attach", path=address, detail={
            "role": role, "name": link.name, "condition": refusal.condition,
            "description": refusal.description})

    def _on_detach(self, event: Event) -> None:
        link = event.link
        assert link is not None
        consumer = self.consumers.get(link)
        if consumer is not None:
            remote = link.remote_condition
            self._lose(consumer, "detached by the client", "client",
                       remote.name if remote else None)
        if not link.state & Endpoint.LOCAL_CLOSED:
            if event.type == Event.LINK_REMOTE_DETACH:
                link.detach()
            else:
                link.close()
        _free(link)

    def _on_flow(self, event: Event) -> None:
        link = event.link
        assert link is not None
        consumer = self.consumers.get(link)
        if consumer is None:
            return
        consumer.queue.dispatch()
        if link.drain_mode and link.credit > 0:
            link.drained()  # nothing more to send now: the credit goes back (2.6.7)

    def _on_delivery(self, event: Event) -> None:
        delivery = event.delivery
        assert delivery is not None
        consumer = self.consumers.get(delivery.link)
        if consumer is not None:
            consumer.disposition(delivery)

    def _on_transport_error(self, event: Event) -> None:
        condition = self.transport.condition
        if condition is not None:
            self._set_end(condition.description or condition.name, condition.name, "server")

    def _on_transport_closed(self, event: Event) -> None:
        self._io_closed = True

    # -- consumers and the journal -----------------------------------------------------------
    def _lose(self, consumer: LinkConsumer, reason: str, by: str,
              condition: str | None = None) -> None:
        """``consumer``'s link is gone: its unsettled messages go back to the queue."""
        self.consumers.pop(consumer.link, None)
        back = consumer.lost()
        for message in back:
            self.record("settle", path=consumer.address, detail={
                "queue": consumer.queue.name, "outcome": "lost",
                "delivery_count": message.delivery_count})
        self.record("detach", path=consumer.address, detail={
            "name": consumer.link.name, "reason": reason, "by": by, "condition": condition,
            "returned": len(back)})

    def forget(self, consumer: LinkConsumer, *, reason: str, by: str, condition: str) -> None:
        """``consumer`` ended by itself (its queue was closed)."""
        self.consumers.pop(consumer.link, None)
        self.record("detach", path=consumer.address, detail={
            "name": consumer.link.name, "reason": reason, "by": by, "condition": condition})

    def record(self, event: str, **fields: Any) -> None:
        self.server.record(event, client=self.peer.client, user=self.username, **fields)

    def record_delivery(self, consumer: LinkConsumer, message: Message, tag: str,
                        size: int) -> None:
        body = message.body
        head = (body if isinstance(body, bytes) else body.encode("utf-8", "replace"))[:EXCERPT]
        self.record("deliver", path=consumer.address, request_size=size,
                    request_excerpt=head, detail={
                        "queue": consumer.queue.name, "tag": tag,
                        "delivery_count": message.delivery_count,
                        "presettled": consumer.presettled})

    def record_settle(self, consumer: LinkConsumer, message: Message, tag: str, outcome: str,
                      condition: Condition | None) -> None:
        detail: dict[str, Any] = {"queue": consumer.queue.name, "tag": tag,
                                  "outcome": outcome}
        if condition is not None:
            detail["condition"] = condition.name
            detail["description"] = condition.description
        self.record("settle", path=consumer.address, detail=detail)


def _free(endpoint: Link | Session) -> None:
    """Let proton free an endpoint both sides have ended (a client that attaches and detaches
    for ever must not grow the connection)."""
    if endpoint.state & Endpoint.LOCAL_CLOSED and endpoint.state & Endpoint.REMOTE_CLOSED:
        endpoint.free()


async def shut(writer: asyncio.StreamWriter, grace: float) -> None:
    """Close ``writer`` once what was written is sent (a close frame, a SASL outcome or a
    protocol header must arrive), waiting ``grace`` seconds at most, then abort."""
    writer.close()
    try:
        async with asyncio.timeout(grace):
            await writer.wait_closed()
    except (TimeoutError, ConnectionError, OSError):
        writer.transport.abort()

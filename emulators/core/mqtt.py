"""The farm's MQTT 3.1.1 broker: a listener on the farm's loop that cloud members (IoTDA, EnOS
device access) drive through hooks. It names no vendor; the hooks decide who may connect, what
a client may publish or subscribe to, and what a message means.

Why our own broker and not amqtt 0.12.1 (read in its source, ``amqtt/broker.py`` and
``amqtt/mqtt/protocol/broker_handler.py`` of the PyPI release):

- amqtt can run on our loop and take connections we accepted (``ListenerType.EXTERNAL`` and
  ``Broker.external_connected(reader, writer, listener)``), and a session's handler has
  ``mqtt_publish`` for downstream messages. Those parts would do.
- Its authentication is a yes/no: ``mqtt_connack_authorize(authorize: bool)`` sends
  ``CONNECTION_ACCEPTED if authorize else NOT_AUTHORIZED``. CONNACK 4 (bad credentials, which
  stops the IoTDA SDK retrying) cannot be answered without replacing that private method.
- ``Broker._handle_message_delivery`` closes the connection of any client that publishes to a
  topic starting with ``$`` ([MQTT-4.7.2-1] misread: that rule is about wildcard matching).
  Every IoTDA upstream topic is ``$oc/devices/{id}/...``: every device report would disconnect
  the device. Only overriding a private method fixes it.
- With ``clean_session`` (paho's default, the IoTDA SDK's setting) ``_initialize_client_session``
  calls ``_delete_session``, which forgets the old session without stopping its handler: the
  first connection stays open next to the second, so "one connection per device" does not hold.
- No packet size limit: ``MQTTFixedHeader.from_stream`` accepts any remaining length up to
  256 MB and reads it into memory; the 1 MB message limit would need a reader adapter.
- Hooks are plugins named by dotted class path in the configuration, so a member's hook
  object reaches them only through a module-level registry; and the package pulls typer, rich,
  psutil, websockets, transitions and argon2 into the farm.

Four private overrides, pinned against every amqtt release, would be larger and more fragile
than the subset of MQTT 3.1.1 the two platforms allow (QoS 0/1, no retained messages, no
will), which is this module. What it does not do: QoS 2 (refused: the connection is closed),
retained messages (the flag is passed to the hook and otherwise ignored), persistent sessions
(``session present`` is always 0), routing between clients (the platform is the only other
party; a member relays with ``send`` if it wants to).

TLS is done here, per connection, from a context factory: the set of trusted client CAs can
change between two handshakes without restarting the listener (Mosquitto cannot reload it).

Protocol levels: 3.1.1 (``MQTT``, level 4) and 3.1 (``MQIsdp``, level 3; served as 3.1.1, whose
packets are the same bytes for everything this broker does). Any other level of either name,
MQTT 5.0 included, is answered CONNACK 1 (unacceptable protocol version) and closed
[MQTT-3.1.2-2]; the rest of that CONNECT is not parsed as 3.1.1 (an MQTT 5 CONNECT carries
properties 3.1.1 has no place for). A client that falls back (gmqtt, paho's MQTT 5 mode with a
retry) connects again as 3.1.1.

What a client may cost before it has logged in is bounded: a CONNECT larger than
``max_connect`` is refused from its fixed header, unread; TLS handshakes in flight are at most
``max_handshakes`` (later connections wait, unread, for a slot), each with a 16 KiB read buffer
and ``handshake_timeout`` to finish; and when a wave of handshakes has ended, the heap's free
pages are handed back (``core/process.release_free_memory``). A session whose client stops
reading is closed once a write has waited ``write_timeout`` (its callers get ConnectionError).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .asyncio_internals import shrink_tls_read_buffer, start_tls_small
from .process import release_free_memory
from .tasks import cancel_and_wait

log = logging.getLogger("emulators.mqtt")

# CONNACK return codes (MQTT 3.1.1 table 3.1).
ACCEPTED = 0
UNACCEPTABLE_PROTOCOL = 1
IDENTIFIER_REJECTED = 2
SERVER_UNAVAILABLE = 3
BAD_CREDENTIALS = 4
NOT_AUTHORIZED = 5
# Not a CONNACK code: what ``authenticate`` returns to close the connection without a CONNACK.
DROP = -1

SUBSCRIBE_FAILURE = 0x80

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

Action = Literal["publish", "subscribe"]

HANDSHAKE_TIMEOUT = 15.0
CONNECT_TIMEOUT = 10.0  # from accept (after TLS) to a whole CONNECT packet
ACK_TIMEOUT = 10.0
WRITE_TIMEOUT = 30.0

# The protocol levels served, by protocol name (MQTT 3.1.1 section 3.1.2.1-2).
PROTOCOL_LEVELS = {"MQTT": 4, "MQIsdp": 3}

# Packet types whose fixed-header flags are fixed, and the value [MQTT-2.2.2-1]; others than
# these close the connection [MQTT-2.2.2-2]. PUBLISH's flags carry DUP, QoS and RETAIN.
FIXED_FLAGS = {CONNECT: 0, PUBACK: 0, PUBREC: 0, PUBREL: 2, PUBCOMP: 0, SUBSCRIBE: 2,
               UNSUBSCRIBE: 2, PINGREQ: 0, DISCONNECT: 0}
PACKET_NAMES = {CONNECT: "CONNECT", CONNACK: "CONNACK", PUBLISH: "PUBLISH", PUBACK: "PUBACK",
                PUBREC: "PUBREC", PUBREL: "PUBREL", PUBCOMP: "PUBCOMP", SUBSCRIBE: "SUBSCRIBE",
                SUBACK: "SUBACK", UNSUBSCRIBE: "UNSUBSCRIBE", UNSUBACK: "UNSUBACK",
                PINGREQ: "PINGREQ", PINGRESP: "PINGRESP", DISCONNECT: "DISCONNECT"}


class MalformedPacket(Exception):
    """A packet that breaks MQTT 3.1.1: the connection is closed (MQTT-4.8.0-1)."""


@dataclass(frozen=True)
class Refusal:
    """A connection the broker itself ended before a session began, by MQTT's rules rather
    than a member's: ``code`` is the CONNACK return code it sent (1 for a protocol level it
    does not serve, 2 for an empty client id without clean session), None when it closed
    without one (a malformed or oversized CONNECT, or another packet first). What the CONNECT
    named is given when it could be read."""

    peer: tuple[str, int]
    tls: bool
    code: int | None
    reason: str
    protocol: str | None = None
    protocol_level: int | None = None
    client_id: str | None = None
    username: str | None = None


@dataclass(frozen=True)
class ConnectInfo:
    """A CONNECT as the client sent it, with what the transport knows of the client."""

    client_id: str
    username: str | None
    password: bytes | None
    keep_alive: int
    clean_session: bool
    protocol_level: int  # 4 for 3.1.1, 3 for 3.1
    will_topic: str | None
    will_payload: bytes | None
    will_qos: int
    will_retain: bool
    peer: tuple[str, int]
    tls: bool
    # The client certificate (DER) the handshake verified, None without TLS or without one.
    peer_certificate: bytes | None
    client_id_generated: bool = False  # the client sent an empty id with clean_session


class MqttHooks:
    """What a member decides; every method may be overridden, the defaults let all in."""

    async def authenticate(self, info: ConnectInfo) -> int:
        """The CONNACK return code for this CONNECT (0 accepts; ``DROP`` answers nothing and
        closes the connection)."""
        return ACCEPTED

    async def authorize(self, session: MqttSession, action: Action, topic: str) -> bool:
        """Whether ``session`` may publish to ``topic`` or subscribe to the filter ``topic``."""
        return True

    async def on_connect(self, session: MqttSession) -> None:
        """An accepted session, after its CONNACK was written."""

    async def on_publish(self, session: MqttSession, topic: str, payload: bytes, qos: int,
                         retain: bool) -> Awaitable[Any] | None:
        """An authorised PUBLISH. A QoS 1 PUBACK is sent when this returns, or, when it
        returns an awaitable (a save of what the message changed), once that is done: the
        session reads on meanwhile, and its PUBACKs keep the order of the PUBLISHes
        (MQTT-4.6.0-2), so the messages in flight share saves."""
        return None

    async def acknowledge(self, session: MqttSession, topic: str) -> bool:
        """Before the PUBACK of a QoS 1 PUBLISH: False sends none (a fault may also wait
        here first)."""
        return True

    async def on_subscribe(self, session: MqttSession, topic_filter: str, qos: int) -> None:
        """A granted subscription."""

    async def on_disconnect(self, session: MqttSession, reason: str) -> None:
        """The end of an accepted session: ``disconnect`` (the client said so), ``displaced``
        (the same client id connected again), ``connection lost``, ``keep-alive timeout``,
        ``message too large``, ``malformed: ...``, ``write timeout: ...`` (the client stopped
        reading), ``closed: ...`` (``close()``), ``stopped``."""

    async def on_refused(self, refusal: Refusal) -> None:
        """A connection ended before ``authenticate`` was asked (see ``Refusal``). A connection
        that closes before sending a byte, or sends no whole packet in ``connect_timeout``, is
        not reported (port probes and health checks do that)."""


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 filter matching (4.7); ``+``/``#`` at the start do not match ``$`` topics."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    fparts = topic_filter.split("/")
    tparts = topic.split("/")
    for i, part in enumerate(fparts):
        if part == "#":
            return True
        if i >= len(tparts) or (part != "+" and part != tparts[i]):
            return False
    return len(fparts) == len(tparts)


def _valid_filter(topic_filter: str) -> bool:
    if not topic_filter or "\x00" in topic_filter:
        return False
    parts = topic_filter.split("/")
    for i, part in enumerate(parts):
        if "#" in part and (part != "#" or i != len(parts) - 1):
            return False
        if "+" in part and part != "+":
            return False
    return True


class _Reader:
    """Fields of one packet's body, each checked against the bytes there are."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n > self.left():
            raise MalformedPacket("packet shorter than its fields")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = struct.unpack("!H", self.take(2))[0]
        return value

    def binary(self) -> bytes:
        return self.take(self.u16())

    def text(self) -> str:
        raw = self.binary()
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPacket("string is not UTF-8") from None
        if "\x00" in value:
            raise MalformedPacket("string holds U+0000")  # MQTT-1.5.3-2
        return value


def _packet_id(r: _Reader) -> int:
    packet_id = r.u16()
    if not packet_id:
        raise MalformedPacket("packet identifier 0")  # MQTT-2.3.1-1
    return packet_id


def remaining_length(n: int) -> bytes:
    """MQTT's variable-length encoding of a packet's remaining length (2.2.3)."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([(kind << 4) | flags]) + remaining_length(len(body)) + body


def _text(value: str) -> bytes:
    raw = value.encode()
    return struct.pack("!H", len(raw)) + raw


def _done(awaitable: Awaitable[Any]) -> bool:
    return isinstance(awaitable, asyncio.Future) and awaitable.done()


class _Unsupported(Exception):
    """A CONNECT of a protocol level this broker does not serve: CONNACK 1, then closed."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


def _peek_v5(r: _Reader) -> tuple[str | None, str | None]:
    """The client id and user name of an MQTT 5.0 CONNECT, for the journal of its refusal
    (MQTT 5.0 section 3.1: properties after the keep-alive and before the will topic), or
    Nones where it is not what 5.0 says."""
    try:
        cflags = r.u8()
        r.u16()  # keep-alive
        r.take(_varint(r))  # properties
        client_id = r.text()
        if cflags & 0x04:
            r.take(_varint(r))  # will properties
            r.text()
            r.binary()
        return client_id, r.text() if cflags & 0x80 else None
    except MalformedPacket:
        return None, None


def _varint(r: _Reader) -> int:
    value, shift = 0, 0
    for _ in range(4):
        byte = r.u8()
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
        shift += 7
    raise MalformedPacket("variable byte integer longer than 4 bytes")


def _drop_tracebacks(exc: BaseException | None) -> None:
    """A failed handshake's exception (and those it chains) holds its traceback, whose frames
    hold the handshake's waiter, which holds the exception: a cycle that keeps the transport,
    protocol and SSL object (about 100 KB) until a full garbage collection, which a busy farm
    runs rarely. Dropping the tracebacks frees them at once."""
    seen = 0
    while exc is not None and seen < 8:
        exc.__traceback__ = None
        exc = exc.__context__ or exc.__cause__
        seen += 1


class _Closed(Exception):
    """The session ends; ``reason`` goes to on_disconnect."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False)
class MqttSession:
    """One accepted client connection."""

    info: ConnectInfo
    _listener: MqttListener = field(repr=False)
    _writer: asyncio.StreamWriter = field(repr=False)
    subscriptions: dict[str, int] = field(default_factory=dict)
    _next_id: int = 0
    _acks: dict[int, asyncio.Future[None]] = field(default_factory=dict, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    _ended: str | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)
    # PUBACKs waiting for what their message changed to be saved, in PUBLISH order, and the
    # task that sends them.
    _pubacks: deque[tuple[Awaitable[Any] | None, bytes]] = field(default_factory=deque,
                                                                 repr=False)
    _acker: asyncio.Task[None] | None = field(default=None, repr=False)
    # The wait for room to write, while the transport's buffer is full (see ``_write``).
    _drainer: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def client_id(self) -> str:
        return self.info.client_id

    @property
    def connected(self) -> bool:
        return self._ended is None

    def subscribed(self, topic: str) -> bool:
        """Whether one of this session's subscriptions matches ``topic``."""
        return any(topic_matches(f, topic) for f in self.subscriptions)

    async def _write(self, data: bytes) -> None:
        """Write ``data`` and wait until the transport has room again. A client that stops
        reading fills the socket's buffers, then the transport's: the wait for room is a task
        of the session's own (``_drain``), with a deadline of ``write_timeout``, which a
        caller that gives up first (a REST call's own timeout) does not cancel. At the
        deadline the session ends, and this writer and every one queued behind it get
        ConnectionError. Below the transport's low-water mark ``drain`` does not wait, and
        neither task nor timer is made: the hot path pays for neither."""
        async with self._lock:
            if self._ended is not None:
                raise ConnectionError(f"session {self.client_id!r} ended: {self._ended}")
            writer = self._writer
            writer.write(data)
            transport = writer.transport
            if transport.get_write_buffer_size() <= transport.get_write_buffer_limits()[0]:
                await writer.drain()
                return
            draining = self._drainer
            if draining is None or draining.done():
                draining = self._drainer = asyncio.get_running_loop().create_task(
                    self._drain())
            await asyncio.shield(draining)
            if self._ended is not None:
                raise ConnectionError(f"session {self.client_id!r} ended: {self._ended}")

    async def _drain(self) -> None:
        timeout = self._listener.write_timeout
        try:
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError:
            waiting = self._writer.transport.get_write_buffer_size()
            self._listener._end(self, f"write timeout: {waiting} bytes unsent after "
                                      f"{timeout:g} s (the client stopped reading)")
        except ConnectionError:
            pass  # the connection is gone: its reader reports it

    async def publish(self, topic: str, payload: bytes, qos: int = 0, *,
                      ack_timeout: float = ACK_TIMEOUT) -> None:
        """Send a PUBLISH to this client (subscribed or not); with QoS 1, wait for its PUBACK
        (TimeoutError when none comes). ConnectionError when the session has ended.

        From the session's own task (a hook answering a message) the PUBACK cannot be waited
        for, since that task is the one that would read it: the call returns once written."""
        if self._ended is not None:
            raise ConnectionError(f"session {self.client_id!r} ended: {self._ended}")
        if qos not in (0, 1):
            raise ValueError("only QoS 0 and 1 are sent")
        body = _text(topic)
        waiter: asyncio.Future[None] | None = None
        packet_id = 0
        if qos:
            self._next_id = packet_id = self._next_id % 0xFFFF + 1
            body += struct.pack("!H", packet_id)
            if asyncio.current_task() is not self._task:
                waiter = asyncio.get_running_loop().create_future()
                self._acks[packet_id] = waiter
        await self._write(_packet(PUBLISH, qos << 1, body + payload))
        if waiter is not None:
            try:
                async with asyncio.timeout(ack_timeout):
                    await waiter
            finally:
                self._acks.pop(packet_id, None)

    def _queue_puback(self, durable: Awaitable[Any] | None, puback: bytes) -> None:
        self._pubacks.append((durable, puback))
        if self._acker is None or self._acker.done():
            self._acker = asyncio.get_running_loop().create_task(self._send_pubacks())

    async def _send_pubacks(self) -> None:
        while self._pubacks:
            durable, _ = self._pubacks[0]
            if durable is not None:
                try:
                    # shielded: a session that ends must not cancel a save others share
                    await asyncio.shield(durable)
                except Exception:  # the save failed: the member reports it; the message
                    log.exception("saving before a PUBACK of %s failed", self.client_id)
            # Every PUBACK whose save is done goes in one write (one send per message was a
            # third of the broker's time per message; bench/mqtt.py).
            ready = bytearray(self._pubacks.popleft()[1])
            while self._pubacks and (self._pubacks[0][0] is None
                                     or _done(self._pubacks[0][0])):
                ready += self._pubacks.popleft()[1]
            try:
                await self._write(bytes(ready))
            except ConnectionError:
                return

    def close(self, reason: str) -> None:
        """End the session now (a revoked certificate, a fault): no DISCONNECT exists in 3.1.1,
        the connection is closed."""
        self._listener._end(self, f"closed: {reason}")


class MqttListener:
    """An MQTT broker on ``host:port``, with TLS when ``tls`` gives a context per handshake.

    Limits are attributes (pyftpdlib's habit); a member sets them from its vendor's spec.
    """

    # The largest PUBLISH payload accepted; a larger one closes the connection (MQTT 3.1.1 has
    # no negative acknowledgement). 1 MB is IoTDA's documented limit.
    max_message: int = 1024 * 1024
    max_qos: int = 1  # a QoS 2 PUBLISH closes the connection; a QoS 2 SUBSCRIBE is granted 1
    # A refused PUBLISH is acknowledged and dropped (what Mosquitto does); True closes the
    # connection instead (what AWS IoT does).
    disconnect_on_refused_publish: bool = False
    connect_timeout: float = CONNECT_TIMEOUT
    # A TLS handshake's deadline, once it has a slot; a connection waiting for a slot waits
    # at most as long again, then is closed.
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    # TLS handshakes in flight at once; later connections wait for a slot with their
    # ClientHello unread (a waiting socket costs a few KB, a handshake in flight about
    # 100 KB; bench/mqtt.py --only halfopen).
    max_handshakes: int = 128
    # The largest CONNECT read before authentication. MQTT allows strings of 65,535 bytes,
    # but the longest IoTDA or EnOS login is under 512 bytes (a 128-character device id twice,
    # a 64-hex password; EnOS's signed client id and ``deviceKey&productKey``); 8 KiB leaves
    # room for a will of a few KB. A larger one is refused from its fixed header, unread.
    max_connect: int = 8 * 1024
    # How long a write may wait for the client to take what was sent before (see
    # ``MqttSession._write``): longer than a slow link needs for a 1 MB message.
    write_timeout: float = WRITE_TIMEOUT
    # The protocol levels served; any other is answered CONNACK 1 (MQTT-3.1.2-2).
    protocol_levels: frozenset[int] = frozenset(PROTOCOL_LEVELS.values())
    # After this many handshakes have ended with none in flight, the heap's free pages go
    # back to the system (a wave of half-open connections left 600 MB behind otherwise).
    trim_after_handshakes: int = 64

    def __init__(self, hooks: MqttHooks, host: str = "127.0.0.1", port: int = 0, *,
                 tls: Callable[[], ssl.SSLContext] | None = None) -> None:
        self.hooks = hooks
        self.host = host
        self.port = port
        self.tls = tls
        self.sessions: dict[str, MqttSession] = {}
        self._server: asyncio.Server | None = None
        self._stopping = False
        # Every accepted connection's task and raw transport, from accept on: stop() ends
        # even those whose task has not run yet.
        self._connections: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.Transport] = set()
        self._handshake_slots: asyncio.Semaphore | None = None
        self._handshakes = 0  # in flight now
        self._handshakes_ended = 0  # since the last trim
        self._trim: asyncio.TimerHandle | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> tuple[str, int]:
        self._stopping = False
        self._handshake_slots = asyncio.Semaphore(self.max_handshakes)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Handover(self), self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.host, self.port

    async def stop(self) -> None:
        """Stop listening and close every connection; on_disconnect runs for each session."""
        server, self._server = self._server, None
        self._stopping = True
        if server is not None:
            server.close()
        if self._trim is not None:
            self._trim.cancel()
            self._trim = None
        # A connection the loop accepted just before close() gets its transport a few
        # iterations later (``_accept_connection2`` is a task), and Python 3.11's
        # ``wait_closed`` does not wait for it: let those arrive, to be refused.
        for _ in range(3):
            await asyncio.sleep(0)
        owned = set()
        for session in list(self.sessions.values()):
            owned.add(session._task)
            self._end(session, "stopped")  # cancels the session's task once
        for transport in list(self._transports):
            transport.abort()
        tasks = list(self._connections)
        for task in tasks:
            if task not in owned:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        # abort() closes a socket in a callback of the next loop iteration: let it run, so
        # that stop() returning means no socket of this listener is open.
        await asyncio.sleep(0)

    async def send(self, client_id: str, topic: str, payload: bytes, qos: int = 0, *,
                   ack_timeout: float = ACK_TIMEOUT) -> None:
        """A downstream message to the connected client ``client_id``, whether or not it
        subscribed (LookupError when it is not connected)."""
        session = self.sessions.get(client_id)
        if session is None:
            raise LookupError(f"no MQTT session for {client_id!r}")
        await session.publish(topic, payload, qos, ack_timeout=ack_timeout)

    # -- one connection --------------------------------------------------------------------
    async def _connection(self, transport: asyncio.Transport) -> None:
        """One accepted socket, reading paused: TLS with this handshake's context, then MQTT."""
        raw = transport
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2 ** 16)
        protocol = asyncio.StreamReaderProtocol(reader)
        certificate: bytes | None = None
        try:
            if self.tls is not None:
                tls = await self._handshake(transport, protocol)
                if tls is None:
                    return  # a failed handshake: what a TLS server does, nothing more
                shrink_tls_read_buffer(tls)  # where start_tls_small could not: 256 -> 16 KiB
                transport = tls
                protocol.connection_made(transport)
                ssl_object = transport.get_extra_info("ssl_object")
                if ssl_object is not None:
                    certificate = ssl_object.getpeercert(binary_form=True)
            else:
                transport.set_protocol(protocol)
                protocol.connection_made(transport)
                transport.resume_reading()
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            await self._serve(reader, writer, certificate)
        except asyncio.CancelledError:
            pass
        except Exception:  # a bug here must cost one connection, never the listener
            log.exception("MQTT connection from %s failed", transport.get_extra_info("peername"))
        finally:
            transport.abort()
            raw.abort()
            self._transports.discard(raw)

    async def _handshake(self, raw: asyncio.Transport, protocol: asyncio.BaseProtocol
                         ) -> asyncio.Transport | None:
        """The TLS handshake of one connection, in one of ``max_handshakes`` slots: the TLS
        transport, or None when it failed, timed out or found no slot in time."""
        slots, context = self._handshake_slots, self.tls
        assert slots is not None
        assert context is not None
        try:
            async with asyncio.timeout(self.handshake_timeout):
                await slots.acquire()
        except TimeoutError:
            return None
        self._handshakes += 1
        try:
            return await start_tls_small(raw, protocol, context(),
                                         handshake_timeout=self.handshake_timeout)
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            _drop_tracebacks(exc)
            return None
        finally:
            self._handshakes -= 1
            slots.release()
            self._handshake_ended()

    def _handshake_ended(self) -> None:
        """After a wave of handshakes (none in flight, ``trim_after_handshakes`` ended), give
        the heap's free pages back, once, a second later and off the loop: what a wave of
        half-open connections freed otherwise stays in glibc's heap (bench/mqtt.py --only
        halfopen)."""
        self._handshakes_ended += 1
        if (self._handshakes or self._handshakes_ended < self.trim_after_handshakes
                or self._trim is not None or self._stopping):
            return
        loop = asyncio.get_running_loop()

        def trim() -> None:
            self._trim = None
            if self._handshakes:  # a new wave began: its end trims
                return
            self._handshakes_ended = 0
            loop.run_in_executor(None, release_free_memory)

        self._trim = loop.call_later(1.0, trim)

    async def _refused(self, refusal: Refusal) -> None:
        try:
            await self.hooks.on_refused(refusal)
        except Exception:
            log.exception("on_refused hook failed for %s", refusal.peer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     certificate: bytes | None) -> None:
        peer = writer.get_extra_info("peername")[:2]
        tls = self.tls is not None
        try:
            async with asyncio.timeout(self.connect_timeout):
                kind, flags, body = await self._read_packet(reader, first=True)
            info, code = self._parse_connect(flags, body, peer, certificate)
        except (MalformedPacket, _Closed) as exc:
            # MQTT-3.1.4-1: a CONNECT that does not conform is closed without a CONNACK.
            reason = exc.reason if isinstance(exc, _Closed) else f"malformed: {exc}"
            await self._refused(Refusal(peer, tls, None, reason))
            return
        except _Unsupported as exc:
            writer.write(_packet(CONNACK, 0, bytes([0, UNACCEPTABLE_PROTOCOL])))
            with contextlib.suppress(ConnectionError):
                async with asyncio.timeout(self.connect_timeout):
                    await writer.drain()
            await self._refused(exc.refusal)
            return
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return
        if code != ACCEPTED:
            await self._refused(Refusal(
                peer, tls, code, "identifier rejected: an empty client id needs clean session",
                "MQTT" if info.protocol_level == 4 else "MQIsdp", info.protocol_level,
                None, info.username))
        else:
            try:
                code = await self.hooks.authenticate(info)
            except Exception:
                log.exception("authenticate hook failed for %s", info.client_id)
                code = SERVER_UNAVAILABLE
        if code == DROP:
            return
        if code != ACCEPTED:
            writer.write(_packet(CONNACK, 0, bytes([0, code])))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            return
        old = self.sessions.get(info.client_id)
        if old is not None:
            self._end(old, "displaced")
        session = MqttSession(info, self, writer, _task=asyncio.current_task())
        self.sessions[info.client_id] = session
        try:
            await session._write(_packet(CONNACK, 0, bytes([0, ACCEPTED])))
            await self.hooks.on_connect(session)
            reason = await self._session_loop(session, reader)
        except _Closed as exc:
            reason = exc.reason
        except asyncio.CancelledError:
            reason = session._ended or "stopped"
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        except (ConnectionError, asyncio.IncompleteReadError):
            reason = "connection lost"
        except Exception:  # a hook's bug ends this session, reported like any other end
            log.exception("MQTT session %s failed", session.client_id)
            reason = "internal error"
        await self._finish(session, session._ended or reason)

    def _end(self, session: MqttSession, reason: str) -> None:
        """Mark ``session`` ended and stop its connection; its own task reports it."""
        if session._ended is not None:
            return
        session._ended = reason
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        session._writer.transport.abort()
        if session._task is not None and session._task is not asyncio.current_task():
            session._task.cancel()

    async def _finish(self, session: MqttSession, reason: str) -> None:
        self._end(session, reason)
        if session._acker is not None:
            await cancel_and_wait(session._acker)
        if session._drainer is not None:
            await cancel_and_wait(session._drainer)
        session._pubacks.clear()
        for waiter in session._acks.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError(f"session ended: {reason}"))
        session._acks.clear()
        try:
            await self.hooks.on_disconnect(session, reason)
        except Exception:
            log.exception("on_disconnect hook of %s failed", session.client_id)

    async def _read_packet(self, reader: asyncio.StreamReader, *, first: bool = False
                           ) -> tuple[int, int, bytes]:
        """One packet: (type, fixed-header flags, body). ``first``: the connection's first
        packet, which must be a CONNECT of at most ``max_connect`` bytes; neither is read
        past its fixed header when it is not."""
        # The fixed header is at least 2 bytes; a longer remaining length follows byte by byte.
        head, byte = await reader.readexactly(2)
        if first and head >> 4 != CONNECT:
            # MQTT-3.1.0-1: the first packet must be CONNECT
            raise MalformedPacket(f"the first packet is of type {head >> 4}, not CONNECT")
        length, multiplier = byte & 0x7F, 128
        for _ in range(3):
            if not byte & 0x80:
                break
            byte = (await reader.readexactly(1))[0]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
        else:
            if byte & 0x80:
                raise MalformedPacket("remaining length longer than 4 bytes")
        kind = head >> 4
        if first:
            if length > self.max_connect:
                raise _Closed(f"CONNECT too large: {length} bytes declared, at most "
                              f"{self.max_connect} are read before authentication")
        elif length > (self.max_message + 65_537 + 2 if kind == PUBLISH else 65_600):
            # Room for the topic and packet id around the largest payload accepted.
            raise _Closed("message too large")
        body = await reader.readexactly(length) if length else b""
        return kind, head & 0x0F, body

    def _parse_connect(self, flags: int, body: bytes, peer: tuple[str, int],
                       certificate: bytes | None) -> tuple[ConnectInfo, int]:
        r = _Reader(body)
        protocol = r.text()
        level = r.u8()
        if protocol not in PROTOCOL_LEVELS:
            raise MalformedPacket(f"protocol name {protocol!r}")  # MQTT-3.1.2-1
        if PROTOCOL_LEVELS[protocol] != level or level not in self.protocol_levels:
            # MQTT-3.1.2-2: CONNACK 1 and close; the rest is read (best effort) for the
            # journal only, as the level's own layout.
            client_id, username = _peek_v5(r) if level == 5 else (None, None)
            version = {3: "3.1", 4: "3.1.1", 5: "5.0"}.get(level, "unknown")
            served = " and ".join(f"{name} level {lv}" for name, lv in PROTOCOL_LEVELS.items()
                                  if lv in self.protocol_levels)
            raise _Unsupported(Refusal(
                peer, self.tls is not None, UNACCEPTABLE_PROTOCOL,
                f"unacceptable protocol version: {protocol} level {level} (MQTT {version}); "
                f"this broker serves {served}", protocol, level, client_id, username))
        code = ACCEPTED
        cflags = r.u8()
        if cflags & 0x01 or flags:
            raise MalformedPacket("reserved CONNECT flag set")  # MQTT-3.1.2-3
        keep_alive = r.u16()
        client_id = r.text()
        will_topic = will_payload = None
        will_qos = (cflags >> 3) & 0x03
        if cflags & 0x04:
            will_topic = r.text()
            will_payload = r.binary()
            if will_qos == 3:
                raise MalformedPacket("will QoS 3")
        elif will_qos or cflags & 0x20:
            raise MalformedPacket("will QoS or retain without a will")  # MQTT-3.1.2-11/13
        if cflags & 0x40 and not cflags & 0x80:
            raise MalformedPacket("password without a user name")  # MQTT-3.1.2-22
        username = r.text() if cflags & 0x80 else None
        password = r.binary() if cflags & 0x40 else None
        if r.left():
            raise MalformedPacket("bytes after the CONNECT payload")
        clean = bool(cflags & 0x02)
        generated = False
        if not client_id:
            if not clean and code == ACCEPTED:
                code = IDENTIFIER_REJECTED  # MQTT-3.1.3-8
            client_id, generated = f"auto-{uuid.uuid4().hex}", True
        info = ConnectInfo(
            client_id=client_id, username=username, password=password, keep_alive=keep_alive,
            clean_session=clean, protocol_level=level, will_topic=will_topic,
            will_payload=will_payload, will_qos=will_qos, will_retain=bool(cflags & 0x20),
            peer=peer, tls=self.tls is not None, peer_certificate=certificate,
            client_id_generated=generated)
        return info, code

    async def _session_loop(self, session: MqttSession, reader: asyncio.StreamReader) -> str:
        # Keep-alive: the session ends when nothing came for 1.5 x its keep-alive (MQTT-3.1.2-24),
        # checked by a timer re-armed at most once per keep-alive, not a timeout around every
        # read (that cost 9 us of a 35 us PUBLISH; bench/mqtt.py).
        loop = asyncio.get_running_loop()
        limit = session.info.keep_alive * 1.5
        last_read = loop.time()
        watchdog: asyncio.TimerHandle | None = None

        def check() -> None:
            nonlocal watchdog
            idle = loop.time() - last_read
            if idle >= limit:
                self._end(session, "keep-alive timeout")
            else:
                watchdog = loop.call_later(limit - idle, check)

        if limit:
            watchdog = loop.call_later(limit, check)
        try:
            while True:
                try:
                    kind, flags, body = await self._read_packet(reader)
                except MalformedPacket as exc:
                    return f"malformed: {exc}"
                except asyncio.IncompleteReadError:
                    return "connection lost"
                last_read = loop.time()
                try:
                    if kind == PUBLISH:  # the hot path first
                        await self._publish(session, flags, body)
                        continue
                    if FIXED_FLAGS.get(kind, flags) != flags:
                        # MQTT-2.2.2-2 (DISCONNECT's own: MQTT-3.14.1-1)
                        raise MalformedPacket(f"{PACKET_NAMES[kind]} with reserved flags "
                                              f"{flags:#x}")
                    if kind == DISCONNECT:
                        return "disconnect"
                    await self._dispatch(session, kind, flags, body)
                except MalformedPacket as exc:
                    return f"malformed: {exc}"
        finally:
            if watchdog is not None:
                watchdog.cancel()

    async def _dispatch(self, session: MqttSession, kind: int, flags: int, body: bytes) -> None:
        """Every packet but PUBLISH and DISCONNECT, its fixed-header flags checked."""
        if kind == PUBACK:
            packet_id = _Reader(body).u16()
            waiter = session._acks.pop(packet_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif kind == SUBSCRIBE:
            await self._subscribe(session, flags, body)
        elif kind == UNSUBSCRIBE:
            r = _Reader(body)
            packet_id = _packet_id(r)
            if not r.left():
                raise MalformedPacket("UNSUBSCRIBE without a topic filter")  # MQTT-3.10.3-2
            while r.left():
                session.subscriptions.pop(r.text(), None)
            await session._write(_packet(UNSUBACK, 0, struct.pack("!H", packet_id)))
        elif kind == PINGREQ:
            await session._write(_packet(PINGRESP, 0, b""))
        elif kind in (PUBREC, PUBREL, PUBCOMP):
            raise MalformedPacket("QoS 2 flow")  # no QoS 2 message is ever sent or taken
        else:
            raise MalformedPacket(f"packet type {kind} from a client")

    async def _publish(self, session: MqttSession, flags: int, body: bytes) -> None:
        qos = (flags >> 1) & 0x03
        if qos == 3:
            raise MalformedPacket("PUBLISH QoS 3")  # MQTT-3.3.1-4
        if flags & 0x08 and not qos:
            raise MalformedPacket("DUP set on a QoS 0 PUBLISH")  # MQTT-3.3.1-2
        if qos > self.max_qos:
            raise _Closed(f"QoS {qos} refused")
        # The hot path: fields sliced here rather than through _Reader (5 us a message).
        end = 2 + int.from_bytes(body[:2], "big")
        head = end + 2 if qos else end
        if len(body) < head:
            raise MalformedPacket("packet shorter than its fields")
        try:
            topic = body[2:end].decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPacket("string is not UTF-8") from None
        if not topic or "+" in topic or "#" in topic or "\x00" in topic:
            raise MalformedPacket("PUBLISH topic")  # MQTT-3.3.2-1/2, MQTT-1.5.3-2
        packet_id = int.from_bytes(body[end:head], "big") if qos else 0
        if qos and not packet_id:
            raise MalformedPacket("packet identifier 0")  # MQTT-2.3.1-1
        payload = body[head:]
        if len(payload) > self.max_message:
            raise _Closed("message too large")
        durable: Awaitable[Any] | None = None
        if await self.hooks.authorize(session, "publish", topic):
            durable = await self.hooks.on_publish(session, topic, payload, qos,
                                                  bool(flags & 0x01))
        elif self.disconnect_on_refused_publish:
            raise _Closed(f"publish to {topic!r} refused")
        if qos and await self.hooks.acknowledge(session, topic):
            puback = b"\x40\x02" + packet_id.to_bytes(2, "big")
            if durable is None and not session._pubacks:
                await session._write(puback)
            else:
                session._queue_puback(durable, puback)

    async def _subscribe(self, session: MqttSession, flags: int, body: bytes) -> None:
        r = _Reader(body)
        packet_id = _packet_id(r)
        if not r.left():
            raise MalformedPacket("SUBSCRIBE without a topic")  # MQTT-3.8.3-3
        codes = bytearray()
        granted: list[tuple[str, int]] = []
        while r.left():
            topic_filter = r.text()
            requested = r.u8()
            if requested & 0xFC or requested == 3:
                # MQTT-3.8.3-4: reserved bits set, or QoS 3, make the packet malformed
                raise MalformedPacket(f"SUBSCRIBE requested QoS byte {requested:#x}")
            if (not _valid_filter(topic_filter)
                    or not await self.hooks.authorize(session, "subscribe", topic_filter)):
                codes.append(SUBSCRIBE_FAILURE)
                continue
            qos = min(requested, self.max_qos)
            session.subscriptions[topic_filter] = qos
            granted.append((topic_filter, qos))
            codes.append(qos)
        await session._write(_packet(SUBACK, 0, struct.pack("!H", packet_id) + bytes(codes)))
        for topic_filter, qos in granted:
            await self.hooks.on_subscribe(session, topic_filter, qos)


class _Handover(asyncio.Protocol):
    """Holds a fresh connection with reading paused, so that a ClientHello waits for the
    context this handshake will use, and hands it to the listener's connection task."""

    def __init__(self, listener: MqttListener) -> None:
        self._listener = listener
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        listener = self._listener
        if listener._stopping:
            transport.abort()
            return
        transport.pause_reading()
        self._task = task = asyncio.get_running_loop().create_task(listener._connection(transport))
        listener._transports.add(transport)
        listener._connections.add(task)
        task.add_done_callback(listener._connections.discard)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

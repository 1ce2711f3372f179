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
from collections.abc import Awaitable, Callable
from typing import Any

from ..acceptor import HANDSHAKE_TIMEOUT, Accepted, Acceptor
from ..tasks import cancel_and_wait
from .connect import UnsupportedLevel, parse_connect
from .hooks import MqttHooks, Refusal
from .packets import (
    ACCEPTED,
    CONNECT,
    DISCONNECT,
    DROP,
    FIXED_FLAGS,
    PACKET_NAMES,
    PINGREQ,
    PINGRESP_PACKET,
    PROTOCOL_LEVELS,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SERVER_UNAVAILABLE,
    SUBSCRIBE,
    SUBSCRIBE_FAILURE,
    UNACCEPTABLE_PROTOCOL,
    UNSUBSCRIBE,
    MalformedPacket,
    Reader,
    encode_connack,
    encode_puback,
    encode_suback,
    encode_unsuback,
    valid_filter,
)
from .session import ACK_TIMEOUT, MqttSession

log = logging.getLogger("emulators.mqtt")

CONNECT_TIMEOUT = 10.0  # from accept (after TLS) to a whole CONNECT packet
WRITE_TIMEOUT = 30.0


class _Closed(Exception):
    """The session ends; ``reason`` goes to on_disconnect."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason



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
        self.sessions: dict[str, MqttSession] = {}
        # The accept path the farm's protocol servers share: TLS per handshake, bounded
        # handshakes, one connection's failure costs that connection only.
        self.acceptor = Acceptor(self._accepted, host, port, tls=tls, name="MQTT")

    @property
    def host(self) -> str:
        return self.acceptor.host

    @property
    def port(self) -> int:
        return self.acceptor.port

    @property
    def tls(self) -> Callable[[], ssl.SSLContext] | None:
        return self.acceptor.tls

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> tuple[str, int]:
        acceptor = self.acceptor
        # The member sets the limits on the listener after making it.
        acceptor.handshake_timeout = self.handshake_timeout
        acceptor.max_handshakes = self.max_handshakes
        acceptor.trim_after_handshakes = self.trim_after_handshakes
        return await acceptor.start()

    async def stop(self) -> None:
        """Stop listening and close every connection; on_disconnect runs for each session."""
        # Each session ends with its reason (its task cancelled once: on_disconnect runs in
        # its cleanup); the acceptor then ends the connections that had no session yet.
        await self.acceptor.stop(before=self._end_sessions)

    def _end_sessions(self) -> set[asyncio.Task[Any]]:
        owned: set[asyncio.Task[Any]] = set()
        for session in list(self.sessions.values()):
            if session._task is not None:
                owned.add(session._task)
            self._end(session, "stopped")
        return owned

    async def send(self, client_id: str, topic: str, payload: bytes, qos: int = 0, *,
                   ack_timeout: float = ACK_TIMEOUT) -> None:
        """A downstream message to the connected client ``client_id``, whether or not it
        subscribed (LookupError when it is not connected)."""
        session = self.sessions.get(client_id)
        if session is None:
            raise LookupError(f"no MQTT session for {client_id!r}")
        await session.publish(topic, payload, qos, ack_timeout=ack_timeout)

    # -- one connection --------------------------------------------------------------------
    async def _accepted(self, accepted: Accepted) -> None:
        await self._serve(accepted.reader, accepted.writer, accepted.certificate)

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
            info, code = parse_connect(flags, body, peer=peer, tls=tls, certificate=certificate,
                                       protocol_levels=self.protocol_levels)
        except (MalformedPacket, _Closed) as exc:
            # MQTT-3.1.4-1: a CONNECT that does not conform is closed without a CONNACK.
            reason = exc.reason if isinstance(exc, _Closed) else f"malformed: {exc}"
            await self._refused(Refusal(peer, tls, None, reason))
            return
        except UnsupportedLevel as exc:
            writer.write(encode_connack(UNACCEPTABLE_PROTOCOL))
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
            writer.write(encode_connack(code))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            return
        old = self.sessions.get(info.client_id)
        if old is not None:
            self._end(old, "displaced")
        session = MqttSession(info, self, writer, _task=asyncio.current_task())
        self.sessions[info.client_id] = session
        try:
            await session._write(encode_connack(ACCEPTED))
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
            packet_id = Reader(body).u16()
            waiter = session._acks.pop(packet_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif kind == SUBSCRIBE:
            await self._subscribe(session, flags, body)
        elif kind == UNSUBSCRIBE:
            r = Reader(body)
            packet_id = r.packet_id()
            if not r.left():
                raise MalformedPacket("UNSUBSCRIBE without a topic filter")  # MQTT-3.10.3-2
            while r.left():
                session.subscriptions.pop(r.text(), None)
            await session._write(encode_unsuback(packet_id))
        elif kind == PINGREQ:
            await session._write(PINGRESP_PACKET)
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
            puback = encode_puback(packet_id)
            if durable is None and not session._pubacks:
                await session._write(puback)
            else:
                session._queue_puback(durable, puback)

    async def _subscribe(self, session: MqttSession, flags: int, body: bytes) -> None:
        r = Reader(body)
        packet_id = r.packet_id()
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
            if (not valid_filter(topic_filter)
                    or not await self.hooks.authorize(session, "subscribe", topic_filter)):
                codes.append(SUBSCRIBE_FAILURE)
                continue
            qos = min(requested, self.max_qos)
            session.subscriptions[topic_filter] = qos
            granted.append((topic_filter, qos))
            codes.append(qos)
        await session._write(encode_suback(packet_id, bytes(codes)))
        for topic_filter, qos in granted:
            await self.hooks.on_subscribe(session, topic_filter, qos)

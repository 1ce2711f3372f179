"""The farm's MQTT 3.1.1 client, for emulated devices that connect to a cloud member by
themselves (``iotda-device``): on the farm's loop, QoS 0/1, clean sessions.

Why not aiomqtt (2.5, read in its source): ``Client.__aenter__`` runs paho's blocking
``connect()`` (TCP and the TLS handshake) in the loop's default executor. A device stopped
while connecting cannot take that back: the thread finishes the handshake after the task was
cancelled and leaves paho's socket and its wake-up socket pair open (the suite's leak check saw
12 sockets for a fleet of 3), and ``__aexit__`` waits up to its timeout for a DISCONNECT to be
acknowledged, per device, while the farm stops. A device's side of MQTT is small; with the
packet codec the broker uses (``packets.py``), this module is it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from collections.abc import Callable, Coroutine
from typing import Any

from .packets import (
    CONNACK,
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    PUBACK,
    PUBLISH,
    SUBACK,
    encode_connect,
    encode_puback,
    encode_publish,
    encode_subscribe,
)


class MqttRefused(ConnectionError):
    """The broker answered the CONNECT with a non-zero return code."""

    def __init__(self, code: int) -> None:
        super().__init__(f"CONNACK return code {code}")
        self.code = code


class MqttClient:
    """One connection: ``connect()``, then ``publish`` / ``subscribe``; every PUBLISH the
    broker sends is acknowledged (QoS 1) and handed to ``on_message(topic, payload)`` in a
    task of its own. ``run()`` reads until the connection ends; ``close()`` ends it now."""

    def __init__(self, host: str, port: int, *, client_id: str, username: str | None = None,
                 password: str | None = None, keep_alive: int = 60,
                 tls: ssl.SSLContext | None = None,
                 on_message: Callable[[str, bytes], Coroutine[Any, Any, None]] | None = None,
                 timeout: float = 10.0) -> None:
        self.host, self.port, self.tls, self.timeout = host, port, tls, timeout
        self.client_id, self.username, self.password = client_id, username, password
        self.keep_alive = keep_alive
        self.on_message = on_message
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        # on_message runs beside the reader (a handler that publishes at QoS 1 waits for a
        # PUBACK only the reader can take), one task per message.
        self._handlers: set[asyncio.Task[None]] = set()

    async def connect(self) -> None:
        """TCP, TLS, CONNECT and its CONNACK (``MqttRefused`` for a refusal)."""
        async with asyncio.timeout(self.timeout):
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.tls)
            self._writer.write(encode_connect(self.client_id, username=self.username,
                                              password=self.password,
                                              keep_alive=self.keep_alive))
            first, _, reply = await self._read()
        if first >> 4 != CONNACK or len(reply) != 2:
            raise ConnectionError("the broker did not answer with a CONNACK")
        if reply[1]:
            raise MqttRefused(reply[1])

    async def _read(self) -> tuple[int, int, bytes]:
        assert self._reader is not None
        first, byte = await self._reader.readexactly(2)
        length, multiplier = byte & 0x7F, 128
        while byte & 0x80:
            byte = (await self._reader.readexactly(1))[0]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
        body = await self._reader.readexactly(length) if length else b""
        return first, length, body

    def _packet_id(self) -> int:
        self._next_id = self._next_id % 0xFFFF + 1
        return self._next_id

    async def _send(self, data: bytes) -> None:
        if self._writer is None:
            raise ConnectionError("not connected")
        self._writer.write(data)
        await self._writer.drain()

    async def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        """Send a PUBLISH; with QoS 1, return once its PUBACK came."""
        raw = payload.encode() if isinstance(payload, str) else payload
        if not qos:
            await self._send(encode_publish(topic, raw))
            return
        packet_id = self._packet_id()
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[packet_id] = waiter
        try:
            await self._send(encode_publish(topic, raw, 1, packet_id))
            async with asyncio.timeout(self.timeout):
                await waiter
        finally:
            self._waiting.pop(packet_id, None)

    async def subscribe(self, topic_filter: str, qos: int = 1) -> int:
        """SUBSCRIBE one filter; the granted QoS (0x80: refused)."""
        packet_id = self._packet_id()
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[packet_id] = waiter
        try:
            await self._send(encode_subscribe(packet_id, (topic_filter, qos)))
            async with asyncio.timeout(self.timeout):
                granted: int = await waiter
            return granted
        finally:
            self._waiting.pop(packet_id, None)

    async def run(self) -> None:
        """Read until the connection ends (ConnectionError), pinging every keep-alive."""
        pinger = asyncio.get_running_loop().create_task(self._ping())
        try:
            while True:
                try:
                    first, _, body = await self._read()
                except asyncio.IncompleteReadError:
                    raise ConnectionError("the broker closed the connection") from None
                kind = first >> 4
                if kind == PUBLISH:
                    await self._received(first, body)
                elif kind in (PUBACK, SUBACK) and len(body) >= 2:
                    waiter = self._waiting.get(struct.unpack("!H", body[:2])[0])
                    if waiter is not None and not waiter.done():
                        waiter.set_result(body[2] if kind == SUBACK and len(body) > 2 else 0)
        finally:
            # A PUBACK or SUBACK awaited now will never come: its waiter fails at once
            # (else a publish in flight held the reconnect up for its whole timeout).
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("the connection ended"))
            pinger.cancel()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(pinger, *self._handlers, return_exceptions=True)

    async def _received(self, first: int, body: bytes) -> None:
        qos = (first >> 1) & 0x03
        end = 2 + struct.unpack("!H", body[:2])[0]
        topic = body[2:end].decode("utf-8", "replace")
        packet_id = struct.unpack("!H", body[end:end + 2])[0] if qos else 0
        payload = body[end + 2:] if qos else body[end:]
        if qos:
            await self._send(encode_puback(packet_id))
        if self.on_message is not None:
            task = asyncio.get_running_loop().create_task(self.on_message(topic, payload))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(max(self.keep_alive * 0.75, 1))
            await self._send(PINGREQ_PACKET)

    async def close(self) -> None:
        """DISCONNECT (when still connected) and close the socket; never waits long."""
        writer, self._writer = self._writer, None
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("closed"))
        if writer is None:
            return
        with contextlib.suppress(Exception):
            writer.write(DISCONNECT_PACKET)
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await writer.wait_closed()

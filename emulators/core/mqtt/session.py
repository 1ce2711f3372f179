"""One accepted MQTT connection, as the broker (``broker.py``) hands it to a member's hooks:
its subscriptions, its downstream ``publish`` (waiting for the PUBACK at QoS 1), its writes
bounded by the listener's ``write_timeout``, and its PUBACKs held for what a message changed to
be saved, in PUBLISH order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .hooks import ConnectInfo
from .packets import encode_publish, topic_matches

if TYPE_CHECKING:
    from .broker import MqttListener

log = logging.getLogger("emulators.mqtt")

ACK_TIMEOUT = 10.0


def _done(awaitable: Awaitable[Any]) -> bool:
    return isinstance(awaitable, asyncio.Future) and awaitable.done()



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
        waiter: asyncio.Future[None] | None = None
        packet_id = 0
        if qos:
            self._next_id = packet_id = self._next_id % 0xFFFF + 1
            if asyncio.current_task() is not self._task:
                waiter = asyncio.get_running_loop().create_future()
                self._acks[packet_id] = waiter
        await self._write(encode_publish(topic, payload, qos, packet_id))
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

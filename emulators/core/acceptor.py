"""A TCP listener for the farm's own protocol servers (MQTT, AMQP): it accepts on the farm's
loop, runs TLS with a context chosen per handshake, bounds what a client costs before it has
said a word (handshakes in flight, their deadline, a 16 KiB TLS read buffer), and hands each
connection to a ``serve`` coroutine as an asyncio stream. A failure of one connection is
logged and costs that connection only; ``stop`` ends them all.

The MQTT broker (``core/mqtt/broker.py``) and the AMQP server (``core/amqp/server.py``)
accept through it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .asyncio_internals import shrink_tls_read_buffer, start_tls_small
from .process import release_free_memory
from .tasks import listening_address

log = logging.getLogger("emulators.acceptor")

HANDSHAKE_TIMEOUT = 15.0


def drop_tracebacks(exc: BaseException | None) -> None:
    """A failed handshake's exception (and those it chains) holds its traceback, whose frames
    hold the handshake's waiter, which holds the exception: a cycle that keeps the transport,
    protocol and SSL object (about 100 KB) until a full garbage collection. Dropping the
    tracebacks frees them at once."""
    seen = 0
    while exc is not None and seen < 8:
        exc.__traceback__ = None
        exc = exc.__context__ or exc.__cause__
        seen += 1


@dataclass(eq=False)
class Accepted:
    """One accepted connection, past its TLS handshake when the listener has TLS."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: tuple[str, int]
    tls: bool
    certificate: bytes | None  # the client certificate (DER) the handshake verified
    accepted_at: float  # the loop's clock when the socket was accepted


Serve = Callable[[Accepted], Awaitable[None]]


class Acceptor:
    """Connections on ``host:port`` (TLS when ``tls`` gives a context per handshake) handed
    to ``serve``. Limits are attributes; the server that owns the acceptor sets them."""

    # A TLS handshake's deadline once it has a slot; a connection waiting for a slot waits at
    # most as long again, then is closed.
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    # TLS handshakes in flight at once; later connections wait for a slot with their
    # ClientHello unread (a waiting socket costs a few KB, a handshake in flight about 100 KB).
    max_handshakes: int = 128
    # After this many handshakes have ended with none in flight, the heap's free pages go
    # back to the system (a wave of half-open TLS connections leaves its memory behind).
    trim_after_handshakes: int = 64
    # The stream reader's buffer limit: what one read may hold before the protocol pauses.
    read_limit: int = 2 ** 16

    def __init__(self, serve: Serve, host: str = "127.0.0.1", port: int = 0, *,
                 tls: Callable[[], ssl.SSLContext] | None = None, name: str = "server") -> None:
        self.serve = serve
        self.host = host
        self.port = port
        self.tls = tls
        self.name = name
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

    @property
    def open_connections(self) -> int:
        """Accepted connections not yet ended, those still in their handshake included."""
        return len(self._connections)

    async def start(self) -> tuple[str, int]:
        self._stopping = False
        self._handshake_slots = asyncio.Semaphore(self.max_handshakes)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Handover(self), self.host, self.port, reuse_address=True)
        self.port = listening_address(self._server, f"{self.name} {self.host}:{self.port}")[1]
        return self.host, self.port

    async def stop(self, before: Callable[[], set[asyncio.Task[Any]]] | None = None) -> None:
        """Stop listening and end every connection: their tasks are cancelled and waited for
        (a ``serve`` coroutine's cleanup runs). ``before``, called once no new connection can
        arrive, lets the server end connections its own way first (a broker ends its
        sessions with a reason); the tasks it returns are waited for, not cancelled again."""
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
        owned = before() if before is not None else set()
        tasks = list(self._connections)
        for task in tasks:
            if task not in owned:
                task.cancel()
        await asyncio.gather(*tasks, *owned, return_exceptions=True)
        for transport in list(self._transports):
            transport.abort()
        if server is not None:
            await server.wait_closed()
        # abort() closes a socket in a callback of the next loop iteration: let it run, so
        # that stop() returning means no socket of this listener is open.
        await asyncio.sleep(0)

    async def _connection(self, transport: asyncio.Transport, accepted_at: float) -> None:
        """One accepted socket, reading paused: TLS with this handshake's context, then
        ``serve``."""
        raw = transport
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=self.read_limit)
        protocol = asyncio.StreamReaderProtocol(reader)
        certificate: bytes | None = None
        peer = transport.get_extra_info("peername")
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
            await self.serve(Accepted(reader, writer, (peer[0], peer[1]), self.tls is not None,
                                      certificate, accepted_at))
        except asyncio.CancelledError:
            pass
        except Exception:  # a bug here must cost one connection, never the listener
            log.exception("%s connection from %s failed", self.name, peer)
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
            drop_tracebacks(exc)
            return None
        finally:
            self._handshakes -= 1
            slots.release()
            self._handshake_ended()

    def _handshake_ended(self) -> None:
        """After a wave of handshakes (none in flight, ``trim_after_handshakes`` ended), give
        the heap's free pages back, once, a second later and off the loop."""
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


class _Handover(asyncio.Protocol):
    """Holds a fresh connection with reading paused, so that a ClientHello waits for the
    context this handshake will use, and hands it to the acceptor's connection task."""

    def __init__(self, acceptor: Acceptor) -> None:
        self._acceptor = acceptor
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        acceptor = self._acceptor
        if acceptor._stopping:
            transport.abort()
            return
        transport.pause_reading()
        loop = asyncio.get_running_loop()
        self._task = task = loop.create_task(acceptor._connection(transport, loop.time()))
        acceptor._transports.add(transport)
        acceptor._connections.add(task)
        task.add_done_callback(acceptor._connections.discard)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

"""TLS listeners that choose their certificate per connection, so that a fault rule can hand
the next client an expired or wrongly named certificate while every other client gets the
member's own."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .. import pki
from .aiohttp_internals import ServerSite

if TYPE_CHECKING:
    from .farm_ca import FarmCA

HANDSHAKE_TIMEOUT = 15.0


class TlsSite(ServerSite):
    """Like ``web.TCPSite`` with TLS, but the context is chosen when a client connects."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int,
                 choose: Callable[[], ssl.SSLContext], backlog: int = 512) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._choose = choose

    @property
    def name(self) -> str:
        return f"https://{self._host}:{self._port}"

    async def create_server(self, server: web.Server, backlog: int) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            lambda: _Handover(loop, server, self._choose), self._host, self._port,
            reuse_address=True, backlog=backlog)


class _Handover(asyncio.Protocol):
    """Holds a fresh connection (reading paused, so the ClientHello waits), picks the context,
    upgrades to TLS and hands the TLS transport to aiohttp's protocol."""

    def __init__(self, loop: asyncio.AbstractEventLoop, make_protocol: Any,
                 choose: Callable[[], ssl.SSLContext]) -> None:
        self._loop = loop
        self._make_protocol = make_protocol
        self._choose = choose
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()
        self._task = self._loop.create_task(self._upgrade(transport))

    async def _upgrade(self, transport: asyncio.Transport) -> None:
        protocol = self._make_protocol()
        try:
            tls = await self._loop.start_tls(transport, protocol, self._choose(),
                                             server_side=True,
                                             ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError):
            transport.abort()  # a failed handshake: what a TLS server does, nothing more
            return
        if tls is None:
            transport.abort()
            return
        protocol.connection_made(tls)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()


def fault_contexts(ca: FarmCA, host: str) -> dict[str, ssl.SSLContext]:
    """TLS contexts of the tls_* faults for a listener on ``host``."""
    hosts = (host,) if host not in ("0.0.0.0", "::") else ("127.0.0.1",)
    return {fault: pki.server_context(chain, key)
            for fault, (chain, key) in ca.fault_identities(hosts).items()}

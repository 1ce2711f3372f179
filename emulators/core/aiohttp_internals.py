"""Every private or undocumented aiohttp name the package relies on, and nothing else: the
rest of the package uses aiohttp's public API and what this module offers. A name is here
because the public way costs the hot path a measured price, or because there is no public way.
aiohttp may change any of them in any release: tests/test_aiohttp_internals.py pins each one
(it exists, with the kind and signature used here, and behaves as relied on where that is
cheap to check), and pyproject.toml caps aiohttp below its next minor release.

What each is for, and what it bought (figures from bench/README.md, "Throughput"):

- ``BaseRequest._message`` (the parser's ``RawRequestMessage``: ``method``, ``path``,
  ``raw_headers``), ``BaseRequest._transport_peername``, ``BaseRequest._read_bytes`` (the body,
  when a handler read it): what the journal records of every request (``journal_fields``, one
  call where the public properties would be a Python call each). Reading the parsed message
  was part of a saving of 8k instructions per request (of 265k).
- ``AppRunner._make_server``: ``HookedRunner.adjust_server`` sees the ``web.Server`` before
  any site serves it. Its public but undocumented attributes ``request_handler`` and
  ``request_factory`` are what is adjusted: the observer runs in place of the application's
  handler (``core/httpserver.ObservedRunner``) instead of as a middleware layer: 20k
  instructions fewer per request, together with INSTAR's error mapping moving into its
  handler.
- ``Application._make_request``'s ``_cls`` keyword, ``Request.ATTRS`` and
  ``Request._prepare_hook`` (awaited by ``StreamResponse._start`` once aiohttp's own headers
  are set, before they are written): ``dress_requests`` makes every request a
  ``DressedRequest``, so every reply passes the member's ``dress_reply`` last, aiohttp's own
  400s for unparseable requests too, which run no application signal. It cost one
  request-factory call and one hook frame per request (afterwards INSTAR 0.80x, CPU 0.73x).
- ``web.Server._loop``, ``web.Server._kwargs`` and ``web.Server.__call__`` (the factory of each
  connection's ``RequestHandler``), with ``RequestHandler.handle_error``'s signature:
  ``ProtocolServer`` serves connections with a ``RequestHandler`` subclass (the control plane
  answers what aiohttp refuses itself in its own error form). No public hook exists.
- ``BaseSite._server`` (the ``asyncio.Server``), ``BaseSite._runner``, ``BaseSite._backlog``:
  ``bound_address`` is where a site started on port 0 really listens, and ``ServerSite`` is a
  site that makes its own ``asyncio`` server (``core/tls.TlsSite`` picks each connection's TLS
  context). No public way for either (``TCPSite.port`` has the port alone, of a TCPSite).
- ``StreamResponse._prepare_headers``, ``_write_headers``, ``_keep_alive`` and ``_req``:
  ``ComposedResponse`` is a reply whose status line and header are written exactly as its
  subclass composed them (``acti/wire.WireResponse``: the camera's hand-written HTTP/1.0).
- ``aiohttp.http_exceptions.HttpProcessingError`` (exported by neither ``aiohttp`` nor
  ``aiohttp.web``): what aiohttp's parser raises for a request it cannot parse, logged by
  ``aiohttp.server`` (``core/observe`` quiets those log lines).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .tasks import listening_address

__all__ = [
    "ComposedResponse", "DressedRequest", "HookedRunner", "HttpProcessingError",
    "ProtocolServer", "RequestHandler", "ServerSite", "bound_address", "dress_requests",
    "journal_fields",
]

RequestHandler = web.RequestHandler  # subclassed for its handle_error (ProtocolServer)
RawHeaders = tuple[tuple[bytes, bytes], ...]


# -- requests ------------------------------------------------------------------------------
def journal_fields(request: web.BaseRequest) -> tuple[Any, str, str, RawHeaders, bytes | None]:
    """What the journal records of ``request``, as aiohttp parsed it: the peer address, the
    method, the request line's target as sent, the raw header lines, and the body if a
    handler read it (None otherwise). Runs once per request of the farm."""
    message = request._message
    return (request._transport_peername, message.method, message.path, message.raw_headers,
            request._read_bytes)


class DressedRequest(web.Request):
    """A request whose replies, every one of them, pass ``_dress`` last: routed replies, 404s
    and 405s, and the 400s aiohttp writes itself for a request it could not parse (those run no
    application signal, so an ``on_response_prepare`` handler would miss them)."""

    ATTRS = web.Request.ATTRS | frozenset(["_dress"])
    _dress: Callable[[web.StreamResponse], None]

    async def _prepare_hook(self, response: web.StreamResponse) -> None:
        # StreamResponse._start awaits this after its own headers (Date, Server) are set and
        # before they are written. Also pinned by tests/test_reply_headers.py (a malformed
        # request's 400 carries the profile's lines).
        await super()._prepare_hook(response)
        self._dress(response)


def dress_requests(server: web.Server, dress: Callable[[web.StreamResponse], None]) -> None:
    """Make every request ``server`` serves a ``DressedRequest`` whose replies pass ``dress``."""
    make = server.request_factory

    def request_factory(*args: Any) -> web.BaseRequest:
        request = make(*args, _cls=DressedRequest)  # type: ignore[call-arg]
        request._dress = dress  # type: ignore[attr-defined]
        return request

    server.request_factory = request_factory


# -- servers and sites ---------------------------------------------------------------------
class HookedRunner(web.AppRunner):
    """An AppRunner whose subclass adjusts the ``web.Server`` it makes before any site serves
    it (``adjust_server``)."""

    def adjust_server(self, server: web.Server) -> None:
        """Hook: change ``server`` in place (its handler, its request factory, its class)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        self.adjust_server(server)
        return server


class ProtocolServer(web.Server):
    """A ``web.Server`` whose connections are handled by ``protocol`` (a ``RequestHandler``
    subclass) instead of aiohttp's own. Subclasses set ``protocol``; ``adopt`` turns a server a
    runner made into one (same layout, one method different)."""

    protocol: ClassVar[type[web.RequestHandler]] = web.RequestHandler

    def __call__(self) -> web.RequestHandler:
        return self.protocol(self, loop=self._loop, **self._kwargs)

    @classmethod
    def adopt(cls, server: web.Server) -> None:
        server.__class__ = cls


def bound_address(site: web.BaseSite) -> tuple[str, int]:
    """Where a started site listens (the real port when it was asked for port 0)."""
    server = site._server
    assert isinstance(server, asyncio.Server)
    return listening_address(server, site.name)


class ServerSite(web.BaseSite):
    """A site that makes its own ``asyncio`` server: subclasses implement ``create_server``
    (and aiohttp's ``name``); stopping it, and its runner's bookkeeping, are aiohttp's."""

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await self.create_server(server, self._backlog)

    async def create_server(self, server: web.Server, backlog: int) -> asyncio.AbstractServer:
        """Listen, handing each connection to ``server`` (the protocol factory)."""
        raise NotImplementedError


# -- replies -------------------------------------------------------------------------------
class ComposedResponse(web.StreamResponse):
    """A reply whose status line and header its subclass composes and writes itself, with the
    body, in ``write_eof``. aiohttp still runs its prepare hook and signals, but its own header
    serialisation is skipped, and the connection is closed after the reply, as an HTTP/1.0
    server does. ``prepared_for`` is the request being answered (None until prepared)."""

    prepared_for: web.BaseRequest | None = None
    # True: the connection stays open after the reply when the request allows it (a recorded
    # HTTP/1.1 reply of a quirk profile); False: closed, as an HTTP/1.0 server does.
    keep_alive_after: bool = False

    async def _prepare_headers(self) -> None:
        # HTTP/1.0: one reply per connection, ended by closing it (unless keep_alive_after)
        self._keep_alive = bool(self.keep_alive_after and self._req is not None
                                and self._req.keep_alive)
        self.prepared_for = self._req

    async def _write_headers(self) -> None:
        pass  # the subclass writes its head with the body in write_eof

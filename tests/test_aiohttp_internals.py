"""The private aiohttp names the farm relies on (``emulators/core/aiohttp_internals.py``) are
still there and still behave as relied on: this fails when an aiohttp release renames or
changes one of them. Also: no module but the internals module uses a private aiohttp name."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import http_exceptions, web

from emulators.core import aiohttp_internals as internals
from emulators.testing import LoopThread
from tests import internals_walk
from tests.internals_walk import PACKAGE
from tests.robustness.clients import read_to_close as exchange

MALFORMED = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon here\r\n\r\n"


def params(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


# --- each name exists, with the kind and signature the internals module uses ---------------

PINS: list[tuple[str, Callable[[], bool]]] = [
    ("BaseRequest._message, _transport_peername, _read_bytes", lambda: {
        "_message", "_transport_peername", "_read_bytes"} <= web.BaseRequest.ATTRS
        and web.BaseRequest._read_bytes is None),
    ("Request.ATTRS is a frozenset", lambda: isinstance(web.Request.ATTRS, frozenset)),
    ("Request._prepare_hook(response), a coroutine", lambda:
        inspect.iscoroutinefunction(web.Request._prepare_hook)
        and params(web.Request._prepare_hook) == ["self", "response"]),
    ("Application._make_request(..., _cls=Request)", lambda:
        params(web.Application._make_request)
        == ["self", "message", "payload", "protocol", "writer", "task", "_cls"]
        and inspect.signature(web.Application._make_request).parameters["_cls"].default
        is web.Request),
    ("AppRunner._make_server(), a coroutine", lambda:
        inspect.iscoroutinefunction(web.AppRunner._make_server)
        and params(web.AppRunner._make_server) == ["self"]),
    ("Server.__call__() makes the connection's handler", lambda:
        params(web.Server.__call__) == ["self"]),
    ("RequestHandler.handle_error(request, status, exc, message)", lambda:
        params(web.RequestHandler.handle_error)
        == ["self", "request", "status", "exc", "message"]),
    ("BaseSite._runner, _backlog, _server", lambda:
        {"_runner", "_backlog", "_server"} <= set(web.BaseSite.__slots__)
        and inspect.iscoroutinefunction(web.BaseSite.start)),
    ("StreamResponse._prepare_headers(), _write_headers(), coroutines", lambda: all(
        inspect.iscoroutinefunction(f) and params(f) == ["self"]
        for f in (web.StreamResponse._prepare_headers, web.StreamResponse._write_headers))),
    ("StreamResponse._keep_alive, _req", lambda:
        web.StreamResponse._keep_alive is None and web.StreamResponse()._req is None),
    ("http_exceptions.HttpProcessingError, what the parser raises", lambda:
        issubclass(http_exceptions.BadHttpMessage, internals.HttpProcessingError)
        and internals.HttpProcessingError is http_exceptions.HttpProcessingError),
]


@pytest.mark.parametrize("check", [check for _, check in PINS], ids=[name for name, _ in PINS])
def test_the_name_is_there(check: Callable[[], bool]) -> None:
    assert check()


def test_a_server_keeps_its_loop_kwargs_handler_and_request_factory(
        emulators_loop: LoopThread) -> None:
    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response()

    def factory(*args: Any) -> web.BaseRequest:
        raise AssertionError

    async def made() -> tuple[web.Server, asyncio.AbstractEventLoop]:
        return (web.Server(handler, request_factory=factory, keepalive_timeout=7.0),
                asyncio.get_running_loop())

    server, loop = emulators_loop.run(made())
    assert server._loop is loop and server._kwargs == {"keepalive_timeout": 7.0}
    assert server.request_handler is handler and server.request_factory is factory


# --- and behaves as relied on, on a real connection -------------------------------------------

@contextlib.contextmanager
def serving(loop: LoopThread, make_runner: Callable[[], web.BaseRunner],
            make_site: Callable[[web.BaseRunner], web.BaseSite] | None = None,
            ) -> Iterator[int]:
    """A runner started on the farm's loop, listening on a free port of 127.0.0.1."""
    holder: list[web.BaseRunner] = []

    async def start() -> int:
        runner = make_runner()
        holder.append(runner)
        await runner.setup()
        site = (make_site or (lambda r: web.TCPSite(r, "127.0.0.1", 0)))(runner)
        await site.start()
        return internals.bound_address(site)[1]

    try:
        yield loop.run(start())
    finally:
        if holder:
            loop.run(holder[0].cleanup())


def app_with(handler: Callable[[web.Request], Any]) -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/probe", handler)
    return app


def test_journal_fields_are_what_the_client_sent(emulators_loop: LoopThread) -> None:
    seen: list[Any] = []

    async def probe(request: web.Request) -> web.Response:
        seen.append(internals.journal_fields(request))
        await request.read()
        seen.append(internals.journal_fields(request))
        return web.Response(text="ok")

    with serving(emulators_loop, lambda: web.AppRunner(app_with(probe))) as port, \
            socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /probe?a=%41&b HTTP/1.1\r\nHost: x\r\nX-Probe: 1\r\n"
                     b"Content-Length: 4\r\nConnection: close\r\n\r\nbody")
        while sock.recv(65536):
            pass
        client = sock.getsockname()[:2]
    (peer, method, target, headers, before), after = seen[0], seen[1][4]
    assert (tuple(peer[:2]), method, target, before, after) == (
        client, "POST", "/probe?a=%41&b", None, b"body")
    assert (b"X-Probe", b"1") in headers and all(
        isinstance(k, bytes) and isinstance(v, bytes) for k, v in headers)


def test_a_hooked_runner_dresses_every_reply_and_wraps_the_handler(
        emulators_loop: LoopThread) -> None:
    dressed: list[tuple[str, str | None]] = []
    handled: list[str] = []

    def dress(response: web.StreamResponse) -> None:
        # aiohttp's own lines are already set when the hook runs, and not yet written.
        dressed.append((type(response).__name__, response.headers.get("Server")))
        response.headers["X-Dressed"] = "yes"

    class Runner(internals.HookedRunner):
        def adjust_server(self, server: web.Server) -> None:
            handler = server.request_handler

            async def wrapped(request: web.BaseRequest) -> web.StreamResponse:
                assert isinstance(request, internals.DressedRequest)
                handled.append(request.path)
                return await handler(request)

            server.request_handler = wrapped
            internals.dress_requests(server, dress)

    async def probe(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    close = "Host: x\r\nConnection: close\r\n\r\n"
    with serving(emulators_loop, lambda: Runner(app_with(probe))) as port:
        replies = [exchange(port, f"GET {path} HTTP/1.1\r\n{close}".encode())
                   for path in ("/probe", "/elsewhere")] + [exchange(port, MALFORMED)]
    assert [r.split(b"\r\n", 1)[0].split(b" ", 1)[1] for r in replies] == [
        b"200 OK", b"404 Not Found", b"400 Bad Request"]
    assert all(b"\r\nX-Dressed: yes\r\n\r\n" in r for r in replies)  # the last header line
    assert handled == ["/probe", "/elsewhere"]  # aiohttp answers the 400 itself
    assert len(dressed) == 3 and all(server and "aiohttp" in server for _, server in dressed)


def test_a_protocol_server_handles_connections_with_its_protocol(
        emulators_loop: LoopThread) -> None:
    class Protocol(internals.RequestHandler):
        def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                         message: str | None = None) -> web.StreamResponse:
            reply = web.Response(status=status, text=f"ours: {status}")
            reply.force_close()
            return reply

    class Server(internals.ProtocolServer):
        protocol = Protocol

    class Runner(internals.HookedRunner):
        def adjust_server(self, server: web.Server) -> None:
            Server.adopt(server)

    async def probe(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    with serving(emulators_loop, lambda: Runner(app_with(probe), keepalive_timeout=5.0)) as port:
        reply = exchange(port, MALFORMED)
        routed = exchange(port, b"GET /probe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b" 400 " in reply.split(b"\r\n", 1)[0] and reply.endswith(b"\r\n\r\nours: 400")
    assert routed.startswith(b"HTTP/1.1 200 OK") and routed.endswith(b"\r\n\r\nok")


def test_a_server_site_serves_and_stops_its_own_server(emulators_loop: LoopThread) -> None:
    class Site(internals.ServerSite):
        @property
        def name(self) -> str:
            return "probe"

        async def create_server(self, server: web.Server,
                                backlog: int) -> asyncio.AbstractServer:
            return await asyncio.get_running_loop().create_server(
                server, "127.0.0.1", 0, backlog=backlog)

    async def probe(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    with serving(emulators_loop, lambda: web.AppRunner(app_with(probe)), Site) as port:
        reply = exchange(port, b"GET /probe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.endswith(b"\r\n\r\nok")
    with pytest.raises(ConnectionRefusedError):  # the runner's cleanup closed site._server
        exchange(port, b"GET /probe HTTP/1.1\r\n\r\n")


def test_a_composed_response_writes_its_bytes_and_closes(emulators_loop: LoopThread) -> None:
    answered: list[bool] = []
    head, body = b"HTTP/1.0 200 OK\r\nContent-type: text/plain\r\n\r\n", b"hi\n"

    class Reply(internals.ComposedResponse):
        async def write_eof(self, data: bytes = b"") -> None:
            answered.append(self.prepared_for is not None and self.prepared_for.path == "/probe")
            await super().write_eof(head + body)

    async def probe(request: web.Request) -> web.StreamResponse:
        return Reply()

    with serving(emulators_loop, lambda: web.AppRunner(app_with(probe))) as port:
        # A keep-alive request: the reply still ends the connection.
        reply = exchange(port, b"GET /probe HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply == head + body and answered == [True]


# --- and nothing else touches aiohttp's private names -----------------------------------------

WEB_CLASSES = (web.BaseRequest, web.Request, web.StreamResponse, web.Response, web.Application,
               web.AppRunner, web.BaseRunner, web.BaseSite, web.TCPSite, web.Server,
               web.RequestHandler)
PUBLIC_MODULES = {"aiohttp", "aiohttp.web", "aiohttp.typedefs", "aiohttp.hdrs", "aiohttp.abc"}
INTERNALS = PACKAGE / "core" / "aiohttp_internals.py"


def private_names(cls: type) -> set[str]:
    """The single-underscore names aiohttp's classes in ``cls``'s ancestry define or set."""
    return internals_walk.private_names((cls,), "aiohttp", listed_in=("__slots__", "ATTRS"))


ALL_PRIVATE = set().union(*(private_names(c) for c in WEB_CLASSES))


def private_uses(path: Path) -> list[str]:
    """Where ``path`` reaches into aiohttp: a class of aiohttp's ancestry using or overriding
    one of its private names, and, in a module that imports aiohttp, any private aiohttp name
    or keyword, and an import from one of aiohttp's undocumented modules."""
    source = path.read_text()
    imports_aiohttp = "aiohttp" in source

    def check(node: ast.AST, inherited: set[str], uses: internals_walk.Uses) -> None:
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            base = ast.unparse(node.value)
            mine = base in ("self", "cls", "super()")
            if node.attr in (inherited if mine else ALL_PRIVATE if imports_aiohttp else ()):
                uses.add(node, f"{base}.{node.attr}")
        elif isinstance(node, ast.keyword) and imports_aiohttp and (node.arg or "")[:1] == "_":
            uses.add(node, f"keyword {node.arg}=")
        elif isinstance(node, ast.ImportFrom) and not node.level \
                and (node.module or "").startswith("aiohttp"):
            if node.module not in PUBLIC_MODULES:
                uses.add(node, f"from {node.module} import")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("aiohttp") and alias.name not in PUBLIC_MODULES:
                    uses.add(node, f"import {alias.name}")

    return internals_walk.walk_classes(path, source, private_names, check)


def test_the_walk_finds_private_names() -> None:
    # The check below must not pass because the walk saw nothing.
    assert {"_message", "_prepare_hook", "_make_server", "_server", "_req"} <= ALL_PRIVATE
    internals_walk.assert_found(private_uses(INTERNALS), (
        "request._message", "overrides _prepare_hook", "overrides _make_server", "site._server",
        "self._req", "keyword _cls=", "from aiohttp.http_exceptions"))


def test_no_module_but_the_internals_uses_a_private_aiohttp_name() -> None:
    assert aiohttp.__version__  # the names below are those of the installed release
    assert internals_walk.uses_outside(INTERNALS, private_uses, skip=("__main__.py",)) == []

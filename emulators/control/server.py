"""The control plane's own listener."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web

from ..core.aiohttp_internals import HookedRunner, ProtocolServer, RequestHandler, bound_address
from ..core.bodies import declared_too_large, send_and_close
from ..core.control_routes import FARM, Unauthorized, control_tables, error_response
from ..core.httpserver import SHUTDOWN_GRACE, HttpEmulator
from . import certificates, clock, dashboard, faults, journal, members, openapi, origin, snapshots
from .errors import error_middleware
from .params import check_path_params, check_routes

if TYPE_CHECKING:
    from ..core.observe import HttpObserver
    from ..scenario import ControlSpec

API_VERSION = "v1"
# The largest request body the control plane takes (its bodies are small JSON documents):
# aiohttp's limit for what a handler reads, and the declared size refused before any is read.
BODY_LIMIT = 1024 * 1024
log = logging.getLogger("emulators.control")


def kind_route_tables(farm: Any) -> list[Any]:
    """The control routes of the kinds the farm runs, each table once, in a fixed order."""
    kinds = sorted({type(m) for m in farm.members.values()}, key=lambda k: k.kind)
    tables: list[Any] = []
    for kind in kinds:
        for table in control_tables(kind):
            if table not in tables:
                tables.append(table)
    return tables


MODULES = (members, journal, faults, clock, snapshots, openapi, dashboard, certificates)


def build_app(farm, token: str | None = None, deadline: Any = None, *,
              modules: tuple[Any, ...] = MODULES, tables: tuple[Any, ...] = (),
              middlewares: tuple[Any, ...] = (), index: Any = None,
              settings: ControlSpec | None = None) -> web.Application:
    """The control plane's application. A sharded farm builds its shards' and its front's
    from the same parts: ``modules`` whose ``routes`` it mounts, further route ``tables``, and
    ``middlewares`` run after the checks (auth, origin, path parameters) and before the
    routes, and the ``index`` handler of ``GET /v1`` (by default: this application's routes).
    ``settings``: the scenario's ``control`` (the host names it answers, the journal
    stream's write timeout); its defaults when None."""
    from ..scenario import ControlSpec

    settings = settings if settings is not None else ControlSpec()

    @web.middleware
    async def limit(request: web.Request, handler):
        # A declared body over the limit is refused at once, before anything is read.
        if declared_too_large(request, BODY_LIMIT):
            return await send_and_close(request, error_response(
                413, "too_large", f"bodies are limited to {BODY_LIMIT} bytes"))
        return await handler(request)

    expected = f"Bearer {token}".encode() if token is not None else b""

    @web.middleware
    async def auth(request: web.Request, handler):
        if token is not None and not dashboard.is_page(request.path):
            # Header values arrive decoded as UTF-8 with surrogateescape: back to the bytes
            # the client sent, whatever they were, so any header compares (and fails) alike.
            given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, expected):
                raise Unauthorized("this control plane requires 'Authorization: Bearer <token>'")
        return await handler(request)

    chain = [limit, error_middleware, auth, origin.guard(token, settings.allowed_hosts),
             check_path_params, *middlewares]
    app = web.Application(middlewares=[deadline, *chain] if deadline else chain,
                          client_max_size=BODY_LIMIT)
    app[FARM] = farm
    app[journal.STREAMS] = set()
    app[journal.WRITE_TIMEOUT] = settings.stream_write_timeout
    for module in modules:
        app.router.add_routes(module.routes)
    for extra in tables:
        app.router.add_routes(extra)
    # Device-specific actions a real device's owner would do on the device itself: each kind
    # the farm runs brings its own (Member.control_routes); the plane names no device.
    for table in kind_route_tables(farm):
        app.router.add_routes(table)

    async def own_index(request: web.Request) -> web.Response:
        return web.json_response({
            "api": API_VERSION,
            "routes": sorted({f"{r.method} {r.resource.canonical}"  # type: ignore[union-attr]
                              for r in request.app.router.routes() if r.method != "HEAD"}),
        })

    app.router.add_get("/v1", index or own_index)
    app.router.add_get("/", index or own_index)
    check_routes(app)
    return app


class _ControlProtocol(RequestHandler):
    """aiohttp's connection handler, answering what it refuses itself (a request it cannot
    parse: a bad Content-Length, a header line with bytes no header may hold...) in the
    control plane's error form instead of a text page."""

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
        else:
            log.info("control plane: unparseable request (%s)", message or exc)
        if request.writer.output_size > 0:  # as aiohttp's own: too late for any reply
            raise ConnectionError("a reply was already under way")
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        code = "internal_error" if status == 500 else phrase.lower().replace(" ", "_")
        reply = error_response(status, code or "bad_request", (message or phrase)[:300])
        reply.force_close()
        return reply


class _ControlServer(ProtocolServer):
    protocol = _ControlProtocol


class _ControlRunner(HookedRunner):
    def adjust_server(self, server: web.Server) -> None:
        _ControlServer.adopt(server)  # each connection's handler is a _ControlProtocol


class ControlPlane:
    # The emulators' limits (HttpEmulator's, read when the control plane starts) unless set
    # here: a connection that has not completed a request within idle_timeout seconds, or
    # idles that long between requests, is closed; one request, slow body included, may take
    # request_deadline seconds, enforced by the farm's one deadline sweeper (core/observe.py).
    idle_timeout: float | None = None
    request_deadline: float | None = None
    name = "control plane"  # how the deadline sweeper names it in its log line

    def __init__(self, farm, host: str, port: int, token: str | None = None) -> None:
        self.farm = farm
        self.host = host
        self.port = port
        self.token = token
        self.runner: web.AppRunner | None = None
        # build_app's modules / tables / middlewares, where they differ (a shard's, a front's)
        self.app_parts: dict[str, Any] = {}

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def limits(self) -> tuple[float, float]:
        idle = self.idle_timeout if self.idle_timeout is not None else HttpEmulator.idle_timeout
        deadline = (self.request_deadline if self.request_deadline is not None
                    else HttpEmulator.request_deadline)
        return idle, deadline

    def _deadline_middleware(self, observer: HttpObserver, seconds: float) -> Any:
        inflight, monotonic, me = observer.inflight, time.monotonic, cast(HttpEmulator, self)

        @web.middleware
        async def deadline(request: web.Request, handler):
            # The emulators' mechanism, not a copy: the request joins the farm's in-flight
            # table, and its sweeper resets the connection once the deadline has passed.
            # (The sweeper reads only .name and .request_deadline of the member it is given.)
            task = asyncio.current_task()
            if task is not None:
                inflight[task] = (monotonic() + seconds, me, request)
            try:
                return await handler(request)
            finally:
                if task is not None:
                    inflight.pop(task, None)

        return deadline

    async def start(self) -> None:
        idle, seconds = self.limits()
        self.request_deadline = seconds  # the sweeper's log line reads it
        observer = getattr(self.farm, "http", None)
        deadline = self._deadline_middleware(observer, seconds) if observer is not None else None
        settings = getattr(getattr(self.farm, "scenario", None), "control", None)
        self.runner = _ControlRunner(build_app(self.farm, self.token, deadline,
                                               settings=settings, **self.app_parts),
                                     access_log=None,
                                     shutdown_timeout=SHUTDOWN_GRACE, handle_signals=False,
                                     keepalive_timeout=idle)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = bound_address(site)[1]

    @classmethod
    async def serve(cls, farm: Any, port: int | None = None) -> ControlPlane:
        """Start the control plane of a started farm, as its scenario's ``control`` says (on
        ``port`` instead when given), and attach it: the farm's ready document names it and
        ``farm.stop()`` stops it first."""
        plane = cls(farm, farm.scenario.control.host,
                    farm.scenario.control.port if port is None else port,
                    token=farm.scenario.control.token)
        await plane.start()
        farm.control = plane
        return plane

    async def stop(self) -> None:
        if self.runner is not None:
            # Live journal streams never finish by themselves: end them, or the server's
            # shutdown would wait its whole grace period for them.
            for task in list(journal.open_streams(self.runner.app)):
                task.cancel()
            await self.runner.cleanup()
            self.runner = None

"""The control plane's own listener."""

from __future__ import annotations

import asyncio
import hmac

from aiohttp import web

from ..core.bodies import declared_too_large, send_and_close
from ..core.httpserver import SHUTDOWN_GRACE
from . import clock, faults, journal, members, openapi, servers, snapshots
from .errors import Unauthorized, error_middleware, error_response
from .keys import FARM

API_VERSION = "v1"


def build_app(farm, token: str | None = None) -> web.Application:  # type: ignore[no-untyped-def]
    @web.middleware
    async def limit(request: web.Request, handler):  # type: ignore[no-untyped-def]
        # A declared body over the limit is refused at once, before anything is read.
        if declared_too_large(request, request.app._client_max_size):
            return await send_and_close(request, error_response(
                413, "too_large", f"bodies are limited to {request.app._client_max_size} bytes"))
        return await handler(request)

    @web.middleware
    async def auth(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                raise Unauthorized("this control plane requires 'Authorization: Bearer <token>'")
        return await handler(request)

    app = web.Application(middlewares=[limit, error_middleware, auth],
                          client_max_size=1024 * 1024)
    app[FARM] = farm
    for module in (members, journal, faults, clock, snapshots, servers, openapi):
        app.router.add_routes(module.routes)
    # Device-specific actions a real device's owner would do on the device itself.
    from ..instar import control as instar_control
    from ..iotda import control as iotda_control

    for module in (instar_control, iotda_control):
        app.router.add_routes(module.routes)

    async def index(request: web.Request) -> web.Response:
        return web.json_response({
            "api": API_VERSION,
            "routes": sorted({f"{r.method} {r.resource.canonical}"  # type: ignore[union-attr]
                              for r in request.app.router.routes() if r.method != "HEAD"}),
        })

    app.router.add_get("/v1", index)
    app.router.add_get("/", index)
    return app


class ControlPlane:
    def __init__(self, farm, host: str, port: int, token: str | None = None) -> None:  # type: ignore[no-untyped-def]
        self.farm = farm
        self.host = host
        self.port = port
        self.token = token
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self.runner = web.AppRunner(build_app(self.farm, self.token), access_log=None,
                                    shutdown_timeout=SHUTDOWN_GRACE, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port, reuse_address=True)
        await site.start()
        assert isinstance(site._server, asyncio.Server)
        self.port = site._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

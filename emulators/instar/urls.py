"""Which URL goes where: the WQHD camera answers its CGI commands at ``/param.cgi``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from . import responses

if TYPE_CHECKING:
    from .emulator import InstarCamera


def add_routes(app: web.Application, camera: InstarCamera) -> None:
    async def param_cgi(request: web.Request) -> web.Response:
        return await responses.param_cgi(camera, request)

    # No HEAD: a HEAD request must not run a command (testftp uploads, sets write flash).
    app.router.add_get("/param.cgi", param_cgi, allow_head=False)

"""Which URL goes where: the WQHD camera answers its CGI commands at ``/param.cgi``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from . import responses
from .exceptions import error_reply

if TYPE_CHECKING:
    from .emulator import InstarCamera


def add_routes(app: web.Application, camera: InstarCamera) -> None:
    async def param_cgi(request: web.Request) -> web.Response:
        try:
            return await responses.param_cgi(camera, request)
        except web.HTTPException:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is answered in the camera's form
            return error_reply(exc, request, camera.profile)

    # No HEAD: a HEAD request must not run a command (testftp uploads, sets write flash).
    app.router.add_get("/param.cgi", param_cgi, allow_head=False)

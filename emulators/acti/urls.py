"""Which URL goes where: every path and method reaches the CGI dispatcher, so that even a
URL no CGI answers gets the device's own "general error" rather than aiohttp's 404/405."""

from __future__ import annotations

from aiohttp import web

from .responses import CameraCgi


async def no_interim_response(request: web.Request) -> None:
    """An HTTP/1.0 server never sends ``100 Continue``; curl waits a second, then sends."""
    return None


def add_routes(app: web.Application, cgi: CameraCgi) -> None:
    app.router.add_get("/cgi-bin/encoder", cgi.encoder, allow_head=False)
    app.router.add_route("*", "/{tail:.*}", cgi.dispatch, expect_handler=no_interim_response)

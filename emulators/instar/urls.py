"""Which URL goes where: the WQHD camera answers its CGI commands at ``/param.cgi`` and its
snapshots at ``/snap.cgi``; its ONVIF services run on a port of their own (core/video)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from aiohttp import web

from . import responses

if TYPE_CHECKING:
    from .emulator import InstarCamera


def add_routes(app: web.Application, camera: InstarCamera) -> None:
    # No HEAD: a HEAD request must not run a command (testftp uploads, sets write flash).
    app.router.add_get("/param.cgi", functools.partial(responses.param_cgi, camera),
                       allow_head=False)
    app.router.add_get("/snap.cgi", functools.partial(responses.snap_cgi, camera),
                       allow_head=False)

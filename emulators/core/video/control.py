"""Control-plane routes every camera with a video wing brings (``control_routes`` of the
camera kinds holds this table beside their own): what its owner or the room around it does to
the camera, as a test wants to script it.

- ``GET  /v1/emulators/{name}/video``: the wing's state (clock, scopes, sessions).
- ``POST /v1/emulators/{name}/video/motion`` ``{"active": true}``: motion starts (or ends):
  the ONVIF motion events go out.
- ``POST /v1/emulators/{name}/video/clock`` ``{"offset": seconds}``: the camera's clock runs
  that far from the farm clock (a camera that drifted, or was set by hand).
- ``POST /v1/emulators/{name}/video/discoverable`` ``{"discoverable": false}``.
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from ..control_routes import BadRequest, obj, operation, owner_of, read_json

routes = web.RouteTableDef()
WHAT = "camera with ONVIF"
_NUMBER = {"type": "number"}
_BOOL = {"type": "boolean"}
OPENAPI: dict[str, dict[str, Any]] = {
    "/v1/emulators/{name}/video": {"get": operation(
        "Camera: the ONVIF/RTSP side's state (camera clock, scopes, sessions)",
        params=("name",))},
    "/v1/emulators/{name}/video/motion": {"post": operation(
        "Camera: motion starts (active true) or ends: ONVIF motion events to subscribers",
        params=("name",), body=obj(active=_BOOL))},
    "/v1/emulators/{name}/video/clock": {"post": operation(
        "Camera: set its clock offset from the farm clock, in seconds",
        params=("name",), body=obj(offset=_NUMBER))},
    "/v1/emulators/{name}/video/discoverable": {"post": operation(
        "Camera: discoverable (WS-Discovery) or not", params=("name",),
        body=obj(discoverable=_BOOL))},
}


def _wing(request: web.Request) -> Any:
    return owner_of(request, routes, WHAT).video


@routes.get("/v1/emulators/{name}/video")
async def describe(request: web.Request) -> web.Response:
    return web.json_response(_wing(request).describe())


def _only(doc: Any, *keys: str) -> dict[str, Any]:
    """The body's fields, all of them known (a misspelt key is an error, not a default)."""
    unknown = sorted(set(doc) - set(keys)) if isinstance(doc, dict) else []
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(map(repr, unknown))[:200]}; "
                         f"this route takes {', '.join(map(repr, keys))}")
    return doc


def _flag(doc: Any, key: str, default: bool | None = None) -> bool:
    value = doc.get(key, default) if isinstance(doc, dict) else None
    if not isinstance(value, bool):
        raise BadRequest(f"{key!r} must be true or false")
    return value


@routes.post("/v1/emulators/{name}/video/motion")
async def motion(request: web.Request) -> web.Response:
    wing = _wing(request)
    active = _flag(_only(await read_json(request), "active"), "active", True)
    await wing.member.video_motion(active)
    return web.json_response({"motion": active, **wing.describe()})


@routes.post("/v1/emulators/{name}/video/clock")
async def clock(request: web.Request) -> web.Response:
    wing = _wing(request)
    doc = _only(await read_json(request), "offset")
    offset = doc.get("offset") if isinstance(doc, dict) else None
    if isinstance(offset, bool) or not isinstance(offset, int | float) \
            or not math.isfinite(offset) or abs(offset) > 10 * 365 * 86400:
        raise BadRequest("'offset' must be a number of seconds within ten years")
    await wing.set_clock_offset(float(offset))
    return web.json_response(wing.describe())


@routes.post("/v1/emulators/{name}/video/discoverable")
async def discoverable(request: web.Request) -> web.Response:
    wing = _wing(request)
    await wing.set_discoverable(_flag(_only(await read_json(request), "discoverable"),
                                      "discoverable"))
    await wing.member.save()
    return web.json_response(wing.describe())

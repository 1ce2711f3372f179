"""Control-plane routes for named farm snapshots."""

from __future__ import annotations

from aiohttp import web

from ..core.control_routes import FARM, BadRequest, NotFound, read_json
from ..snapshots import SnapshotError

routes = web.RouteTableDef()


def members_of(body: dict) -> list[str] | None:
    """The ``members`` a snapshot call names (None: all), checked."""
    members = body.get("members")
    if members is not None and not (isinstance(members, list)
                                    and all(isinstance(m, str) for m in members)):
        raise BadRequest("members must be a list of member names")
    return members


def name_of(body: dict) -> str:
    """The ``name`` a snapshot save gives, checked."""
    name = body.get("name")
    if not isinstance(name, str):
        raise BadRequest("name is required")
    return name


@routes.get("/v1/snapshots")
async def list_snapshots(request: web.Request) -> web.Response:
    return web.json_response({"snapshots": request.app[FARM].snapshots.catalogue()})


@routes.post("/v1/snapshots")
async def save_snapshot(request: web.Request) -> web.Response:
    body = await read_json(request)
    name = name_of(body)
    try:
        saved = await request.app[FARM].snapshots.save(name, members_of(body))
    except SnapshotError as exc:
        raise NotFound(str(exc)) from None
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return web.json_response(saved, status=201)


@routes.post("/v1/snapshots/{name}/restore")
async def restore_snapshot(request: web.Request) -> web.Response:
    body = await read_json(request)
    try:
        restored = await request.app[FARM].snapshots.restore(request.match_info["name"],
                                                             members_of(body))
    except SnapshotError as exc:
        raise NotFound(str(exc)) from None
    return web.json_response({"restored": restored})


@routes.delete("/v1/snapshots/{name}")
async def delete_snapshot(request: web.Request) -> web.Response:
    try:
        request.app[FARM].snapshots.delete(request.match_info["name"])
    except SnapshotError as exc:
        raise NotFound(str(exc)) from None
    return web.json_response({"deleted": request.match_info["name"]})

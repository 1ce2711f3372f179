"""Control-plane routes for members: list, describe, read state, reset."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..core.control_routes import FARM, NotFound
from ..core.journal import withhold_private_keys

routes = web.RouteTableDef()


def _member(request: web.Request, role: str):
    name = request.match_info["name"]
    member = request.app[FARM].members.get(name)
    if member is None or member.role != role:
        raise NotFound(f"no {role} named {name!r}")
    return member


def state_view(member: Any) -> Any:
    """A member's state as the control plane shows it: never a private key (a kind's
    ``state()`` may hold one, as the FTPS server's TLS identity does; its flash keeps it)."""
    return withhold_private_keys(member.state())


def _add(role: str, plural: str) -> None:
    @routes.get(f"/v1/{plural}")
    async def list_members(request: web.Request) -> web.Response:
        return web.json_response({plural: [m.describe() for m in request.app[FARM].by_role(role)]})

    @routes.get(f"/v1/{plural}/{{name}}")
    async def show_member(request: web.Request) -> web.Response:
        return web.json_response(_member(request, role).describe())

    @routes.get(f"/v1/{plural}/{{name}}/state")
    async def member_state(request: web.Request) -> web.Response:
        return web.json_response(state_view(_member(request, role)))

    @routes.post(f"/v1/{plural}/{{name}}/reset")
    async def reset_member(request: web.Request) -> web.Response:
        member = _member(request, role)
        await member.reset()
        return web.json_response({"reset": member.name})


_add("emulator", "emulators")
_add("server", "servers")


@routes.post("/v1/reset")
async def reset_farm(request: web.Request) -> web.Response:
    farm = request.app[FARM]
    await farm.reset()
    return web.json_response({"reset": sorted(farm.members)})


@routes.get("/v1/farm")
async def farm_document(request: web.Request) -> web.Response:
    return web.json_response(request.app[FARM].ready_document())

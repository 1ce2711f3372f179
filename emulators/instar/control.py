"""Control-plane routes for INSTAR cameras: trigger an alarm (``POST .../alarm``).

``InstarCamera.control_routes`` is ``routes``: the control plane mounts it when the farm runs
an INSTAR camera. The answer is what the alarm uploaded.
"""

from __future__ import annotations

from aiohttp import web

from ..control.errors import NotFound
from ..control.keys import FARM
from ..control.openapi import operation

routes = web.RouteTableDef()
OPENAPI = {"/v1/emulators/{name}/alarm": {"post": operation(
    "INSTAR camera: trigger an alarm (uploads snapcount snapshots when snap is enabled)",
    params=("name",))}}


@routes.post("/v1/emulators/{name}/alarm")
async def trigger_alarm(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    member = request.app[FARM].members.get(name)
    trigger = getattr(member, "trigger_alarm", None)
    if member is None or member.role != "emulator" or trigger is None:
        raise NotFound(f"no camera with an alarm named {name!r}")
    return web.json_response({"alarm": name, **await trigger()})

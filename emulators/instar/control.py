"""Control-plane routes for INSTAR cameras: trigger an alarm (``POST .../alarm``).

``InstarCamera.control_routes`` is ``routes``: the control plane mounts it when the farm runs
an INSTAR camera. The answer is what the alarm uploaded.
"""

from __future__ import annotations

from aiohttp import web

from ..core.control_routes import operation, owner_of

routes = web.RouteTableDef()
OPENAPI = {"/v1/emulators/{name}/alarm": {"post": operation(
    "INSTAR camera: trigger an alarm (uploads snapcount snapshots when snap is enabled)",
    params=("name",))}}


@routes.post("/v1/emulators/{name}/alarm")
async def trigger_alarm(request: web.Request) -> web.Response:
    member = owner_of(request, routes, "camera with an alarm")
    return web.json_response({"alarm": member.name, **await member.trigger_alarm()})

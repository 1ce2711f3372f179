"""Control-plane routes for EnOS members (``EnosService.control_routes``: the control plane
mounts them when the farm runs an EnOS member).

``POST /v1/emulators/{name}/enos/faults`` with ``{"internal_errors": N}`` makes the next N
certificate calls answer 99500 (``faults.next_calls`` in the scenario, set at run time): what a
client's retry path meets when the Connection Service fails. The answer is what is armed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from aiohttp import web

from ..control.errors import BadRequest, read_json
from ..control.members import owner_of
from ..control.openapi import operation

if TYPE_CHECKING:
    from .emulator import EnosService

routes = web.RouteTableDef()
OPENAPI = {"/v1/emulators/{name}/enos/faults": {"post": operation(
    "EnOS: the next N certificate calls answer 99500 (the Connection Service failing)",
    params=("name",), body={"type": "object", "properties": {
        "internal_errors": {"type": "integer", "minimum": 0}}, "required": ["internal_errors"]})}}
MAX_ERRORS = 1_000_000


@routes.post("/v1/emulators/{name}/enos/faults")
async def arm_internal_errors(request: web.Request) -> web.Response:
    member = owner_of(request, routes, "enos emulator")
    count = (await read_json(request)).get("internal_errors")
    if type(count) is not int or not 0 <= count <= MAX_ERRORS:
        raise BadRequest(f"'internal_errors' must be an integer from 0 to {MAX_ERRORS}")
    cast("EnosService", member).inject_internal_errors(count)
    await member.save()
    return web.json_response({"emulator": member.name, "internal_errors": count})

"""Control-plane routes for fault injection rules."""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from ..core.control_routes import FARM, BadRequest, NotFound, read_json
from ..core.faults import CATALOGUE, FaultSpec

routes = web.RouteTableDef()


def spec_of(body: dict) -> FaultSpec:
    """The fault rule a POST /v1/faults body gives, or a 400 naming its first problem."""
    try:
        return FaultSpec.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest(f"{where}: {first['msg']}" if where else first["msg"]) from None


def no_rule(rule_id: str) -> NotFound:
    return NotFound(f"no fault rule {rule_id!r}")


@routes.get("/v1/faults")
async def list_faults(request: web.Request) -> web.Response:
    return web.json_response({"faults": [r.to_dict() for r in request.app[FARM].faults.list()]})


@routes.get("/v1/faults/types", allow_head=False)
async def fault_types(request: web.Request) -> web.Response:
    """Every fault a rule can name: where it acts, what a client sees, its parameters (the
    dashboard's form is built from this)."""
    return web.json_response({"faults": CATALOGUE,
                              "matches": ["member", "kind", "protocol", "method", "path",
                                          "command"],
                              "limits": ["probability", "times", "ttl", "seed"]})


@routes.post("/v1/faults")
async def add_fault(request: web.Request) -> web.Response:
    spec = spec_of(await read_json(request))
    try:
        rule = request.app[FARM].faults.add(spec)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return web.json_response(rule.to_dict(), status=201)


@routes.delete("/v1/faults/{id}")
async def delete_fault(request: web.Request) -> web.Response:
    if not request.app[FARM].faults.remove(request.match_info["id"]):
        raise no_rule(request.match_info["id"])
    return web.json_response({"deleted": request.match_info["id"]})


@routes.delete("/v1/faults")
async def clear_faults(request: web.Request) -> web.Response:
    request.app[FARM].faults.clear()
    return web.json_response({"cleared": True})

"""Control-plane routes for EnOS members (``EnosService.control_routes``: the control plane
mounts them when the farm runs an EnOS member).

``POST /v1/emulators/{name}/enos/faults`` with ``{"internal_errors": N}`` makes the next N
certificate calls answer 99500 (``faults.next_calls`` in the scenario, set at run time): what a
client's retry path meets when the Connection Service fails. The answer is what is armed.

``POST /v1/emulators/{name}/enos/devices/{asset_id}/services/{service_id}`` with
``{"params": {...}}`` invokes a service on a connected device over MQTT (the cloud side of
``thing.service.{id}``); ``.../measurepoints`` with ``{"measurepoints": {...}}`` sets measure
points (``thing.service.measurepoint.set``). Both answer the device's reply (``{"reply":
{"id", "code", "data"}}``), 409 when it is not connected, 504 when it does not answer within
``command_timeout`` (or the body's ``timeout`` seconds). Both are journalled with one
correlation id for the request and the reply.

``GET /v1/emulators/{name}/enos/devices/{asset_id}/keys`` answers the private keys the member
made for that device's bound certificates (scenario ``certificates`` without ``csr`` or
``key``), each with its certificate: ``{"assetId", "keys": [{"certSN", "issueAuthority",
"cert", "key"}]}``. State views withhold every private key; a test device needs these to log
in over MQTTS, so they are asked for by name here. The CA keys are never handed out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from aiohttp import web

from ..core.control_routes import (
    BadRequest,
    Conflict,
    GatewayTimeout,
    NotFound,
    operation,
    owner_of,
    read_json,
)

if TYPE_CHECKING:
    from .emulator import EnosService

routes = web.RouteTableDef()
OPENAPI = {"/v1/emulators/{name}/enos/faults": {"post": operation(
    "EnOS: the next N certificate calls answer 99500 (the Connection Service failing)",
    params=("name",), body={"type": "object", "properties": {
        "internal_errors": {"type": "integer", "minimum": 0}}, "required": ["internal_errors"]})}}
OPENAPI.update({
    "/v1/emulators/{name}/enos/devices/{asset_id}/services/{service_id}": {"post": operation(
        "EnOS: invoke a service on a connected device over MQTT; answers its reply",
        params=("name", "asset_id", "service_id"), body={"type": "object", "properties": {
            "params": {"type": "object"}, "timeout": {"type": "number"}}})},
    "/v1/emulators/{name}/enos/devices/{asset_id}/measurepoints": {"post": operation(
        "EnOS: set measure points on a connected device over MQTT; answers its reply",
        params=("name", "asset_id"), body={"type": "object", "properties": {
            "measurepoints": {"type": "object"}, "timeout": {"type": "number"}},
            "required": ["measurepoints"]})}})
OPENAPI["/v1/emulators/{name}/enos/devices/{asset_id}/keys"] = {"get": operation(
    "EnOS: the private keys the member made for a device's bound certificates, with them",
    params=("name", "asset_id"))}
MAX_ERRORS = 1_000_000
MAX_WAIT = 600.0


@routes.post("/v1/emulators/{name}/enos/faults")
async def arm_internal_errors(request: web.Request) -> web.Response:
    member = owner_of(request, routes, "enos emulator")
    count = (await read_json(request)).get("internal_errors")
    if type(count) is not int or not 0 <= count <= MAX_ERRORS:
        raise BadRequest(f"'internal_errors' must be an integer from 0 to {MAX_ERRORS}")
    cast("EnosService", member).inject_internal_errors(count)
    await member.save()
    return web.json_response({"emulator": member.name, "internal_errors": count})


async def _invoke(request: web.Request, service_id: str, params_key: str) -> web.Response:
    member = cast("EnosService", owner_of(request, routes, "enos emulator"))
    body = await read_json(request)
    params = body.get(params_key, {} if params_key == "params" else None)
    if not isinstance(params, dict):
        raise BadRequest(f"'{params_key}' must be an object")
    wait = body.get("timeout")
    if wait is not None and (isinstance(wait, bool) or not isinstance(wait, (int, float))
                             or not 0 < wait <= MAX_WAIT):
        raise BadRequest(f"'timeout' must be a number of seconds up to {MAX_WAIT:g}")
    asset_id = request.match_info["asset_id"]
    device = member.registry.device_by_asset(asset_id)
    if device is None:
        raise NotFound(f"{member.name} has no device {asset_id!r}")
    try:
        reply = await member.access.invoke(device, service_id, params, wait)
    except LookupError:
        raise Conflict(f"device {asset_id!r} is not connected over MQTT") from None
    if reply is None:
        raise GatewayTimeout(f"device {asset_id!r} did not reply to {service_id!r} in time")
    return web.json_response({"reply": reply})


@routes.post("/v1/emulators/{name}/enos/devices/{asset_id}/services/{service_id}")
async def invoke_service(request: web.Request) -> web.Response:
    return await _invoke(request, request.match_info["service_id"], "params")


@routes.post("/v1/emulators/{name}/enos/devices/{asset_id}/measurepoints")
async def set_measurepoints(request: web.Request) -> web.Response:
    return await _invoke(request, "measurepoint/set", "measurepoints")


@routes.get("/v1/emulators/{name}/enos/devices/{asset_id}/keys")
async def device_keys(request: web.Request) -> web.Response:
    member = cast("EnosService", owner_of(request, routes, "enos emulator"))
    asset_id = request.match_info["asset_id"]
    if member.registry.device_by_asset(asset_id) is None:
        raise NotFound(f"{member.name} has no device {asset_id!r}")
    return web.json_response({"assetId": asset_id, "keys": member.device_keys(asset_id)})

"""Control-plane routes for IoTDA members (``IotdaService.control_routes``: the control plane
mounts them when the farm runs an IoTDA member).

``POST /v1/emulators/{name}/iotda/certificates/{certificate_id}/verify-code`` is the console's
"Generate Verification Code" button: it answers the CA's record with its new code.
``GET /v1/emulators/{name}/iotda/sessions`` lists the devices connected over MQTT now.
``GET /v1/emulators/{name}/iotda/devices/{device_id}/keys`` answers the certificate the member
issued for a scenario device (``auth_info.issue_certificate``), its private key and its CA:
``{"device_id", "cert", "key", "ca_cert"}`` (404 for any other device). State views withhold
every private key; a device needs this one to log in over MQTTS, so it is asked for by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from aiohttp import web

from ..core.control_routes import NotFound, operation, owner_of
from .exceptions import CertificateNotFound

if TYPE_CHECKING:
    from .emulator import IotdaService

routes = web.RouteTableDef()
OPENAPI = {"/v1/emulators/{name}/iotda/certificates/{certificate_id}/verify-code": {
    "post": operation(
        "IoTDA: generate a new verification code for a device CA (the console's button)",
        params=("name", "certificate_id"))},
    "/v1/emulators/{name}/iotda/sessions": {"get": operation(
        "IoTDA: the MQTT sessions open now (device, client id, peer, TLS, subscriptions)",
        params=("name",))},
    "/v1/emulators/{name}/iotda/devices/{device_id}/keys": {"get": operation(
        "IoTDA: the certificate, key and CA the member issued for a scenario device",
        params=("name", "device_id"))}}


@routes.post("/v1/emulators/{name}/iotda/certificates/{certificate_id}/verify-code")
async def new_verify_code(request: web.Request) -> web.Response:
    member = owner_of(request, routes, "iotda emulator")
    cert_id = request.match_info["certificate_id"]
    try:
        record = await cast("IotdaService", member).new_verify_code(cert_id)
    except CertificateNotFound:
        raise NotFound(f"{member.name} has no device CA {cert_id!r}") from None
    return web.json_response(record.summary())


@routes.get("/v1/emulators/{name}/iotda/sessions", allow_head=False)
async def sessions(request: web.Request) -> web.Response:
    member = cast("IotdaService", owner_of(request, routes, "iotda emulator"))
    return web.json_response({"sessions": member.access.sessions()})


@routes.get("/v1/emulators/{name}/iotda/devices/{device_id}/keys", allow_head=False)
async def device_keys(request: web.Request) -> web.Response:
    member = cast("IotdaService", owner_of(request, routes, "iotda emulator"))
    device_id = request.match_info["device_id"]
    issued = member.issued_for(device_id)
    if issued is None:
        raise NotFound(f"{member.name} issued no certificate for device {device_id!r}")
    return web.json_response(issued)

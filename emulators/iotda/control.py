"""Control-plane routes for IoTDA members (the lead mounts ``routes`` on the control app).

``POST /v1/emulators/{name}/iotda/certificates/{certificate_id}/verify-code`` is the console's
"Generate Verification Code" button: it answers the CA's record with its new code.
"""

from __future__ import annotations

from aiohttp import web

from ..control.errors import NotFound
from ..control.keys import FARM
from .exceptions import CertificateNotFound

routes = web.RouteTableDef()


@routes.post("/v1/emulators/{name}/iotda/certificates/{certificate_id}/verify-code")
async def new_verify_code(request: web.Request) -> web.Response:
    from .emulator import IotdaService

    name = request.match_info["name"]
    member = request.app[FARM].members.get(name)
    if not isinstance(member, IotdaService):
        raise NotFound(f"no iotda emulator named {name!r}")
    cert_id = request.match_info["certificate_id"]
    try:
        record = await member.new_verify_code(cert_id)
    except CertificateNotFound:
        raise NotFound(f"{name} has no device CA {cert_id!r}") from None
    return web.json_response(record.summary())

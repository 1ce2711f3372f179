"""IoTDA's handlers: read the request, call the model, answer through ``wire``.

By the time a handler runs, ``auth.auth_middleware`` has authenticated the request; errors are
raised (``exceptions``) and rendered by ``wire.error_middleware``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from .auth import PRINCIPAL, Principal
from .exceptions import BadRequestFormat, InvalidInput
from .models.common import PageQuery
from .wire import SERVICE, no_body, reply

# -- reading requests ----------------------------------------------------------------------------

async def read_json(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise BadRequestFormat(f"Content-Type {request.content_type!r}")
    try:
        data = json.loads(await request.read())
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise BadRequestFormat(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequestFormat("body is not a JSON object")
    return data


def page_query(request: web.Request) -> PageQuery:
    q = request.query
    return PageQuery.parse(q.get("limit"), q.get("marker"), q.get("offset"))


def project(request: web.Request) -> str:
    principal: Principal = request[PRINCIPAL]
    return principal.project_id


# -- server certificates -------------------------------------------------------------------------

async def create_server_certificate(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    body = await read_json(request)
    checked = await asyncio.get_running_loop().run_in_executor(
        None, service.server_certificates.check, body)
    record = service.server_certificates.add(project(request), checked, service.clock.time())
    await service.save()
    return reply(record.summary(), 201)


async def list_server_certificates(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    records, page = service.server_certificates.list(project(request), page_query(request))
    return reply({"server_certificates": [r.summary() for r in records], "page": page})


async def show_server_certificate(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    record = service.server_certificates.get(project(request),
                                             request.match_info["certificate_id"])
    return reply(record.detail())


async def delete_server_certificate(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    service.server_certificates.delete(project(request), request.match_info["certificate_id"])
    await service.save()
    return no_body(204)


# -- device CA certificates ----------------------------------------------------------------------

async def add_certificate(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    body = await read_json(request)
    record = service.device_cas.add(project(request), body, service.clock.time())
    await service.save()
    return reply(record.summary(), 201)


async def list_certificates(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    records, page = service.device_cas.list(project(request), request.query.get("app_id"),
                                            page_query(request))
    return reply({"certificates": [r.summary() for r in records], "page": page})


async def show_certificate(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    record = service.device_cas.get(project(request), request.match_info["certificate_id"])
    return reply(record.detail())


async def update_certificate(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    body = await read_json(request)
    record = service.device_cas.update(project(request), request.match_info["certificate_id"],
                                       body)
    await service.save()
    return reply(record.summary())


async def delete_certificate(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    service.device_cas.delete(project(request), request.match_info["certificate_id"])
    await service.save()
    return no_body(204)


async def check_certificate(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    if request.query.get("action_id") != "verify":
        raise InvalidInput(f"action_id={request.query.get('action_id')!r}")
    cert_id = request.match_info["certificate_id"]
    service.device_cas.get(project(request), cert_id)  # an unknown id before a bad body
    body = await read_json(request)
    service.device_cas.verify(project(request), cert_id, body, service.clock.time())
    await service.save()
    return no_body(200)

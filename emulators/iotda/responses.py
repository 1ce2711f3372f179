"""IoTDA's wire: read the request, call the model, shape the reply; and the two middlewares.

``error_middleware`` is the only place an error body is written; ``auth_middleware`` plays the
API gateway (signature or token, project, instance) before any handler runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web

from ..core.bodies import send_and_close
from ..core.observe import MEMBER as CORE_MEMBER
from .auth import Principal
from .exceptions import (
    BadRequestFormat,
    Forbidden,
    InvalidInput,
    IotdaError,
    PathNotFound,
)
from .models.common import PageQuery

if TYPE_CHECKING:
    from .emulator import IotdaService

log = logging.getLogger(__name__)

# The key HttpEmulator.new_app stores the member under, typed as this kind's class.
SERVICE = cast("web.AppKey[IotdaService]", CORE_MEMBER)
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("iotda.principal", Principal)
REQUEST_ID: web.RequestKey[str] = web.RequestKey("iotda.request_id", str)


# -- middlewares ---------------------------------------------------------------------------------

def _error_response(exc: IotdaError, request_id: str) -> web.Response:
    return web.Response(status=exc.status, text=json.dumps(exc.body(request_id)),
                        content_type="application/json")


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    request_id = uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    declared = request.content_length
    if declared is not None and declared > request.app[SERVICE].client_max_size:
        # Refused before the body is read (request.read() would wait for all of it) and
        # closed as soon as the client stops sending (aiohttp would linger ten seconds).
        refusal = _error_response(BadRequestFormat(f"declared body of {declared} bytes"),
                                  request_id)
        refusal.headers["X-Request-Id"] = request_id
        return await send_and_close(request, refusal)
    try:
        response: web.StreamResponse = await handler(request)
    except IotdaError as exc:
        log.info("iotda %s %s -> %s %s", request.method, request.path, exc.code, exc.detail)
        response = _error_response(exc, request_id)
    except web.HTTPException as exc:
        # aiohttp's own refusals (no route, wrong method, body too large) in IoTDA's form.
        mapped: IotdaError = PathNotFound() if exc.status in (404, 405) else BadRequestFormat(
            exc.reason)
        response = _error_response(mapped, request_id)
    # Anything else (a client hanging up mid-body, a failure of ours) goes on to the farm's
    # middleware: a journalled 499, or a log entry and vendor_error's IOTDA.000001.
    response.headers["X-Request-Id"] = request_id
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    service = request.app[SERVICE]
    if request.match_info.http_exception is not None:
        # No such API: the gateway cannot even tell which credentials it would want.
        raise PathNotFound(f"{request.method} {request.path}")
    body = await request.read()
    principal = service.authenticator.authenticate(
        method=request.method, path=request.rel_url.raw_path,
        raw_query=request.rel_url.raw_query_string, headers=request.headers, body=body,
        now=service.clock.time())
    # X-Project-Id and Instance-Id count only as signed (a token's request: as sent, once).
    header_projects = principal.header("X-Project-Id", request.headers)
    instance_ids = principal.header("Instance-Id", request.headers)
    if len(header_projects) > 1 or len(instance_ids) > 1:
        raise Forbidden("X-Project-Id or Instance-Id repeated")
    project_id = request.match_info.get("project_id")
    if project_id != principal.project_id or any(p != principal.project_id
                                                 for p in header_projects):
        raise Forbidden(f"{principal} may not touch project {project_id!r}")
    instance = instance_ids[0] if instance_ids else None
    instances = service.options.instances  # type: ignore[attr-defined]
    if instances and (instance not in instances if instance is not None
                      else service.options.require_instance_id):  # type: ignore[attr-defined]
        raise Forbidden(f"instance {instance!r} is not one of {instances}")
    request[PRINCIPAL] = principal
    return await handler(request)


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


def reply(doc: Any, status: int = 200) -> web.Response:
    return web.json_response(doc, status=status)


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
    return web.Response(status=204)


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
    return web.Response(status=204)


async def check_certificate(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    if request.query.get("action_id") != "verify":
        raise InvalidInput(f"action_id={request.query.get('action_id')!r}")
    cert_id = request.match_info["certificate_id"]
    service.device_cas.get(project(request), cert_id)  # an unknown id before a bad body
    body = await read_json(request)
    service.device_cas.verify(project(request), cert_id, body, service.clock.time())
    await service.save()
    return web.Response(status=200)

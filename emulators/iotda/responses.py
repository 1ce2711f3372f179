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


# -- products and devices ------------------------------------------------------------------------

def device_id(request: web.Request) -> str:
    return request.match_info["device_id"]


async def create_product(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    body = await read_json(request)
    product = service.devices.add_product(project(request), body, service.clock.time())
    await service.save()
    detail = product.detail()
    service.forwarding.product_created(project(request), detail)
    return reply(detail, 201)


async def show_product(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    product = service.devices.product(project(request), request.match_info["product_id"])
    return reply(product.detail())


async def add_device(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    body = await read_json(request)
    device = service.devices.add_device(project(request), body, service.clock.time())
    await service.save()
    detail = service.devices.detail(device)
    service.forwarding.device_changed(device, "create", detail)
    return reply(detail, 201)


async def list_devices(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    devices, page = service.devices.list_devices(project(request), dict(request.query),
                                                 page_query(request))
    return reply({"devices": devices, "page": page})


async def show_device(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    device = service.devices.device(project(request), device_id(request))
    return reply(service.devices.detail(device))


async def update_device(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    service.devices.device(project(request), device_id(request))  # an unknown id first
    body = await read_json(request)
    device = service.devices.update_device(project(request), device_id(request), body)
    await service.save()
    detail = service.devices.detail(device)
    service.forwarding.device_changed(device, "update", detail)
    return reply(detail)


async def delete_device(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    device = service.devices.device(project(request), device_id(request))
    service.devices.delete_device(project(request), device_id(request))
    service.disconnect(device_id(request), "the device was deleted")
    await service.save()
    service.forwarding.device_changed(device, "delete", {})
    return no_body(204)


async def freeze_device(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    service.devices.set_frozen(project(request), device_id(request), True)
    service.disconnect(device_id(request), "the device was frozen")
    await service.save()
    return no_body(204)


async def unfreeze_device(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    service.devices.set_frozen(project(request), device_id(request), False)
    await service.save()
    return no_body(204)


async def reset_device_secret(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    if request.query.get("action_id") != "resetSecret":
        raise InvalidInput(f"action_id={request.query.get('action_id')!r}")
    service.devices.device(project(request), device_id(request))
    body = await read_json(request)
    doc = service.devices.reset_secret(project(request), device_id(request), body)
    if body.get("force_disconnect") is True:
        service.disconnect(device_id(request), "the secret was reset (force_disconnect)")
    await service.save()
    return reply(doc)


async def reset_fingerprint(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    service.devices.device(project(request), device_id(request))
    body = await read_json(request)
    doc = service.devices.reset_fingerprint(project(request), device_id(request), body)
    if body.get("force_disconnect") is True:
        service.disconnect(device_id(request), "the fingerprint was reset (force_disconnect)")
    await service.save()
    return reply(doc)


async def show_device_shadow(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    device = service.devices.device(project(request), device_id(request))
    return reply(device.shadow_doc())


async def update_device_shadow_desired_data(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    service.devices.device(project(request), device_id(request))
    body = await read_json(request)
    device = service.devices.update_desired(project(request), device_id(request), body,
                                            service.clock.time())
    await service.save()
    await service.desired_changed(device)  # delivered at once to an online device
    return reply(device.shadow_doc())


async def create_message(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    device = service.devices.device(project(request), device_id(request))
    body = await read_json(request)
    record = service.devices.create_message(project(request), device_id(request), body,
                                            service.clock.time())
    await service.message_created(device, record)
    await service.save()
    return reply({"message_id": record["message_id"], "result": {
        "status": record["status"], "created_time": record["created_time"],
        "finished_time": record["finished_time"]}}, 201)


async def list_device_messages(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    return reply(service.devices.list_messages(project(request), device_id(request)))


async def create_command(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    service.devices.device(project(request), device_id(request))
    body = await read_json(request)
    device, command = service.devices.create_command(project(request), device_id(request),
                                                     body)
    doc = await service.access.command(device, command)
    # 201 as the API reference answers a command; the error table's IOTDA.014111 row is 200.
    return reply(doc, 200 if "error_code" in doc else 201)


async def update_properties(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    service.devices.device(project(request), device_id(request))
    body = await read_json(request)
    device, services = service.devices.properties_set(project(request), device_id(request),
                                                      body)
    return reply(await service.access.properties(device, "properties/set",
                                                 {"services": services}))


async def list_properties(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    service_id = request.query.get("service_id")
    device = service.devices.properties_get(project(request), device_id(request), service_id)
    doc = {"service_id": service_id} if service_id is not None else {}
    return reply(await service.access.properties(device, "properties/get", doc))


# -- data forwarding: routing rules, rule actions, AMQP queues, access codes ---------------------

def _filters(request: web.Request, *names: str) -> dict[str, str]:
    return {n: request.query[n] for n in names if n in request.query}


async def create_routing_rule(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    rule = service.routing.add_rule(project(request), await read_json(request),
                                    service.clock.time())
    await service.save()
    return reply(rule.summary(), 201)


async def list_routing_rules(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    rules, page = service.routing.list_rules(
        project(request), _filters(request, "resource", "event", "app_type", "app_id",
                                   "rule_name", "active"), page_query(request))
    # ListRoutingRulesResponse: count and marker beside the list, not in a page object.
    return reply({"rules": [r.summary() for r in rules], **page})


async def show_routing_rule(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    return reply(service.routing.rule(project(request), request.match_info["rule_id"]).summary())


async def update_routing_rule(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    service.routing.rule(project(request), request.match_info["rule_id"])  # unknown id first
    rule = service.routing.update_rule(project(request), request.match_info["rule_id"],
                                       await read_json(request))
    await service.save()
    return reply(rule.summary())


async def delete_routing_rule(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    service.routing.delete_rule(project(request), request.match_info["rule_id"])
    await service.save()
    return no_body(204)


async def create_rule_action(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    action = service.routing.add_action(project(request), await read_json(request),
                                        service.clock.time())
    await service.save()
    return reply(action.summary(), 201)


async def list_rule_actions(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    actions, page = service.routing.list_actions(
        project(request), _filters(request, "rule_id", "channel", "app_type", "app_id"),
        page_query(request))
    return reply({"actions": [a.summary() for a in actions], **page})


async def show_rule_action(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    return reply(service.routing.action(project(request),
                                        request.match_info["action_id"]).summary())


async def update_rule_action(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    service.routing.action(project(request), request.match_info["action_id"])
    action = service.routing.update_action(project(request), request.match_info["action_id"],
                                           await read_json(request))
    await service.save()
    return reply(action.summary())


async def delete_rule_action(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    service.routing.delete_action(project(request), request.match_info["action_id"])
    await service.save()
    return no_body(204)


async def add_queue(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    queue = service.routing.add_queue(project(request), await read_json(request),
                                      service.clock.time())
    await service.save()
    return reply(queue.summary(), 201)


async def batch_show_queue(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    queues, page = service.routing.list_queues(project(request),
                                               request.query.get("queue_name"),
                                               page_query(request))
    # BatchShowQueueResponse: count and marker in a page object (unlike the rule lists).
    return reply({"queues": [q.summary() for q in queues], "page": page})


async def show_queue(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    return reply(service.routing.queue(project(request),
                                       request.match_info["queue_id"]).summary())


async def delete_queue(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    queue = service.routing.delete_queue(project(request), request.match_info["queue_id"])
    service.amqp.queue_deleted(queue.project_id, queue.queue_name)
    await service.save()
    return no_body(204)


async def create_access_code(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    # The body is optional (``type`` defaults to AMQP): none, or an empty one, is {}.
    body = await read_json(request) if (await request.read()).strip() else {}
    code = service.routing.new_access_code(project(request), body)
    if code.type == "AMQP" and body.get("force_disconnect") is True:
        service.amqp.disconnect(code.access_key, "CreateAccessCode force_disconnect")
    await service.save()
    return reply({"access_key": code.access_key, "access_code": code.access_code}, 201)

"""Control-plane routes for the request journal: query, clear, resize."""

from __future__ import annotations

from aiohttp import web

from .errors import BadRequest, read_json
from .keys import FARM

routes = web.RouteTableDef()

_TEXT = ("member", "kind", "protocol", "event", "method", "path", "correlation_id")
_NUMBERS = {"status": int, "after_seq": int, "limit": int, "since": float, "until": float}


def filters_from(query: web.Request | dict) -> dict:
    source = query.query if isinstance(query, web.Request) else query
    found: dict = {k: source[k] for k in _TEXT if source.get(k)}
    for key, conv in _NUMBERS.items():
        if source.get(key) not in (None, ""):
            try:
                found[key] = conv(source[key])
            except ValueError:
                raise BadRequest(f"{key} must be a number") from None
    return found


@routes.get("/v1/journal")
async def query_journal(request: web.Request) -> web.Response:
    journal = request.app[FARM].journal
    entries = journal.query(**filters_from(request))
    return web.json_response({"entries": [e.to_dict() for e in entries],
                              "size": len(journal), "capacity": journal.capacity})


@routes.delete("/v1/journal")
async def clear_journal(request: web.Request) -> web.Response:
    request.app[FARM].journal.clear()
    return web.json_response({"cleared": True})


@routes.put("/v1/journal/config")
async def configure_journal(request: web.Request) -> web.Response:
    journal = request.app[FARM].journal
    body = await read_json(request)
    if "capacity" in body:
        capacity = body["capacity"]
        if (not isinstance(capacity, int) or isinstance(capacity, bool)
                or not 1 <= capacity <= 10_000_000):
            raise BadRequest("capacity must be an integer from 1 to 10000000")
        journal.resize(body["capacity"])
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise BadRequest("enabled must be true or false")
        journal.enabled = body["enabled"]
    return web.json_response({"capacity": journal.capacity, "enabled": journal.enabled})

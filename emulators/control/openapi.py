"""The control plane described as OpenAPI 3.1, served at ``GET /v1/openapi.json``.

Kept beside the routes on purpose: a test fails when a route exists that this document does
not describe, or the other way round.
"""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from ..core.control_routes import FARM, STRING, obj, operation
from .dashboard import FILES as PAGES

routes = web.RouteTableDef()

# The plane's own operations carry the "farm" tag unless they name theirs.
_op = functools.partial(operation, tag="farm")


S, INT, N, B = STRING, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
JOURNAL_QUERY = {"member": "string", "kind": "string", "protocol": "string", "event": "string",
                 "method": "string", "path": "string", "status": "integer",
                 "correlation_id": "string", "since": "number", "until": "number",
                 "after_seq": "integer", "limit": "integer"}
FAULT = obj(id=S, fault=S, member=S, kind=S, protocol=S, method=S, path=S, command=S,
            probability=N, times=INT, ttl=N, seed=INT, latency_ms=INT, status=INT, message=S,
            seconds=N, bytes_per_second=INT, after_bytes=INT, connack=INT)

PATHS: dict[str, dict[str, Any]] = {
    "/": {"get": _op("API version and every route")},
    "/v1": {"get": _op("API version and every route")},
    "/v1/openapi.json": {"get": _op("This document")},
    "/v1/farm": {"get": _op("The ready document")},
    "/v1/reset": {"post": _op("Reset every member to the scenario's initial state")},
    "/v1/journal": {
        "get": _op("Query the request journal", query=JOURNAL_QUERY, tag="journal"),
        "delete": _op("Clear the journal", tag="journal")},
    "/v1/journal/stream": {"get": _op(
        "The journal live: Server-Sent Events, one per new entry (Last-Event-ID resumes)",
        query={**JOURNAL_QUERY, "seconds": "number", "max_rate": "number"}, tag="journal",
        media={"text/event-stream": {"schema": {"type": "string"}}})},
    "/v1/journal/rates": {"get": _op(
        "Entries and durations per member over the last minutes, in buckets",
        query={"minutes": "number", "bucket": "number", "member": "string", "top": "integer"},
        tag="journal")},
    "/v1/certificates": {"get": _op(
        "Every certificate the members hold, judged on the farm clock",
        query={"member": "string"}, tag="farm")},
    "/v1/journal/config": {"put": _op("Resize or switch the journal",
                                      body=obj(capacity=INT, enabled=B), tag="journal")},
    "/v1/faults": {"get": _op("List fault rules", tag="faults"),
                   "post": _op("Add a fault rule", body=FAULT, ok="201", tag="faults"),
                   "delete": _op("Remove every fault rule", tag="faults")},
    "/v1/faults/types": {"get": _op("Every fault type, where it acts and its parameters",
                                    tag="faults")},
    "/v1/faults/{id}": {"delete": _op("Remove one fault rule", params=("id",), tag="faults")},
    "/v1/clock": {"get": _op("Read the farm clock", tag="clock")},
    "/v1/clock/freeze": {"post": _op("Freeze the clock (now, or at time/at)",
                                     body=obj(time=N, at=S), tag="clock")},
    "/v1/clock/unfreeze": {"post": _op("Let the clock run again", tag="clock")},
    "/v1/clock/set": {"post": _op("Set the clock", body=obj(time=N, at=S), tag="clock")},
    "/v1/clock/advance": {"post": _op("Advance the clock", body=obj(seconds=N), tag="clock")},
    "/v1/clock/reset": {"post": _op("Back to real time", tag="clock")},
    "/v1/snapshots": {"get": _op("List snapshots", tag="snapshots"),
                      "post": _op("Save a snapshot", body=obj(name=S, members={"type": "array"}),
                                  ok="201", tag="snapshots")},
    "/v1/snapshots/{name}/restore": {"post": _op("Restore a snapshot", params=("name",),
                                                 body=obj(members={"type": "array"}),
                                                 tag="snapshots")},
    "/v1/snapshots/{name}": {"delete": _op("Delete a snapshot", params=("name",),
                                           tag="snapshots")},
}
# The dashboard's files (HTML, CSS, JavaScript modules), each a page of its own.
PATHS.update({url: {"get": _op(
    "The dashboard page" if url == "/ui" else f"The dashboard's {url.removeprefix('/ui/')}",
    tag="dashboard", media={media: {"schema": {"type": "string"}}})}
    for url, (_, media) in sorted(PAGES.items())})
for _plural in ("emulators", "servers"):
    PATHS[f"/v1/{_plural}"] = {"get": _op(f"List {_plural}", tag=_plural)}
    PATHS[f"/v1/{_plural}/{{name}}"] = {"get": _op(
        "Describe one: addresses, URLs, credentials and health (ok | restarting | failed)",
        params=("name",), tag=_plural)}
    PATHS[f"/v1/{_plural}/{{name}}/state"] = {"get": _op("Its state as JSON", params=("name",),
                                                         tag=_plural)}
    PATHS[f"/v1/{_plural}/{{name}}/reset"] = {"post": _op("Reset it", params=("name",),
                                                          tag=_plural)}


def document(farm: Any = None) -> dict[str, Any]:
    """The farm's routes: the plane's own and those of the kinds it runs."""
    paths = dict(PATHS)
    kinds = {type(m) for m in farm.members.values()} if farm is not None else set()
    for kind in sorted(kinds, key=lambda k: k.kind):
        for path, methods in kind.control_openapi.items():
            paths[path] = {**paths.get(path, {}), **methods}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Emulator farm control plane", "version": "1"},
        "paths": paths,
        "components": {
            "responses": {"Error": {"description": "An error", "content": {"application/json": {
                "schema": obj(error=obj(code=S, message=S))}}}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@routes.get("/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document(request.app[FARM]))

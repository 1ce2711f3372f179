"""The control plane in front of a sharded farm: today's API, answered from every shard.

Built from the one-process control plane's own parts (``control.server.build_app``): the
journal, clock and dashboard modules run unchanged over the coordinator's merged journal and
clock (a middleware pulls the shards' journals before a journal route reads, and gives the
clock to every shard after a clock route changed it); the rest is here:

- a member's routes (``/v1/emulators/{name}/...``, ``/v1/servers/{name}/...``) go to the shard
  that runs it, the URL rebuilt from the checked name and path (its control plane checks
  them again with the same rules); the shards' own routes (``/v1/shard/...``) are never
  reachable through the front;
- lists, the ready document, reset, certificates, fault rules and snapshots go to every shard
  and are merged. A fault rule is given to every shard with one id: ``times`` and the
  probability draw count per shard (a rule naming one member fires where that member runs).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from yarl import URL

from ..control import clock as clock_routes
from ..control import dashboard, faults, journal, snapshots
from ..control.server import API_VERSION, ControlPlane
from ..core.control_routes import FARM, NotFound, read_json
from .coordinator import Coordinator, ShardFailed, ShardUnavailable

routes = web.RouteTableDef()
SHARD_ROUTES = "/v1/shard/"


def _coordinator(request: web.Request) -> Coordinator:
    return request.app[FARM]  # type: ignore[return-value]  # the front's "farm" is the coordinator


def _passed(status: int, doc: Any) -> web.Response:
    return web.json_response(doc, status=status)


def _first_error(answers: list[tuple[Any, int, Any]]) -> web.Response | None:
    for _, status, doc in answers:
        if status >= 400:
            return _passed(status, doc)
    return None


async def _answered(request: web.Request, path: str) -> list[Any]:
    """The documents of the shards that answer GET ``path`` with 200: a merged listing leaves
    out a shard that is down rather than failing as a whole."""
    return [doc for _, status, doc in await _coordinator(request).everywhere("GET", path)
            if status == 200]


# -- members --------------------------------------------------------------------------------
def _upstream(shard: Any, plural: str, request: web.Request) -> URL:
    """The shard's URL of a member's route, built from the parts the front checked (the
    middleware of control/params.py: a member name, a relative path with no "." or ".."
    component), each quoted as one path segment and marked encoded so that the client
    neither decodes nor normalises it: what the shard is sent is only ever under
    /v1/<plural>/<name>/."""
    given = request.match_info
    parts = [plural, given["name"], *(given["rest"].split("/") if "rest" in given else ())]
    base = URL(shard.api)
    path = base.raw_path.rstrip("/") + "/" + "/".join(quote(p, safe="") for p in parts)
    return base.with_path(path, encoded=True).with_query(request.rel_url.query)


def _member_lists(plural: str) -> None:
    @routes.get(f"/v1/{plural}")
    async def listing(request: web.Request) -> web.Response:
        co = _coordinator(request)
        order = {spec.name: i for i, spec in enumerate(co.scenario.members)}
        found = [m for doc in await _answered(request, f"/v1/{plural}") for m in doc[plural]]
        return web.json_response({plural: sorted(found, key=lambda m: order.get(m["name"], 0))})

    async def forward(request: web.Request) -> web.StreamResponse:
        co = _coordinator(request)
        shard = co.shard_for(request.match_info["name"])
        if shard.status != "ok" or shard.ready is None:
            raise ShardUnavailable(f"shard {shard.index}, which runs "
                                   f"{request.match_info['name']!r}, is {shard.status}")
        assert co.session is not None
        body = await request.read() if request.can_read_body else None
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("content-type", "accept", "last-event-id")}
        url = _upstream(shard, plural, request)
        response: web.StreamResponse | None = None
        try:
            async with co.session.request(request.method, url, data=body,
                                          headers=headers) as reply:
                response = web.StreamResponse(status=reply.status, headers={
                    k: v for k, v in reply.headers.items()
                    if k.lower() in ("content-type", "content-disposition", "cache-control")})
                await response.prepare(request)
                async for chunk in reply.content.iter_chunked(65536):
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, TimeoutError) as exc:
            if response is not None and response.prepared:
                raise  # the reply was under way: nothing else can be said on it
            raise ShardUnavailable(f"shard {shard.index} did not answer: "
                                   f"{type(exc).__name__}") from None

    for method in ("GET", "POST", "PUT", "DELETE"):
        routes.route(method, f"/v1/{plural}/{{name}}")(forward)
        routes.route(method, f"/v1/{plural}/{{name}}/{{rest:.+}}")(forward)


_member_lists("emulators")
_member_lists("servers")


@routes.get("/v1/farm")
async def farm_document(request: web.Request) -> web.Response:
    return web.json_response(_coordinator(request).ready_document())


@routes.post("/v1/reset")
async def reset_farm(request: web.Request) -> web.Response:
    answers = await _coordinator(request).everywhere("POST", "/v1/reset")
    failed = _first_error(answers)
    if failed is not None:
        return failed
    return web.json_response({"reset": sorted(n for _, _, doc in answers for n in doc["reset"])})


@routes.get("/v1/certificates", allow_head=False)
async def certificates(request: web.Request) -> web.Response:
    answers = await _coordinator(request).everywhere("GET", f"/v1/certificates?"
                                                            f"{request.query_string}")
    failed = _first_error(answers)
    if failed is not None:
        return failed
    return web.json_response({
        "certificates": [c for _, _, doc in answers for c in doc["certificates"]],
        "farm_time": _coordinator(request).clock.time()})


# -- fault rules ----------------------------------------------------------------------------
@routes.get("/v1/faults")
async def list_faults(request: web.Request) -> web.Response:
    merged: dict[str, dict[str, Any]] = {}
    for doc in await _answered(request, "/v1/faults"):
        for rule in doc["faults"]:
            have = merged.get(rule["id"])
            if have is None:
                merged[rule["id"]] = dict(rule)
                continue
            have["fired"] += rule["fired"]
            have["checked"] += rule["checked"]
    return web.json_response({"faults": list(merged.values())})


@routes.post("/v1/faults")
async def add_fault(request: web.Request) -> web.Response:
    co = _coordinator(request)
    body = await read_json(request)
    spec = faults.spec_of(body)  # refused here as one process refuses it
    if spec.id is None:  # one id on every shard
        co.fault_ids += 1
        body = {**body, "id": f"fault-{co.fault_ids}"}
    answers = await co.everywhere("POST", "/v1/faults", body)
    failed = _first_error(answers)
    if failed is not None:
        for _, status, _doc in answers:  # all or nothing
            if status == 201:
                await co.everywhere("DELETE", f"/v1/faults/{body['id']}")
                break
        return failed
    return web.json_response(answers[0][2], status=201)


@routes.get("/v1/faults/types", allow_head=False)
async def fault_types(request: web.Request) -> web.Response:
    co = _coordinator(request)
    return _passed(*await co.call(co.shards[0], "GET", "/v1/faults/types"))


@routes.delete("/v1/faults/{id}")
async def delete_fault(request: web.Request) -> web.Response:
    rule = request.match_info["id"]
    answers = await _coordinator(request).everywhere("DELETE", f"/v1/faults/{rule}")
    if not any(status == 200 for _, status, _ in answers):
        raise faults.no_rule(rule)
    return web.json_response({"deleted": rule})


@routes.delete("/v1/faults")
async def clear_faults(request: web.Request) -> web.Response:
    await _coordinator(request).everywhere("DELETE", "/v1/faults")
    return web.json_response({"cleared": True})


# -- snapshots ------------------------------------------------------------------------------
@routes.get("/v1/snapshots")
async def list_snapshots(request: web.Request) -> web.Response:
    merged: dict[str, dict[str, Any]] = {}
    for doc in await _answered(request, "/v1/snapshots"):
        for snap in doc["snapshots"]:
            have = merged.setdefault(snap["name"], {**snap, "members": []})
            have["members"] = sorted({*have["members"], *snap["members"]})
    return web.json_response({"snapshots": sorted(merged.values(), key=lambda d: d["time"])})


@routes.post("/v1/snapshots")
async def save_snapshot(request: web.Request) -> web.Response:
    co = _coordinator(request)
    body = await read_json(request)
    snapshots.name_of(body)
    snapshots.members_of(body)
    answers = await co.everywhere("POST", "/v1/snapshots", body)
    failed = _first_error(answers)
    if failed is not None:
        return failed
    first = answers[0][2]
    return web.json_response({**first, "members": sorted(
        {m for _, _, doc in answers for m in doc["members"]})}, status=201)


@routes.post("/v1/snapshots/{name}/restore")
async def restore_snapshot(request: web.Request) -> web.Response:
    co = _coordinator(request)
    body = await read_json(request)
    snapshots.members_of(body)
    answers = await co.everywhere("POST", f"/v1/snapshots/{request.match_info['name']}/restore",
                                  body)
    failed = _first_error(answers)
    if failed is not None:
        return failed
    return web.json_response({"restored": sorted(
        m for _, _, doc in answers for m in doc["restored"])})


@routes.delete("/v1/snapshots/{name}")
async def delete_snapshot(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    answers = await _coordinator(request).everywhere("DELETE", f"/v1/snapshots/{name}")
    if not any(status == 200 for _, status, _ in answers):
        return _first_error(answers) or web.json_response({"deleted": name})
    return web.json_response({"deleted": name})


# -- the route list and the OpenAPI document: every shard's, less the shards' own ------------
async def index(request: web.Request) -> web.Response:
    found = {r for doc in await _answered(request, "/v1") for r in doc["routes"]
             if SHARD_ROUTES not in r}
    return web.json_response({"api": API_VERSION, "routes": sorted(found)})


@routes.get("/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    merged: dict[str, Any] | None = None
    for doc in await _answered(request, "/v1/openapi.json"):
        if merged is None:
            merged = doc
        else:
            merged["paths"].update(doc["paths"])
    if merged is None:
        raise ShardUnavailable("no shard answers")
    merged["paths"] = {p: v for p, v in merged["paths"].items() if not p.startswith(
        SHARD_ROUTES)}
    return web.json_response(merged)


# -- the journal and the clock, as one process has them ---------------------------------------
@web.middleware
async def around_shared_routes(request: web.Request, handler: Any) -> web.StreamResponse:
    co = _coordinator(request)
    path = request.path
    if path == SHARD_ROUTES.rstrip("/") or path.startswith(SHARD_ROUTES):
        # The shards' own routes answer the coordinator alone, behind the shards' token.
        raise NotFound("the shards' own routes are not served by the farm's control plane")
    if path.startswith("/v1/journal"):
        if request.method == "GET":
            await co.sync()
        elif request.method == "DELETE":
            await co.sync()
            await co.everywhere("DELETE", "/v1/journal")
        elif request.method == "PUT" and path == "/v1/journal/config":
            body = await read_json(request)
            answers = await co.everywhere("PUT", path, body)
            failed = _first_error(answers)
            if failed is not None:
                return failed
    response = await handler(request)
    if path.startswith("/v1/clock/") and request.method == "POST" and response.status == 200:
        try:
            await co.push_clock()
        except ShardFailed as exc:
            raise ShardUnavailable(str(exc)) from None
    return response


async def follow_streams(app: web.Application) -> None:
    """While a journal stream is open, pull the shards' journals as often as it looks."""
    co: Coordinator = app[FARM]  # type: ignore[assignment]
    while True:
        await asyncio.sleep(journal.POLL)
        if journal.open_streams(app):
            try:
                await co.sync()
            except Exception:  # noqa: BLE001 - a stream must not end the farm's loop
                continue


class FrontPlane(ControlPlane):
    """The farm's one control plane, in front of its shards."""

    def __init__(self, coordinator: Coordinator, host: str, port: int,
                 token: str | None) -> None:
        super().__init__(coordinator, host, port, token)
        self.app_parts = {"modules": (journal, clock_routes, dashboard), "tables": (routes,),
                          "middlewares": (around_shared_routes,), "index": index}
        self._follower: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await super().start()
        assert self.runner is not None
        self._follower = asyncio.get_running_loop().create_task(
            follow_streams(self.runner.app))

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
        await super().stop()

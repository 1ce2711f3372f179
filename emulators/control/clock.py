"""Control-plane routes for the farm's virtual clock."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import datetime

from aiohttp import web

from ..core.clock import Clock
from ..core.control_routes import FARM, BadRequest, read_json

routes = web.RouteTableDef()


def _instant(body: dict) -> float | None:
    if "time" in body:
        if not isinstance(body["time"], (int, float)) or isinstance(body["time"], bool):
            raise BadRequest("time is seconds since the epoch")
        return float(body["time"])
    if "at" in body:
        try:
            moment = datetime.fromisoformat(str(body["at"]).replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest("at must be an ISO 8601 date-time") from None
        if moment.tzinfo is None:
            raise BadRequest("at must carry a time zone (e.g. 2030-01-01T00:00:00Z)")
        return moment.timestamp()
    return None


@routes.get("/v1/clock")
async def read_clock(request: web.Request) -> web.Response:
    return web.json_response(request.app[FARM].clock.describe())


ClockChange = Callable[[Clock, web.Request], Awaitable[None]]


def _changes_clock(path: str) -> Callable[[ClockChange], ClockChange]:
    """A POST route at ``path`` that changes the farm clock and answers with how the clock
    reads afterwards, as every clock route answers."""
    def register(change: ClockChange) -> ClockChange:
        @routes.post(path)
        @functools.wraps(change)
        async def route(request: web.Request) -> web.Response:
            clock = request.app[FARM].clock
            await change(clock, request)
            return web.json_response(clock.describe())
        return change
    return register


@_changes_clock("/v1/clock/freeze")
async def freeze(clock: Clock, request: web.Request) -> None:
    clock.freeze(_instant(await read_json(request)))


@_changes_clock("/v1/clock/unfreeze")
async def unfreeze(clock: Clock, request: web.Request) -> None:
    clock.unfreeze()


@_changes_clock("/v1/clock/set")
async def set_clock(clock: Clock, request: web.Request) -> None:
    instant = _instant(await read_json(request))
    if instant is None:
        raise BadRequest("give time (epoch seconds) or at (ISO 8601)")
    clock.set(instant)


@_changes_clock("/v1/clock/advance")
async def advance(clock: Clock, request: web.Request) -> None:
    seconds = (await read_json(request)).get("seconds")
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        raise BadRequest("seconds must be a number >= 0")
    clock.advance(float(seconds))


@_changes_clock("/v1/clock/reset")
async def reset_clock(clock: Clock, request: web.Request) -> None:
    clock.reset()

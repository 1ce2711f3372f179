"""Control-plane routes for the request journal: query, clear, resize, and a live stream.

``GET /v1/journal/stream`` is Server-Sent Events: every new entry matching the same filters as
``GET /v1/journal`` is one ``data:`` line of JSON with its ``seq`` as the event ``id``; a client
that reconnects with ``Last-Event-ID`` (or ``after_seq``) gets what it missed that is still in
the journal; ``seconds=N`` ends the stream after N seconds. The stream looks for new entries
every ``POLL`` seconds and only while someone watches; a comment line every ``KEEPALIVE``
seconds keeps an idle stream open.
"""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from ..core.journal import _matches
from .errors import BadRequest, ControlError, read_json
from .keys import FARM

POLL = 0.2  # seconds between looks at the journal (an entry shows within this)
KEEPALIVE = 15.0
MAX_STREAMS = 16  # open streams at once; more are refused (each costs a poll loop)
BATCH = 500  # entries sent per look at most (a burst spreads over a few looks)

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


class TooManyStreams(ControlError):
    status = 503
    code = "too_many_streams"


STREAMS: web.AppKey[set[asyncio.Task[object]]] = web.AppKey("journal_streams", set)


def open_streams(app: web.Application) -> set[asyncio.Task[object]]:
    """The journal streams being served (the control plane ends them when it stops)."""
    return app[STREAMS]


@routes.get("/v1/journal/stream", allow_head=False)
async def stream_journal(request: web.Request) -> web.StreamResponse:
    farm = request.app[FARM]
    journal = farm.journal
    filters = filters_from(request)
    filters.pop("limit", None)
    last = request.headers.get("Last-Event-ID") or request.query.get("after_seq")
    try:
        after = int(last) if last not in (None, "") else max(
            (e.seq for e in journal.after(0)[-1:]), default=0)
    except ValueError:
        raise BadRequest("Last-Event-ID / after_seq must be a number") from None
    filters.pop("after_seq", None)
    raw_seconds = request.query.get("seconds")
    try:
        # ``seconds``: end the stream after that long (a script's bounded look; default never)
        lasting = float(raw_seconds) if raw_seconds not in (None, "") else None
    except ValueError:
        raise BadRequest("seconds must be a number") from None
    if lasting is not None and not 0 < lasting <= 86_400:
        raise BadRequest("seconds must be above 0 and at most 86400")
    ends = time.monotonic() + lasting if lasting is not None else None
    task = asyncio.current_task()
    streams = open_streams(request.app)
    if len(streams) >= MAX_STREAMS:
        raise TooManyStreams(f"at most {MAX_STREAMS} journal streams at once")
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-store",
        "X-Accel-Buffering": "no"})
    await response.prepare(request)
    # A stream lives as long as its client reads: out of the request deadline's table.
    observer = getattr(farm, "http", None)
    if observer is not None and task is not None:
        observer.inflight.pop(task, None)
    if task is not None:
        streams.add(task)
    wanted = {k: filters.get(k) for k in ("member", "kind", "protocol", "event", "method",
                                          "path", "status", "correlation_id", "since", "until")}
    quiet_since = time.monotonic()
    try:
        await response.write(b"retry: 1000\n\n")
        while request.transport is not None and not request.transport.is_closing() and (
                ends is None or time.monotonic() < ends):
            fresh = journal.after(after, BATCH)
            if fresh:
                after = fresh[-1].seq
                chunk = b"".join(
                    f"id: {e.seq}\ndata: {json.dumps(e.to_dict())}\n\n".encode()
                    for e in fresh if _matches(e, after_seq=None, **wanted))
                if chunk:
                    await response.write(chunk)
                    quiet_since = time.monotonic()
            if time.monotonic() - quiet_since >= KEEPALIVE:
                await response.write(b": keep-alive\n\n")
                quiet_since = time.monotonic()
            if not fresh or len(fresh) < BATCH:
                await asyncio.sleep(POLL)
    except ConnectionError:
        pass  # the client went away
    finally:
        streams.discard(task)
    return response

"""Control-plane routes for the request journal: query, clear, resize, and a live stream.

``GET /v1/journal/stream`` is Server-Sent Events: every new entry matching the same filters as
``GET /v1/journal`` is one ``data:`` line of JSON with its ``seq`` as the event ``id``; a client
that reconnects with ``Last-Event-ID`` (or ``after_seq``) gets what it missed that is still in
the journal; ``seconds=N`` ends the stream after N seconds. The stream looks for new entries
every ``POLL`` seconds and only while someone watches; a comment line every ``KEEPALIVE``
seconds keeps an idle stream open. A client that stops reading is cut off: a write that waits
longer than ``control.stream_write_timeout`` (10 s) for it, or past ``seconds``, drops the
connection and frees its place among the ``MAX_STREAMS``.

``max_rate=R`` (entries a second) makes it a view for eyes rather than a record: when more is
new than R allows, it sends the newest of it and a ``skipped`` event (``{"skipped": n}``, n
passed over, still in the journal for ``GET /v1/journal``); what it passes over it never builds,
so a dashboard costs a busy farm next to nothing (bench/dashboard.py). Filters apply to what it
looks at.

``GET /v1/journal/rates`` is the traffic per member over the last minutes on the farm clock,
in buckets: entries, mean and 95th-percentile duration (the dashboard's chart).
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import math
import time

from aiohttp import web

from ..core.control_routes import FARM, BadRequest, ControlError, read_json
from ..core.journal import matcher

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
    # ``last_seq``: the newest entry's seq, filter or not; a stream asked for after_seq=last_seq
    # misses nothing recorded since this query (without it a stream starts at its own "now").
    return web.json_response({"entries": [e.to_dict() for e in entries],
                              "size": len(journal), "capacity": journal.capacity,
                              "last_seq": journal.last_seq})


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
# Seconds one write of a stream may wait for its client to take what was sent before it
# (``control.stream_write_timeout``): a client that stopped reading would hold its slot, and
# what the stream has queued for it, for ever.
WRITE_TIMEOUT: web.AppKey[float] = web.AppKey("journal_stream_write_timeout", float)


class _Cut(Exception):
    """The stream's client did not take what was sent in time, or ``seconds`` ran out while it
    waited: the connection is dropped (it cannot end cleanly with a reply half sent)."""


def open_streams(app: web.Application) -> set[asyncio.Task[object]]:
    """The journal streams being served (the control plane ends them when it stops)."""
    return app[STREAMS]


def _number(request: web.Request, name: str, low: float, high: float, *,
            above: bool = False) -> float | None:
    """An optional number of the query within [low, high] (above low with ``above``)."""
    raw = request.query.get(name)
    if raw in (None, ""):
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a number") from None
    if not (low < value if above else low <= value) or not value <= high:
        raise BadRequest(f"{name} must be {'above' if above else 'at least'} {low:g} and at "
                         f"most {high:g}")
    return value


@routes.get("/v1/journal/rates", allow_head=False)
async def journal_rates(request: web.Request) -> web.Response:
    """Per member over the last ``minutes`` (default 5) of the farm clock, in ``bucket``-second
    buckets (default 10), oldest first: journal entries, and the mean and 95th percentile of
    their durations in ms (null where a bucket had none with a duration). ``top=N``: only the
    N members with the most entries."""
    farm = request.app[FARM]
    minutes = _number(request, "minutes", 0, 60, above=True) or 5.0
    bucket = _number(request, "bucket", 1, 600) or 10.0
    pattern = request.query.get("member")
    top = _number(request, "top", 1, 100_000)
    count = max(1, math.ceil(minutes * 60 / bucket))
    now = farm.clock.time()
    since = now - count * bucket
    journal = farm.journal
    totals: dict[str, int] = {}
    for _, member, _ in journal.activity(since):  # first the members, by their entries
        totals[member] = totals.get(member, 0) + 1
    chosen = [m for m in totals if not pattern or fnmatch.fnmatchcase(m, pattern)]
    if top is not None:  # the busiest N (a chart of a 1,000-camera fleet shows a few)
        chosen = sorted(chosen, key=lambda m: -totals[m])[:int(top)]
    # Then the buckets of those alone: lists per bucket for every member were 30,000 lists
    # for a 1,000-camera fleet's journal, 44-169 ms a call where this takes 11-14 ms
    # (bench/README.md, dashboard).
    seen: dict[str, tuple[list[int], list[list[float]]]] = {
        m: ([0] * count, [[] for _ in range(count)]) for m in chosen}
    for moment, member, ms in journal.activity(since):
        found = seen.get(member)
        if found is None:
            continue
        i = min(int((moment - since) // bucket), count - 1)
        found[0][i] += 1
        if ms is not None:
            found[1][i].append(ms)
    members = {}
    for member, (counts, durations) in sorted(seen.items()):
        members[member] = {
            "entries": counts,
            "mean_ms": [round(sum(d) / len(d), 3) if d else None for d in durations],
            "p95_ms": [round(sorted(d)[min(len(d) - 1, int(len(d) * 0.95))], 3) if d else None
                       for d in durations]}
    return web.json_response({"farm_time": now, "since": since, "bucket_seconds": bucket,
                              "members": members})


@routes.get("/v1/journal/stream", allow_head=False)
async def stream_journal(request: web.Request) -> web.StreamResponse:
    farm = request.app[FARM]
    journal = farm.journal
    filters = filters_from(request)
    filters.pop("limit", None)
    last = request.headers.get("Last-Event-ID") or request.query.get("after_seq")
    try:
        after = int(last) if last not in (None, "") else journal.last_seq
    except ValueError:
        raise BadRequest("Last-Event-ID / after_seq must be a number") from None
    max_rate = _number(request, "max_rate", 0.1, 100_000)
    budget = max(1, round(max_rate * POLL)) if max_rate is not None else None
    filters.pop("after_seq", None)
    # ``seconds``: end the stream after that long (a script's bounded look; default never)
    lasting = _number(request, "seconds", 0, 86_400, above=True)
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
    wanted = matcher(**filters)  # after_seq is where the stream starts, not a filter
    quiet_since = time.monotonic()
    patience = request.app[WRITE_TIMEOUT]

    async def write(data: bytes | None) -> None:
        # aiohttp's write waits while the socket's buffer is full: bounded here by the write
        # timeout and by ``seconds``, so neither a reader that stopped nor one that is slow
        # keeps the stream past its end. (A reader that keeps up never waits: the write is
        # done at once, even in the POLL granted to a write begun at the very end.)
        limit = patience if ends is None else min(patience,
                                                  max(ends - time.monotonic(), POLL))
        try:
            await asyncio.wait_for(
                response.write(data) if data is not None else response.write_eof(), limit)
        except TimeoutError:
            raise _Cut from None

    try:
        await write(b"retry: 1000\n\n")
        while request.transport is not None and not request.transport.is_closing() and (
                ends is None or time.monotonic() < ends):
            if budget is None:
                fresh, skipped = journal.after(after, BATCH), 0
            else:
                fresh, skipped = journal.newest(after, budget)
            if skipped:
                await write(f"event: skipped\ndata: {json.dumps({'skipped': skipped})}"
                            "\n\n".encode())
                quiet_since = time.monotonic()
            if fresh:
                after = fresh[-1].seq
                chunk = b"".join(
                    f"id: {e.seq}\ndata: {json.dumps(e.to_dict())}\n\n".encode()
                    for e in fresh if wanted(e))
                if chunk:
                    await write(chunk)
                    quiet_since = time.monotonic()
            if time.monotonic() - quiet_since >= KEEPALIVE:
                await write(b": keep-alive\n\n")
                quiet_since = time.monotonic()
            if budget is not None or len(fresh) < BATCH:
                await asyncio.sleep(POLL)
        await write(None)  # the end, as bounded as every write before it
    except ConnectionError:
        pass  # the client went away
    except _Cut:
        if request.transport is not None:
            request.transport.abort()  # what is queued for it goes too
    finally:
        streams.discard(task)
    return response

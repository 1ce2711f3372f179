"""What the farm runs around every HTTP member's application: it journals the request, applies
fault rules, refuses a body declared too large before it is read, and turns anything a kind
failed to handle into that kind's own error form."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .aiohttp_internals import HttpProcessingError, journal_fields
from .bodies import declared_too_large, send_and_close
from .faults import HTTP_FAULTS, FaultEngine, FaultRule
from .journal import CORRELATION, Journal

if TYPE_CHECKING:
    from .httpserver import HttpEmulator

log = logging.getLogger("emulators.http")


class _QuietBadRequests(logging.Filter):
    """aiohttp logs every request it cannot parse as an ERROR with a traceback. A test double
    is fed such requests on purpose and answers them 400: one INFO line says enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            log.info("unparseable request (%s): %s", record.getMessage(), exc)
            return False
        return True


logging.getLogger("aiohttp.server").addFilter(_QuietBadRequests())

MEMBER: web.AppKey[HttpEmulator] = web.AppKey("emulators_member")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def abort_with_reset(request: web.BaseRequest) -> None:
    """Close the connection with a TCP RST, as a crashing device would."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


class HttpObserver:
    """The farm's wrapper around each HTTP member's application, and what it needs beyond one
    request: the requests in flight, watched by one sweeper for the whole farm (cheaper than a
    timer per request)."""

    SWEEP_EVERY = 1.0

    def __init__(self, journal: Journal, faults: FaultEngine) -> None:
        self.journal = journal
        self.faults = faults
        # task -> (deadline in time.monotonic(), member, request)
        self.inflight: dict[asyncio.Task[Any], tuple[float, HttpEmulator, web.Request]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep(),
                                                                   name="http-deadlines")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.SWEEP_EVERY)
            now = time.monotonic()
            for task, (deadline, member, request) in list(self.inflight.items()):
                if now >= deadline and not task.done():
                    log.warning("%s: %s %s exceeded %.0f s; connection closed", member.name,
                                request.method, request.path, member.request_deadline)
                    self.inflight.pop(task, None)
                    abort_with_reset(request)
                    task.cancel()

    def wrap(self, member: HttpEmulator, handler: Handler) -> Handler:
        """``member``'s application ``handler`` (routing, the kind's middlewares, its views)
        as the farm runs it. The wrapper is made for that member, so the per-request path
        looks nothing up: it runs on every request of the farm. It is not an aiohttp
        middleware because each middleware layer costs every request two more coroutine
        frames; the server calls it in place of the application's handler
        (``httpserver.ObservedRunner``), so it still sees every request the application sees,
        404s included."""
        journal, faults, inflight = self.journal, self.faults, self.inflight
        record, new_correlation_id = journal.record_http, journal.new_correlation_id
        name, kind, group = member.name, member.kind, member.spec.group
        lifetime = member.request_deadline
        # Only kinds that refuse a body by its declared size pay for the check.
        too_large = member.body_too_large if member.refuses_large_bodies else None
        max_size = member.client_max_size
        perf_counter, monotonic = time.perf_counter, time.monotonic
        # The loop is given, not looked up: on Python 3.11 every get_running_loop() is a
        # getpid() system call (a fork check), which would be one more per request.
        loop = asyncio.get_running_loop()  # wrap() runs when the server is made, in the loop
        current_task = asyncio.current_task

        async def observe(request: web.Request) -> web.StreamResponse:
            started = perf_counter()
            correlation = new_correlation_id()
            token = CORRELATION.set(correlation)
            task = current_task(loop)
            if task is not None:
                inflight[task] = (monotonic() + lifetime, member, request)
            protocol = request.scheme  # "https" or "http", from the connection
            response: web.StreamResponse | None = None
            fired: FaultRule | None = None
            status: int | None = None
            try:
                if faults.rules:
                    fired = faults.check(name, kind, protocol, types=HTTP_FAULTS,
                                         method=request.method, path=request.path,
                                         command=member.command_of(request), group=group)
                    if fired is not None:
                        response = await _apply_before(fired, request, member)
                if too_large is not None and response is None \
                        and declared_too_large(request, max_size):
                    response = await send_and_close(request, too_large(request))
                if response is None:
                    try:
                        response = await handler(request)
                    except (web.HTTPException, asyncio.CancelledError, ConnectionError):
                        raise
                    except Exception:  # noqa: BLE001 - the last line of defence: no bare 500
                        log.exception("%s (%s) failed on %s %s", name, kind, request.method,
                                      request.path_qs)
                        response = member.vendor_error(request, "internal error")
                    if fired is not None and fired.fault == "truncate":
                        response = await _truncate(request, response)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            except asyncio.CancelledError:
                status = 499  # the fault, the deadline or the client closed the connection
                raise
            except ConnectionError:
                # The client went away mid-request (mid-body, say): nobody to answer, nothing
                # to log as an error; the journal says 499.
                status = 499
                raise asyncio.CancelledError from None
            finally:
                if task is not None:
                    inflight.pop(task, None)
                CORRELATION.reset(token)
                reply = getattr(response, "body", None)  # bytes, a Payload, or no response
                if not isinstance(reply, bytes):
                    reply = (bytes(reply) if isinstance(reply, bytearray)
                             else getattr(response, "journal_body", None))
                # What aiohttp parsed, read from its own attributes in one call: the public
                # properties (method, raw_path, raw_headers, remote, ...) are a Python call
                # each, and this runs on every request of the farm. The journal tests pin
                # every field.
                peer, method, target, raw_headers, body = journal_fields(request)
                record(name, kind, protocol, correlation, peer, method, target, raw_headers,
                       body, status, reply, perf_counter() - started,
                       {"fault": fired.id, "fault_type": fired.fault} if fired else None)

        return observe


async def _apply_before(rule: FaultRule, request: web.Request,
                        member: HttpEmulator) -> web.StreamResponse | None:
    fault = rule.fault
    if fault == "latency":
        await asyncio.sleep(rule.latency_ms / 1000)
        return None
    if fault == "status":
        code = rule.status or 503
        return web.Response(status=code, text=rule.message or "")
    if fault == "vendor_error":
        return member.vendor_error(request, rule.message or "injected fault", status=rule.status)
    if fault == "reset":
        abort_with_reset(request)
        raise asyncio.CancelledError
    if fault == "hang":
        # No reply at all: hold the connection until the client gives up (or `seconds`).
        deadline = time.monotonic() + (rule.seconds or 3600)
        while time.monotonic() < deadline:
            if request.transport is None or request.transport.is_closing():
                break
            await asyncio.sleep(0.05)
        abort_with_reset(request)
        raise asyncio.CancelledError
    return None  # truncate acts on the reply


async def _truncate(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    body = getattr(response, "body", None)
    if not isinstance(body, (bytes, bytearray)) or response.prepared:
        abort_with_reset(request)
        raise asyncio.CancelledError
    cut = web.StreamResponse(status=response.status, reason=response.reason,
                             headers=response.headers)
    cut.content_length = len(body)
    await cut.prepare(request)
    await cut.write(bytes(body[: len(body) // 2]))
    if request.transport is not None:
        request.transport.close()
    return cut

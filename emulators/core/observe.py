"""The farm-wide HTTP middleware every HTTP member runs first: it journals the request, applies
fault rules, and turns anything a kind failed to handle into that kind's own error form."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

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
    """The farm's HTTP middleware and what it needs beyond one request: the requests in
    flight, watched by one sweeper for the whole farm (cheaper than a timer per request)."""

    SWEEP_EVERY = 1.0

    def __init__(self, journal: Journal, faults: FaultEngine) -> None:
        self.journal = journal
        self.faults = faults
        # task -> (deadline in loop time, member, request)
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
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.SWEEP_EVERY)
            now = loop.time()
            for task, (deadline, member, request) in list(self.inflight.items()):
                if now >= deadline and not task.done():
                    log.warning("%s: %s %s exceeded %.0f s; connection closed", member.name,
                                request.method, request.path, member.request_deadline)
                    self.inflight.pop(task, None)
                    abort_with_reset(request)
                    task.cancel()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        member = request.app[MEMBER]
        journal = self.journal
        started = time.perf_counter()
        correlation = journal.new_correlation_id()
        token = CORRELATION.set(correlation)
        protocol = "https" if request.secure else "http"
        task = asyncio.current_task()
        if task is not None:
            deadline = asyncio.get_running_loop().time() + member.request_deadline
            self.inflight[task] = (deadline, member, request)
        response: web.StreamResponse | None = None
        fired: FaultRule | None = None
        status: int | None = None
        try:
            if self.faults.rules:
                fired = self.faults.check(
                    member.name, member.kind, protocol, types=HTTP_FAULTS,
                    method=request.method, path=request.path,
                    command=member.command_of(request), group=member.spec.group)
            if fired is not None:
                response = await _apply_before(fired, request, member)
            if response is None:
                response = await _handle(request, handler, member)
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
                self.inflight.pop(task, None)
            CORRELATION.reset(token)
            body = getattr(request, "_read_bytes", None)  # what the handler read, if anything
            reply = getattr(response, "body", None) if response is not None else None
            if not isinstance(reply, (bytes, bytearray)):
                reply = getattr(response, "journal_body", None)
            transport = request.transport
            journal.record_http(
                member.name, member.kind, protocol, correlation,
                transport.get_extra_info("peername") if transport else None,
                request.method, request.path, request.rel_url.raw_query_string,
                request.raw_headers, body,
                request.content_length if body is None else len(body), status,
                bytes(reply) if reply is not None else None,
                (time.perf_counter() - started) * 1000,
                {"fault": fired.id, "fault_type": fired.fault} if fired else None,
            )


async def _handle(request: web.Request, handler: Any, member: HttpEmulator) -> web.StreamResponse:
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except (web.HTTPException, asyncio.CancelledError, ConnectionError):
        raise
    except Exception:  # noqa: BLE001 - the last line of defence: never a bare 500 page
        log.exception("%s (%s) failed on %s %s", member.name, member.kind, request.method,
                      request.path_qs)
        return member.vendor_error(request, "internal error")


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

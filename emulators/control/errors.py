"""The control plane's one error form: ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

import codecs
import json
import logging
import math
from typing import Any

from aiohttp import web

from ..core.clock import ClockRangeError
from ..core.state import StateError, UnsafeName

log = logging.getLogger("emulators.control")
MAX_INT_DIGITS = 30


class ControlError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ControlError):
    status = 404
    code = "not_found"


class Unauthorized(ControlError):
    status = 401
    code = "unauthorized"


class BadRequest(ControlError):
    pass


class Conflict(ControlError):
    """The request is fine but the target is not in a state to take it (a device offline)."""

    status = 409
    code = "conflict"


class GatewayTimeout(ControlError):
    """What the request waited for (a device's reply) did not come in time."""

    status = 504
    code = "timeout"


class UnsupportedMediaType(ControlError):
    status = 415
    code = "unsupported_media_type"


class MisdirectedRequest(ControlError):
    """A request naming a host the control plane does not answer (control/origin.py)."""

    status = 421
    code = "misdirected_request"


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.Response(status=status, body=error_body(code, message),
                        content_type="application/json")


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except ControlError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except UnsafeName as exc:  # a request value that was to become a path
        return error_response(400, "bad_request", str(exc))
    except ClockRangeError as exc:
        return error_response(400, "bad_request", str(exc))
    except StateError as exc:  # a saved document (a snapshot) that cannot be read back
        return error_response(409, "damaged_state", str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reply = error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        if "Allow" in exc.headers:  # a 405 says which methods the route has
            reply.headers["Allow"] = exc.headers["Allow"]
        return reply
    except Exception:  # noqa: BLE001 - the last line: a bug, but never a bare 500 page
        log.exception("control plane failed on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "the control plane failed; see its log")


def _strict_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    # No setting of the control plane needs more; int() of a 4,000-digit number is slow and
    # float() of it overflows.
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits is out of range")
    return int(text)


async def read_json(request: web.Request) -> dict:
    """The request's body as a JSON object ({} when there is none). Every way a body can be
    wrong is a 4xx in the error form: a charset Python does not know (415), bytes that are
    not in that charset, text that is not JSON (NaN, Infinity and numbers out of range
    included), nesting deeper than the parser recurses, or JSON that is not an object (400)."""
    if not request.can_read_body:
        return {}
    charset = request.charset or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        raise UnsupportedMediaType(f"unknown charset {charset[:40]!r}: send UTF-8") from None
    raw = await request.read()
    if not raw:
        return {}
    try:
        text = raw.decode(charset)
    except (UnicodeDecodeError, LookupError, ValueError):
        raise BadRequest(f"body is not valid {charset[:40]} text") from None
    try:
        data = json.loads(text, parse_constant=_strict_constant, parse_float=_finite_float,
                          parse_int=_bounded_int)
    except RecursionError:
        raise BadRequest("body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and the parse_* refusals above
        raise BadRequest(f"body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return data

"""What a kind's own control routes are written against: the control plane's error form and
error classes, reading a JSON body, finding the member a route names, and an OpenAPI operation
in the plane's style. A kind imports this module and nothing of ``control/``, so importing a
kind does not load the control plane; ``control/`` uses the same names from here.

One module rather than a package: the four parts are one contract, always imported together.
"""

from __future__ import annotations

import codecs
import json
import math
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from ..farm import Farm

FARM: web.AppKey[Farm] = web.AppKey("farm")
MAX_INT_DIGITS = 30


# -- the error form: ``{"error": {"code": ..., "message": ...}}`` --------------------------------
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


# -- request bodies ------------------------------------------------------------------------------
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


# -- the member a route names --------------------------------------------------------------------
def control_tables(kind: Any) -> tuple[web.RouteTableDef, ...]:
    """A kind's control route tables: ``Member.control_routes`` is one table, or a tuple of
    them (a kind's own and those of the shared machinery it runs, a camera's video routes)."""
    routes = kind.control_routes
    if routes is None:
        return ()
    return tuple(routes) if isinstance(routes, tuple) else (routes,)


def owner_of(request: web.Request, routes: web.RouteTableDef, what: str) -> Any:
    """For a kind's own control route: the member ``{name}`` names, if its kind brought
    ``routes`` (``Member.control_routes``); else NotFound "no <what> named '<name>'"."""
    name = request.match_info["name"]
    member = request.app[FARM].members.get(name)
    if member is None or not any(t is routes for t in control_tables(type(member))):
        raise NotFound(f"no {what} named {name!r}")
    return member


# -- OpenAPI operations (the plane's document is control/openapi.py) -----------------------------
ERROR_REF = {"$ref": "#/components/responses/Error"}
JSON = {"application/json": {"schema": {"type": "object"}}}
BYTES = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
STRING = {"type": "string"}


def obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


def operation(summary: str, *, body: dict[str, Any] | None = None, params: tuple[str, ...] = (),
              query: dict[str, str] | None = None, ok: str = "200", tag: str = "emulators",
              media: dict[str, Any] | None = None) -> dict[str, Any]:
    """An OpenAPI operation in the control plane's style (a kind's ``control_openapi``)."""
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": {
        ok: {"description": "OK", "content": media or JSON}, "default": ERROR_REF}}
    parameters = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                  for p in params]
    for name, kind in (query or {}).items():
        parameters.append({"name": name, "in": "query", "schema": {"type": kind}})
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"content": {"application/json": {"schema": body}}}
    return op

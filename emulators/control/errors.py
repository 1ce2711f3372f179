"""The control plane's one error form: ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

import json

from aiohttp import web

from ..core.clock import ClockRangeError


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


def error_response(status: int, code: str, message: str) -> web.Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status, text=body, content_type="application/json")


@web.middleware
async def error_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    try:
        return await handler(request)
    except ControlError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except ClockRangeError as exc:
        return error_response(400, "bad_request", str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)


async def read_json(request: web.Request) -> dict:  # type: ignore[type-arg]
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return data

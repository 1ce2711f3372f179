"""The control plane's error middleware: every refusal, raised or aiohttp's own, in the one
error form ``{"error": {"code": ..., "message": ...}}``. The error classes and the form itself
are in ``core/control_routes.py``, where the kinds' own control routes find them too."""

from __future__ import annotations

import logging

from aiohttp import web

from ..core.clock import ClockRangeError
from ..core.control_routes import ControlError, error_response
from ..core.state import StateError, UnsafeName

log = logging.getLogger("emulators.control")


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

"""IoTDA's reply format: the one error renderer, the error middleware, the success replies, and
the typed key handlers find their member under.

``error_middleware`` is the only place a raised error becomes a body; every reply it passes
carries a fresh ``X-Request-Id``.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web

from ..core.observe import MEMBER as CORE_MEMBER
from .exceptions import BadRequestFormat, IotdaError, PathNotFound

if TYPE_CHECKING:
    from .emulator import IotdaService

# The logger keeps the name it had in responses.py: log settings that name it still apply.
log = logging.getLogger("emulators.iotda.responses")

# The key HttpEmulator.new_app stores the member under, typed as this kind's class.
SERVICE = cast("web.AppKey[IotdaService]", CORE_MEMBER)


def error_response(exc: IotdaError, request_id: str) -> web.Response:
    return web.Response(status=exc.status, text=json.dumps(exc.body(request_id)),
                        content_type="application/json")


def error_reply(exc: IotdaError) -> web.Response:
    """``exc`` in IoTDA's form with a fresh ``X-Request-Id``: for the replies the member makes
    outside ``error_middleware`` (its ``vendor_error`` and ``body_too_large`` hooks)."""
    request_id = uuid.uuid4().hex
    response = error_response(exc, request_id)
    response.headers["X-Request-Id"] = request_id
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    request_id = uuid.uuid4().hex
    try:
        response: web.StreamResponse = await handler(request)
    except IotdaError as exc:
        log.info("iotda %s %s -> %s %s", request.method, request.path, exc.code, exc.detail)
        response = error_response(exc, request_id)
    except web.HTTPException as exc:
        # aiohttp's own refusals (no route, wrong method, body too large) in IoTDA's form.
        mapped: IotdaError = PathNotFound() if exc.status in (404, 405) else BadRequestFormat(
            exc.reason)
        response = error_response(mapped, request_id)
    # Anything else (a client hanging up mid-body, a failure of ours) goes on to the farm's
    # observer (core/observe.py): a journalled 499, or a log entry and vendor_error's
    # IOTDA.000001.
    response.headers["X-Request-Id"] = request_id
    return response


# -- success replies -----------------------------------------------------------------------------

def reply(doc: Any, status: int = 200) -> web.Response:
    """A JSON document: the record or page the SDK method answers."""
    return web.json_response(doc, status=status)


def no_body(status: int) -> web.Response:
    """A success without a body: 204 for a delete, 200 for ``check_certificate``."""
    return web.Response(status=status)

"""EnOS's replies on the wire: the Connection Service's ``{code, msg, requestId, data}``
envelope and the APIM gateway's ``{status, msg, business}`` form, and the one place errors
become replies (Connection Service errors as the envelope, HTTP 200; gateway refusals in the
APIM form)."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web
from aiohttp.typedefs import Handler

from ..core.observe import MEMBER as CORE_MEMBER
from .exceptions import (
    ConnectError,
    GatewayError,
    GatewayInternal,
    InternalError,
    connect_errors,
)
from .models.tokens import TOKEN_SERVICE

if TYPE_CHECKING:
    from .emulator import EnosService

log = logging.getLogger(__name__)

# The key HttpEmulator.new_app stores the member under, typed as this kind's class.
MEMBER = cast("web.AppKey[EnosService]", CORE_MEMBER)


def envelope(data: Any = None, code: int = 0, msg: str = "OK") -> web.Response:
    return web.json_response({"code": code, "msg": msg, "requestId": str(uuid.uuid4()),
                              "data": data})


def gateway_reply(status: int, msg: str, business: str, http_status: int = 200,
                  **extra: Any) -> web.Response:
    body: dict[str, Any] = {"status": status, "msg": msg, "business": business}
    body.update(extra)
    return web.json_response(body, status=http_status)


def too_large() -> web.Response:
    """The gateway's refusal of a body declared over the member's limit, on every path (the
    farm sends it before the body is read, then closes: ``HttpEmulator.body_too_large``)."""
    return gateway_reply(413, "Request Entity Too Large", "apim-gateway", 413)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    member = request.app[MEMBER]
    try:
        if not member.loaded:  # a request that raced the first start's genesis
            raise InternalError()
        return await handler(request)
    except ConnectError as exc:
        return envelope(None, exc.code, exc.message)
    except GatewayError as exc:
        extra: dict[str, Any] = dict(exc.extra)
        if exc.apim_status is not None:
            extra["apim_status"] = exc.apim_status
        token_service = exc.business == TOKEN_SERVICE
        http_status = 200 if token_service else member.options.gateway_error_status
        return gateway_reply(exc.status, exc.msg, exc.business, http_status, **extra)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # No API behind this path or method: the gateway answers with the HTTP status.
        return gateway_reply(exc.status, exc.reason, "apim-gateway", exc.status)
    # Anything else (a client hanging up mid-body, a failure of ours) goes on to the farm's
    # observer (core/observe.py): a journalled 499, or a log entry and vendor_error's 99500
    # envelope.


def render_vendor_error(request: web.Request, message: str,
                        status: int | None = None) -> web.Response:
    """A farm-injected vendor error (or a failure the farm caught) in EnOS's form: the token
    service's ``{status, msg, business}``, else the Connection Service envelope. A message of
    the error table keeps its code; any other is a 99500."""
    if request.path.startswith("/apim-token-service/"):
        return gateway_reply(GatewayInternal.status, message, TOKEN_SERVICE, status or 200)
    code = next((cls.code for cls in connect_errors() if cls.msg and cls.msg == message),
                InternalError.code)
    if message == "internal error":  # the farm's wording for a failure nobody mapped
        message = InternalError.msg
    response = envelope(None, code, message)
    response.set_status(status or 200)
    return response

"""The APIM gateway: the token service, and the check every business call passes first.

A signed call (``apim-timestamp``/``apim-signature`` present) must carry a token this gateway
issued, unexpired, with a correct signature. A call with only ``apim-accesstoken`` must carry
a genuine token: one this gateway issued and unexpired, or (``accept_sdk_tokens``) one
enos-poseidon made: by default any token of the form the published SDK sends (encrypted to
Envision's key, which only Envision can read), or one derived from an app of this gateway and
encrypted to this member's key (the only kind ``sdk_token_check: farm-key`` accepts; see
``sdk.py``). Anything else is refused. The CA download paths are public, as on the portal.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler

from .exceptions import GatewayError, InvalidParameter, ParameterEmpty, TokenMissing
from .models.tokens import TOKEN_SERVICE
from .wire import MEMBER, gateway_reply

if TYPE_CHECKING:
    from .emulator import EnosService

# The token service's and the CA downloads' routes (urls.py; named here, as urls imports this
# module): no credentials asked.
PUBLIC_PREFIXES = ("/apim-token-service/", "/enos/CA/")

# What a business handler may read: the appKey of the call (None when the gateway is open).
CALLER: web.RequestKey[str | None] = web.RequestKey("enos_caller", str | None)  # type: ignore[arg-type]


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    member = request.app[MEMBER]
    if request.path.startswith(PUBLIC_PREFIXES) or not member.options.require_auth:
        request[CALLER] = None
        return await handler(request)
    # As sent: the HTTP parser has taken the line's surrounding whitespace off already, and
    # a token is matched exactly (no case folding, no inner whitespace).
    token = request.headers.get("apim-accesstoken", "")
    timestamp = request.headers.get("apim-timestamp")
    signature = request.headers.get("apim-signature")
    if timestamp is not None or signature is not None:
        raw = (await request.read()).decode("utf-8", "replace")
        app = member.tokens.verify(token, (timestamp or "").strip(), (signature or "").strip(),
                                   list(request.query.items()), raw, member.clock.time())
        request[CALLER] = app.app_key
    elif not token:
        raise TokenMissing()
    else:
        # Not genuine: 4012, "get a new one", enos-poseidon's retry path.
        options = member.options
        app = member.tokens.authorize(token, member.clock.time(),
                                      sdk_tokens=options.accept_sdk_tokens,
                                      by_form=options.sdk_token_check == "form",
                                      org_id=_org_of(request))
        request[CALLER] = app.app_key
    return await handler(request)


async def judge(member: EnosService, request: web.Request) -> str:
    """The gateway's verdict on a request's credentials, as ``auth_middleware`` and the token
    service would give it, for a quirk profile's replay (which runs before routing: the
    member is given): ``right``, ``wrong`` (given, refused) or ``none``. The CA downloads
    take none."""
    if request.path.startswith(PUBLIC_PREFIXES[1]):
        return "none"
    if request.path.startswith(PUBLIC_PREFIXES[0]):
        try:
            body = json.loads(await request.read())
        except (ValueError, RecursionError):
            return "none"
        return member.tokens.judge_request(body)
    token = request.headers.get("apim-accesstoken", "")
    if not token.strip():
        return "none"
    timestamp = request.headers.get("apim-timestamp")
    signature = request.headers.get("apim-signature")
    now = member.clock.time()
    try:
        if timestamp is not None or signature is not None:
            raw = (await request.read()).decode("utf-8", "replace")
            member.tokens.verify(token, (timestamp or "").strip(), (signature or "").strip(),
                                 list(request.query.items()), raw, now)
        else:
            options = member.options
            member.tokens.authorize(token, now, sdk_tokens=options.accept_sdk_tokens,
                                    by_form=options.sdk_token_check == "form",
                                    org_id=_org_of(request))
    except GatewayError:
        return "wrong"
    return "right"


def _org_of(request: web.Request) -> str | None:
    """The organisation a call is about (every Connection Service call names its orgId)."""
    return request.query.get("orgId", "").strip() or None


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        raise ParameterEmpty(TOKEN_SERVICE)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise InvalidParameter(TOKEN_SERVICE) from None
    if not isinstance(body, dict):
        raise InvalidParameter(TOKEN_SERVICE)
    return body


async def _token(request: web.Request, *, refresh: bool) -> web.Response:
    """Get and refresh answer alike: the same body checks, fault point and reply form."""
    member = request.app[MEMBER]
    body = await _body(request)
    await member.check_faults("token")
    now = member.clock.time()
    token = (member.tokens.refresh if refresh else member.tokens.get)(body, now)
    await member.save()
    return gateway_reply(0, "SUCCESS", TOKEN_SERVICE,
                         data={"accessToken": token.token, "expire": token.remaining(now)})


async def token_get(request: web.Request) -> web.Response:
    return await _token(request, refresh=False)


async def token_refresh(request: web.Request) -> web.Response:
    return await _token(request, refresh=True)

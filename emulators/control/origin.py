"""What a web page of another origin could make a browser send, refused.

A control plane without a token would otherwise obey any page the user opens: a form or a
``fetch`` in ``no-cors`` mode sends a "simple" POST (``text/plain``, a form) without asking
first, and a page served from a name the attacker re-points at 127.0.0.1 (DNS rebinding)
reads every reply as its own. So:

- a state change (POST, PUT, PATCH, DELETE) must carry ``Content-Type: application/json`` or
  an ``X-Requested-With`` header, body or not: a page of another origin can set neither without
  a CORS preflight, which the control plane never grants (415 otherwise);
- without a token, the ``Host`` a request names must be loopback (``localhost``,
  ``*.localhost``), an IP address (a rebinding page's requests carry its own name; an
  address is never re-pointed), or a name the farm was told to answer
  (``control.allowed_hosts``, ``--allow-host``): 421 otherwise. With a token the token is the
  guard (no page can send it), so a shard answers its coordinator at any name.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from ..core.control_routes import MisdirectedRequest, UnsupportedMediaType

STATE_CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CLIENT_HEADER = "X-Requested-With"
JSON = "application/json"


def host_name(value: str) -> str | None:
    """The name a ``Host`` header gives, lower case, without its port or a final dot (an
    IPv6 address without its brackets); None when it is not a host[:port] at all."""
    value = value.strip()
    if value.startswith("["):
        name, bracket, port = value[1:].partition("]")
        if not bracket or (port and not (port[0] == ":" and port[1:].isdigit())):
            return None
        return name.lower()
    name, colon, port = value.rpartition(":")
    if not colon:
        name = value
    elif not port.isdigit() or ":" in name:
        return None
    name = name.lower().rstrip(".")
    return name or None


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def allowed_host(name: str | None, configured: Iterable[str]) -> bool:
    if name is None:
        return False
    return (name == "localhost" or name.endswith(".localhost") or _is_address(name)
            or name in {c.lower().rstrip(".") for c in configured})


def guard(token: str | None, allowed_hosts: Iterable[str]) -> Any:
    configured = frozenset(h.lower().rstrip(".") for h in allowed_hosts)

    @web.middleware
    async def same_site(request: web.Request, handler: Any) -> web.StreamResponse:
        if token is None and "Host" in request.headers:  # no browser leaves it out
            given = request.headers["Host"]
            if not allowed_host(host_name(given), configured):
                raise MisdirectedRequest(
                    f"this control plane answers loopback, IP addresses and its configured "
                    f"names only (control.allowed_hosts, --allow-host), not {given[:100]!r}")
        if request.method in STATE_CHANGES and not request.headers.get(CLIENT_HEADER) and (
                "Content-Type" not in request.headers or request.content_type != JSON):
            raise UnsupportedMediaType(
                f"a {request.method} must be sent with 'Content-Type: {JSON}' or an "
                f"'{CLIENT_HEADER}' header, with a body or without (a web page of another "
                "origin can send neither)")
        return await handler(request)

    return same_site

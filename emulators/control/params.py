"""Every value a control-plane route takes from its URL path is checked here, once, before the
route runs (a middleware), so no route can forget: a snapshot's, member's or user's name and a
file's path by the farm's one rule for names that become paths (``core.state``), the other
identifiers by their own shapes. aiohttp has decoded them already (``%2f`` is ``/`` here).

``check_routes`` refuses, when the application is built, a route whose path has a parameter
this table does not know: a new route is checked, or the farm does not start.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from aiohttp import web

from ..core.state import UnsafeName, checked_name, checked_relative_path

_LABEL = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")


Rule = Callable[[str, str, Mapping[str, str]], object]  # (value, route, every parameter)


def _snapshot_or_member(value: str, route: str, given: Mapping[str, str]) -> object:
    return checked_name(value, "snapshot" if route.startswith("/v1/snapshots/") else "member")


def _user(value: str, route: str, given: Mapping[str, str]) -> object:
    return checked_name(value, "user")


def _file_path(value: str, route: str, given: Mapping[str, str]) -> object:
    try:
        return checked_relative_path(value, "file path")
    except UnsafeName:
        # Said as the servers say it: the path as <user>/<path under that user's root>.
        whole = f"{given.get('user', '')}/{value}"
        shown = repr(whole if len(whole) <= 200 else whole[:200] + "...")
        raise UnsafeName(f"{shown} is not a path under a user's root") from None


def _label(what: str) -> Rule:
    def check(value: str, route: str, given: Mapping[str, str]) -> object:
        # Fault rule ids ([A-Za-z0-9_.-]{1,64}) and IoTDA certificate ids (hex) never become
        # paths; a value no such id can have is refused the same way.
        if not _LABEL.fullmatch(value):
            raise UnsafeName(f"{value[:80]!r} is not a {what}")
        return value
    return check


def _forwarded(value: str, route: str, given: Mapping[str, str]) -> object:
    # The rest of a member's route on a sharded farm's front (shards/front.py), which joins
    # it to the shard's URL: components only, never "." or ".." (a client resolving them, or
    # a decoded %2e%2e, would leave the member for the shard's own /v1/shard/ routes).
    return checked_relative_path(value, "member route")


RULES: dict[str, Rule] = {
    "rest": _forwarded,
    "name": _snapshot_or_member,
    "user": _user,
    "path": _file_path,
    "id": _label("fault rule id"),
    "certificate_id": _label("certificate id"),
    "asset_id": _label("asset id"),
    "service_id": _label("service id"),
    "device_id": _label("device id"),
}
_PARAM = re.compile(r"\{(\w+)")


def route_params(route: str) -> list[str]:
    return _PARAM.findall(route)


def check_routes(app: web.Application) -> None:
    for resource in app.router.resources():
        unknown = set(route_params(resource.canonical)) - RULES.keys()
        if unknown:
            raise RuntimeError(f"control route {resource.canonical} has parameters "
                               f"{sorted(unknown)} that control/params.py does not check")


@web.middleware
async def check_path_params(request: web.Request, handler):
    if request.match_info:
        route = request.match_info.route.resource
        canonical = route.canonical if route is not None else ""
        for key, value in request.match_info.items():
            RULES[key](value, canonical, request.match_info)
    return await handler(request)

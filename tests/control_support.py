"""What the control-plane tests share: a raw-bytes client for the control plane, a urllib one
whose error statuses are replies too, the valid value of each path parameter (so a route read
from the farm's own index can be called), and a device kind that echoes its body (so the
journal keeps an excerpt of what was sent)."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from aiohttp import web

from emulators.core.httpserver import HttpEmulator
from emulators.core.member import KindOptions
from emulators.testing import RunningFarm
from tests.robustness.clients import Reply, exchange, http_request


class Echo(HttpEmulator):
    kind = "tests.control_support:Echo"
    Options = KindOptions

    def initial_state(self) -> dict[str, Any]:
        return {}

    def load_state(self, data: dict[str, Any]) -> None:
        pass

    def dump_state(self) -> dict[str, Any]:
        return {}

    def build_app(self) -> web.Application:
        app = self.new_app()

        async def echo(request: web.Request) -> web.Response:
            body = await request.read()
            return web.Response(body=body, content_type="application/octet-stream")

        app.router.add_route("*", "/{tail:.*}", echo)
        return app


# A valid value for each path parameter of the control plane, per route family.
VALID: dict[str, Any] = {
    "name": {"snapshots": "good", "emulators": "instar-camera", "servers": "ftp"},
    "user": "ftpuser", "path": "hello.txt", "id": "nosuch", "certificate_id": "nosuch",
    "asset_id": "nosuch", "service_id": "nosuch", "device_id": "nosuch"}
SFTP_ROUTE = "/v1/servers/{name}/users/{user}/authorized_keys"


def control(farm: RunningFarm, method: str, target: str | bytes, *, body: Any = None,
            headers: dict[str, str] | None = None, raw: bytes | None = None,
            timeout: float = 10) -> Reply:
    """One request to the farm's control plane as raw bytes: ``target`` as given (no client
    re-encodes it), a JSON ``body`` or ``raw`` body bytes; a state change says
    ``X-Requested-With`` unless ``headers`` give it (control/origin.py)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    sent = dict(headers or {})
    if body is not None:
        sent.setdefault("Content-Type", "application/json")
    if method in ("POST", "PUT", "PATCH", "DELETE"):  # as every first-party client does
        sent.setdefault("X-Requested-With", "tests")
    target = target if isinstance(target, bytes) else target.encode("latin-1")
    return exchange(farm.farm.control.port, http_request(method, target, headers=sent,
                                                         body=data), timeout=timeout)


def urlopen_reply(request: urllib.request.Request | str,
                  timeout: float = 10) -> tuple[int, bytes]:
    """The status and body of one request through urllib, an error status (4xx, 5xx) as much
    a reply as a 200."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def urlopen_json(request: urllib.request.Request | str,
                 timeout: float = 10) -> tuple[int, Any]:
    """``urlopen_reply`` with the body read as JSON."""
    status, body = urlopen_reply(request, timeout)
    return status, json.loads(body)


def routes(farm: RunningFarm) -> list[tuple[str, str]]:
    """Every route the control plane serves, as (method, path template), from its index."""
    index = control(farm, "GET", "/v1").json()
    return [tuple(r.split(" ", 1)) for r in index["routes"]]  # type: ignore[misc]


def params(route: str) -> list[str]:
    return re.findall(r"\{(\w+)\}", route)


def fill(route: str, hostile: str | None = None, where: str | None = None) -> str:
    """``route`` with a valid value in each parameter, or ``hostile`` (raw URL bytes) in
    ``where``."""
    family = route.split("/")[2] if route.count("/") >= 2 else ""

    def value(m: re.Match[str]) -> str:
        param = m.group(1)
        if param == where:
            assert hostile is not None
            return hostile
        valid = VALID[param]
        if isinstance(valid, dict):
            return "iotda" if "/iotda/" in route else str(valid[family])
        return urllib.parse.quote(str(valid))

    target = re.sub(r"\{(\w+)\}", value, route)
    if route == "/v1/journal/stream":
        target += "?seconds=0.2"  # a stream ends only when asked to
    if route == SFTP_ROUTE:  # the SFTP server and its user, where not the hostile value
        target = target.replace("/servers/ftp/", "/servers/sftp/").replace(
            "/users/ftpuser/", "/users/ipcamera/")
    return target


def assert_error_form(reply: Reply, what: str) -> dict[str, str]:
    assert reply.headers.get("content-type", "").startswith("application/json"), (
        what, reply.status, reply.headers, reply.body[:300])
    error = reply.json()["error"]
    assert set(error) == {"code", "message"} and error["code"] and error["message"], what
    assert b"Traceback" not in reply.body, what
    return error  # type: ignore[no-any-return]

"""Control-plane routes for the upload servers: what arrived, fetching a file, the events, and
an SFTP user's authorized_keys (so a test can authorise a camera's ``getpubkey`` key).
``ServerMember.control_routes`` is ``routes``: the control plane mounts them when the farm runs
a server."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ..core.control_routes import (
    BYTES,
    STRING,
    BadRequest,
    NotFound,
    obj,
    operation,
    owner_of,
    read_json,
)
from .exceptions import AuthorizedKeyError

routes = web.RouteTableDef()
OPENAPI: dict[str, dict[str, Any]] = {}
OPENAPI["/v1/servers/{name}/files"] = {"get": operation(
    "Files a server received (user, path, size, sha256, time, protocol)", params=("name",),
    query={"user": "string"}, tag="servers")}
OPENAPI["/v1/servers/{name}/files/{user}/{path}"] = {"get": operation(
    "Download one received file: its path under the user's root (it may hold '/')",
    params=("name", "user", "path"), media=BYTES, tag="servers")}
OPENAPI["/v1/servers/{name}/events"] = {"get": operation(
    "A server's session events (logins, failures, uploads)", params=("name",), tag="servers")}
OPENAPI["/v1/servers/{name}/users/{user}/authorized_keys"] = {
    "get": operation("An SFTP user's authorized keys", params=("name", "user"), tag="servers"),
    "put": operation("Replace them", params=("name", "user"), tag="servers",
                     body=obj(authorized_keys={"type": "array", "items": STRING})),
    "post": operation("Add one (e.g. a camera's getpubkey key)", params=("name", "user"),
                      body=obj(key=STRING), tag="servers"),
}
for _op_ in OPENAPI["/v1/servers/{name}/users/{user}/authorized_keys"].values():
    if "requestBody" in _op_:  # or the lines of an authorized_keys file
        _op_["requestBody"]["content"]["text/plain"] = {"schema": STRING}


def _server(request: web.Request, kind: str | None = None) -> Any:
    what = f"{kind} server" if kind else "upload server"
    member = owner_of(request, routes, what)
    if kind is not None and member.kind != kind:
        raise NotFound(f"no {what} named {member.name!r}")
    return member


@routes.get("/v1/servers/{name}/files")
async def list_files(request: web.Request) -> web.Response:
    """Every file received, oldest first; ``?user=`` narrows to one account."""
    server = _server(request)
    files = server.received_files()
    user = request.query.get("user")
    if user is not None:
        files = [f for f in files if f["user"] == user]
    return web.json_response({"server": server.name, "files": files})


@routes.get("/v1/servers/{name}/files/{user}/{path:.+}")
async def fetch_file(request: web.Request) -> web.StreamResponse:
    """The bytes of ``<path>`` under ``<user>``'s root as stored on the server (``user`` and
    ``path`` are checked by params.py; the server resolves symlinks and checks the root)."""
    server = _server(request)
    user, path = request.match_info["user"], request.match_info["path"]
    try:
        server.user(user)
    except LookupError:
        raise NotFound(f"no user {user!r} on {server.name}") from None
    try:
        local = await asyncio.to_thread(server.locate_file, f"{user}/{path}")
    except PermissionError as exc:
        raise BadRequest(str(exc)) from None
    except LookupError as exc:
        raise NotFound(str(exc).strip("'\"")) from None
    return web.FileResponse(local, headers={"Content-Type": "application/octet-stream"})


@routes.get("/v1/servers/{name}/events")
async def list_events(request: web.Request) -> web.Response:
    server = _server(request)
    return web.json_response({"server": server.name, "events": server.events()})


async def _key_lines(request: web.Request) -> list[str]:
    """Keys from a JSON body (``{"authorized_keys": [...]}`` or ``{"key": "..."}``) or from
    a text body in authorized_keys file format (one key a line, ``#`` comments)."""
    if request.content_type == "application/json":
        body = await read_json(request)
        if "authorized_keys" in body:
            lines = body["authorized_keys"]
        elif "key" in body:
            lines = [body["key"]]
        else:
            raise BadRequest("give 'authorized_keys' (a list of lines) or 'key' (one line)")
        if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
            raise BadRequest("authorized keys are strings, one OpenSSH public key line each")
        return lines
    try:
        text = (await request.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("an authorized_keys body is UTF-8 text") from None
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _keys_reply(server: Any, user: str) -> web.Response:
    return web.json_response({"server": server.name, "user": user,
                              "authorized_keys": server.authorized_keys(user)})


async def _change_keys(request: web.Request, replace: bool) -> web.Response:

    server = _server(request, "sftp")
    user = request.match_info["user"]
    try:
        server.user(user)
    except LookupError:
        raise NotFound(f"no user {user!r} on {server.name}") from None
    lines = await _key_lines(request)
    if not replace and len(lines) != 1:
        raise BadRequest("POST adds exactly one key; PUT replaces the list")
    try:
        saving = (server.set_authorized_keys(user, lines) if replace
                  else server.authorize_key(user, lines[0]))
    except AuthorizedKeyError as exc:
        raise BadRequest(str(exc)) from None
    if saving is not None:
        await saving
    return _keys_reply(server, user)


@routes.get("/v1/servers/{name}/users/{user}/authorized_keys")
async def get_keys(request: web.Request) -> web.Response:
    server = _server(request, "sftp")
    user = request.match_info["user"]
    try:
        return _keys_reply(server, user)
    except LookupError:
        raise NotFound(f"no user {user!r} on {server.name}") from None


@routes.put("/v1/servers/{name}/users/{user}/authorized_keys")
async def put_keys(request: web.Request) -> web.Response:
    return await _change_keys(request, replace=True)


@routes.post("/v1/servers/{name}/users/{user}/authorized_keys")
async def add_key(request: web.Request) -> web.Response:
    return await _change_keys(request, replace=False)

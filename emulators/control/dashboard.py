"""The farm's web dashboard: ``/ui`` serves three files of ``ui/`` (package data: HTML, a
JavaScript module and CSS; no build chain, nothing fetched from the network). The page is a
thin view over the control plane's own API; it holds no data, so it is served without the
control token, and every API call it makes sends the token (the page asks for it)."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

routes = web.RouteTableDef()
FILES = {"/ui": ("index.html", "text/html"), "/ui/app.js": ("app.js", "text/javascript"),
         "/ui/style.css": ("style.css", "text/css")}
_cache: dict[str, bytes] = {}


def _file(name: str) -> bytes:
    if name not in _cache:
        _cache[name] = resources.files("emulators.control").joinpath("ui", name).read_bytes()
    return _cache[name]


def _serve(path: str) -> None:
    name, media = FILES[path]

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=_file(name), content_type=media, charset="utf-8",
                            headers={"Cache-Control": "no-cache",
                                     "Content-Security-Policy":
                                         "default-src 'self'; img-src 'self' data:"})

    routes.get(path, allow_head=False)(handler)


for _path in FILES:
    _serve(_path)


def is_page(path: str) -> bool:
    """The dashboard's own files (served without the token: they hold no data)."""
    return path in FILES

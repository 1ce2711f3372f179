"""The farm's web dashboard: ``/ui`` serves the files of ``ui/`` (package data: HTML, CSS and
JavaScript modules; no build chain, nothing fetched from the network). The page is a thin view
over the control plane's own API; it holds no data, so it is served without the control
token, and every API call it makes sends the token (the page asks for it)."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

routes = web.RouteTableDef()
MEDIA = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
# The page's images are files the farm received, fetched with the token and shown as blob:
# URLs; nothing else is loaded from anywhere but the control plane.
# No page of any origin may frame it (a framed control page could be clicked through by the
# page around it): frame-ancestors for browsers that read CSP, X-Frame-Options for the rest.
POLICY = ("default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
          "frame-ancestors 'none'")


def _files() -> dict[str, tuple[bytes, str]]:
    """Every file of ui/ by its URL path, read once (a fixed set: nothing else is served)."""
    found = {}
    for item in resources.files("emulators.control").joinpath("ui").iterdir():
        suffix = "." + item.name.rpartition(".")[2]
        if item.is_file() and suffix in MEDIA:
            url = "/ui" if item.name == "index.html" else f"/ui/{item.name}"
            found[url] = (item.read_bytes(), MEDIA[suffix])
    return found


FILES = _files()


def _serve(body: bytes, media: str):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=media, charset="utf-8",
                            headers={"Cache-Control": "no-cache",
                                     "Content-Security-Policy": POLICY,
                                     "X-Frame-Options": "DENY",
                                     "X-Content-Type-Options": "nosniff"})
    return handler


for _path, (_body, _media) in FILES.items():
    routes.get(_path, allow_head=False)(_serve(_body, _media))


def is_page(path: str) -> bool:
    """The dashboard's own files (served without the token: they hold no data)."""
    return path in FILES

"""The INSTAR camera's wire format: every ``param.cgi`` reply (``cmd="...";``, the command's
``key="value";`` lines, ``response="<code>";``), and the one function that turns a failure into
a reply (a vendor code, the 401 of a wrong login, or 214 for anything unexpected).

There is no error middleware: ``responses.param_cgi`` calls ``error_reply`` itself, so the
camera's application has no middleware at all. aiohttp adds two frames and more per request
for each middleware; with the observer's move out of the middleware chain that saved 20k of
getftpattr's instructions per request (bench/README.md, "How the gap was closed").
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from urllib.parse import quote

from aiohttp import web

from .exceptions import InstarError, InternalError, NoPermission, Unauthorized
from .profiles import Profile

log = logging.getLogger("emulators.instar")

_PLAIN = re.compile(r"[ !#-$&-~]*").fullmatch  # printable ASCII but '"' and '%'


def echo(cmd: str) -> str:
    """A client's ``cmd`` as it may appear in the reply's ``cmd="...";`` line: a quote, a line
    break or any byte outside printable ASCII would let an unknown command forge reply lines
    (``cmd=x";\r\nresponse="200``), so those are written as the %XX escapes that carried them."""
    if _PLAIN(cmd):  # every known command: nothing to escape
        return cmd
    return "".join(ch if " " <= ch <= "~" and ch not in '"%'
                   else quote(ch.encode("utf-8", "surrogatepass"), safe="") for ch in cmd)


def render(lines: Sequence[tuple[str, str]], code: int, cmd: str | None,
           profile: Profile) -> web.Response:
    """The camera's reply: ``cmd="...";``, the command's ``key="value";`` lines, the code."""
    return web.Response(body=_reply_bytes(tuple(lines), code, cmd, profile.line_ending),
                        content_type="text/plain")


@functools.lru_cache(maxsize=512)
def _reply_bytes(lines: tuple[tuple[str, str], ...], code: int, cmd: str | None,
                 eol: str) -> bytes:
    """A reply's bytes. Most replies repeat (a getftpattr between two settings changes), so
    each is put together once and then reused."""
    head = "" if cmd is None else f'cmd="{echo(cmd)}";{eol}'
    body = "".join([f'{key}="{value}";{eol}' for key, value in lines])
    return f'{head}{body}response="{code}";{eol}'.encode()


def unauthorized_response(profile: Profile, cmd: str | None) -> web.Response:
    if profile.auth_failure == "response-211":
        return render([], NoPermission.code, cmd, profile)
    return web.Response(
        status=401, text=profile.unauthorized_body, content_type="text/html",
        headers={"WWW-Authenticate": f'Basic realm="{profile.realm}"'})


def error_reply(exc: Exception, request: web.Request, profile: Profile) -> web.Response:
    """The one place a failure becomes a reply: a vendor code, the login failure, or anything
    unexpected (logged, and answered as 214 INTERNAL_ERROR rather than a traceback)."""
    if isinstance(exc, InstarError):
        return render([], exc.code, exc.cmd, profile)
    if isinstance(exc, Unauthorized):
        return unauthorized_response(profile, request.query.get("cmd"))
    log.error("param.cgi failed", exc_info=exc)
    return render([], InternalError.code, request.query.get("cmd"), profile)

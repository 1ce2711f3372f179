"""The INSTAR WQHD error table: every ``response="<code>";`` the camera answers, as a typed
exception, and the one function that renders them (and the 401 of a wrong login)."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from typing import ClassVar
from urllib.parse import quote

from aiohttp import web

from .profiles import PROFILE, Profile

log = logging.getLogger("emulators.instar")


class InstarError(Exception):
    """A command that fails: answered as the command's ``cmd`` line plus its response code."""

    code: ClassVar[int] = 207
    name: ClassVar[str] = "UNKNOWN"

    def __init__(self, detail: str = "", *, cmd: str | None = None) -> None:
        super().__init__(detail or self.name)
        self.detail = detail
        self.cmd = cmd


# The codes of INSTAR's CGI documentation, in its order. Only some are ever raised by the
# FTP commands emulated here; the rest exist so the table is the vendor's whole table.
class UnknownParam(InstarError):
    code, name = 201, "UNKNOWN_PARAM"


class InvalidValue(InstarError):
    code, name = 202, "INVALID_VALUE"


class NotImplementedCmd(InstarError):
    code, name = 203, "NOT_IMPLEMENTED"


class UnknownCommand(InstarError):
    code, name = 204, "UNKNOWN_COMMAND"


class ReadConfigError(InstarError):
    code, name = 205, "READ_CONFIG_ERROR"


class WriteConfigError(InstarError):
    code, name = 206, "WRITE_CONFIG_ERROR"


class UnknownError(InstarError):
    code, name = 207, "UNKNOWN"


class MissingParam(InstarError):
    code, name = 208, "MISSING_PARAM"


class NoPermission(InstarError):
    code, name = 211, "NO_PERMISSION"


class Busy(InstarError):
    code, name = 213, "BUSY"


class InternalError(InstarError):
    code, name = 214, "INTERNAL_ERROR"


class Unauthorized(Exception):
    """Wrong or missing credentials: answered per the profile's ``auth_failure`` switch."""


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
           profile: Profile = PROFILE) -> web.Response:
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

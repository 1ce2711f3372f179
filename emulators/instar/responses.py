"""``/param.cgi``: read the query, log the user in, run one command, shape its lines.

Each command is a row of ``COMMANDS``: the keys it takes, the role it needs and a handler
returning the ``key="value"`` lines between ``cmd=`` and ``response=``.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web
from multidict import MultiMapping

from .exceptions import (
    InstarError,
    InvalidValue,
    MissingParam,
    NoPermission,
    Unauthorized,
    UnknownCommand,
    UnknownParam,
)
from .models import actions as action_rules
from .models.ftp import SET_KEYS
from .wire import error_reply, render

if TYPE_CHECKING:
    from .emulator import InstarCamera

Lines = Sequence[tuple[str, str]]
CommandHandler = Callable[["InstarCamera", dict[str, str]], Awaitable[Lines]]
ROLES = {"guest": 0, "user": 1, "admin": 2}


@dataclass(frozen=True)
class Command:
    handler: CommandHandler
    keys: tuple[str, ...] = ()
    role: str = "admin"        # the least role allowed to run it
    needs_some: bool = False   # a set: at least one of ``keys`` must be given


async def get_ftp_attr(camera: InstarCamera, params: dict[str, str]) -> Lines:
    return camera.ftp.get_lines(camera.profile)


async def set_ftp_attr(camera: InstarCamera, params: dict[str, str]) -> Lines:
    await camera.set_ftp(params)
    return []


async def test_ftp(camera: InstarCamera, params: dict[str, str]) -> Lines:
    outcome = await camera.testftp(params.get("sethost"))
    lines: list[tuple[str, str]] = []
    if camera.ftp.ft_ssl == 2 and outcome.hostkey:
        lines.append(("hostkey", outcome.hostkey))
    lines.append(("result", str(outcome.result)))
    return lines


async def get_pubkey(camera: InstarCamera, params: dict[str, str]) -> Lines:
    await camera.ensure_ssh_key()
    return [("publickey", camera.public_key_line() or "")]


async def get_ftp_action(camera: InstarCamera, params: dict[str, str]) -> Lines:
    if "type" in params:
        action = camera.actions[action_rules.action_type(params["type"])]
        return [("enable", str(action.enable)), ("interval", str(action.interval))]
    lines: list[tuple[str, str]] = []
    for kind in action_rules.TYPES:
        action = camera.actions[kind]
        lines += [(f"enable['{kind}']", str(action.enable)),
                  (f"interval['{kind}']", str(action.interval))]
    return lines


async def set_ftp_action(camera: InstarCamera, params: dict[str, str]) -> Lines:
    if "type" not in params:
        raise MissingParam("type is required")
    kind = action_rules.action_type(params["type"])
    changes = {k: v for k, v in params.items() if k in ("enable", "interval")}
    if not changes and camera.profile.empty_set_is_error:
        raise MissingParam("enable or interval is required")
    await camera.set_action(kind, changes)
    return []


async def get_ftp_action_attr(camera: InstarCamera, params: dict[str, str]) -> Lines:
    return [("snapcount", str(camera.snapcount))]


async def set_ftp_action_attr(camera: InstarCamera, params: dict[str, str]) -> Lines:
    await camera.set_snapcount(action_rules.snapcount(params["snapcount"]))
    return []


async def get_snap_sched(camera: InstarCamera, params: dict[str, str]) -> Lines:
    return camera.schedule.get_lines()


async def set_snap_sched(camera: InstarCamera, params: dict[str, str]) -> Lines:
    await camera.set_schedule(params)
    return []


async def get_snap_timer(camera: InstarCamera, params: dict[str, str]) -> Lines:
    return camera.snap_timer.get_lines()


async def set_snap_timer(camera: InstarCamera, params: dict[str, str]) -> Lines:
    await camera.set_snap_timer(params)
    return []


COMMANDS: dict[str, Command] = {
    "getftpattr": Command(get_ftp_attr, role="user"),
    "setftpattr": Command(set_ftp_attr, SET_KEYS, needs_some=True),
    "testftp": Command(test_ftp, ("sethost",)),
    "getpubkey": Command(get_pubkey, role="user"),
    "getftpaction": Command(get_ftp_action, ("type",), role="user"),
    "setftpaction": Command(set_ftp_action, ("type", "enable", "interval"), needs_some=True),
    "getftpactionattr": Command(get_ftp_action_attr, role="user"),
    "setftpactionattr": Command(set_ftp_action_attr, ("snapcount",), needs_some=True),
    "getsnapschedftpattr": Command(get_snap_sched, role="user"),
    "setsnapschedftpattr": Command(set_snap_sched, ("mode", "prefix", "name", "enable", "times"),
                                   needs_some=True),
    "getsnaptimerftpattr": Command(get_snap_timer, role="user"),
    "setsnaptimerftpattr": Command(set_snap_timer, ("mode", "prefix", "name"), needs_some=True),
}


def _single(query: MultiMapping[str], key: str, policy: str) -> str:
    values = query.getall(key)
    if len(values) > 1:
        if policy == "reject":
            raise InvalidValue(f"{key} is given {len(values)} times")
        return values[-1] if policy == "last" else values[0]
    return values[0]


def _reader(query: MultiMapping[str], policy: str) -> Callable[[str], str]:
    """``key`` -> its value. A key given twice is settled by the profile's policy, when it is
    read; in the usual query, with no key twice, the value is simply the one given."""
    if policy == "first" or len(set(query)) == len(query):
        return query.__getitem__  # a multidict's [] is the first value
    return lambda key: _single(query, key, policy)


@functools.lru_cache(maxsize=1024)
def _allowed(keys: tuple[str, ...], ignored: tuple[str, ...]) -> frozenset[str]:
    return frozenset(keys + ignored)


def _login(camera: InstarCamera, request: web.Request, query: MultiMapping[str],
           value: Callable[[str], str]) -> str:
    """The logged-in user's role: query ``user``/``pwd`` first, else HTTP Basic."""
    if "user" in query or "pwd" in query:
        name = value("user") if "user" in query else ""
        password = value("pwd") if "pwd" in query else ""
    else:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            raise Unauthorized()
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized() from None
        name, sep, password = decoded.partition(":")
        if not sep:
            raise Unauthorized()
    user = camera.logins.get((name, password))
    if user is None:
        raise Unauthorized()
    return user.role


async def param_cgi(camera: InstarCamera, request: web.Request) -> web.Response:
    """``/param.cgi``'s handler: every failure is caught here and answered by
    ``wire.error_reply`` (no middleware on this path; wire.py says why)."""
    query = request.query
    profile = camera.profile
    name: str | None = None
    try:
        value = _reader(query, profile.duplicate_keys)
        role = _login(camera, request, query, value)
        if "cmd" not in query:
            raise MissingParam("cmd is required")
        name = value("cmd")
        command = COMMANDS.get(name)
        if command is None:
            raise UnknownCommand(name)
        if ROLES[role] < ROLES[command.role]:
            raise NoPermission(f"{role} may not run {name}")
        allowed = _allowed(command.keys, profile.ignored_keys)
        if not query.keys() <= allowed:
            raise UnknownParam(", ".join(sorted(query.keys() - allowed)))
        params = {k: value(k) for k in command.keys if k in query} if command.keys else {}
        if command.needs_some and not params:
            if profile.empty_set_is_error:
                raise MissingParam(f"{name} needs one of {', '.join(command.keys)}")
            return render([], 200, name, profile)
        lines = await command.handler(camera, params)
    except web.HTTPException:
        raise
    except InstarError as exc:
        if name is not None:
            exc.cmd = name  # answered with the command's own cmd line
        return error_reply(exc, request, profile)
    except Exception as exc:  # noqa: BLE001 - every failure is answered in the camera's form
        return error_reply(exc, request, profile)
    return render(lines, 200, name, profile)


async def snap_cgi(camera: InstarCamera, request: web.Request) -> web.StreamResponse:
    """``/snap.cgi?chn=11``: the JPEG of a channel at its resolution. The camera's own login
    (``user``/``pwd`` in the query) or HTTP Digest/Basic; an unknown channel is a 404."""
    chn = request.query.get("chn", "11")
    profile = next((p for p in camera.video.facts.profiles
                    if p.snapshot_path.endswith(f"chn={chn}")), None)
    if profile is None:
        return web.Response(status=404, text="404 Not Found")

    def query_login(req: web.Request) -> bool:
        query = req.query
        if "user" not in query and "pwd" not in query:
            return False
        return (query.get("user", ""), query.get("pwd", "")) in camera.logins

    return await camera.video.snapshot(request, profile, query_login)

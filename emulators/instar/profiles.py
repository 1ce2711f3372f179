"""Firmware behaviour the sources leave open: one frozen record, one named switch per quirk.

The defaults are the WQHD (2K+) firmware as this emulator models it; a scenario overrides any
switch under the camera's ``profile:`` key. README.md says why each default was chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Literal, get_args, get_origin, get_type_hints

from ..core.replyheaders import ReplyHeaders


@dataclass(frozen=True)
class Profile:
    # Line ending of each ``key="value";`` line. The seed shows lines only; the CGI server of
    # INSTAR's hi3510 lineage ends them with CRLF.
    line_ending: str = "\r\n"
    # A wrong or missing login: an HTTP 401 with a Basic challenge (what these cameras' web
    # server sends), or a 200 answering ``response="211";`` (NO_PERMISSION).
    auth_failure: Literal["http-401", "response-211"] = "http-401"
    realm: str = "INSTAR"
    unauthorized_body: str = "401 Unauthorized"
    # The seed's getftpattr replies do not list ft_autocreatedir although setftpattr takes it.
    getftpattr_lists_autocreatedir: bool = False
    # A key given twice (``cmd=a&cmd=b``, ``ft_port=1&ft_port=2``): which one counts, or 202.
    duplicate_keys: Literal["first", "last", "reject"] = "first"
    # Query keys every command tolerates besides its own (``_`` is a browser cache buster).
    ignored_keys: tuple[str, ...] = ("cmd", "user", "pwd", "_")
    # Set commands without any of their keys: 208 MISSING_PARAM (or 200, nothing changed).
    empty_set_is_error: bool = True
    # Folder name of ft_dirmode=1 (a new folder every day), strftime in the camera's time.
    daily_folder_format: str = "%Y%m%d"
    # Timestamp in generated file names, strftime in the camera's time.
    timestamp_format: str = "%Y%m%d-%H%M%S"
    # How many ``<seconds>-<mask>`` entries ``times`` may hold.
    max_schedule_times: int = 24
    # Longest accepted text values.
    max_server_len: int = 127
    max_credential_len: int = 63
    max_dirname_len: int = 127
    max_filename_len: int = 63
    # setftpattr while a testftp runs: 213 BUSY (the upload uses the settings being tested).
    setftpattr_busy_during_testftp: bool = True
    # What the camera's web server writes on every reply besides the reply's own headers
    # (404s, 401s and 400s included). No source shows these cameras' Server or Date lines, so
    # none by default; ``reply_headers: {Server: ...}`` in a scenario gives them.
    reply_date: bool = False
    reply_headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def with_overrides(cls, overrides: dict[str, Any]) -> Profile:
        if not overrides:
            return cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown profile switch(es): {', '.join(unknown)}")
        values = dict(overrides)
        if isinstance(values.get("ignored_keys"), list):
            values["ignored_keys"] = tuple(values["ignored_keys"])
        if isinstance(values.get("reply_headers"), dict):
            values["reply_headers"] = ReplyHeaders.parse(False, values["reply_headers"]).lines
        defaults = cls()
        hints = _hints(cls)
        for f in fields(cls):
            if f.name not in values:
                continue
            value, default = values[f.name], getattr(defaults, f.name)
            hint = hints[f.name]
            choices = get_args(hint) if get_origin(hint) is Literal else ()
            if choices and value not in choices:
                raise ValueError(f"profile.{f.name} is one of {', '.join(choices)}")
            if type(value) is not type(default):
                raise ValueError(f"profile.{f.name} must be a {type(default).__name__}")
        return replace(defaults, **values)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    # Resolving the string annotations compiles each one: once per class is plenty.
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


PROFILE = Profile()

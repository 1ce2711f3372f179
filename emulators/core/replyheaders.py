"""The header lines a device's web server writes on every reply of its own accord."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import TYPE_CHECKING

from multidict import CIMultiDict
from pydantic import field_validator

from .member import KindOptions

if TYPE_CHECKING:
    from .clock import Clock

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 field-name
_FIELD_VALUE = re.compile(r"^[\x20-\x7e]*$")  # visible ASCII and spaces: no CR or LF
# Headers that belong to one reply, not to a server's habits.
_OWN_HEADERS = frozenset(("content-length", "content-type", "transfer-encoding", "connection"))


def http_date(at: float) -> str:
    """RFC 9110's IMF-fixdate: ``Thu, 03 Dec 2026 12:26:02 GMT``."""
    return formatdate(at, usegmt=True)


@dataclass(frozen=True)
class ReplyHeaders:
    """The header lines a device's web server writes on every reply of its own accord, on
    top of each reply's own (Content-Type, WWW-Authenticate...): a ``Date``, or not, and
    fixed lines such as ``Server``. aiohttp's ``Server: Python/... aiohttp/...`` never
    reaches the wire: a camera's firmware does not run aiohttp."""

    date: bool = False
    lines: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, date: bool, lines: Mapping[str, str]) -> ReplyHeaders:
        """From a scenario's mapping (``{"Server": "lighttpd/1.4.35"}``); ValueError names a
        line that is not a header (a CR or LF would let a scenario write a second reply)."""
        for name, value in lines.items():
            if not isinstance(name, str) or not _TOKEN.match(name):
                raise ValueError(f"reply header name {name!r} is not an HTTP field name")
            if not isinstance(value, str) or not _FIELD_VALUE.match(value):
                raise ValueError(f"reply header {name}: value must be printable ASCII text")
            if name.lower() in _OWN_HEADERS:
                raise ValueError(f"reply header {name}: each reply sets its own")
            if name.lower() == "date":
                raise ValueError("reply header Date: the date switch says whether it is sent")
        return cls(bool(date), tuple(lines.items()))

    def apply(self, headers: CIMultiDict[str], clock: Clock) -> None:
        if not self.date:
            headers.popall("Date", None)
        elif clock.time is not time.time:  # aiohttp's Date is the real time: the device's
            headers["Date"] = http_date(clock.time())  # clock is frozen or shifted
        headers.popall("Server", None)
        for name, value in self.lines:
            headers[name] = value


class WebServerOptions(KindOptions):
    """Scenario keys of a kind whose replies are aiohttp's: what its web server writes on
    every reply (``ReplyHeaders``). A kind sets its own defaults by overriding the fields."""

    reply_date: bool = False
    reply_headers: dict[str, str] = {}

    @field_validator("reply_headers")
    @classmethod
    def _lines(cls, value: dict[str, str]) -> dict[str, str]:
        ReplyHeaders.parse(False, value)
        return value

    def web_server(self) -> ReplyHeaders:
        return ReplyHeaders.parse(self.reply_date, self.reply_headers)

"""RTSP messages (RFC 2326), the one codec of the RTSP server: a request read under bounds
(line length, header count and size, body size), the reply record, Transport headers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_LINE = 4096  # request line or one header line
MAX_HEADERS = 64
MAX_HEAD = 16 * 1024  # all header lines together
MAX_BODY = 64 * 1024
METHODS = ("OPTIONS", "DESCRIBE", "SETUP", "PLAY", "PAUSE", "TEARDOWN", "GET_PARAMETER")
# RFC 2326 methods this server does not take: 405 with Allow; any other token is 501.
OTHER_METHODS = ("ANNOUNCE", "RECORD", "REDIRECT", "SET_PARAMETER")
REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
    405: "Method Not Allowed", 413: "Request Entity Too Large",
    454: "Session Not Found", 455: "Method Not Valid in This State",
    459: "Aggregate Operation Not Allowed", 461: "Unsupported Transport",
    500: "Internal Server Error", 501: "Not Implemented", 505: "RTSP Version not supported",
}
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_PRINTABLE = re.compile(rb"^[\x20-\x7e\t]*\r?\n$")


class BadRequest(Exception):
    """The request cannot be read: answered (``status``) and the connection closed, or
    (``status`` None) closed without an answer: no RTSP at all."""

    def __init__(self, status: int | None, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Request:
    method: str
    url: str
    version: str
    headers: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    after: Callable[[], None] | None = None  # run once the reply is written


async def read_request(reader: asyncio.StreamReader, first: bytes) -> Request:
    """The request whose first byte is ``first``, headers and body read (the body ignored)."""
    try:
        line = first + await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise BadRequest(400, "request line too long") from None
    if not _PRINTABLE.match(line):
        raise BadRequest(None, "not RTSP")
    if len(line) > MAX_LINE:
        raise BadRequest(400, "request line too long")
    parts = line.decode("ascii").strip().split(" ")
    if len(parts) != 3 or not _TOKEN.match(parts[0]) or not parts[1]:
        raise BadRequest(400, "malformed request line")
    method, url, version = parts
    headers: dict[str, str] = {}
    total = 0
    last: str | None = None
    while True:
        try:
            raw = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise BadRequest(400, "header line too long") from None
        if raw in (b"\r\n", b"\n"):
            break
        total += len(raw)
        if len(raw) > MAX_LINE or total > MAX_HEAD:
            raise BadRequest(400, "request headers too large")
        text = raw.decode("latin-1").rstrip("\r\n")
        if text[:1] in (" ", "\t") and last is not None:  # a folded line continues a header
            headers[last] += " " + text.strip()
            continue
        name, sep, value = text.partition(":")
        name = name.strip()
        if not sep or not name or not _TOKEN.match(name):
            raise BadRequest(400, "malformed header line")
        if len(headers) >= MAX_HEADERS:
            raise BadRequest(400, "too many headers")
        last = name.lower()
        headers[last] = value.strip()
    request = Request(method, url, version, headers)
    length = request.header("content-length")
    if length is not None:
        if not length.isdigit():
            raise BadRequest(400, "bad Content-Length")
        if int(length) > MAX_BODY:
            raise BadRequest(413, "body too large")
        await reader.readexactly(int(length))
    return request


def parse_transports(header: str) -> list[dict[str, str]]:
    """``RTP/AVP/TCP;unicast;interleaved=0-1, RTP/AVP;unicast;client_port=a-b`` -> one dict
    per alternative: ``spec`` the protocol, then its parameters."""
    found = []
    for alternative in header.split(","):
        parts = [p.strip() for p in alternative.split(";") if p.strip()]
        if not parts:
            continue
        spec = {"spec": parts[0].upper()}
        for part in parts[1:]:
            key, _, value = part.partition("=")
            spec[key.strip().lower()] = value.strip()
        found.append(spec)
    return found


def pair(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    a, sep, b = text.partition("-")
    if not a.isdigit() or (sep and not b.isdigit()):
        return None
    first = int(a)
    second = int(b) if sep else first + 1
    if not (0 < first <= 65535 and 0 < second <= 65535):
        return None
    return first, second

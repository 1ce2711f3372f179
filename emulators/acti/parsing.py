"""Reading what a client sent: ACTi's Type 1 query strings and the multipart upload body.

Everything here is bounded in size and in time, so a hostile or broken client costs the
camera a short error reply, never a hang.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from urllib.parse import unquote

import multipart
from aiohttp import web

from . import exceptions as errors

# Network timeouts are wall-clock on purpose: a frozen farm clock must not stall sockets.
BODY_TIMEOUT = 30.0  # the default of the ``upload_timeout`` option
# How much of an unwanted body is read and dropped so the reply is not lost to a reset.
DISCARD_LIMIT = 4 * 1024 * 1024
# Room for the part headers and the URL_FIRMWARE_SUBMIT field around the uploaded file.
FORM_OVERHEAD = 8192
CHUNK = 65536


@dataclass
class Query:
    """A Type 1 URL's query: the credentials and the commands, in order."""

    user: str | None = None
    password: str | None = None
    # (name, value); value None is a bare ``CMD`` (a read), "" is ``CMD=``.
    commands: list[tuple[str, str | None]] = field(default_factory=list)


def parse_query(raw: str) -> Query:
    """Split the raw query by hand: ``HTTPS_CER`` (read) and ``HTTPS_CER=`` must differ,
    and ``+`` stays a plus (passwords may hold one); only %XX escapes are decoded. Bytes that
    are not UTF-8 survive as surrogates, so an echo in a reply gives back the bytes sent."""
    query = Query()
    for piece in raw.split("&"):
        if not piece:
            continue
        name, sep, value = piece.partition("=")
        name = unquote(name, errors="surrogateescape")
        decoded = unquote(value, errors="surrogateescape") if sep else None
        if name == "USER":
            if query.user is None:
                query.user = decoded or ""
        elif name == "PWD":
            if query.password is None:
                query.password = decoded or ""
        else:
            query.commands.append((name, decoded))
    return query


async def discard_body(request: web.Request, timeout: float = BODY_TIMEOUT) -> None:  # noqa: ASYNC109
    """Read and drop what is left of the request body (bounded in bytes and time)."""
    if not request.can_read_body or request.content.at_eof():
        return
    declared = request.content_length
    if declared is not None and declared > DISCARD_LIMIT:
        # It could never be drained anyway: answer now (the reply closes the connection)
        # rather than wait for megabytes a client may never send.
        return
    dropped = 0
    try:
        async with asyncio.timeout(timeout):
            while dropped < DISCARD_LIMIT:
                chunk = await request.content.readany()
                if not chunk:
                    return
                dropped += len(chunk)
    except (TimeoutError, ConnectionError, OSError):
        return


async def read_body(request: web.Request, limit: int,
                    timeout: float = BODY_TIMEOUT) -> bytes:  # noqa: ASYNC109
    """The whole request body, or ``InternalError`` when it is larger than ``limit`` or does
    not arrive within ``timeout`` seconds."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise errors.InternalError(errors.TOO_LARGE)
    data = bytearray()
    try:
        async with asyncio.timeout(timeout):
            while True:
                chunk = await request.content.readany()
                if not chunk:
                    return bytes(data)
                data += chunk
                if len(data) > limit:
                    raise errors.InternalError(errors.TOO_LARGE)
    except TimeoutError:
        raise errors.InternalError(errors.TIMED_OUT) from None


def form_file(content_type: str, body: bytes, field_name: str, max_file: int) -> bytes:
    """The content of the form's file field ``field_name`` from a multipart/form-data body.

    The part's own Content-Type and file name are ignored: MSIE labels a PEM file
    ``application/x-gzip-compressed`` (seed 000) and the device renames whatever it gets.
    """
    mime, params = multipart.parse_options_header(content_type or "")
    boundary = params.get("boundary")
    if mime != "multipart/form-data" or not boundary:
        raise errors.InternalError(errors.NOT_MULTIPART)
    found: bytearray | None = None
    current: bytearray | None = None
    try:
        parser = multipart.PushMultipartParser(
            boundary, content_length=len(body), max_segment_size=max_file,
            max_segment_count=16)
        with parser:
            for chunk in (body, b""):
                for event in parser.parse(chunk):
                    if isinstance(event, multipart.MultipartSegment):
                        current = bytearray() if event.name == field_name else None
                        if current is not None and found is None:
                            found = current
                    elif event is None:
                        current = None
                    elif current is not None:
                        current += event
    except multipart.ParserLimitReached:
        raise errors.InternalError(errors.TOO_LARGE) from None
    except multipart.MultipartError:
        raise errors.InternalError(errors.BAD_MULTIPART) from None
    if found is None:
        raise errors.InternalError(errors.NO_FILE)
    return bytes(found)

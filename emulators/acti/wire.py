"""The camera's replies as bytes on the wire, and the one middleware that renders errors.

The firmware's web server writes HTTP/1.0 by hand: ``Content-type`` with a small t, no Date,
no Server, and the connection closed after every reply. aiohttp would normalise all of that,
so every reply here is a ``WireResponse``: bytes composed in this module and written as they
are.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

from aiohttp import web

from ..core.aiohttp_internals import ComposedResponse
from ..core.replyheaders import ReplyHeaders, http_date
from . import exceptions as errors
from .parsing import discard_body

if TYPE_CHECKING:
    from .emulator import ActiCamera

log = logging.getLogger("emulators.acti")

Wire = Literal["crlf", "lf"]
EOL: dict[str, str] = {
    "crlf": "\r\n",  # seed 000's stage 2 and stage 4
    "lf": "\n",  # the spec's "\n\n" header ending, for clients written against old firmware
}

# Seed 000, stage 2, byte for byte (the body's lines end in a bare newline).
UPLOAD_FORM = (
    "<html><head><title>UPLOAD FILES</title></head>\n"
    '<meta http-equiv="PRAGMA" content="NO-CACHE"><body>\n'
    '<form name="UPLOAD_FORM" method="POST" enctype="multipart/form-data" '
    'action="update?{action}">\n'
    'Certificate File : <input type="FILE" name="UPLOAD_FILE" value="" size="40">\n'
    "<br>\n"
    '<input type="submit" value="Apply" name="URL_FIRMWARE_SUBMIT">\n'
    "<br>\n"
    "</form></body></html>\n"
)


class WireResponse(ComposedResponse):
    """A reply whose status line, header and body are written exactly as composed.

    aiohttp still runs its prepare signals, but its own header serialisation is skipped
    and the connection is closed afterwards, as an HTTP/1.0 server does.
    """

    def __init__(self, head: bytes, body: bytes, status: int, reason: str) -> None:
        super().__init__(status=status, reason=reason)
        self.head = head
        self.wire_body = body

    async def write_eof(self, data: bytes = b"") -> None:
        # The head goes out with the body, here (ComposedResponse writes no header of its own).
        request = self.prepared_for
        body = b"" if request is not None and request.method == "HEAD" else self.wire_body
        await super().write_eof(self.head + body)
        if request is not None and request.can_read_body and not request.content.is_eof():
            # A body still owed (a stalled or oversized upload): close now, as the device
            # does, instead of aiohttp's ten seconds of lingering for the rest.
            request.protocol.force_close()

    def add_lines(self, extra: ReplyHeaders, wire: Wire, now: float) -> None:
        """The web server's own lines (a profile's ``Server``, a ``Date``) at the end of the
        composed header, in the reply's line ending."""
        lines = [f"{name}: {value}" for name, value in extra.lines]
        if extra.date:
            lines.append(f"Date: {http_date(now)}")
        if lines:
            eol = EOL[wire]
            cut = len(self.head) - len(eol)  # before the blank line that ends the header
            self.head = self.head[:cut] + (eol.join(lines) + eol).encode("latin-1") \
                + self.head[cut:]

    @property
    def wire(self) -> bytes:
        return self.head + self.wire_body

    @property
    def journal_body(self) -> bytes:
        """What the farm's request journal records of this reply."""
        return self.wire_body


def compose(status: int, reason: str, content_type: str, body: str, wire: Wire, *,
            content_length: bool = True) -> WireResponse:
    eol = EOL[wire]
    data = body.encode("utf-8", "surrogateescape")  # echoes give back the bytes a client sent
    lines = [f"HTTP/1.0 {status} {reason}", f"Content-type: {content_type}"]
    if content_length:
        lines.append(f"Content-Length: {len(data)}")
    head = (eol.join(lines) + eol + eol).encode("latin-1")
    return WireResponse(head, data, status, reason)


def text(body: str, wire: Wire) -> WireResponse:
    """One of the five reply forms: text/plain, status 200, body ending in a newline."""
    return compose(200, "OK", "text/plain", body if body.endswith("\n") else body + "\n", wire)


def ok(wire: Wire) -> WireResponse:
    return text("OK", wire)  # seed 000, stage 4: "Content-Length: 3"


def read_value(command: str, value: str, wire: Wire) -> WireResponse:
    return text(f"{command}='{value}'", wire)


def upload_form(wire: Wire, action: str = "HTTPS_CER_SAVE") -> WireResponse:
    # Seed 000 stage 2 has no Content-Length: the end of the form is the end of the connection.
    return compose(200, "OK", "text/html", UPLOAD_FORM.format(action=action), wire,
                   content_length=False)


def error_reply(exc: errors.ActiError, camera: ActiCamera) -> WireResponse:
    wire = camera.options.wire
    if isinstance(exc, errors.NotAuthorized):
        refusal = camera.options.refusal
        body = refusal.body if refusal.body.endswith("\n") else refusal.body + "\n"
        return compose(refusal.status, refusal.reason, "text/plain", body, wire)
    return compose(exc.status, exc.reason, "text/plain", exc.body, wire)


NextHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_middleware(camera: ActiCamera) -> Callable[[web.Request, NextHandler],
                                                     Awaitable[web.StreamResponse]]:
    """The one place errors become wire replies; no handler writes an error string itself."""

    @web.middleware
    async def middleware(request: web.Request, handler: NextHandler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except errors.ActiError as exc:
            if isinstance(exc, errors.NotAuthorized):
                log.info("%s %s refused: %s", camera.name, request.remote, exc.why)
            response = error_reply(exc, camera)
        except web.HTTPException:
            raise
        except ConnectionError:
            # The client hung up before its request was read: nobody is left to answer and
            # nothing of ours failed. End it the way the farm ends an aborted request (the
            # journal records 499) instead of logging a traceback and a reply to no one.
            raise asyncio.CancelledError from None
        except Exception:  # the device answers, it never crashes: log it, say so on the wire
            log.exception("%s: %s %s failed", camera.name, request.method, request.path_qs)
            response = error_reply(errors.InternalError(errors.UNEXPECTED), camera)
        # Unread request bytes would turn our close into a reset and cost the client the reply.
        await discard_body(request, camera.options.upload_timeout)
        return response

    return middleware

"""Replaying a quirk profile: a member with ``quirks: FILE`` answers the requests the profile
recorded with the device's own bytes (status line, header lines, body), after its own handler
ran, and every other request as it always does. docs/QUIRKS.md has the rules.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aiohttp import web
from pydantic import GetCoreSchemaHandler, ValidationInfo
from pydantic_core import PydanticCustomError, core_schema

from ..aiohttp_internals import ComposedResponse
from ..replyheaders import http_date
from .format import Exchange, Profile, ProfileError, RecordedReply, load

if TYPE_CHECKING:
    from ..httpserver import HttpEmulator

log = logging.getLogger("emulators.quirks")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What a whole request value may stand for; any other placeholder there (a redacted value:
# <secret>, <address>...) matches whatever the client sent.
USER, PASSWORD, WRONG, BASIC = "<user>", "<password>", "<wrong-password>", "<basic>"
_ANY = object()
_NAMES = ("length", "date", "address", "serial", "mac", "secret", "key", "token", "pem",
          "request-id", "user", "password", "wrong-password", "basic")
_ONE_OF = b"|".join(n.encode() for n in _NAMES)
_PLACEHOLDER = re.compile(rb"<<|<(" + _ONE_OF + rb")>")
# A body's key="value" / key='value' (with ``merge: key-values``), or a placeholder.
_KEY_VALUE = rb"""([A-Za-z_][\w.\-]*)=(?:"([^"\r\n]*)"|'([^'\r\n]*)')"""
_MERGE = re.compile(_KEY_VALUE + rb"|<<|<(" + _ONE_OF + rb")>")
_OWN_PAIR = re.compile(_KEY_VALUE)
# A JSON member whose whole value is a placeholder, quoted or not (``merge: json``), or a
# placeholder anywhere else.
_JSON_MERGE = re.compile(rb'"((?:[^"\\]|\\.)*)"(\s*:\s*)("?)<(' + _ONE_OF
                         + rb')>\3(?=\s*[,}\]])|<<|<(' + _ONE_OF + rb")>")
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)
# Placeholders a header may hold whole that the member's own reply's header of the same name
# answers instead (its own request id, its own cookie).
_OWN_HEADER = frozenset(("<request-id>", "<token>", "<secret>", "<key>", "<serial>"))


# -- the scenario option ------------------------------------------------------------------------
@dataclass(frozen=True)
class QuirkFile:
    """The ``quirks:`` option of a kind, as ``Annotated`` metadata: a path (relative to the
    scenario file's folder, given in the validation context as ``scenario_dir``, else to the
    current directory) read into a ``Profile`` of ``kind``, once, when the scenario is
    validated. Any problem with the file is a validation error naming it."""

    kind: str

    def __get_pydantic_core_schema__(self, source: Any,
                                     handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.with_info_plain_validator_function(
            self.validate, serialization=core_schema.plain_serializer_function_ser_schema(
                lambda value: value.source if isinstance(value, Profile) else value))

    def validate(self, value: Any, info: ValidationInfo) -> Profile | None:
        if value is None or isinstance(value, Profile):
            return value
        if not isinstance(value, str) or not value.strip():
            raise PydanticCustomError("quirks", "the path of a quirk profile file (YAML)")
        path = Path(value).expanduser()
        base = (info.context or {}).get("scenario_dir")
        if not path.is_absolute():
            path = Path(base or Path.cwd()) / path
        try:
            profile = load(path)
        except ProfileError as exc:
            raise PydanticCustomError("quirks", "{why}", {"why": str(exc)}) from None
        if profile.kind != self.kind:
            raise PydanticCustomError("quirks", "{why}", {
                "why": f"{path}: a profile of a {profile.kind}, this member is a {self.kind}"})
        return profile


# -- the replay ---------------------------------------------------------------------------------
class _Recorded:
    """One exchange as the matcher reads it: the query with each value a literal string or a
    placeholder, the headers to check, and how many matching requests it answered."""

    __slots__ = ("exchange", "query", "headers", "credentials", "count")

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.query = tuple((_literal(name), _request_value(value))
                           for name, value in exchange.request.query)
        self.headers = tuple((name, _request_value(value))
                             for name, value in exchange.request.headers
                             if name.lower() not in ("host", "content-length"))
        self.credentials = exchange.request.credentials
        self.count = 0


def _literal(text: str) -> str:
    return text.replace("<<", "<")


def _request_value(value: str) -> object:
    if value in (USER, PASSWORD, WRONG, BASIC):
        return value
    if _PLACEHOLDER.fullmatch(value.encode()) and value != "<<":
        return _ANY  # a redacted value: any
    return _literal(value)


def _raw_pairs(raw_query: str) -> list[tuple[str, str]]:
    """A query's pairs as sent (``%XX`` decoded, ``+`` kept, a bare name an empty value)."""
    pairs = []
    for piece in raw_query.split("&"):
        if piece:
            name, _, value = piece.partition("=")
            pairs.append((unquote(name), unquote(value)))
    return pairs


def _basic_login(value: str | None) -> tuple[str, str] | None:
    if not value or value[:6].lower() != "basic ":
        return None
    try:
        user, sep, password = base64.b64decode(value[6:].strip(), validate=True) \
            .decode("utf-8").partition(":")
    except (binascii.Error, ValueError):
        return None
    return (user, password) if sep else None


class QuirkReplay:
    """A member's profile at work: ``wrap(handler)`` is the application handler that answers
    the recorded requests the device's way. A request no exchange names costs one dict lookup
    (and the call of the wrapper)."""

    def __init__(self, profile: Profile, member: HttpEmulator) -> None:
        self.profile = profile
        self.member = member
        self.logins = member.quirk_logins()
        self.values = member.quirk_values()
        self._index: dict[tuple[str, str], list[_Recorded]] = {}
        for exchange in profile.exchanges:
            key = (exchange.request.method, _literal(exchange.request.path))
            self._index.setdefault(key, []).append(_Recorded(exchange))
        # Paths where an exchange says how the credentials must judge: the member's check
        # (it may read the body) runs before those are answered.
        self._judged = {key for key, entries in self._index.items()
                        if any(e.credentials is not None for e in entries)}

    def reset(self) -> None:
        """Back to the first reply of every exchange (the member was reset or restarted)."""
        for recorded in self._index.values():
            for entry in recorded:
                entry.count = 0

    def wrap(self, handler: Handler) -> Handler:
        index = self._index
        judged = self._judged

        def replay(request: web.Request) -> Awaitable[web.StreamResponse]:
            # Not a coroutine function: a request no exchange names goes to the handler with
            # no frame of ours around it.
            key = (request.method, request.path)
            candidates = index.get(key)
            if candidates is None:
                return handler(request)
            if key in judged:
                return self._judge_and_answer(candidates, request, handler)
            found = self.match(candidates, request)
            if found is None:
                return handler(request)
            return self._answer(found, request, handler)

        return replay

    # -- matching -------------------------------------------------------------------------
    def match(self, candidates: list[_Recorded],
              request: web.Request) -> tuple[_Recorded, str | None] | None:
        """The first exchange ``request`` matches, with the user it logged in as (exchanges
        that ask for a verdict on the credentials aside: ``_judge_and_answer``)."""
        return next((found for found in self._candidates(candidates, request)
                     if found[0].credentials is None), None)

    def _candidates(self, candidates: list[_Recorded],
                    request: web.Request) -> Iterator[tuple[_Recorded, str | None]]:
        pairs = _raw_pairs(request.rel_url.raw_query_string)
        for entry in candidates:
            user = self._matches(entry, pairs, request)
            if user is not False:
                yield entry, user  # type: ignore[misc]

    async def _judge_and_answer(self, candidates: list[_Recorded], request: web.Request,
                                handler: Handler) -> web.StreamResponse:
        """The first exchange that matches, the member's verdict on the request's credentials
        (asked once, when an exchange needs it) agreeing with its ``credentials``."""
        verdict: str | None = None
        asked = False
        for entry, user in self._candidates(candidates, request):
            if entry.credentials is not None:
                if not asked:
                    verdict, asked = await self.member.quirk_credentials(request), True
                if verdict != entry.credentials:
                    continue
            return await self._answer((entry, user), request, handler)
        return await handler(request)

    def _matches(self, entry: _Recorded, pairs: list[tuple[str, str]],
                 request: web.Request) -> str | None | bool:
        """False, or the user the request named (None when it named none)."""
        if len(pairs) != len(entry.query):
            return False
        logins = self.logins
        user: str | None = None
        passwords: list[tuple[object, str]] = []
        for (name, want), (got_name, got) in zip(entry.query, pairs, strict=True):
            if name != got_name:
                return False
            if want == USER:
                if got not in logins:
                    return False
                user = got
            elif want == PASSWORD or want == WRONG:
                passwords.append((want, got))
            elif want == BASIC:
                login = _basic_login(got)
                if login is None or logins.get(login[0]) != login[1]:
                    return False
                user = login[0]
            elif want is not _ANY and want != got:
                return False
        for name, want in entry.headers:
            got_header = request.headers.get(name)
            if got_header is None:
                return False
            if want == BASIC:
                login = _basic_login(got_header)
                if login is None or logins.get(login[0]) != login[1]:
                    return False
                user = user or login[0]
            elif want is not _ANY and want not in (USER, PASSWORD, WRONG) \
                    and want != got_header:
                return False
        for want, got in passwords:
            right = (logins.get(user) == got if user is not None
                     else got in logins.values())
            if right != (want == PASSWORD):
                return False
            if want == WRONG and user is None:
                return False  # "wrong" for nobody in particular
        return user

    # -- answering ------------------------------------------------------------------------
    async def _answer(self, found: tuple[_Recorded, str | None], request: web.Request,
                      handler: Handler) -> web.StreamResponse:
        entry, user = found
        try:  # the member's own rules and state first: a set command still sets
            own: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            own = exc
        if own.prepared:  # already on the wire (a streamed reply): nothing to replace
            log.warning("%s: %s %s: the member's reply was streamed; not replayed",
                        self.member.name, request.method, request.path)
            return own
        exchange = entry.exchange
        replies = exchange.replies
        state = min(entry.count, len(replies) - 1)
        entry.count += 1
        own_body = getattr(own, "body", None)
        if not isinstance(own_body, bytes):
            own_body = getattr(own, "journal_body", None)
        reply = self.render(replies[state], request, user,
                            own_body if exchange.merge == "key-values" else None,
                            Own(own_body if isinstance(own_body, bytes) else b"", own.headers,
                                exchange.merge == "json"))
        member = self.member
        member.ctx.journal.record(member.name, member.kind, request.scheme, "quirk",
                                  method=request.method, path=request.path,
                                  status=reply.status,
                                  detail={"quirks": exchange.step, "reply": state + 1})
        return reply

    def render(self, recorded: RecordedReply, request: web.Request, user: str | None,
               own_body: bytes | None, own: Own | None = None) -> QuirkResponse:
        own = own or Own(b"", {})
        fill = self._filler(request, user, own)
        if own.json:
            body = own.merge_json(recorded.body, fill)
        elif own_body is not None:
            pairs = {m.group(1): m.group(2) if m.group(2) is not None else m.group(3)
                     for m in reversed(list(_OWN_PAIR.finditer(own_body)))}  # the first wins

            def merged(m: re.Match[bytes]) -> bytes:
                key = m.group(1)
                if key is None:
                    return fill(m)
                if key in pairs:
                    quote = b'"' if m.group(2) is not None else b"'"
                    return key + b"=" + quote + pairs[key] + quote
                return _PLACEHOLDER.sub(fill, m.group(0))

            body = _MERGE.sub(merged, recorded.body)
        elif b"<" in recorded.body:
            body = _PLACEHOLDER.sub(fill, recorded.body)
        else:
            body = recorded.body
        chunked = False
        close = recorded.version != "HTTP/1.1"
        lines = [f"{recorded.version} {recorded.status} {recorded.reason}".rstrip(" ")]
        for name, value in recorded.headers:
            lowered = name.lower()
            if lowered == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif lowered == "connection" and "close" in value.lower():
                close = True
            if value == "<length>":
                value = str(len(body))
            elif value in _OWN_HEADER and name in own.headers:
                value = own.headers[name]
            elif "<" in value:
                value = _PLACEHOLDER.sub(fill, value.encode("utf-8")).decode("utf-8")
            lines.append(f"{name}: {value}")
        eol = recorded.eol
        head = _header_bytes(eol.join(lines) + eol + eol)
        if chunked:  # the recorded body, sent as one chunk
            body = (b"%x\r\n" % len(body) + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
        return QuirkResponse(head, body, recorded.status, recorded.reason, close)

    def _filler(self, request: web.Request, user: str | None, own: Own
                ) -> Callable[[re.Match[bytes]], bytes]:
        member = self.member
        if user is None and self.logins:
            user = next(iter(self.logins))
        cache: dict[bytes, bytes] = {}
        pems = iter(own.pems())

        def fill(m: re.Match[bytes]) -> bytes:
            name = m.group(m.lastindex) if m.lastindex else None
            if name is None:
                return b"<"  # "<<"
            if name == b"pem":  # the member's own PEM blocks in order, where it has them
                found = next(pems, None)
                if found is not None:
                    return found
            if name in cache:
                return cache[name]
            text = name.decode()
            if text in self.values:
                value = self.values[text]
            elif text == "date":
                value = http_date(member.clock.time())
            elif text == "address":
                value = request.headers.get("Host") or f"{member.host}:{member.port}"
            elif text == "user":
                value = user or ""
            elif text == "password":
                value = self.logins.get(user or "", "")
            elif text == "basic":
                value = "Basic " + base64.b64encode(
                    f"{user}:{self.logins.get(user or '', '')}".encode()).decode()
            elif text == "request-id":
                value = own.request_id() or uuid.uuid4().hex
            else:
                value = stable_fake(text, f"{member.kind}:{member.name}")
            cache[name] = value.encode("utf-8")
            return cache[name]

        return fill


class Own:
    """The member's own reply to a replayed request, as far as the recorded one takes from it:
    its header lines, its PEM blocks, and (``merge: json``) its JSON values by name."""

    def __init__(self, body: bytes, headers: Any, json_merge: bool = False) -> None:
        self.body = body
        self.headers = headers
        self.json = json_merge

    def pems(self) -> list[bytes]:
        if self.json or b"-----BEGIN " not in self.body:
            return []
        return [m.group(0) for m in _PEM.finditer(self.body)]

    def request_id(self) -> str | None:
        return next((v for k, v in self.headers.items()
                     if k.lower() in ("x-request-id", "request-id")), None)

    def values(self) -> dict[str, list[Any]]:
        """Every scalar of the member's JSON reply, by member name, in document order."""
        found: dict[str, list[Any]] = {}
        try:
            doc = json.loads(self.body)
        except (ValueError, RecursionError):
            return found

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                for key, value in node.items():
                    if isinstance(value, dict | list):
                        walk(value)
                    elif value is not None:
                        found.setdefault(key, []).append(value)
            elif isinstance(node, list):
                for item in node:
                    walk(item)

        walk(doc)
        return found

    def merge_json(self, body: bytes,
                   fill: Callable[[re.Match[bytes]], bytes]) -> bytes:
        """``body`` (the recorded JSON) with each member whose whole value is a placeholder
        given the member's own value of that name (the nth such member the nth value), and
        every other placeholder filled, as JSON text."""
        own = self.values()
        seen: dict[bytes, int] = {}

        def merged(m: re.Match[bytes]) -> bytes:
            if m.group(1) is None:  # a placeholder inside some text: JSON-escaped
                return _json_text(fill(m))
            name, quoted = m.group(1), bool(m.group(3))
            index = seen.get(name, 0)
            seen[name] = index + 1
            values = own.get(name.decode("utf-8", "replace"), [])
            head = b'"' + name + b'"' + m.group(2)
            if index < len(values):
                value = values[index]
                if quoted:
                    return head + b'"' + _json_text(str(value).encode()) + b'"'
                if isinstance(value, str) and not value.isdigit():
                    return head + json.dumps(value).encode()
                return head + str(value).encode()
            filled = fill(_PLACEHOLDER.fullmatch(b"<" + m.group(4) + b">"))  # type: ignore[arg-type]
            if quoted:
                return head + b'"' + _json_text(filled) + b'"'
            return head + (filled if filled.isdigit() else json.dumps(
                filled.decode("utf-8", "replace")).encode())

        return _JSON_MERGE.sub(merged, body)


def _json_text(value: bytes) -> bytes:
    """``value`` as the inside of a JSON string."""
    return json.dumps(value.decode("utf-8", "replace"), ensure_ascii=False)[1:-1].encode()


def _header_bytes(text: str) -> bytes:
    try:
        return text.encode("latin-1")  # header bytes as the capture read them
    except UnicodeEncodeError:
        return text.encode("utf-8")


def stable_fake(placeholder: str, seed: str) -> str:
    """A value of the shape ``placeholder`` stands for, the same for the same member at every
    start: what a redacted value the member has none of its own for becomes."""
    digest = hashlib.sha256(f"{placeholder}:{seed}".encode()).digest()
    if placeholder == "serial":
        return digest[:6].hex().upper()
    if placeholder == "mac":
        return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))
    if placeholder == "pem":
        blob = base64.b64encode(digest * 2).decode()
        return f"-----BEGIN CERTIFICATE-----\n{blob}\n-----END CERTIFICATE-----"
    if placeholder == "wrong-password":
        return "x" + digest[:4].hex()
    if placeholder == "length":
        return "0"
    return digest[:16].hex()  # secret, key, token


class QuirkResponse(ComposedResponse):
    """A recorded reply written as composed: the device's status line and header bytes, then
    the body. The connection stays open after it unless the recorded reply closed it
    (HTTP/1.0, ``Connection: close``) or the client asked to."""

    def __init__(self, head: bytes, body: bytes, status: int, reason: str,
                 close: bool) -> None:
        super().__init__(status=status, reason=reason or "")
        self.head = head
        self.wire_body = body
        self.close = close
        self.keep_alive_after = not close

    async def write_eof(self, data: bytes = b"") -> None:
        request = self.prepared_for
        body = b"" if request is not None and request.method == "HEAD" else self.wire_body
        await super().write_eof(self.head + body)
        if request is not None and request.can_read_body and not request.content.is_eof():
            request.protocol.force_close()  # a body still owed: close instead of lingering

    @property
    def journal_body(self) -> bytes:
        return self.wire_body

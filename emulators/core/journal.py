"""The farm's request journal: every HTTP request and every FTP/SFTP session event, in one
bounded ring with a farm-wide sequence number, secrets masked on the way in.

A correlation id ties events together: an HTTP request gets one, and whatever it causes (a
camera's ``testftp`` uploading to the farm's FTP server) carries the same id. The client side
registers the local address of its outbound connection; the server side finds the id by the
peer address it sees.
"""

from __future__ import annotations

import contextvars
import copy
import fnmatch
import itertools
import json
import re
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple, TypedDict, Unpack

from yarl import URL

from .clock import Clock
from .waiters import Waiters

CORRELATION: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "emulators_correlation", default=None)

MASK = "***"
SECRET_KEYS = frozenset({
    "pwd", "password", "passwd", "pass", "ft_password", "secret", "appsecret", "app_secret",
    "private_key", "private_key_password", "privatekey", "sk", "secret_key", "token",
    "accesstoken", "access_token", "encryption", "verify_content_key",
    # EnOS device access: dynamic activation hands a device its secret in a message.
    "devicesecret", "device_secret", "productsecret", "product_secret",
})
SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-auth-token",
    "x-security-token", "apim-signature", "apim-accesstoken",
})
_PEM_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(-----END \1PRIVATE KEY-----|\Z)", re.S)
_ESCAPED_PEM_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----(?:\\n|[^\"-])*?(-----END \1PRIVATE KEY-----|\Z)")
# A JSON string token, or the unterminated rest of a truncated excerpt.
_JSON_STRING = re.compile(r'"((?:[^"\\]|\\.)*)("|\\?\Z)', re.S)
_JSON_SCALAR_END = re.compile(r'[,}\]\s]|\Z')
_JSON_ESCAPE = re.compile(r'\\(u[0-9a-fA-F]{4}|.)', re.S)
_JSON_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
# key=value pairs (query strings, form bodies, free text such as INSTAR's var x="...";).
_FORM_PAIR = re.compile(r"(?<![A-Za-z0-9_%.+-])([A-Za-z0-9_%.+-]+)=([^&\s]*)")
# A multipart part: its headers (naming the field), then its content up to the boundary.
_MULTIPART_PART = re.compile(
    r'(Content-Disposition:[^\r\n]*?\bname="?([^";\r\n]*)"?[^\r\n]*\r?\n(?:[^\r\n]+\r?\n)*\r?\n)'
    r'(.*?)(?=\r?\n--|\Z)', re.S | re.I)
WITHHELD = "[private key withheld]"


def is_secret_name(name: str) -> bool:
    """Whether a field, parameter or JSON key named ``name`` (decoded) holds a secret."""
    return name.strip().lower() in SECRET_KEYS


def has_private_key(text: str) -> bool:
    return "PRIVATE KEY-----" in text and _PEM_KEY.search(text) is not None


def _mask_pem(text: str) -> str:
    return _PEM_KEY.sub(r"-----BEGIN \1PRIVATE KEY-----" + MASK + r"-----END \1PRIVATE KEY-----",
                        text)


def _json_unescape(body: str) -> str:
    """A JSON string token's content, decoded (leniently: an excerpt may end mid-escape)."""
    if "\\" not in body:
        return body

    def one(m: re.Match[str]) -> str:
        esc = m.group(1)
        if esc[0] == "u" and len(esc) == 5:
            return chr(int(esc[1:], 16))
        return _JSON_ESCAPES.get(esc, esc)
    return _JSON_ESCAPE.sub(one, body)


def _json_value_end(text: str, i: int) -> int:
    """Where the JSON value starting at ``i`` ends (the end of the text when it is cut)."""
    if i >= len(text):
        return i
    if text[i] == '"':
        m = _JSON_STRING.match(text, i)
        return m.end() if m else len(text)
    if text[i] in "{[":
        depth, j = 0, i
        while j < len(text):
            c = text[j]
            if c == '"':
                m = _JSON_STRING.match(text, j)
                j = m.end() if m else len(text)
                continue
            if c in "{[":
                depth += 1
            elif c in "}]":
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        return len(text)
    m = _JSON_SCALAR_END.search(text, i)
    return m.start() if m else len(text)


def _mask_json(text: str) -> str:
    """Mask JSON found in ``text`` by what it means, not how it is spelled: every string is
    decoded (``"private\u005fkey"`` is ``private_key``), a secret key's value is masked
    whatever it is (a string, a number, an object, an array), a string holding a private key
    is masked wherever it is. Works on truncated JSON, and leaves everything else as sent."""
    out: list[str] = []
    pos = 0
    n = len(text)
    for m in _JSON_STRING.finditer(text):
        if m.start() < pos:  # inside a value already masked
            continue
        decoded = _json_unescape(m.group(1))
        colon = m.end()
        while colon < n and text[colon] in " \t\r\n":
            colon += 1
        if m.group(2) and colon < n and text[colon] == ":" and is_secret_name(decoded):
            value = colon + 1
            while value < n and text[value] in " \t\r\n":
                value += 1
            out += [text[pos:value], f'"{MASK}"']
            pos = _json_value_end(text, value)
        elif has_private_key(decoded):
            out += [text[pos:m.start()], json.dumps(_mask_pem(decoded), ensure_ascii=False)]
            pos = m.end()
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def _decoded(text: str) -> str:
    return urllib.parse.unquote_plus(text, errors="replace")


def _mask_form_pair(m: re.Match[str]) -> str:
    name, value = m.group(1), m.group(2)
    if is_secret_name(_decoded(name)) or (value and has_private_key(_decoded(value))):
        return f"{name}={MASK}"
    return m.group(0)


def _mask_multipart_part(m: re.Match[str]) -> str:
    return m.group(1) + MASK if is_secret_name(m.group(2)) else m.group(0)


def mask_text(text: str) -> str:
    """Mask private keys and secret fields in a body or reply excerpt, after decoding: JSON
    (escaped names and values, nested objects, arrays), ``key=value`` pairs (names and values
    %-decoded), multipart fields by their decoded names, and PEM private keys anywhere."""
    if '"' in text:
        text = _mask_json(text)
    if "PRIVATE KEY-----" in text:
        text = _mask_pem(text)
        text = _ESCAPED_PEM_KEY.sub(r"-----BEGIN \1PRIVATE KEY-----" + MASK
                                    + r"-----END \1PRIVATE KEY-----", text)
    if "=" in text:
        text = _FORM_PAIR.sub(_mask_form_pair, text)
    if "name=" in text or "NAME=" in text or "Name=" in text:
        text = _MULTIPART_PART.sub(_mask_multipart_part, text)
    return text


def mask_query(pairs: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Query pairs as parse_qsl decoded them: a secret name's value, and any value holding a
    private key, is masked."""
    return [[k, MASK if is_secret_name(k) or has_private_key(v) else v] for k, v in pairs]


def mask_headers(pairs: Iterable[tuple[str, str]]) -> list[list[str]]:
    out = []
    for k, v in pairs:
        if k.lower() == "authorization" and v.startswith("SDK-HMAC-SHA256"):
            # Keep who signed (Access=...) and which headers; hide the signature itself.
            v = re.sub(r"Signature=[0-9a-fA-F]+", f"Signature={MASK}", v)
        elif k.lower() in SECRET_HEADERS:
            scheme = v.split(" ", 1)[0] if " " in v else ""
            v = f"{scheme} {MASK}".strip()
        elif has_private_key(_decoded(v)):
            v = MASK
        out.append([k, v])
    return out


def withhold_private_keys(doc: Any) -> Any:
    """``doc`` (a JSON-able state view) with every private key replaced by ``WITHHELD``: PEM
    private key blocks in any string, and the values of fields named for private keys."""
    if isinstance(doc, dict):
        return {k: (WITHHELD if _names_private_key(k) and doc[k] else withhold_private_keys(v))
                for k, v in doc.items()}
    if isinstance(doc, list):
        return [withhold_private_keys(v) for v in doc]
    if isinstance(doc, str) and has_private_key(doc):
        kept = _PEM_KEY.sub(WITHHELD, doc)
        return WITHHELD if kept.strip() == WITHHELD else kept
    return doc


PRIVATE_KEY_FIELDS = frozenset({"private_key", "privatekey", "key_pem", "private_key_pem",
                                "host_key", "ssh_key"})


def _names_private_key(name: object) -> bool:
    return isinstance(name, str) and name.strip().lower() in PRIVATE_KEY_FIELDS


def excerpt(data: bytes | str | None, limit: int) -> str | None:
    if data is None:
        return None
    text = data if isinstance(data, str) else data[: limit * 4].decode("utf-8", "replace")
    text = mask_text(text)
    return text if len(text) <= limit else text[:limit] + f"...[{len(text) - limit} more]"


def request_url(target: str) -> URL:
    """The URL of a request line's target, as aiohttp's parser makes it."""
    if target.startswith("/"):  # origin-form: "//x" is a path here, not a host
        target, _, fragment = target.partition("#")
        path, _, query = target.partition("?")
        return URL.build(path=path, query_string=query, fragment=fragment, encoded=True)
    try:
        return URL(target, encoded=True)  # absolute-form (a proxy request), or "*"
    except ValueError:
        return URL.build(path=target, encoded=True)


class RawRequest(NamedTuple):
    """One HTTP request as ``Journal.record_http`` keeps it: references to what aiohttp parsed,
    nothing decoded, masked or formatted yet (``Entry.from_request`` does that when someone
    reads the journal). A tuple, so that keeping it costs the hot path what a tuple does."""

    seq: int
    time: float
    member: str
    kind: str
    protocol: str
    correlation_id: str
    peer: Any  # the transport's peer address, (host, port, ...), or None
    method: str
    target: str  # the request line's target as sent
    raw_headers: tuple[tuple[bytes, bytes], ...]
    body: bytes | None  # its first bytes (excerpt_bytes * 4), or None if no handler read it
    body_size: int | None  # None: the body was not read
    status: int | None
    reply: bytes | None  # its first bytes (excerpt_bytes * 4)
    seconds: float
    detail: dict[str, Any] | None


# RawRequest's own __new__ is a Python function around this very call: calling it directly
# makes the record with one C call on the hot path (Journal.record_http). It counts no fields,
# so the order is RawRequest's; tests/test_journal_views.py fails when a field is added to
# the record type without the build.
_new_raw_request = tuple.__new__


@dataclass(slots=True)
class Entry:
    seq: int
    time: float
    member: str
    kind: str
    protocol: str  # http, https, ftp, ftps, sftp
    event: str  # request, connect, login, login_failed, upload, upload_failed, refused, fault
    correlation_id: str | None = None
    client: str | None = None
    method: str | None = None
    path: str | None = None
    query: list[list[str]] | None = None
    headers: list[list[str]] | None = None
    request_size: int | None = None
    # bytes only between ``record`` and the first read (Journal._finish)
    request_excerpt: str | bytes | None = None
    status: int | None = None
    reply_size: int | None = None
    reply_excerpt: str | None = None
    duration_ms: float | None = None
    user: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_request(cls, raw: RawRequest, excerpt_bytes: int) -> Entry:
        """The entry of one HTTP request, from what ``Journal.record_http`` kept: parsed,
        masked and formatted only now that someone reads it."""
        url = request_url(raw.target)
        headers = [(k.decode("utf-8", "replace"), v.decode("utf-8", "replace"))
                   for k, v in raw.raw_headers]
        body_size = raw.body_size
        if body_size is None:  # the body was not read: what the client declared
            declared = next((v for k, v in headers if k.lower() == "content-length"), None)
            body_size = int(declared) if declared and declared.isdigit() else None
        peer, reply = raw.peer, raw.reply
        return cls(
            raw.seq, raw.time, raw.member, raw.kind, raw.protocol, "request", raw.correlation_id,
            f"{peer[0]}:{peer[1]}" if peer else None, raw.method, url.path,
            mask_query(urllib.parse.parse_qsl(url.raw_query_string, keep_blank_values=True,
                                              errors="replace")),
            mask_headers(headers), body_size, excerpt(raw.body, excerpt_bytes), raw.status,
            len(reply) if reply is not None else None, excerpt(reply, excerpt_bytes),
            round(raw.seconds * 1000, 3), None, raw.detail or {})

    def to_dict(self) -> dict[str, Any]:
        """The entry as the API shows it (fields that are set), copied so that changing the
        document leaves the entry alone. By hand rather than ``dataclasses.asdict``: 5-8 us an
        entry against 115 (a journal page, a shard's pull, a stream pay it per entry)."""
        out: dict[str, Any] = {}
        for name in _ENTRY_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if type(value) is list:
                value = [list(item) if type(item) is list else item for item in value]
            elif type(value) is dict:
                if not value:
                    continue
                value = copy.deepcopy(value)
            out[name] = value
        return out


_ENTRY_FIELDS = tuple(f.name for f in fields(Entry))


class Journal:
    def __init__(self, clock: Clock, capacity: int = 10_000, excerpt_bytes: int = 1024) -> None:
        self.clock = clock
        self.capacity = capacity
        self.excerpt_bytes = excerpt_bytes
        self.enabled = True
        # Entries, and HTTP requests still as record_http kept them: see _read.
        self._entries: deque[Entry | RawRequest] = deque(maxlen=capacity)
        self._unread = 0  # how many of the newest entries were added since the last read
        self._seq = itertools.count(1)
        self._run_id = uuid.uuid4().hex[:8]  # ids stay unique across farms and restarts
        self.outbound_log: deque[tuple[int, str, int, str]] = deque(maxlen=4096)
        self._outbound_n = itertools.count(1)
        # "<run id>-<n in hex>", n = 1, 2, ...: made by C code (once per HTTP request).
        self.new_correlation_id: Callable[[], str] = map(
            f"{self._run_id}-{{:x}}".format, itertools.count(1)).__next__
        self._waiters: Waiters[Entry] = Waiters()
        # Outbound connections by local address: (host, port) -> correlation id.
        self._outbound: dict[tuple[str, int], str] = {}

    # -- writing ---------------------------------------------------------------------------
    def record(self, member: str, kind: str, protocol: str, event: str, **fields: Any) -> Entry:
        fields.setdefault("correlation_id", CORRELATION.get())
        entry = Entry(next(self._seq), self.clock.time(), member, kind, protocol, event, **fields)
        if self.enabled:
            self._entries.append(entry)
            self._unread += 1
        if self._waiters:
            self._notify(entry)
        return entry

    def _finish(self, entry: Entry) -> None:
        """An entry recorded with raw bytes as its excerpt (an MQTT payload: ``record`` keeps
        the bytes, masking costs a fifth of a message's handling) gets its masked excerpt."""
        raw = entry.request_excerpt
        if type(raw) is bytes:
            entry.request_excerpt = excerpt(raw, self.excerpt_bytes)

    def _notify(self, entry: Entry) -> None:
        self._finish(entry)
        self._waiters.offer(entry)

    def record_http(self, member: str, kind: str, protocol: str, correlation_id: str,
                    peer: Any, method: str, target: str,
                    raw_headers: tuple[tuple[bytes, bytes], ...], body: bytes | None,
                    status: int | None, reply: bytes | None, seconds: float,
                    detail: dict[str, Any] | None) -> None:
        """The hot path, once per HTTP request: keep references in a ``RawRequest``. The entry
        is built, parsed and masked when someone reads it (``_read``). ``target`` is the request
        line's target as sent (``request.raw_path``): a string, where the request's URL object
        would keep its parsed query alive as long as the entry."""
        limit = self.excerpt_bytes * 4
        raw: RawRequest = _new_raw_request(RawRequest, (
            next(self._seq), self.clock.time(), member, kind, protocol, correlation_id, peer,
            method, target, raw_headers, body[:limit] if body else body,
            None if body is None else len(body), status,
            reply[:limit] if reply else reply, seconds, detail))
        if self.enabled:
            self._entries.append(raw)
            self._unread += 1
        if self._waiters:
            self._notify(Entry.from_request(raw, self.excerpt_bytes))

    def register_outbound(self, local: tuple[str, int] | Any, correlation_id: str | None) -> None:
        """A member opened a connection from ``local``; the server it reaches adopts the id."""
        if correlation_id and local:
            self._outbound[(str(local[0]), int(local[1]))] = correlation_id
            # Numbered, for a sharded farm's coordinator: a server on another shard sees the
            # connection, and the coordinator joins the two (shards/coordinator.py).
            self.outbound_log.append((next(self._outbound_n), str(local[0]), int(local[1]),
                                      correlation_id))
            if len(self._outbound) > 4096:  # forget the oldest
                for key in list(self._outbound)[:1024]:
                    del self._outbound[key]

    def correlation_for_peer(self, peer: tuple[str, int] | Any) -> str | None:
        if not peer:
            return None
        return self._outbound.get((str(peer[0]), int(peer[1])))

    def adopt(self, entry: Entry) -> Entry:
        """Take an entry recorded elsewhere (a shard's), numbered in this journal's order."""
        entry.seq = next(self._seq)
        if self.enabled:
            self._entries.append(entry)
        if self._waiters:
            self._notify(entry)
        return entry

    def clear(self) -> None:
        self._entries.clear()
        self._unread = 0

    def resize(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries = deque(self._entries, maxlen=capacity)

    # -- reading ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    def _read(self) -> deque[Entry | RawRequest]:
        """Every entry, oldest first, with the requests recorded since the last read built
        into entries (once each: they stay built)."""
        entries = self._entries
        for i in range(max(len(entries) - self._unread, 0), len(entries)):
            raw = entries[i]
            if not isinstance(raw, Entry):
                entries[i] = Entry.from_request(raw, self.excerpt_bytes)
            elif type(raw.request_excerpt) is bytes:
                self._finish(raw)
        self._unread = 0
        return entries

    def query(self, *, limit: int | None = None, **filters: Unpack[Filters]) -> list[Entry]:
        """Entries matching every given filter, oldest first. ``member`` and ``path`` are
        shell-style patterns (``cam-*``, ``/param.cgi*``). With ``limit`` (the newest N) it
        looks from the newest end and builds only the requests it looks at: a page's "last
        100" of a journal of 10,000 unread requests took 456 ms building them all, against
        what it shows now (bench/dashboard.py)."""
        wanted = matcher(**filters)
        if not limit:
            return [e for e in self._read() if wanted(e)]  # type: ignore[arg-type, misc]
        entries = self._entries
        found: list[Entry] = []
        for i in range(len(entries) - 1, -1, -1):
            entry = self._built(i)
            if wanted(entry):
                found.append(entry)
                if len(found) == limit:
                    break
        found.reverse()
        return found

    def _built(self, i: int) -> Entry:
        """Entry ``i`` (from the oldest) as an Entry, built in place if it was still raw."""
        entry = self._entries[i]
        if not isinstance(entry, Entry):
            entry = self._entries[i] = Entry.from_request(entry, self.excerpt_bytes)
        elif type(entry.request_excerpt) is bytes:
            self._finish(entry)
        return entry

    def after(self, seq: int, limit: int | None = None) -> list[Entry]:
        """The entries newer than ``seq``, oldest first (at most ``limit``, the oldest of
        them): a live view's next page, found from the newest end, so it costs what is new,
        not the whole journal."""
        entries = self._read()
        newer: list[Entry] = []
        for entry in reversed(entries):
            assert isinstance(entry, Entry)
            if entry.seq <= seq:
                break
            newer.append(entry)
        newer.reverse()
        return newer[:limit] if limit else newer

    @property
    def last_seq(self) -> int:
        """The newest entry's number (0 with none)."""
        return self._entries[-1].seq if self._entries else 0

    def newest(self, seq: int, limit: int) -> tuple[list[Entry], int]:
        """At most the ``limit`` newest entries newer than ``seq``, oldest first, and how many
        newer ones it passed over. A view that shows only so many a second (the dashboard)
        builds only what it shows: the passed-over requests stay raw until someone reads them
        (building every one costs a stream of the farm's whole traffic a fifth of a request's
        time each, bench/dashboard.py)."""
        entries = self._entries
        chosen: list[Entry] = []
        newer = 0
        for i in range(len(entries) - 1, -1, -1):  # from the newest end: what is new
            entry = entries[i]
            if entry.seq <= seq:
                break
            newer += 1
            if len(chosen) < limit:
                chosen.append(self._built(i))
        chosen.reverse()
        return chosen, newer - len(chosen)

    def activity(self, since: float) -> Iterator[tuple[float, str, float | None]]:
        """(time, member, duration in ms or None) of every entry at or after ``since``, newest
        first, read without building entries (the rate and latency chart)."""
        for entry in reversed(self._entries):
            if entry.time < since:
                break
            if isinstance(entry, Entry):
                yield entry.time, entry.member, entry.duration_ms
            else:
                yield entry.time, entry.member, entry.seconds * 1000

    async def wait_for(self, predicate: Callable[[Entry], bool], timeout: float,  # noqa: ASYNC109
                       *, include_past: bool = False) -> Entry:
        """The first entry (from now on, or already there with include_past) that matches."""
        if include_past:
            for entry in self._read():
                if predicate(entry):  # type: ignore[arg-type]
                    return entry  # type: ignore[return-value]
        return await self._waiters.next(predicate, timeout)


class Filters(TypedDict, total=False):
    """What ``Journal.query``, ``matches`` and a live stream filter on; None is no filter."""

    member: str | None  # a shell-style pattern (cam-*)
    kind: str | None
    protocol: str | None
    event: str | None
    method: str | None  # in any case
    path: str | None  # a shell-style pattern (/param.cgi*)
    status: int | None
    correlation_id: str | None
    since: float | None
    until: float | None
    after_seq: int | None


# How each filter judges an entry, given the filter's value.
_TESTS: dict[str, Callable[[Entry, Any], bool]] = {
    "member": lambda e, v: fnmatch.fnmatchcase(e.member, v),
    "kind": lambda e, v: e.kind == v,
    "protocol": lambda e, v: e.protocol == v,
    "event": lambda e, v: e.event == v,
    "method": lambda e, v: (e.method or "").upper() == v.upper(),
    "path": lambda e, v: fnmatch.fnmatchcase(e.path or "", v),
    "status": lambda e, v: e.status == v,
    "correlation_id": lambda e, v: e.correlation_id == v,
    "since": lambda e, v: e.time >= v,
    "until": lambda e, v: e.time <= v,
    "after_seq": lambda e, v: e.seq > v,
}
FILTERS = tuple(_TESTS)


def matcher(**filters: Unpack[Filters]) -> Callable[[Entry], bool]:
    """Whether an entry passes every given filter; a name that is no filter is a TypeError
    at once, as for any unknown keyword."""
    unknown = [name for name in filters if name not in _TESTS]
    if unknown:
        raise TypeError(f"unexpected journal filter {unknown[0]!r}")
    tests = [(_TESTS[name], value) for name, value in filters.items() if value is not None]
    return lambda e: all(test(e, value) for test, value in tests)


def matches(e: Entry, **filters: Unpack[Filters]) -> bool:
    """Whether ``e`` passes every given filter, as ``Journal.query`` filters: a live stream or
    a waiting test filters what is new with the same rules."""
    return matcher(**filters)(e)

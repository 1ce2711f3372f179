"""A raw HTTP/1.x client for capture and drift: it keeps what a library would normalise away
(the status line as sent, header lines in order and casing, LF-only lines, HTTP/1.0 bodies
read to the close), bounded in time and size; over TLS for ``https://`` targets, the server's
certificate checked against the system's trust store or a CA file given."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import quote, urlsplit

REPLY_LIMIT = 1024 * 1024  # head and body together
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 10.0
# A query value may hold these as they are (devices parse their own queries, often naively).
_SAFE = "-_.~!$'()*,;:@/"
T = TypeVar("T")


class RawHttpError(Exception):
    """The request could not be made or its reply not read; ``unreachable`` when no connection
    was made at all (refused, timed out, name not found)."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True)
class RawReply:
    version: str  # as sent: "HTTP/1.1", "HTTP/1.0"
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]  # names in order and casing, values as sent
    body: bytes  # the payload (a chunked body de-chunked)
    line_ending: str  # "\r\n" or "\n": how the head's lines ended

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)


DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    base_path: str  # the URL's path, prefixed to each request's ("" for none)
    scheme: str = "http"
    # https: the context that checks the server's certificate (and its name).
    tls: ssl.SSLContext | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, url: str, cafile: str | None = None) -> Target:
        """``http://`` or ``https://host[:port][/base]``; an https target's certificate is
        checked against ``cafile`` (PEM) when given, else the system's trust store."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in DEFAULT_PORTS:
            raise ValueError(f"{url}: only http:// and https:// targets (got {parts.scheme}://)")
        if not parts.hostname:
            raise ValueError(f"{url}: no host")
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError as exc:
            raise ValueError(f"{url}: {exc}") from None
        tls = None
        if parts.scheme == "https":
            try:
                tls = ssl.create_default_context(cafile=cafile)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"--cafile {cafile}: {getattr(exc, 'strerror', None) or exc}"
                                 ) from None
        return cls(parts.hostname, port, parts.path.rstrip("/"), parts.scheme, tls)

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def encode_query(pairs: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> str:
    """``name=value&...``; an empty value is sent as the bare name (``HTTPS_CER``: ACTi's
    read form), which servers that parse ``name=`` read as the same empty value."""
    return "&".join(quote(k, safe=_SAFE) + (f"={quote(v, safe=_SAFE)}" if v != "" else "")
                    for k, v in pairs)


def request_bytes(target: Target, method: str, path: str, query: str,
                  headers: tuple[tuple[str, str], ...] = (), body: bytes | None = None) -> bytes:
    """The request as sent: ``Host`` first, then ``headers`` in order, then the client's own
    lines; a body (even an empty one) with its ``Content-Length``."""
    line = f"{method} {target.base_path}{path}{'?' + query if query else ''} HTTP/1.1\r\n"
    head = [line, f"Host: {target.netloc}\r\n"]
    head += [f"{k}: {v}\r\n" for k, v in headers]
    head += ["User-Agent: emulators-capture\r\n", "Accept: */*\r\n", "Connection: close\r\n"]
    if body is not None:
        head.append(f"Content-Length: {len(body)}\r\n")
    head.append("\r\n")
    return "".join(head).encode("latin-1") + (body or b"")


async def _read(awaitable: Awaitable[T], seconds: float, what: str) -> T:
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError:
        raise RawHttpError(f"no {what} within {seconds:g} s") from None


async def fetch(target: Target, method: str, path: str, query: str = "",
                headers: tuple[tuple[str, str], ...] = (), *, body: bytes | None = None,
                connect_timeout: float = CONNECT_TIMEOUT,
                read_timeout: float = READ_TIMEOUT) -> RawReply:
    """One request on its own connection (``Connection: close``), its reply as sent. The TLS
    handshake of an https target counts in ``connect_timeout``; a certificate that does not
    verify makes the target unreachable, as no connection is made."""
    try:
        async with asyncio.timeout(connect_timeout):
            reader, writer = await asyncio.open_connection(
                target.host, target.port, limit=REPLY_LIMIT, ssl=target.tls,
                server_hostname=target.host if target.tls is not None else None)
    except TimeoutError:
        raise RawHttpError(f"no connection within {connect_timeout:g} s",
                           unreachable=True) from None
    except ssl.SSLCertVerificationError as exc:
        raise RawHttpError(f"TLS: the server's certificate does not verify "
                           f"({exc.verify_message}); --cafile names the CA to trust",
                           unreachable=True) from None
    except ssl.SSLError as exc:
        raise RawHttpError(f"TLS: {exc.reason or exc}", unreachable=True) from None
    except OSError as exc:
        raise RawHttpError(exc.strerror or str(exc), unreachable=True) from None
    try:
        writer.write(request_bytes(target, method, path, query, headers, body))
        await _read(writer.drain(), read_timeout, "room to send")
        return await _reply(reader, method, read_timeout)
    except (ConnectionError, OSError) as exc:
        raise RawHttpError(f"connection lost: {exc.strerror or exc}") from None
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 1.0)
        except (TimeoutError, OSError):
            pass


async def _reply(reader: asyncio.StreamReader, method: str, seconds: float) -> RawReply:
    budget = REPLY_LIMIT
    head: list[bytes] = []
    ending = "\r\n"
    while True:
        try:
            line = await _read(reader.readuntil(b"\n"), seconds, "reply")
        except asyncio.IncompleteReadError as exc:
            if not head and not exc.partial:
                raise RawHttpError("connection closed with no reply") from None
            raise RawHttpError("connection closed inside the reply's head") from None
        except asyncio.LimitOverrunError:
            raise RawHttpError("reply head over 1 MiB") from None
        budget -= len(line)
        if budget < 0:
            raise RawHttpError("reply head over 1 MiB")
        if not head:
            ending = "\r\n" if line.endswith(b"\r\n") else "\n"
        text = line.rstrip(b"\n").removesuffix(b"\r")
        if not text:
            if not head:
                continue  # stray blank lines before the status line
            break
        head.append(text)
    status_line = head[0].decode("latin-1")
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not (code.isdigit() and len(code) == 3):
        raise RawHttpError(f"not an HTTP reply: {status_line[:80]!r}")
    headers = []
    for raw in head[1:]:
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep:
            raise RawHttpError(f"not a header line: {raw[:80]!r}")
        headers.append((name, value.strip(" \t")))
    reply = RawReply(version, int(code), reason, tuple(headers), b"", ending)
    status = reply.status
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return reply
    body = await _body(reader, reply, budget, seconds)
    return RawReply(version, status, reason, reply.headers, body, ending)


async def _body(reader: asyncio.StreamReader, reply: RawReply, budget: int,
                seconds: float) -> bytes:
    encoding = (reply.header("Transfer-Encoding") or "").lower()
    if "chunked" in encoding:
        return await _chunked(reader, budget, seconds)
    length = reply.header("Content-Length")
    if length is not None:
        if not length.strip().isdigit():
            raise RawHttpError(f"Content-Length {length!r} is not a number")
        size = int(length)
        if size > budget:
            raise RawHttpError("reply over 1 MiB")
        try:
            return bytes(await _read(reader.readexactly(size), seconds, "body"))
        except asyncio.IncompleteReadError as exc:
            raise RawHttpError(f"body ended after {len(exc.partial)} of {size} bytes") from None
    data = bytearray()  # read to the close (HTTP/1.0)
    while True:
        chunk = await _read(reader.read(65536), seconds, "body")
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > budget:
            raise RawHttpError("reply over 1 MiB")


async def _chunked(reader: asyncio.StreamReader, budget: int, seconds: float) -> bytes:
    data = bytearray()
    try:
        while True:
            line = await _read(reader.readuntil(b"\n"), seconds, "chunk")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise RawHttpError(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                while (await _read(reader.readuntil(b"\n"), seconds, "trailer")).strip():
                    pass
                return bytes(data)
            if len(data) + size > budget:
                raise RawHttpError("reply over 1 MiB")
            data += await _read(reader.readexactly(size), seconds, "chunk")
            await _read(reader.readuntil(b"\n"), seconds, "chunk end")
    except asyncio.IncompleteReadError:
        raise RawHttpError("connection closed inside a chunked body") from None
    except asyncio.LimitOverrunError:
        raise RawHttpError("chunk line over 1 MiB") from None

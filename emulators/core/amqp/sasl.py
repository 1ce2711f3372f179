"""The SASL layer of an AMQP 1.0 connection (AMQP 1.0 part 5.3), done before proton sees the
stream: python-qpid-proton's PyPI build has no extended (Cyrus) SASL, so a proton server
cannot check PLAIN credentials itself. This module reads the protocol header, offers PLAIN,
reads ``sasl-init`` (and a ``sasl-response`` when the client sent no initial response), and
writes ``sasl-outcome``. The performatives are encoded and decoded with proton's ``Data``
codec (described types 0x40-0x44); only the 8-byte frame header is packed here.

What the peer gets for what (AMQP 1.0 2.2 and 5.3.1):

- the SASL header ``AMQP 3 1.0.0``: the same header back, then ``sasl-mechanisms`` [PLAIN];
- any other header (the bare AMQP header of a client without SASL, the TLS header, a newer
  version, HTTP): this server's SASL header, then the socket is closed ("the server MUST send
  a protocol header with a supported protocol version and then close the socket");
- a mechanism other than PLAIN, or a PLAIN response that is not ``authzid NUL authcid NUL
  passwd`` in UTF-8 (RFC 4616): ``sasl-outcome`` code 1 (auth);
- a malformed or oversized SASL frame, or another performative than the one expected: the
  socket is closed (SASL has no frame that reports a framing error).
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from proton import UNDESCRIBED, Array, Data, DataException, Described, symbol, ubyte, ulong

SASL_HEADER = b"AMQP\x03\x01\x00\x00"
AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
FRAME_HEADER = struct.Struct(">IBBH")  # size, data offset (words), type, type-specific
AMQP_FRAME = 0x00
SASL_FRAME = 0x01

SASL_MECHANISMS = 0x40
SASL_INIT = 0x41
SASL_CHALLENGE = 0x42
SASL_RESPONSE = 0x43
SASL_OUTCOME = 0x44
NAMES = {SASL_MECHANISMS: "sasl-mechanisms", SASL_INIT: "sasl-init",
         SASL_CHALLENGE: "sasl-challenge", SASL_RESPONSE: "sasl-response",
         SASL_OUTCOME: "sasl-outcome"}
SYMBOLS = {f"amqp:{name}:list": code for code, name in NAMES.items()}

PLAIN = "PLAIN"


class Code(IntEnum):
    """sasl-code (AMQP 1.0 5.3.3.6)."""

    OK = 0
    AUTH = 1  # authentication failed: bad credentials
    SYS = 2  # a system error
    SYS_PERM = 3  # a permanent system error
    SYS_TEMP = 4  # a transient system error: the client may retry


class SaslError(Exception):
    """The SASL dialogue broke AMQP's rules: the connection is closed without an outcome."""


class WrongHeader(Exception):
    """The client's first 8 bytes are not the SASL header: it gets this server's SASL header
    and the socket is closed."""

    def __init__(self, header: bytes) -> None:
        super().__init__(f"protocol header {header!r}")
        self.header = header


@dataclass(frozen=True)
class Credentials:
    """What a PLAIN ``sasl-init`` carried; ``problem`` is set (and the rest may be empty) when
    the mechanism or the response cannot be accepted, with the reason."""

    mechanism: str
    username: str = ""
    password: str = ""
    authzid: str = ""
    hostname: str | None = None  # sasl-init's hostname field, when the client sent one
    problem: str | None = None


def frame(performative: int, fields: list[Any], *, frame_type: int = SASL_FRAME,
          channel: int = 0) -> bytes:
    """One frame: the described list ``performative`` with ``fields``, encoded by proton's
    codec. A SASL frame by default; the tests' raw clients make AMQP frames with it too."""
    data = Data()
    data.put_object(Described(ulong(performative), fields))
    body = bytes(data.encode())
    return FRAME_HEADER.pack(8 + len(body), 2, frame_type, channel) + body


def mechanisms_frame(offered: tuple[str, ...] = (PLAIN,)) -> bytes:
    descriptor: Any = UNDESCRIBED  # proton's stubs do not admit its own constant
    return frame(SASL_MECHANISMS, [Array(descriptor, Data.SYMBOL, *map(symbol, offered))])


def challenge_frame(challenge: bytes = b"") -> bytes:
    return frame(SASL_CHALLENGE, [challenge])


def outcome_frame(code: Code) -> bytes:
    return frame(SASL_OUTCOME, [ubyte(int(code))])


def init_frame(mechanism: str, response: bytes | None, hostname: str | None = None) -> bytes:
    """A client's ``sasl-init`` (the tests' raw clients send it)."""
    return frame(SASL_INIT, [symbol(mechanism), response, hostname])


def parse_header(size: int, doff: int, kind: int, limit: int) -> int:
    """The body's length of a SASL frame with this header; SaslError when it breaks 5.3.1."""
    if kind != SASL_FRAME:
        raise SaslError(f"a frame of type {kind:#04x} during SASL")
    if size > limit:
        raise SaslError(f"a SASL frame of {size} bytes (at most {limit} are read)")
    if doff < 2 or doff * 4 > size:
        raise SaslError(f"SASL frame data offset {doff} in a frame of {size} bytes")
    return size - 8


def parse_body(body: bytes, doff: int) -> tuple[int, list[Any]]:
    """The performative code and its fields, decoded with proton's codec; SaslError for
    anything that is not one SASL performative's described list."""
    data = Data()
    try:
        data.decode(body[doff * 4 - 8:])
        data.rewind()
        if not data.next():
            raise SaslError("an empty SASL frame")
        value = data.get_object()
    except DataException as exc:
        raise SaslError(f"a SASL frame that does not decode: {exc}") from None
    if not isinstance(value, Described) or not isinstance(value.value, list):
        raise SaslError("a SASL frame that is not a described list")
    descriptor = value.descriptor
    code = SYMBOLS.get(descriptor) if isinstance(descriptor, symbol) else descriptor
    if not isinstance(code, int) or code not in NAMES:
        raise SaslError(f"SASL performative {descriptor!r}")
    # Proton decodes binary as a memoryview into the Data's own buffer, which is freed with
    # it: copied out before ``data`` goes.
    return int(code), [bytes(f) if isinstance(f, memoryview) else f for f in value.value]


def read_init(fields: list[Any]) -> tuple[str, bytes | None, str | None]:
    """sasl-init's (mechanism, initial-response, hostname)."""
    mechanism = fields[0] if fields else None
    if not isinstance(mechanism, str):
        raise SaslError("sasl-init without a mechanism")
    response = fields[1] if len(fields) > 1 else None
    hostname = fields[2] if len(fields) > 2 else None
    if response is not None:
        response = _binary(response, "sasl-init's initial-response")
    return str(mechanism), response, hostname if isinstance(hostname, str) else None


def _binary(value: Any, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise SaslError(f"{what} is not binary")
    return value


def read_response(fields: list[Any]) -> bytes:
    """sasl-response's response (mandatory binary)."""
    if not fields or fields[0] is None:
        raise SaslError("sasl-response without a response")
    return _binary(fields[0], "sasl-response's response")


def plain(response: bytes, hostname: str | None = None) -> Credentials:
    """A PLAIN response (RFC 4616: ``[authzid] NUL authcid NUL passwd``, UTF-8)."""
    parts = response.split(b"\x00")
    if len(parts) != 3:
        return Credentials(PLAIN, hostname=hostname,
                           problem="a PLAIN response is authzid NUL authcid NUL passwd")
    try:
        authzid, username, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        return Credentials(PLAIN, hostname=hostname, problem="a PLAIN response is UTF-8")
    if not username:
        return Credentials(PLAIN, hostname=hostname, problem="an empty PLAIN user name")
    return Credentials(PLAIN, username, password, authzid, hostname)


def describe_header(header: bytes) -> str:
    """What a wrong protocol header is, for the journal."""
    if header == AMQP_HEADER:
        return "the AMQP header without SASL"
    if header[:5] == b"AMQP\x02":
        return "the TLS protocol header (AMQP-negotiated TLS is not served)"
    if header[:4] == b"AMQP":
        return f"an unsupported AMQP protocol header {header!r}"
    return f"not an AMQP protocol header: {header!r}"


async def read_frame(reader: asyncio.StreamReader, limit: int) -> tuple[int, list[Any]]:
    """One SASL frame from ``reader``: (performative code, fields)."""
    head = await reader.readexactly(8)
    size, doff, kind, _ = FRAME_HEADER.unpack(head)
    body = await reader.readexactly(parse_header(size, doff, kind, limit))
    return parse_body(body, doff)


async def dialogue(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                   limit: int) -> Credentials:
    """The server's side of the dialogue, once the client's SASL header was read, up to the
    credentials: this server's header and ``sasl-mechanisms``, then ``sasl-init`` (and an
    empty ``sasl-challenge`` answered by a ``sasl-response`` when the init carried no initial
    response, RFC 4616 section 2). SaslError when the client breaks the protocol; the
    outcome is the caller's to send."""
    writer.write(SASL_HEADER + mechanisms_frame())
    code, fields = await read_frame(reader, limit)
    if code != SASL_INIT:
        raise SaslError(f"{NAMES[code]} where sasl-init was expected")
    mechanism, response, hostname = read_init(fields)
    if mechanism != PLAIN:
        return Credentials(mechanism, hostname=hostname,
                           problem=f"mechanism {mechanism} is not offered (PLAIN is)")
    if response is None:
        writer.write(challenge_frame())
        code, fields = await read_frame(reader, limit)
        if code != SASL_RESPONSE:
            raise SaslError(f"{NAMES[code]} where sasl-response was expected")
        response = read_response(fields)
    return plain(response, hostname)

"""MQTT 3.1.1 on the wire, for every side of the farm that speaks it: the constants, the reader
of a packet's fields, the remaining-length code and an encoder for each packet. The broker,
the client, the benchmark and the tests all build their bytes here, so a packet is written one
way only (amqtt's single codec, ``amqtt/codecs_amqtt.py``, shared by its broker and client, is
the model).

The encoders take raw knobs (the CONNECT's flags byte, protocol name and level, bytes after
the payload; a PUBLISH's fixed-header flags) so that a hostile test can build a packet MQTT
forbids with the same code that builds the good ones.
"""

from __future__ import annotations

import struct

# CONNACK return codes (MQTT 3.1.1 table 3.1).
ACCEPTED = 0
UNACCEPTABLE_PROTOCOL = 1
IDENTIFIER_REJECTED = 2
SERVER_UNAVAILABLE = 3
BAD_CREDENTIALS = 4
NOT_AUTHORIZED = 5
# Not a CONNACK code: what ``authenticate`` returns to close the connection without a CONNACK.
DROP = -1

SUBSCRIBE_FAILURE = 0x80

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

# The protocol levels served, by protocol name (MQTT 3.1.1 section 3.1.2.1-2).
PROTOCOL_LEVELS = {"MQTT": 4, "MQIsdp": 3}

# Packet types whose fixed-header flags are fixed, and the value [MQTT-2.2.2-1]; others than
# these close the connection [MQTT-2.2.2-2]. PUBLISH's flags carry DUP, QoS and RETAIN.
FIXED_FLAGS = {CONNECT: 0, PUBACK: 0, PUBREC: 0, PUBREL: 2, PUBCOMP: 0, SUBSCRIBE: 2,
               UNSUBSCRIBE: 2, PINGREQ: 0, DISCONNECT: 0}
PACKET_NAMES = {CONNECT: "CONNECT", CONNACK: "CONNACK", PUBLISH: "PUBLISH", PUBACK: "PUBACK",
                PUBREC: "PUBREC", PUBREL: "PUBREL", PUBCOMP: "PUBCOMP", SUBSCRIBE: "SUBSCRIBE",
                SUBACK: "SUBACK", UNSUBSCRIBE: "UNSUBSCRIBE", UNSUBACK: "UNSUBACK",
                PINGREQ: "PINGREQ", PINGRESP: "PINGRESP", DISCONNECT: "DISCONNECT"}

# The packets with no variable header nor payload, whole.
PINGREQ_PACKET = b"\xc0\x00"
PINGRESP_PACKET = b"\xd0\x00"
DISCONNECT_PACKET = b"\xe0\x00"


class MalformedPacket(Exception):
    """A packet that breaks MQTT 3.1.1: the connection is closed (MQTT-4.8.0-1)."""


# -- reading ---------------------------------------------------------------------------------
class Reader:
    """Fields of one packet's body, each checked against the bytes there are."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n > self.left():
            raise MalformedPacket("packet shorter than its fields")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = struct.unpack("!H", self.take(2))[0]
        return value

    def binary(self) -> bytes:
        return self.take(self.u16())

    def text(self) -> str:
        raw = self.binary()
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPacket("string is not UTF-8") from None
        if "\x00" in value:
            raise MalformedPacket("string holds U+0000")  # MQTT-1.5.3-2
        return value

    def packet_id(self) -> int:
        packet_id = self.u16()
        if not packet_id:
            raise MalformedPacket("packet identifier 0")  # MQTT-2.3.1-1
        return packet_id

    def varint(self) -> int:
        """An MQTT 5.0 variable byte integer (the length of a property block)."""
        value, shift = 0, 0
        for _ in range(4):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise MalformedPacket("variable byte integer longer than 4 bytes")


def peek_v5(r: Reader) -> tuple[str | None, str | None]:
    """The client id and user name of an MQTT 5.0 CONNECT read up to its connect flags, for
    the journal of its refusal (MQTT 5.0 section 3.1: properties after the keep-alive and
    before the will topic), or Nones where it is not what 5.0 says."""
    try:
        cflags = r.u8()
        r.u16()  # keep-alive
        r.take(r.varint())  # properties
        client_id = r.text()
        if cflags & 0x04:
            r.take(r.varint())  # will properties
            r.text()
            r.binary()
        return client_id, r.text() if cflags & 0x80 else None
    except MalformedPacket:
        return None, None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 filter matching (4.7); ``+``/``#`` at the start do not match ``$`` topics."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    fparts = topic_filter.split("/")
    tparts = topic.split("/")
    for i, part in enumerate(fparts):
        if part == "#":
            return True
        if i >= len(tparts) or (part != "+" and part != tparts[i]):
            return False
    return len(fparts) == len(tparts)


def valid_filter(topic_filter: str) -> bool:
    """Whether a SUBSCRIBE's filter is one MQTT allows (4.7.1: wildcards whole levels)."""
    if not topic_filter or "\x00" in topic_filter:
        return False
    parts = topic_filter.split("/")
    for i, part in enumerate(parts):
        if "#" in part and (part != "#" or i != len(parts) - 1):
            return False
        if "+" in part and part != "+":
            return False
    return True


# -- writing ---------------------------------------------------------------------------------
def remaining_length(n: int) -> bytes:
    """MQTT's variable-length encoding of a packet's remaining length (2.2.3)."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(kind: int, flags: int, body: bytes) -> bytes:
    """A whole packet: fixed header (type, flags, remaining length) and ``body``."""
    return bytes([(kind << 4) | flags]) + remaining_length(len(body)) + body


def text(value: str | bytes) -> bytes:
    """A length-prefixed string (1.5.3); bytes go as they are (a hostile test's bad UTF-8)."""
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(raw)) + raw


def encode_connect(client_id: str | bytes, *, username: str | bytes | None = None,
                   password: str | bytes | None = None, keep_alive: int = 60,
                   clean_session: bool = True, flags: int | None = None,
                   protocol: bytes = b"MQTT", level: int = 4, tail: bytes = b"") -> bytes:
    """A CONNECT. ``flags`` replaces the connect flags byte the other fields imply (a will,
    a reserved bit); ``tail`` goes after the payload as it is (a will, junk)."""
    if flags is None:
        flags = ((0x02 if clean_session else 0) | (0x80 if username is not None else 0)
                 | (0x40 if password is not None else 0))
    body = (text(protocol) + bytes([level, flags]) + struct.pack("!H", keep_alive)
            + text(client_id))
    if username is not None:
        body += text(username)
    if password is not None:
        body += text(password)
    return packet(CONNECT, 0, body + tail)


def encode_connack(code: int, *, session_present: bool = False) -> bytes:
    return packet(CONNACK, 0, bytes([int(session_present), code]))


def encode_publish(topic: str | bytes, payload: bytes, qos: int = 0, packet_id: int = 0, *,
                   flags: int | None = None) -> bytes:
    """A PUBLISH; ``flags`` replaces the fixed header's DUP/QoS/RETAIN bits (QoS 3, DUP on
    QoS 0), the packet id is written when ``qos`` is 1 or 2."""
    head = text(topic) + (struct.pack("!H", packet_id) if qos else b"")
    return packet(PUBLISH, qos << 1 if flags is None else flags, head + payload)


def encode_puback(packet_id: int) -> bytes:
    return b"\x40\x02" + packet_id.to_bytes(2, "big")


def encode_subscribe(packet_id: int, *filters: tuple[str, int]) -> bytes:
    """A SUBSCRIBE of ``(filter, requested QoS)`` pairs (none: one MQTT forbids)."""
    body = struct.pack("!H", packet_id) + b"".join(text(f) + bytes([q]) for f, q in filters)
    return packet(SUBSCRIBE, 2, body)


def encode_suback(packet_id: int, codes: bytes) -> bytes:
    return packet(SUBACK, 0, struct.pack("!H", packet_id) + codes)


def encode_unsubscribe(packet_id: int, *filters: str) -> bytes:
    return packet(UNSUBSCRIBE, 2, struct.pack("!H", packet_id) + b"".join(map(text, filters)))


def encode_unsuback(packet_id: int) -> bytes:
    return packet(UNSUBACK, 0, struct.pack("!H", packet_id))

"""Reading a CONNECT: the ``ConnectInfo`` a member's hooks are asked about, or the refusal of
a protocol level the broker does not serve (MQTT-3.1.2-2), whose CONNECT is read no further
than the journal needs.
"""

from __future__ import annotations

import uuid

from .hooks import ConnectInfo, Refusal
from .packets import (
    ACCEPTED,
    IDENTIFIER_REJECTED,
    PROTOCOL_LEVELS,
    UNACCEPTABLE_PROTOCOL,
    MalformedPacket,
    Reader,
    peek_v5,
)


class UnsupportedLevel(Exception):
    """A CONNECT of a protocol level this broker does not serve: CONNACK 1, then closed."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


def parse_connect(flags: int, body: bytes, *, peer: tuple[str, int], tls: bool,
                  certificate: bytes | None, protocol_levels: frozenset[int]
                  ) -> tuple[ConnectInfo, int]:
    """The CONNECT's ``ConnectInfo`` and the CONNACK code MQTT itself gives it (0, or 2 for
    an empty client id without clean session); ``UnsupportedLevel`` for a protocol level not
    in ``protocol_levels``, ``MalformedPacket`` for one that breaks 3.1.1."""
    r = Reader(body)
    protocol = r.text()
    level = r.u8()
    if protocol not in PROTOCOL_LEVELS:
        raise MalformedPacket(f"protocol name {protocol!r}")  # MQTT-3.1.2-1
    if PROTOCOL_LEVELS[protocol] != level or level not in protocol_levels:
        # MQTT-3.1.2-2: CONNACK 1 and close; the rest is read (best effort) for the
        # journal only, as the level's own layout.
        client_id, username = peek_v5(r) if level == 5 else (None, None)
        version = {3: "3.1", 4: "3.1.1", 5: "5.0"}.get(level, "unknown")
        served = " and ".join(f"{name} level {lv}" for name, lv in PROTOCOL_LEVELS.items()
                              if lv in protocol_levels)
        raise UnsupportedLevel(Refusal(
            peer, tls, UNACCEPTABLE_PROTOCOL,
            f"unacceptable protocol version: {protocol} level {level} (MQTT {version}); "
            f"this broker serves {served}", protocol, level, client_id, username))
    code = ACCEPTED
    cflags = r.u8()
    if cflags & 0x01 or flags:
        raise MalformedPacket("reserved CONNECT flag set")  # MQTT-3.1.2-3
    keep_alive = r.u16()
    client_id = r.text()
    will_topic = will_payload = None
    will_qos = (cflags >> 3) & 0x03
    if cflags & 0x04:
        will_topic = r.text()
        will_payload = r.binary()
        if will_qos == 3:
            raise MalformedPacket("will QoS 3")
    elif will_qos or cflags & 0x20:
        raise MalformedPacket("will QoS or retain without a will")  # MQTT-3.1.2-11/13
    if cflags & 0x40 and not cflags & 0x80:
        raise MalformedPacket("password without a user name")  # MQTT-3.1.2-22
    username = r.text() if cflags & 0x80 else None
    password = r.binary() if cflags & 0x40 else None
    if r.left():
        raise MalformedPacket("bytes after the CONNECT payload")
    clean = bool(cflags & 0x02)
    generated = False
    if not client_id:
        if not clean and code == ACCEPTED:
            code = IDENTIFIER_REJECTED  # MQTT-3.1.3-8
        client_id, generated = f"auto-{uuid.uuid4().hex}", True
    info = ConnectInfo(
        client_id=client_id, username=username, password=password, keep_alive=keep_alive,
        clean_session=clean, protocol_level=level, will_topic=will_topic,
        will_payload=will_payload, will_qos=will_qos, will_retain=bool(cflags & 0x20),
        peer=peer, tls=tls, peer_certificate=certificate,
        client_id_generated=generated)
    return info, code

"""RTP packetization of H.264 (RFC 6184, packetization-mode 1) and RTCP sender reports
(RFC 3550), done once per frame and shared: a ``PacketizedFrame`` holds the frame's packets
with a 12-byte RTP header whose sequence number, timestamp and SSRC each session writes into
its own copy (``struct.pack_into``), so a reader costs a copy, not a packetization.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..media import NAL_IDR, AccessUnit

PAYLOAD_TYPE = 96
CLOCK_RATE = 90_000
# Largest RTP payload: an Ethernet MTU less IP, UDP and RTP headers, with room to spare.
MAX_PAYLOAD = 1400
FU_A = 28
NTP_EPOCH = 2_208_988_800  # seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix)
_SEQ_TS_SSRC = struct.Struct(">HII")
_INTERLEAVED = struct.Struct(">cBH")


def nal_payloads(nal: bytes, limit: int = MAX_PAYLOAD) -> list[bytes]:
    """One NAL unit as RTP payloads: itself (a single NAL unit packet) when it fits, else
    FU-A fragments (FU indicator with the NAL's F and NRI bits, FU header with S/E and its
    type; the NAL header byte itself is not sent)."""
    if len(nal) <= limit:
        return [nal]
    indicator = (nal[0] & 0xE0) | FU_A
    kind = nal[0] & 0x1F
    body = nal[1:]
    step = limit - 2
    chunks = [body[i:i + step] for i in range(0, len(body), step)]
    payloads = []
    for i, chunk in enumerate(chunks):
        header = kind | (0x80 if i == 0 else 0) | (0x40 if i == len(chunks) - 1 else 0)
        payloads.append(bytes((indicator, header)) + chunk)
    return payloads


def header(marker: bool) -> bytes:
    """A header with V=2 and the payload type; sequence, timestamp and SSRC zero (each
    session writes its own)."""
    return bytes((0x80, (0x80 if marker else 0) | PAYLOAD_TYPE)) + bytes(10)


@dataclass(frozen=True)
class PacketizedFrame:
    """One access unit as RTP packets, in two layouts: ``udp`` (one datagram each) and
    ``tcp`` (all packets back to back, each framed ``$``, channel 0, length: RFC 2326 10.12);
    ``tcp_headers`` are the offsets of the RTP headers in ``tcp``."""

    idr: bool
    udp: tuple[bytes, ...]
    tcp: bytes
    tcp_headers: tuple[int, ...]
    payload_bytes: int  # RTP payload octets (RTCP's sender octet count)

    @property
    def packets(self) -> int:
        return len(self.udp)


def packetize(unit: AccessUnit, limit: int = MAX_PAYLOAD) -> PacketizedFrame:
    payloads = [p for nal in unit.nals for p in nal_payloads(nal, limit)]
    udp = []
    tcp = bytearray()
    offsets = []
    for i, payload in enumerate(payloads):
        packet = header(i == len(payloads) - 1) + payload
        udp.append(packet)
        tcp += _INTERLEAVED.pack(b"$", 0, len(packet))
        offsets.append(len(tcp))
        tcp += packet
    return PacketizedFrame(any(n[0] & 0x1F == NAL_IDR for n in unit.nals), tuple(udp),
                           bytes(tcp), tuple(offsets), sum(len(p) for p in payloads))


def stamp_tcp(frame: PacketizedFrame, channel: int, seq: int, timestamp: int,
              ssrc: int) -> bytearray:
    """The frame's interleaved bytes for one session, from sequence number ``seq``."""
    buf = bytearray(frame.tcp)
    pack = _SEQ_TS_SSRC.pack_into
    for i, offset in enumerate(frame.tcp_headers):
        if channel:
            buf[offset - 3] = channel
        pack(buf, offset + 2, (seq + i) & 0xFFFF, timestamp, ssrc)
    return buf


def stamp_udp(packet: bytes, seq: int, timestamp: int, ssrc: int) -> bytearray:
    buf = bytearray(packet)
    _SEQ_TS_SSRC.pack_into(buf, 2, seq & 0xFFFF, timestamp, ssrc)
    return buf


def ntp_time(unix: float) -> tuple[int, int]:
    """Seconds and fraction (1/2^32) of NTP time for a Unix time."""
    seconds = int(unix) + NTP_EPOCH
    return seconds & 0xFFFFFFFF, int((unix % 1.0) * (1 << 32)) & 0xFFFFFFFF


def sender_report(ssrc: int, unix: float, rtp_time: int, packets: int, octets: int,
                  cname: str) -> bytes:
    """An RTCP compound packet: SR (PT 200, no report blocks) and SDES with the CNAME
    (RFC 3550 6.1: every compound packet carries one)."""
    ntp_seconds, ntp_fraction = ntp_time(unix)
    sr = struct.pack(">BBHIIIIII", 0x80, 200, 6, ssrc, ntp_seconds, ntp_fraction,
                     rtp_time & 0xFFFFFFFF, packets & 0xFFFFFFFF, octets & 0xFFFFFFFF)
    name = cname.encode("utf-8")[:255]
    item = struct.pack(">IBB", ssrc, 1, len(name)) + name + b"\x00"
    item += b"\x00" * (-len(item) % 4)
    sdes = struct.pack(">BBH", 0x81, 202, len(item) // 4) + item
    return sr + sdes


def interleave(channel: int, packet: bytes) -> bytes:
    return _INTERLEAVED.pack(b"$", channel, len(packet)) + packet

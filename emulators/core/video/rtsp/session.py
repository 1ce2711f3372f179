"""One RTSP session: its transport (TCP-interleaved on the RTSP connection, or UDP from a
socket pair of the camera's own), its RTP state (random SSRC, sequence and timestamp
origin) and its delivery of the shared frames, with RTCP sender reports.

A session starts on a keyframe (SPS, PPS, IDR first); the ``idr_delay`` quirk makes it
start at once and leave out keyframes for that many seconds. A reader whose connection
cannot take the stream (more than ``MAX_BACKLOG`` bytes waiting) loses frames up to the
next keyframe that finds room: nothing is buffered without bound and nobody else waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .rtp import CLOCK_RATE, PacketizedFrame, interleave, sender_report, stamp_tcp, stamp_udp

if TYPE_CHECKING:
    from ..facts import StreamProfile
    from .source import StreamSource

MAX_BACKLOG = 512 * 1024
SR_INTERVAL = 5.0  # seconds between RTCP sender reports

READY = "ready"
PLAYING = "playing"


class TcpOutput:
    """RTP and RTCP framed on the RTSP connection (RFC 2326 10.12)."""

    kind = "tcp"

    def __init__(self, transport: asyncio.WriteTransport, channel: int) -> None:
        self.transport = transport
        self.channel = channel

    def transport_header(self, ssrc: int) -> str:
        return (f"RTP/AVP/TCP;unicast;interleaved={self.channel}-{self.channel + 1};"
                f"ssrc={ssrc:08X};mode=\"PLAY\"")

    def backlog(self) -> int:
        return self.transport.get_write_buffer_size()

    def closed(self) -> bool:
        return self.transport.is_closing()

    def send_frame(self, frame: PacketizedFrame, seq: int, timestamp: int, ssrc: int) -> int:
        data = stamp_tcp(frame, self.channel, seq, timestamp, ssrc)
        self.transport.write(data)
        return len(data)

    def send_rtcp(self, packet: bytes) -> int:
        data = interleave(self.channel + 1, packet)
        self.transport.write(data)
        return len(data)

    def close(self) -> None:
        pass  # the connection is the RTSP connection's own


class _RtcpIn(asyncio.DatagramProtocol):
    """The server's RTCP socket: receiver reports keep the session alive."""

    session: RtspSession | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.session is not None:
            self.session.touch()


class _Ignore(asyncio.DatagramProtocol):
    pass


class UdpOutput:
    """RTP and RTCP as datagrams from the server's pair of ports to the client's."""

    kind = "udp"

    def __init__(self, rtp: asyncio.DatagramTransport, rtcp: asyncio.DatagramTransport,
                 client: tuple[str, int, int]) -> None:
        self.rtp = rtp
        self.rtcp = rtcp
        self.host, self.rtp_port, self.rtcp_port = client

    @classmethod
    async def open_for(cls, host: str, peer: str, ports: tuple[int, int]) -> UdpOutput:
        """Two sockets on the camera's ``host``, on consecutive ports (even, odd) where the
        system lets us have them, as RTP/AVP expects; sending to ``peer``'s ``ports``."""
        loop = asyncio.get_running_loop()
        rtp: asyncio.DatagramTransport | None = None
        rtcp: asyncio.DatagramTransport | None = None
        for _ in range(16):
            rtp, _p = await loop.create_datagram_endpoint(_Ignore, local_addr=(host, 0))
            port = rtp.get_extra_info("sockname")[1]
            if port % 2 == 0 and port < 65535:
                try:
                    rtcp, _q = await loop.create_datagram_endpoint(
                        _RtcpIn, local_addr=(host, port + 1))
                    break
                except OSError:
                    pass
            rtp.close()
            rtp = None
        if rtp is None or rtcp is None:
            rtp, _p = await loop.create_datagram_endpoint(_Ignore, local_addr=(host, 0))
            rtcp, _q = await loop.create_datagram_endpoint(_RtcpIn, local_addr=(host, 0))
        return cls(rtp, rtcp, (peer, *ports))

    def bind(self, session: RtspSession) -> None:
        protocol = self.rtcp.get_protocol()
        if isinstance(protocol, _RtcpIn):
            protocol.session = session

    @property
    def server_ports(self) -> tuple[int, int]:
        return (self.rtp.get_extra_info("sockname")[1],
                self.rtcp.get_extra_info("sockname")[1])

    def transport_header(self, ssrc: int) -> str:
        a, b = self.server_ports
        return (f"RTP/AVP;unicast;client_port={self.rtp_port}-{self.rtcp_port};"
                f"server_port={a}-{b};ssrc={ssrc:08X};mode=\"PLAY\"")

    def backlog(self) -> int:
        # The selector transports keep what the socket refused (EAGAIN) and say how much.
        size: Callable[[], int] = getattr(self.rtp, "get_write_buffer_size", lambda: 0)
        return size()

    def closed(self) -> bool:
        return self.rtp.is_closing()

    def send_frame(self, frame: PacketizedFrame, seq: int, timestamp: int, ssrc: int) -> int:
        sent = 0
        address = (self.host, self.rtp_port)
        for i, packet in enumerate(frame.udp):
            data = stamp_udp(packet, seq + i, timestamp, ssrc)
            self.rtp.sendto(data, address)
            sent += len(data)
        return sent

    def send_rtcp(self, packet: bytes) -> int:
        self.rtcp.sendto(packet, (self.host, self.rtcp_port))
        return len(packet)

    def close(self) -> None:
        self.rtp.close()
        self.rtcp.close()


Output = TcpOutput | UdpOutput


class RtspSession:
    def __init__(self, session_id: str, profile: StreamProfile, source: StreamSource,
                 output: Output, *, client: str, cname: str,
                 camera_time: Any, idr_delay: float) -> None:
        loop = asyncio.get_running_loop()
        self.id = session_id
        self.profile = profile
        self.source = source
        self.output = output
        self.client = client
        self.cname = cname
        self.camera_time = camera_time  # the camera's clock (RTCP's NTP time)
        self.idr_delay = idr_delay
        self.state = READY
        self.ssrc = secrets.randbits(32)
        self.seq = secrets.randbits(16)
        self.ts0 = secrets.randbits(32)
        self.t0 = loop.time()
        self.last_seen = self.t0
        self.wait_key = True
        self.idr_until: float | None = None
        self.next_sr = 0.0
        self.packets = 0
        self.octets = 0  # RTP payload octets (RTCP)
        self.bytes_sent = 0  # everything on the wire: framing, headers, RTCP
        self.frames = 0
        self.dropped = 0
        self.on_closed: Any = None  # the server's hook when the output goes away
        self.ended = False

    def touch(self) -> None:
        self.last_seen = asyncio.get_running_loop().time()

    def rtp_time(self, when: float) -> int:
        return (self.ts0 + int((when - self.t0) * CLOCK_RATE)) & 0xFFFFFFFF

    def play(self) -> None:
        if self.state == PLAYING:
            return
        self.state = PLAYING
        now = asyncio.get_running_loop().time()
        if self.idr_delay > 0 and self.frames == 0:
            self.wait_key = False
            self.idr_until = now + self.idr_delay
        else:
            self.wait_key = True
        self.next_sr = 0.0
        self.source.add(self)

    def pause(self) -> None:
        if self.state == PLAYING:
            self.state = READY
            self.source.remove(self)

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        self.state = READY
        self.source.remove(self)
        self.output.close()

    def stats(self) -> dict[str, Any]:
        return {"session": self.id, "bytes": self.bytes_sent, "packets": self.packets,
                "frames": self.frames, "dropped_frames": self.dropped,
                "transport": self.output.kind}

    def on_frame(self, frame: PacketizedFrame, when: float) -> None:
        if self.state != PLAYING:
            return
        output = self.output
        if output.closed():
            self.source.remove(self)
            if self.on_closed is not None:
                self.on_closed(self)
            return
        if self.idr_until is not None:
            if when < self.idr_until:
                if frame.idr:
                    return
            else:
                self.idr_until = None
        elif self.wait_key:
            if not frame.idr:
                return
            self.wait_key = False
        if output.backlog() > MAX_BACKLOG:
            self.wait_key = True
            self.idr_until = None
            self.dropped += 1
            return
        timestamp = self.rtp_time(when)
        if when >= self.next_sr:
            self.next_sr = when + SR_INTERVAL
            report = sender_report(self.ssrc, self.camera_time(), timestamp, self.packets,
                                   self.octets, self.cname)
            self.bytes_sent += output.send_rtcp(report)
        self.bytes_sent += output.send_frame(frame, self.seq, timestamp, self.ssrc)
        self.seq = (self.seq + frame.packets) & 0xFFFF
        self.packets += frame.packets
        self.octets += frame.payload_bytes
        self.frames += 1


def close_quietly(transport: asyncio.BaseTransport) -> None:
    with contextlib.suppress(Exception):
        transport.close()

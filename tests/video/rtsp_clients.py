"""Clients the video tests share: a raw RTSP client over a blocking socket (TCP-interleaved
RTP, as a camera viewer reads it), an RTP/H.264 depacketizer (RFC 6184) and a JPEG size
reader."""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import struct
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from emulators.core.video.digest import parse_params
from emulators.testing import RunningFarm

# The farm of the RTSP and snapshot tests (conftest's ``rtsp_farm``): both kinds as shipped,
# and an INSTAR whose quirks refuse UDP and hold back keyframes, with the shortest session
# timeout.
RTSP_SCENARIO = {"version": 1, "name": "rtsp", "emulators": [
    {"name": "cam", "kind": "instar-camera", "port": 0},
    {"name": "acti", "kind": "acti-camera", "port": 0},
    {"name": "quirky", "kind": "instar-camera", "port": 0,
     "video": {"rtsp_session_timeout": 5,
               "quirks": {"rtsp_udp": False, "idr_delay": 1.5}}},
]}
RTSP_LOGINS = {"cam": ("admin", "instar"), "acti": ("admin", "123456"),
               "quirky": ("admin", "instar")}


def rtsp_stream_url(farm: RunningFarm, name: str, profile: int = 0) -> str:
    """The RTSP URL of a camera's profile, as its ONVIF GetStreamUri would give it."""
    return str(farm[name].call(lambda m: m.video.rtsp_url(m.video.facts.profiles[profile])))


def rtsp_profile_size(farm: RunningFarm, name: str, profile: int = 0) -> tuple[int, int]:
    found = farm[name].call(lambda m: m.video.facts.profiles[profile])
    return found.width, found.height


def with_credentials(url: str, user: str, password: str) -> str:
    return url.replace("rtsp://", f"rtsp://{user}:{password}@", 1)


@dataclass
class RtspReply:
    status_line: str
    headers: dict[str, str]
    body: bytes

    @property
    def status(self) -> int:
        return int(self.status_line.split(" ", 2)[1])

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class RtpPacket:
    marker: bool
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes


@dataclass
class RtpFrame:
    """The packets of one access unit (one timestamp) and its NAL units, reassembled."""

    timestamp: int
    packets: list[RtpPacket] = field(default_factory=list)
    nals: list[bytes] = field(default_factory=list)

    @property
    def nal_types(self) -> list[int]:
        return [n[0] & 0x1F for n in self.nals]


def parse_rtp(data: bytes) -> RtpPacket:
    assert data[0] >> 6 == 2, "RTP version 2"
    assert not data[0] & 0x30, "no padding, no extension"
    seq, timestamp, ssrc = struct.unpack(">HII", data[2:12])
    start = 12 + 4 * (data[0] & 0x0F)
    return RtpPacket(bool(data[1] & 0x80), data[1] & 0x7F, seq, timestamp, ssrc, data[start:])


def depacketize(packets: list[RtpPacket]) -> list[RtpFrame]:
    """RFC 6184 packetization-mode 1 back to access units: single NAL unit packets and FU-A
    fragments (asserting the S/E bits are in order); STAP-A is not expected."""
    frames: list[RtpFrame] = []
    fragment: bytearray | None = None
    for packet in packets:
        if not frames or frames[-1].timestamp != packet.timestamp:
            frames.append(RtpFrame(packet.timestamp))
        frame = frames[-1]
        frame.packets.append(packet)
        payload = packet.payload
        kind = payload[0] & 0x1F
        if kind == 28:
            start, end = payload[1] & 0x80, payload[1] & 0x40
            if start:
                assert fragment is None, "an FU-A start inside a fragmented NAL"
                fragment = bytearray([(payload[0] & 0xE0) | (payload[1] & 0x1F)])
            assert fragment is not None, "an FU-A fragment without its start"
            fragment += payload[2:]
            if end:
                frame.nals.append(bytes(fragment))
                fragment = None
        else:
            assert 1 <= kind <= 23, f"unexpected RTP payload NAL type {kind}"
            frame.nals.append(payload)
    return frames


class RawRtspClient:
    """A blocking RTSP client speaking to one URL; Basic or Digest credentials answer a 401
    by themselves. Interleaved frames that arrive between replies are kept in ``frames``."""

    def __init__(self, url: str, user: str | None = None, password: str | None = None,
                 *, timeout: float = 15.0) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 554
        self.user = user
        self.password = password
        self.sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self.buffer = b""
        self.cseq = 0
        self.session: str | None = None
        self.authorization: tuple[str, dict[str, str]] | None = None
        self.frames: list[tuple[int, bytes]] = []  # (channel, payload)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawRtspClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- bytes -------------------------------------------------------------------------------
    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def _take_interleaved(self) -> tuple[int, bytes] | None:
        if len(self.buffer) < 4:
            return None
        length = struct.unpack(">H", self.buffer[2:4])[0]
        if len(self.buffer) < 4 + length:
            return None
        channel = self.buffer[1]
        payload = self.buffer[4:4 + length]
        self.buffer = self.buffer[4 + length:]
        return channel, payload

    def read_reply(self) -> RtspReply:
        while True:
            if self.buffer[:1] == b"$":
                frame = self._take_interleaved()
                if frame is not None:
                    self.frames.append(frame)
                    continue
            elif b"\r\n\r\n" in self.buffer:
                head, _, rest = self.buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    key = name.strip().lower()
                    # A repeated header (two WWW-Authenticate) is kept joined by a newline.
                    headers[key] = (headers[key] + "\n" if key in headers else "") + \
                        value.strip()
                length = int(headers.get("content-length", "0"))
                while len(rest) < length:
                    self.buffer = head + b"\r\n\r\n" + rest
                    if not self._fill():
                        raise ConnectionError("closed inside a reply body")
                    head, _, rest = self.buffer.partition(b"\r\n\r\n")
                self.buffer = rest[length:]
                return RtspReply(lines[0], headers, rest[:length])
            if not self._fill():
                raise ConnectionError("connection closed")

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    # -- requests ----------------------------------------------------------------------------
    def request(self, method: str, url: str | None = None,
                headers: dict[str, str] | None = None, *, auth: bool = True) -> RtspReply:
        url = url or self.url
        reply = self._send(method, url, headers, auth)
        if reply.status == 401 and auth and self.user is not None and \
                self.authorization is None:
            challenges = (reply.header("www-authenticate") or "").split("\n")
            digest = next((c for c in challenges if c.startswith("Digest")), None)
            if digest is not None:
                self.authorization = ("Digest", parse_params(digest[len("Digest"):]))
            else:
                self.authorization = ("Basic", {})
            reply = self._send(method, url, headers, auth)
        return reply

    def _send(self, method: str, url: str, headers: dict[str, str] | None,
              auth: bool) -> RtspReply:
        self.cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self.cseq}",
                 "User-Agent: raw-rtsp-test"]
        if self.session is not None:
            lines.append(f"Session: {self.session}")
        if auth and self.authorization is not None:
            lines.append(f"Authorization: {self._authorization(method, url)}")
        lines.extend(f"{k}: {v}" for k, v in (headers or {}).items())
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return self.read_reply()

    def _authorization(self, method: str, url: str) -> str:
        assert self.authorization is not None and self.user is not None
        assert self.password is not None
        scheme, params = self.authorization
        if scheme == "Basic":
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            return f"Basic {token}"

        def md5(text: str) -> str:
            return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

        realm, nonce = params["realm"], params["nonce"]
        ha1 = md5(f"{self.user}:{realm}:{self.password}")
        ha2 = md5(f"{method}:{url}")
        cnonce, nc = "0a4f113b", f"{self.cseq:08x}"
        response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        return (f'Digest username="{self.user}", realm="{realm}", nonce="{nonce}", '
                f'uri="{url}", response="{response}", qop=auth, nc={nc}, '
                f'cnonce="{cnonce}", algorithm=MD5')

    def setup_tcp(self) -> RtspReply:
        """DESCRIBE, then SETUP of its track over TCP-interleaved channels 0-1."""
        described = self.request("DESCRIBE", headers={"Accept": "application/sdp"})
        assert described.status == 200, described.status_line
        base = described.header("content-base") or self.url
        control = re.search(r"^a=control:(trackID=\d+)", described.body.decode(), re.M)
        assert control is not None
        self.track = base + control.group(1)
        reply = self.request("SETUP", self.track,
                             {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"})
        if reply.status == 200:
            self.session = (reply.header("session") or "").split(";")[0]
        return reply

    def read_interleaved(self, deadline: float) -> tuple[int, bytes] | None:
        """The next interleaved frame, or None at ``deadline`` (time.monotonic) or EOF."""
        if self.frames:
            return self.frames.pop(0)
        while True:
            if self.buffer[:1] == b"$":
                frame = self._take_interleaved()
                if frame is not None:
                    return frame
            elif self.buffer:
                raise AssertionError(f"not an interleaved frame: {self.buffer[:40]!r}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                if not self._fill():
                    return None
            except TimeoutError:
                return None

    def collect(self, seconds: float, *, frames: int | None = None
                ) -> tuple[list[RtpPacket], list[bytes]]:
        """RTP packets (channel 0) and RTCP packets (channel 1) for up to ``seconds``, or
        until ``frames`` marker bits were seen."""
        rtp: list[RtpPacket] = []
        rtcp: list[bytes] = []
        deadline = time.monotonic() + seconds
        markers = 0
        while frames is None or markers < frames:
            got = self.read_interleaved(deadline)
            if got is None:
                break
            channel, payload = got
            if channel == 0:
                packet = parse_rtp(payload)
                rtp.append(packet)
                markers += packet.marker
            elif channel == 1:
                rtcp.append(payload)
        return rtp, rtcp


def jpeg_size(data: bytes) -> tuple[int, int]:
    """Width and height from a JPEG's SOF0 (baseline) or SOF2 (progressive) marker."""
    assert data[:2] == b"\xff\xd8", "no JPEG SOI"
    pos = 2
    while pos + 4 <= len(data):
        assert data[pos] == 0xFF, f"no marker at {pos}"
        marker = data[pos + 1]
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if marker in (0xC0, 0xC2):
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return width, height
        pos += 2 + length
    raise AssertionError("no SOF marker")

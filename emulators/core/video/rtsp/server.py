"""The camera's RTSP server (RFC 2326): one listener per camera, the profiles' paths, Digest
(and Basic where the vendor takes it) against the camera's users, sessions over
TCP-interleaved or UDP unicast fed by the shared stream sources (source.py).

Requests are read under bounds (line length, header count and size, body size); what does
not parse gets RTSP's own status, and bytes that are no RTSP at all a closed connection.
A session's liveness is any request or RTCP packet within ``rtsp_session_timeout`` seconds
of wall time (the event loop's clock). Sessions belong to the connection that set them up
and end with it (TEARDOWN, the client's close, a timeout or a fault).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ...faults import RTSP_FAULTS
from ...tasks import listening_address
from ..digest import Credentials
from .messages import (
    MAX_LINE,
    METHODS,
    OTHER_METHODS,
    REASONS,
    BadRequest,
    Reply,
    Request,
    pair,
    parse_transports,
    read_request,
)
from .sdp import TRACK, describe
from .session import PLAYING, RtspSession, TcpOutput, UdpOutput
from .source import sources

if TYPE_CHECKING:
    from ..facts import StreamProfile
    from ..wing import VideoWing

log = logging.getLogger("emulators.video.rtsp")

# A client that sends requests without reading the replies is closed past this.
MAX_REPLY_BACKLOG = 1024 * 1024
LINGER_BYTES = 1024 * 1024  # read and dropped after a request that closes the connection


class RtspServer:
    def __init__(self, wing: VideoWing) -> None:
        self.wing = wing
        self.port: int | None = None
        self.sessions: dict[str, RtspSession] = {}
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._reaper: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(
            self._serve, host or None, port, limit=MAX_LINE, reuse_address=True,
            backlog=512)
        self.port = listening_address(self._server, f"{self.wing.name} RTSP")[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.close("the camera stopped")
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    def session_count(self) -> int:
        return len(self.sessions)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(self, reader, writer)
        self._connections.add(connection)
        try:
            await connection.run()
        except Exception:  # a bug here costs this connection only, never the listener
            log.exception("%s: RTSP connection failed", self.wing.name)
        finally:
            connection.close("connection closed")
            self._connections.discard(connection)

    # -- sessions ------------------------------------------------------------------------------
    def add_session(self, session: RtspSession) -> None:
        self.sessions[session.id] = session
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(
                self._reap(), name=f"{self.wing.name}-rtsp-timeouts")

    async def _reap(self) -> None:
        loop = asyncio.get_running_loop()
        while self.sessions:
            await asyncio.sleep(1.0)
            limit = self.wing.options.rtsp_session_timeout
            now = loop.time()
            for session in list(self.sessions.values()):
                if now - session.last_seen > limit:
                    owner = next((c for c in self._connections if session.id in c.sessions),
                                 None)
                    self.end_session(session, "timeout", client=session.client)
                    if owner is not None:
                        owner.sessions.pop(session.id, None)
                    if owner is not None and not owner.sessions:
                        owner.close("session timed out")

    def end_session(self, session: RtspSession, event: str, *, client: str,
                    reason: str | None = None) -> None:
        if session.ended:
            return
        session.end()
        self.sessions.pop(session.id, None)
        detail = session.stats()
        if reason:
            detail["reason"] = reason
        self.wing.record("rtsp", event, client=client, path=session.profile.rtsp_path,
                         detail=detail)


class Connection:
    """One client's RTSP connection: its requests in order, its sessions."""

    def __init__(self, server: RtspServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.wing = server.wing
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.peer_host = str(peer[0])
        self.client = f"{peer[0]}:{peer[1]}"
        sock = writer.get_extra_info("sockname") or ("127.0.0.1", 0)
        self.local_host = str(sock[0])
        self.sessions: dict[str, RtspSession] = {}
        self.authenticated = False
        self.credentials: Credentials | None = None
        self.closed = False
        self._drop: asyncio.TimerHandle | None = None

    # -- the loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        while not self.closed:
            idle = None if self.sessions else float(self.wing.options.rtsp_session_timeout)
            try:
                first = await asyncio.wait_for(self.reader.readexactly(1), idle)
                if first == b"$":
                    head = await self.reader.readexactly(3)
                    # An interleaved frame from the client (RTCP receiver reports): read,
                    # counted as liveness, otherwise ignored.
                    await self.reader.readexactly(int.from_bytes(head[1:3], "big"))
                    self.touch()
                    continue
                if first in b"\r\n":  # stray line ends between requests
                    continue
                request = await read_request(self.reader, first)
            except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
                return
            except BadRequest as bad:
                if bad.status is not None:
                    self.send(Reply(bad.status), None)
                self.refused(bad.status, bad.reason, None)
                await self.linger()
                return
            self.touch()
            if self.writer.transport.get_write_buffer_size() > MAX_REPLY_BACKLOG:
                return
            if not await self.handle(request):
                return

    async def linger(self) -> None:
        """Half-close and read what the client still sends (up to a bound, for a moment)
        before closing: a close with unread bytes would reset the connection, and the
        client would lose the status it was just sent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        received = 0
        with contextlib.suppress(Exception):
            if self.writer.can_write_eof():
                self.writer.write_eof()
            while received < LINGER_BYTES and (left := deadline - loop.time()) > 0:
                chunk = await asyncio.wait_for(self.reader.read(65536), left)
                if not chunk:
                    break
                received += len(chunk)

    def touch(self) -> None:
        for session in self.sessions.values():
            session.touch()

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        if self._drop is not None:
            self._drop.cancel()
        for session in list(self.sessions.values()):
            self.server.end_session(session, "teardown", client=self.client, reason=reason)
        self.sessions.clear()
        with contextlib.suppress(Exception):
            self.writer.close()

    # -- replies -------------------------------------------------------------------------------
    def send(self, reply: Reply, cseq: str | None) -> None:
        lines = [f"RTSP/1.0 {reply.status} {REASONS.get(reply.status, 'Error')}"]
        if cseq is not None:
            lines.append(f"CSeq: {cseq}")
        lines.append(f"Date: {email.utils.formatdate(self.wing.camera_time(), usegmt=True)}")
        lines.append(f"Server: {self.server_name}")
        lines.extend(f"{k}: {v}" for k, v in reply.headers)
        if reply.body:
            lines.append(f"Content-Length: {len(reply.body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
        if not self.writer.transport.is_closing():
            self.writer.write(head + reply.body)

    @property
    def server_name(self) -> str:
        identity = self.wing.facts.identity
        return f"{identity.manufacturer} {identity.model} RTSP Server"

    def refused(self, status: int | None, reason: str, request: Request | None,
                path: str | None = None) -> None:
        self.wing.record("rtsp", "refused", client=self.client, status=status,
                         method=request.method if request else None, path=path,
                         detail={"reason": reason})

    # -- requests ------------------------------------------------------------------------------
    async def handle(self, request: Request) -> bool:
        """Answer ``request``; False closes the connection."""
        cseq = request.header("cseq")
        if cseq is None or not cseq.strip().isdigit():
            self.send(Reply(400), None)
            self.refused(400, "no CSeq", request)
            return True
        if request.version != "RTSP/1.0":
            self.send(Reply(505), cseq)
            self.refused(505, f"version {request.version}", request)
            return True
        method = request.method
        path = self.url_path(request.url)
        rule = self.wing.fault("rtsp", RTSP_FAULTS, command=method, path=path)
        if rule is not None:
            self.wing.record("rtsp", "fault", client=self.client, method=method, path=path,
                             detail={"fault": rule.fault, "rule": rule.id, "command": method,
                                     "seconds": rule.seconds})
            if not rule.seconds:
                self.close(f"fault rule {rule.id}")
                return False
            if self._drop is None:
                self._drop = asyncio.get_running_loop().call_later(
                    rule.seconds, self.close, f"fault rule {rule.id}")
        if method not in METHODS:
            if method in OTHER_METHODS:
                self.send(Reply(405, [("Allow", ", ".join(METHODS))]), cseq)
            else:
                self.send(Reply(501), cseq)
            return True
        if method == "OPTIONS":
            self.send(Reply(200, [("Public", ", ".join(METHODS))]), cseq)
            return True
        if not self.authorize(request, cseq, path):
            return True
        found = self.resolve(path)
        if found is None and method in ("DESCRIBE", "SETUP"):
            self.send(Reply(404), cseq)
            self.refused(404, "no such stream", request, path)
            return True
        handler = getattr(self, f"do_{method.lower()}")
        reply: Reply = await handler(request, found, path)
        self.send(reply, cseq)
        if reply.after is not None:
            reply.after()
        return True

    def url_path(self, url: str) -> str:
        if url == "*":
            return "*"
        try:
            parts = urlsplit(url)
        except ValueError:
            return url
        return parts.path or "/"

    def resolve(self, path: str) -> tuple[StreamProfile, bool] | None:
        """The profile a URL path names, and whether it names the track (not the aggregate)."""
        bare = path.rstrip("/")
        for profile in self.wing.facts.profiles:
            base = profile.rtsp_path.rstrip("/")
            if bare == base:
                return profile, False
            if bare == f"{base}/{TRACK}":
                return profile, True
        return None

    def base_url(self, request: Request, profile: StreamProfile) -> str:
        """The aggregate URL as the client addressed the camera (credentials left out)."""
        try:
            parts = urlsplit(request.url)
            host = parts.hostname
            port = parts.port
        except ValueError:
            host, port = None, None
        if not host:
            host, port = self.local_host, self.server.port
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{port}" if port else host
        return f"rtsp://{netloc}{profile.rtsp_path.rstrip('/')}/"

    # -- authentication ------------------------------------------------------------------------
    def authorize(self, request: Request, cseq: str, path: str) -> bool:
        header = request.header("authorization")
        facts = self.wing.facts
        if header and header.strip().lower().startswith("basic") and not facts.rtsp_basic:
            verdict: Any = None
        else:
            verdict = self.wing.auth.check(request.method, header, self._password_of)
        if verdict is False and self.authenticated:
            verdict = True  # a stale nonce mid-session: the session was let in already
        if verdict:
            self.authenticated = True
            if isinstance(verdict, Credentials):
                self.credentials = verdict
            return True
        challenges = self.wing.auth.challenges(stale=verdict is False)
        if not facts.rtsp_basic:
            challenges = [c for c in challenges if not c.startswith("Basic")]
        self.send(Reply(401, [("WWW-Authenticate", c) for c in challenges]), cseq)
        if header:
            self.refused(401, "stale nonce" if verdict is False else "wrong credentials",
                         request, path)
        return False

    def _password_of(self, name: str) -> str | None:
        user = self.wing.facts.user(name)
        return user.password if user is not None else None

    def session_of(self, request: Request) -> RtspSession | None | str:
        """The request's session; None without a Session header; "unknown" for an id that
        names no session of this camera."""
        header = request.header("session")
        if header is None:
            return None
        session_id = header.split(";")[0].strip()
        return self.server.sessions.get(session_id, "unknown")

    def session_header(self, session: RtspSession) -> tuple[str, str]:
        return ("Session", f"{session.id};timeout={self.wing.options.rtsp_session_timeout}")

    # -- methods -------------------------------------------------------------------------------
    async def do_describe(self, request: Request, found: tuple[StreamProfile, bool],
                          path: str) -> Reply:
        profile = found[0]
        source = await sources().get(profile.width, profile.height)
        sdp = describe(source.media, profile, session_id=secrets.randbits(48),
                       address=self.local_host, tool=self.server_name)
        return Reply(200, [("Content-Base", self.base_url(request, profile)),
                           ("Content-Type", "application/sdp")], sdp.encode("utf-8"))

    async def do_setup(self, request: Request, found: tuple[StreamProfile, bool],
                       path: str) -> Reply:
        profile = found[0]
        current = self.session_of(request)
        if current == "unknown":
            return Reply(454)
        if isinstance(current, RtspSession):
            # One medium per presentation: a second SETUP in a session is for another stream
            # (459) or this one again (455: it is set up).
            return Reply(459 if current.profile is not profile else 455)
        transports = parse_transports(request.header("transport") or "")
        choice = self.pick_transport(transports)
        if choice is None:
            offered = request.header("transport") or "(none)"
            self.refused(461, f"unsupported transport {offered}", request, path)
            return Reply(461)
        source = await sources().get(profile.width, profile.height)
        session_id = f"{secrets.randbits(63):016X}"
        output: TcpOutput | UdpOutput
        if choice["spec"] == "RTP/AVP/TCP":
            channels = pair(choice.get("interleaved")) or self.free_channels()
            if channels[0] > 255 or channels[1] > 255:
                return Reply(461)
            output = TcpOutput(self.writer.transport, channels[0])
        else:
            ports = pair(choice.get("client_port"))
            assert ports is not None
            output = await UdpOutput.open_for(self.local_host, self.peer_host, ports)
        session = RtspSession(session_id, profile, source, output, client=self.client,
                              cname=f"{self.wing.name}@{self.local_host}",
                              camera_time=self.wing.camera_time,
                              idr_delay=self.wing.options.quirks.idr_delay)
        if isinstance(output, UdpOutput):
            output.bind(session)  # its RTCP socket's receiver reports keep it alive
        session.on_closed = self._output_gone
        self.sessions[session_id] = session
        self.server.add_session(session)
        self.wing.record("rtsp", "setup", client=self.client, path=profile.rtsp_path,
                         user=self.credentials.user if self.credentials else None,
                         detail={"session": session_id, "transport": output.kind,
                                 "auth": self.credentials.scheme if self.credentials else None,
                                 "width": source.media.width, "height": source.media.height})
        return Reply(200, [("Transport", output.transport_header(session.ssrc)),
                           self.session_header(session)])

    def pick_transport(self, transports: list[dict[str, str]]) -> dict[str, str] | None:
        udp_allowed = self.wing.options.quirks.rtsp_udp
        for spec in transports:
            if "multicast" in spec:
                continue
            if spec["spec"] == "RTP/AVP/TCP":
                return spec
            if spec["spec"] in ("RTP/AVP", "RTP/AVP/UDP") and udp_allowed \
                    and pair(spec.get("client_port")) is not None:
                return spec
        return None

    def free_channels(self) -> tuple[int, int]:
        used = {s.output.channel for s in self.sessions.values()
                if isinstance(s.output, TcpOutput)}
        channel = 0
        while channel in used:
            channel += 2
        return channel, channel + 1

    def _output_gone(self, session: RtspSession) -> None:
        self.sessions.pop(session.id, None)
        self.server.end_session(session, "teardown", client=self.client,
                                reason="connection closed")

    def own_session(self, request: Request) -> RtspSession | Reply:
        current = self.session_of(request)
        if current is None:
            return Reply(455)  # nothing set up yet
        if not isinstance(current, RtspSession):
            return Reply(454)
        return current

    async def do_play(self, request: Request, found: tuple[StreamProfile, bool] | None,
                      path: str) -> Reply:
        session = self.own_session(request)
        if isinstance(session, Reply):
            return session
        if found is not None and found[0] is not session.profile:
            return Reply(459)
        now = asyncio.get_running_loop().time()
        track = f"{self.base_url(request, session.profile)}{TRACK}"
        reply = Reply(200, [self.session_header(session), ("Range", "npt=0.000-"),
                            ("RTP-Info", f"url={track};seq={session.seq};"
                                         f"rtptime={session.rtp_time(now)}")])
        if session.state != PLAYING:
            self.wing.record("rtsp", "play", client=self.client, path=session.profile.rtsp_path,
                             detail={"session": session.id, "transport": session.output.kind})
            reply.after = session.play
        return reply

    async def do_pause(self, request: Request, found: tuple[StreamProfile, bool] | None,
                       path: str) -> Reply:
        session = self.own_session(request)
        if isinstance(session, Reply):
            return session
        session.pause()
        return Reply(200, [self.session_header(session)])

    async def do_teardown(self, request: Request, found: tuple[StreamProfile, bool] | None,
                          path: str) -> Reply:
        session = self.own_session(request)
        if isinstance(session, Reply):
            return session
        for connection in self.server._connections:
            connection.sessions.pop(session.id, None)
        self.server.end_session(session, "teardown", client=self.client, reason="TEARDOWN")
        return Reply(200)

    async def do_get_parameter(self, request: Request, found: tuple[StreamProfile, bool] | None,
                               path: str) -> Reply:
        current = self.session_of(request)
        if current == "unknown":
            return Reply(454)
        if isinstance(current, RtspSession):
            current.touch()
            return Reply(200, [self.session_header(current)])
        return Reply(200)

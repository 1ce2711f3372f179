"""The cameras' RTSP server as camera software meets it: ffprobe and ffmpeg over TCP and UDP
with credentials in the URL, a raw TCP-interleaved client for the RTP and RTCP on the wire
(RFC 6184 packetization, sender reports), sessions' life (keep-alive, timeout, PAUSE,
TEARDOWN), the quirks, the rtsp_drop fault, and hostile input."""

from __future__ import annotations

import base64
import socket
import struct
import subprocess
import threading
import time
from urllib.parse import urlsplit

import pytest

from emulators.core.video.rtsp.rtp import NTP_EPOCH
from emulators.testing import RunningFarm
from tests.video.rtsp_clients import (
    RTSP_LOGINS,
    RawRtspClient,
    depacketize,
    rtsp_profile_size,
    rtsp_stream_url,
    with_credentials,
)

FFMPEG_TIMEOUT = 45


def _login_url(farm: RunningFarm, name: str, profile: int = 0) -> str:
    return with_credentials(rtsp_stream_url(farm, name, profile), *RTSP_LOGINS[name])


def _client(farm: RunningFarm, name: str, profile: int = 0) -> RawRtspClient:
    return RawRtspClient(rtsp_stream_url(farm, name, profile), *RTSP_LOGINS[name])


def _sessions(farm: RunningFarm, name: str) -> int:
    return int(farm[name].call(lambda m: m.video.rtsp.session_count()))


def _wait(condition: object, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


# -- real clients ------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["tcp", "udp"])
@pytest.mark.parametrize("name", ["cam", "acti"])
def test_ffprobe_reports_h264_at_the_profile_size(rtsp_farm: RunningFarm, name: str,
                                                  transport: str) -> None:
    width, height = rtsp_profile_size(rtsp_farm, name)
    run = subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", transport, "-select_streams", "v:0",
         "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0",
         _login_url(rtsp_farm, name)],
        capture_output=True, text=True, timeout=FFMPEG_TIMEOUT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"h264,{width},{height}"
    assert run.stderr == ""


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_ffmpeg_decodes_ten_frames_without_an_error(rtsp_farm: RunningFarm,
                                                    transport: str) -> None:
    rtsp_farm.clear_journal()
    run = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", transport,
         "-i", _login_url(rtsp_farm, "acti"), "-frames:v", "10", "-f", "null", "-"],
        capture_output=True, text=True, timeout=FFMPEG_TIMEOUT)
    assert run.returncode == 0
    assert run.stderr == ""
    # The credentials in the URL became an RTSP Digest login (ffmpeg picks Digest first).
    setup = rtsp_farm.journal(member="acti", protocol="rtsp", event="setup")
    assert [(e["user"], e["detail"]["auth"], e["detail"]["transport"]) for e in setup] == [
        ("admin", "Digest", transport)]
    assert _wait(lambda: rtsp_farm.journal(member="acti", protocol="rtsp", event="teardown"))
    teardown = rtsp_farm.journal(member="acti", protocol="rtsp", event="teardown")[0]
    assert teardown["detail"]["packets"] > 10
    assert teardown["detail"]["bytes"] > 10_000


def test_wrong_password_fails_ffmpeg_and_is_journalled(rtsp_farm: RunningFarm) -> None:
    rtsp_farm.clear_journal()
    url = with_credentials(rtsp_stream_url(rtsp_farm, "cam"), "admin", "wrong")
    run = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", "tcp",
                          "-i", url, "-frames:v", "1", "-f", "null", "-"],
                         capture_output=True, text=True, timeout=FFMPEG_TIMEOUT)
    assert run.returncode != 0
    assert "401 Unauthorized" in run.stderr
    refused = rtsp_farm.journal(member="cam", protocol="rtsp", event="refused")
    assert refused and refused[0]["status"] == 401
    assert refused[0]["detail"]["reason"] == "wrong credentials"
    assert refused[0]["path"] == "/livestream/11"
    assert not rtsp_farm.journal(member="cam", protocol="rtsp", event="setup")


def test_no_credentials_get_both_challenges(rtsp_farm: RunningFarm) -> None:
    with RawRtspClient(rtsp_stream_url(rtsp_farm, "cam")) as client:
        reply = client.request("DESCRIBE")
    assert reply.status_line == "RTSP/1.0 401 Unauthorized"
    challenges = (reply.header("www-authenticate") or "").split("\n")
    assert [c.split(" ")[0] for c in challenges] == ["Digest", "Basic"]
    assert 'realm="' in challenges[0] and "nonce=" in challenges[0]


def test_udp_quirk_answers_461_and_ffmpeg_over_udp_fails(rtsp_farm: RunningFarm) -> None:
    rtsp_farm.clear_journal()
    with _client(rtsp_farm, "quirky") as client:
        described = client.request("DESCRIBE")
        assert described.status == 200
        track = (described.header("content-base") or "") + "trackID=1"
        reply = client.request("SETUP", track,
                               {"Transport": "RTP/AVP;unicast;client_port=50000-50001"})
        assert reply.status_line == "RTSP/1.0 461 Unsupported Transport"
        assert reply.header("cseq") == str(client.cseq)
        # The same camera streams over TCP.
        assert client.request("SETUP", track, {
            "Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}).status == 200
    refused = rtsp_farm.journal(member="quirky", protocol="rtsp", event="refused")
    assert [e["status"] for e in refused] == [461]
    run = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", "udp",
                          "-i", _login_url(rtsp_farm, "quirky"), "-frames:v", "1",
                          "-f", "null", "-"],
                         capture_output=True, text=True, timeout=FFMPEG_TIMEOUT)
    assert run.returncode != 0
    assert "461 Unsupported Transport" in run.stderr


# -- RTP and RTCP on the wire -------------------------------------------------------------------
def test_rtp_packetization_and_sender_report(rtsp_farm: RunningFarm) -> None:
    with _client(rtsp_farm, "cam") as client:  # 2560x1440: keyframes span many packets
        setup = client.setup_tcp()
        assert setup.status == 200
        transport = setup.header("transport") or ""
        assert transport.startswith("RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=")
        ssrc = int(transport.split("ssrc=")[1].split(";")[0], 16)
        assert setup.header("session") == f"{client.session};timeout=60"
        play = client.request("PLAY")
        assert play.status == 200
        assert play.header("range") == "npt=0.000-"
        info = dict(p.split("=", 1) for p in (play.header("rtp-info") or "").split(";")[1:])
        assert (play.header("rtp-info") or "").startswith(f"url={client.track};")
        # 31 frames: a whole GOP from the first keyframe, and the next keyframe.
        packets, rtcp = client.collect(15, frames=31)
    frames = depacketize(packets)
    assert len(frames) == 31
    assert {p.ssrc for p in packets} == {ssrc}
    assert {p.payload_type for p in packets} == {96}
    assert packets[0].seq == int(info["seq"])
    assert all((b.seq - a.seq) % 65536 == 1 for a, b in zip(packets, packets[1:], strict=False))
    # The session starts on a keyframe that carries its parameter sets; the next comes 30
    # frames later.
    assert frames[0].nal_types[:2] == [7, 8] and 5 in frames[0].nal_types
    assert [i for i, f in enumerate(frames) if 5 in f.nal_types] == [0, 30]
    # The marker bit is set on the last packet of each access unit only.
    for frame in frames:
        assert [p.marker for p in frame.packets] == [False] * (len(frame.packets) - 1) + [True]
    # Large NAL units went as FU-A fragments, small ones as single NAL unit packets, none
    # over the MTU.
    kinds = {p.payload[0] & 0x1F for p in packets}
    assert 28 in kinds and kinds & {1, 5, 7, 8}
    assert max(len(p.payload) for p in packets) <= 1400
    # 90 kHz timestamps, strictly increasing from frame to frame, about 1/15 s apart.
    steps = [(b.timestamp - a.timestamp) % 2**32 for a, b in zip(frames, frames[1:],
                                                                  strict=False)]
    assert all(0 < step < 90_000 for step in steps)
    assert 4000 < sum(steps) / len(steps) < 8000
    # An RTCP sender report (with an SDES CNAME) came before the first RTP packet: NTP time
    # from the camera's clock, paired with the first frame's RTP timestamp.
    assert rtcp, "no RTCP"
    report = rtcp[0]
    assert report[1] == 200 and report[0] >> 6 == 2
    sr_ssrc, ntp_seconds, ntp_fraction, rtp_time = struct.unpack(">IIII", report[4:20])
    assert sr_ssrc == ssrc
    assert rtp_time == frames[0].timestamp
    ntp = ntp_seconds - NTP_EPOCH + ntp_fraction / 2**32
    assert abs(ntp - rtsp_farm.clock.time()) < 30
    assert report[29] == 202  # SDES follows the 28-byte SR
    assert b"cam@" in report[28:]


def test_idr_delay_quirk_starts_without_a_keyframe(rtsp_farm: RunningFarm) -> None:
    with _client(rtsp_farm, "quirky") as client:
        assert client.setup_tcp().status == 200
        assert client.request("PLAY").status == 200
        started = time.monotonic()
        packets, _ = client.collect(10, frames=8)
    elapsed = time.monotonic() - started
    frames = depacketize(packets)
    assert len(frames) == 8
    assert elapsed < 1.5, "eight frames at 15 fps fall inside the 1.5 s delay"
    assert all(5 not in f.nal_types and 7 not in f.nal_types for f in frames)
    assert all(f.nal_types and set(f.nal_types) <= {1, 6} for f in frames)


# -- a session's life ---------------------------------------------------------------------------
def test_keepalive_holds_a_session_past_the_timeout_and_silence_ends_it(
        rtsp_farm: RunningFarm) -> None:
    rtsp_farm.clear_journal()
    with _client(rtsp_farm, "quirky") as kept, _client(rtsp_farm, "quirky") as silent:
        for client in (kept, silent):
            setup = client.setup_tcp()
            assert setup.header("session") == f"{client.session};timeout=5"
            assert client.request("PLAY").status == 200
        silent_session = silent.session
        closed_at: list[float] = []

        def drain_silent() -> None:  # reads what comes, sends nothing
            deadline = time.monotonic() + 20
            while silent.read_interleaved(deadline) is not None:
                pass
            closed_at.append(time.monotonic())

        reader = threading.Thread(target=drain_silent)
        started = time.monotonic()
        reader.start()
        try:
            while time.monotonic() - started < 9:
                kept.collect(2)
                assert kept.request("GET_PARAMETER").status == 200
        finally:
            reader.join(25)
        # The silent session was closed after its 5 s (with a second of slack for the check).
        assert closed_at and 4 < closed_at[0] - started < 15
        timeouts = rtsp_farm.journal(member="quirky", protocol="rtsp", event="timeout")
        assert [e["detail"]["session"] for e in timeouts] == [silent_session]
        # The kept one still streams.
        packets, _ = kept.collect(10, frames=3)
        assert len(depacketize(packets)) >= 3


def test_teardown_ends_the_session(rtsp_farm: RunningFarm) -> None:
    rtsp_farm.clear_journal()
    with _client(rtsp_farm, "acti", 1) as client:
        assert client.setup_tcp().status == 200
        assert client.request("PLAY").status == 200
        assert _sessions(rtsp_farm, "acti") == 1
        client.collect(10, frames=2)
        reply = client.request("TEARDOWN")
        assert reply.status_line == "RTSP/1.0 200 OK"
        assert _sessions(rtsp_farm, "acti") == 0
        # The session is gone: PLAY on it is 454, on the same connection.
        client.frames.clear()
        assert client.request("PLAY").status_line == "RTSP/1.0 454 Session Not Found"
    teardown = rtsp_farm.journal(member="acti", protocol="rtsp", event="teardown")
    assert len(teardown) == 1
    detail = teardown[0]["detail"]
    assert detail["reason"] == "TEARDOWN" and detail["frames"] >= 2
    assert detail["packets"] >= 2 and detail["bytes"] > 0


def test_pause_stops_the_stream_and_play_resumes_on_a_keyframe(
        rtsp_farm: RunningFarm) -> None:
    with _client(rtsp_farm, "acti", 1) as client:
        assert client.setup_tcp().status == 200
        assert client.request("PLAY").status == 200
        before, _ = client.collect(10, frames=2)
        assert client.request("PAUSE").status == 200
        client.frames.clear()  # what was on the way before the reply
        paused, _ = client.collect(1.5)
        assert paused == []
        assert client.request("PLAY").status == 200
        after, _ = client.collect(10, frames=1)
    frames = depacketize(after)
    assert frames[0].nal_types[:2] == [7, 8] and 5 in frames[0].nal_types
    assert after[0].ssrc == before[0].ssrc  # the same session's stream


# -- faults -------------------------------------------------------------------------------------
def test_rtsp_drop_at_play_closes_the_connection(rtsp_farm: RunningFarm) -> None:
    rtsp_farm.clear_journal()
    rule = rtsp_farm.add_fault(fault="rtsp_drop", protocol="rtsp", member="cam",
                               command="PLAY", times=1)
    try:
        with _client(rtsp_farm, "cam", 2) as client:
            assert client.setup_tcp().status == 200
            with pytest.raises(ConnectionError):
                client.request("PLAY")
    finally:
        rtsp_farm.remove_fault(rule)
    fired = rtsp_farm.journal(member="cam", protocol="rtsp", event="fault")
    # The farm's own entry of the rule, and the RTSP server's with the client and the path.
    assert [(e["detail"]["fault"], e["detail"]["command"]) for e in fired] == [
        (rule, "PLAY"), ("rtsp_drop", "PLAY")]
    assert fired[1]["client"] and fired[1]["path"] == "/livestream/13"
    assert _wait(lambda: _sessions(rtsp_farm, "cam") == 0)


def test_rtsp_drop_with_seconds_ends_the_stream_after_them(rtsp_farm: RunningFarm) -> None:
    rule = rtsp_farm.add_fault(fault="rtsp_drop", protocol="rtsp", member="cam",
                               command="PLAY", seconds=2, times=1)
    try:
        with _client(rtsp_farm, "cam", 2) as client:
            assert client.setup_tcp().status == 200
            assert client.request("PLAY").status == 200
            started = time.monotonic()
            packets, _ = client.collect(20)  # until the server closes
            elapsed = time.monotonic() - started
    finally:
        rtsp_farm.remove_fault(rule)
    assert packets, "it streamed before the drop"
    assert 1.5 < elapsed < 10


# -- hostile input ------------------------------------------------------------------------------
def _basic(name: str) -> str:
    user, password = RTSP_LOGINS[name]
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


URL = "rtsp://127.0.0.1/livestream/11"
HOSTILE = [
    ("bad request line", b"GARBAGE\r\n\r\n", "RTSP/1.0 400 Bad Request"),
    ("two-word request line", b"OPTIONS RTSP/1.0\r\nCSeq: 1\r\n\r\n", "RTSP/1.0 400 Bad Request"),
    ("missing CSeq", b"OPTIONS * RTSP/1.0\r\n\r\n", "RTSP/1.0 400 Bad Request"),
    ("wrong version", b"OPTIONS * RTSP/2.0\r\nCSeq: 1\r\n\r\n",
     "RTSP/1.0 505 RTSP Version not supported"),
    ("HTTP request", b"GET / HTTP/1.1\r\nHost: x\r\nCSeq: 1\r\n\r\n",
     "RTSP/1.0 505 RTSP Version not supported"),
    ("huge request line", b"OPTIONS /" + b"a" * 20000 + b" RTSP/1.0\r\n\r\n",
     "RTSP/1.0 400 Bad Request"),
    ("huge header", b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
     "RTSP/1.0 400 Bad Request"),
    ("too many headers", b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n"
     + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n", "RTSP/1.0 400 Bad Request"),
    ("header without colon", b"OPTIONS * RTSP/1.0\r\nCSeq 1\r\n\r\n",
     "RTSP/1.0 400 Bad Request"),
    ("bad content length", b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nContent-Length: x\r\n\r\n",
     "RTSP/1.0 400 Bad Request"),
    ("huge body", b"SET_PARAMETER * RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 99999999\r\n\r\n",
     "RTSP/1.0 413 Request Entity Too Large"),
    ("unknown method", b"FROBNICATE * RTSP/1.0\r\nCSeq: 1\r\n\r\n",
     "RTSP/1.0 501 Not Implemented"),
    ("RECORD", f"RECORD {URL} RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode(),
     "RTSP/1.0 405 Method Not Allowed"),
    ("unknown path", f"DESCRIBE rtsp://127.0.0.1/nope RTSP/1.0\r\nCSeq: 1\r\n"
     f"Authorization: {_basic('cam')}\r\n\r\n".encode(), "RTSP/1.0 404 Not Found"),
    ("unknown session", f"PLAY {URL} RTSP/1.0\r\nCSeq: 1\r\nSession: DEADBEEF\r\n"
     f"Authorization: {_basic('cam')}\r\n\r\n".encode(), "RTSP/1.0 454 Session Not Found"),
    ("teardown of unknown session", f"TEARDOWN {URL} RTSP/1.0\r\nCSeq: 1\r\nSession: 1\r\n"
     f"Authorization: {_basic('cam')}\r\n\r\n".encode(), "RTSP/1.0 454 Session Not Found"),
    ("PLAY before SETUP", f"PLAY {URL} RTSP/1.0\r\nCSeq: 1\r\n"
     f"Authorization: {_basic('cam')}\r\n\r\n".encode(),
     "RTSP/1.0 455 Method Not Valid in This State"),
    ("multicast SETUP", f"SETUP {URL}/trackID=1 RTSP/1.0\r\nCSeq: 1\r\n"
     f"Transport: RTP/AVP;multicast;port=5000-5001\r\n"
     f"Authorization: {_basic('cam')}\r\n\r\n".encode(), "RTSP/1.0 461 Unsupported Transport"),
    ("SETUP without Transport", f"SETUP {URL}/trackID=1 RTSP/1.0\r\nCSeq: 1\r\n"
     f"Authorization: {_basic('cam')}\r\n\r\n".encode(), "RTSP/1.0 461 Unsupported Transport"),
    ("bad Basic credentials", f"DESCRIBE {URL} RTSP/1.0\r\nCSeq: 1\r\n"
     f"Authorization: Basic !!!\r\n\r\n".encode(), "RTSP/1.0 401 Unauthorized"),
    ("client RTCP then a request", b"$\x01\x00\x04abcd" + b"OPTIONS * RTSP/1.0\r\nCSeq: 7\r\n\r\n",
     "RTSP/1.0 200 OK"),
    # No RTSP at all: the connection is closed without an answer.
    ("TLS ClientHello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)),
     None),
    ("binary garbage", bytes(range(256)) * 4, None),
    ("interleaved frame cut short", b"$\x00\xff\xffshort", None),
    ("NUL in request line", b"OPTIONS \x00 RTSP/1.0\r\nCSeq: 1\r\n\r\n", None),
]


@pytest.mark.parametrize(("data", "expected"), [(d, e) for _, d, e in HOSTILE],
                         ids=[name for name, _, _ in HOSTILE])
def test_hostile_input_gets_its_rtsp_status(rtsp_farm: RunningFarm, data: bytes,
                                            expected: str | None) -> None:
    url = rtsp_stream_url(rtsp_farm, "cam")
    address = (urlsplit(url).hostname or "", urlsplit(url).port or 0)
    with socket.create_connection(address, timeout=15) as sock:
        sock.sendall(data)
        if expected is None:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while b"\r\n" not in received:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
    if expected is None:
        assert received == b""
    else:
        assert received.split(b"\r\n")[0].decode() == expected
    # The listener still serves a good client.
    with _client(rtsp_farm, "cam") as client:
        reply = client.request("OPTIONS")
        assert reply.status == 200
        assert reply.header("public") == ("OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, "
                                          "GET_PARAMETER")
        assert reply.header("cseq") == "1"


"""``emulators capture`` against stand-ins for real cameras and against the emulators: the
profile holds the device's exact status lines, header lines and bodies, redacted; a target
that cannot be captured leaves one line on stderr, exit 2 and no file."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.core.quirks import format as fmt
from emulators.core.quirks import rawhttp
from emulators.testing import RunningFarm
from tests.quirks.standins import (
    ACTI_MAC,
    ACTI_PASSWORD,
    ACTI_SERIAL,
    ACTI_USER,
    COOKIE,
    HOST,
    INSTAR_PASSWORD,
    INSTAR_USER,
    MAC,
    SERIAL,
    StandIn,
    acti_standin,
    emulators,
    instar_standin,
)


@pytest.fixture
def instar() -> Iterator[StandIn]:
    standin, _ = instar_standin()
    yield standin
    standin.close()


@pytest.fixture
def acti() -> Iterator[StandIn]:
    standin, _ = acti_standin()
    yield standin
    standin.close()


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFarm]:
    farm = RunningFarm.start({"version": 1, "name": "t", "emulators": [
        {"name": "cam", "kind": "instar-camera", "port": 0},
        {"name": "acti", "kind": "acti-camera", "port": 0}]},
        tmp_path_factory.mktemp("farm"))
    yield farm
    farm.stop()


def capture_instar(standin: StandIn, out: Path, *extra: str):  # type: ignore[no-untyped-def]
    return emulators("capture", "--kind", "instar-camera", "--target", standin.url,
                     "--user", INSTAR_USER, "--password", INSTAR_PASSWORD, "--out", out, *extra)


def by_step(profile: fmt.Profile) -> dict[str, fmt.Exchange]:
    return {e.step: e for e in profile.exchanges}


def test_instar_capture_keeps_the_devices_bytes(instar: StandIn, tmp_path: Path) -> None:
    out = tmp_path / "cam.yaml"
    result = capture_instar(instar, out)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    profile = fmt.load(out)
    steps = by_step(profile)
    assert profile.kind == "instar-camera"
    p = profile.provenance
    assert (p.model, p.firmware, p.probe_script) == ("IN-8015 Full HD", "2.6.1.4",
                                                     "instar-camera/1")
    assert p.target == "<address>" and p.redacted is True
    assert p.checksum == fmt.checksum(profile.exchanges)
    assert p.tool is not None and p.tool.startswith("emulators ")
    assert p.captured_at is not None and p.captured_at.endswith("Z")

    ftp = steps["getftpattr"]
    reply, = ftp.replies
    assert (reply.version, reply.status, reply.reason) == ("HTTP/1.1", 200, "OK")
    assert reply.headers == (("Server", "GoAhead-Webs"), ("content-type", "text/plain"),
                             ("Set-Cookie", "SESSIONID=<token>; path=/"),
                             ("Content-Length", "<length>"))
    assert reply.body == (b'cmd="getftpattr";\nft_port="21";\nft_server="ftp.example.net";\n'
                          b'ft_username="uploader";\nft_mode="1";\nft_dirname="./cam";\n'
                          b'ft_ssl="0";\nresponse="200";\n')
    assert ftp.merge == "key-values"
    assert ftp.request.query == (("cmd", "getftpattr"), ("user", "<user>"),
                                 ("pwd", "<password>"))
    assert steps["getftpattr-basic"].request.headers == (("Authorization", "<basic>"),)

    info = steps["getserverinfo"].replies[0].body.decode()
    assert 'serialno="<serial>";' in info and 'macaddress="<mac>";' in info
    assert 'ipaddr="<address>";' in info and 'model="IN-8015 Full HD";' in info

    refused = steps["wrong-password"].replies[0]
    assert (refused.status, refused.reason) == (401, "Unauthorized")
    assert ("WWW-Authenticate", 'Basic realm="GoAhead"') in refused.headers
    assert refused.body == b"401 Unauthorized: Access Denied\n"
    assert steps["unknown-command"].replies[0].body == (
        b"[Error] unknown command: getnosuchthing\n")
    missing = steps["unknown-path"].replies[0]
    assert (missing.status, missing.reason) == (404, "Site or Page Not Found")
    assert missing.body == b"<<html><<body>Page not found<</body><</html>\n"  # "<" is "<<"


def test_bodies_read_to_the_close_and_chunked_are_recorded_whole(instar: StandIn,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "cam.yaml"
    assert capture_instar(instar, out).returncode == 0
    steps = by_step(fmt.load(out))
    assert steps["getftpactionattr"].replies[0].body == (
        b'cmd="getftpactionattr";\nsnapcount="3";\nresponse="200";\n')
    sched = steps["getsnapschedftpattr"].replies[0]
    assert sched.body == b'cmd="getsnapschedftpattr";\nmode="0";\ntimes="0-1";\nresponse="200";\n'
    assert ("Transfer-Encoding", "chunked") in sched.headers


def test_a_read_that_changes_between_two_reads_is_kept_as_states(instar: StandIn,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "cam.yaml"
    assert capture_instar(instar, out).returncode == 0
    steps = by_step(fmt.load(out))
    timer = steps["getsnaptimerftpattr"]
    assert [r.body.split(b"\n")[1] for r in timer.replies] == [b'name="snap1";', b'name="snap2";']
    assert len(steps["getftpattr"].replies) == 1  # the same twice: one reply


def secrets_of_instar(standin: StandIn) -> list[str]:
    return [INSTAR_PASSWORD, SERIAL, MAC, COOKIE, HOST, f"{HOST}:{standin.port}"]


def test_instar_capture_is_redacted(instar: StandIn, tmp_path: Path) -> None:
    out = tmp_path / "cam.yaml"
    assert capture_instar(instar, out).returncode == 0
    text = out.read_text()
    for secret in secrets_of_instar(instar):
        assert secret not in text, secret
    assert "uploader" in text and "ftp.example.net" in text  # settings stay


def test_keep_secrets_keeps_them(instar: StandIn, tmp_path: Path) -> None:
    out = tmp_path / "cam.yaml"
    result = capture_instar(instar, out, "--keep-secrets")
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    for secret in secrets_of_instar(instar):
        assert secret in text, secret
    profile = fmt.load(out)
    assert profile.provenance.redacted is False
    assert profile.provenance.target == f"{HOST}:{instar.port}"


def test_reads_only_by_default(instar: StandIn, tmp_path: Path) -> None:
    out = tmp_path / "cam.yaml"
    result = capture_instar(instar, out)
    assert "setftpattr" in result.stdout  # listed as skipped
    commands = [r.get("cmd") for r in instar.received]
    assert not [c for c in commands if c and c.startswith("set")]
    assert "setftpattr" not in by_step(fmt.load(out))


def test_write_runs_the_set_steps_and_restores(tmp_path: Path) -> None:
    standin, camera = instar_standin()
    try:
        out = tmp_path / "cam.yaml"
        result = capture_instar(standin, out, "--write")
        assert result.returncode == 0, result.stderr
        assert "--write" in result.stdout
        sets = [(r.get("cmd"), r.get("ft_port"), r.get("snapcount")) for r in standin.received
                if (r.get("cmd") or "").startswith("set")]
        assert sets == [("setftpattr", "21", None), ("setftpattr", "21", None),
                        ("setftpactionattr", None, "3"), ("setftpactionattr", None, "3")]
        assert camera.ftp["ft_port"] == "21" and camera.snapcount == "3"
        steps = by_step(fmt.load(out))
        assert steps["setftpattr"].request.query[1] == ("ft_port", "21")
        assert steps["setftpattr"].replies[0].body == b'cmd="setftpattr";\nresponse="200";\n'
        assert "setftpattr-restore" in steps
    finally:
        standin.close()


def test_acti_capture(acti: StandIn, tmp_path: Path) -> None:
    out = tmp_path / "acti.yaml"
    result = emulators("capture", "--kind", "acti-camera", "--target", acti.url,
                       "--user", ACTI_USER, "--password", ACTI_PASSWORD, "--out", out)
    assert result.returncode == 0, result.stderr
    profile = fmt.load(out)
    assert (profile.provenance.model, profile.provenance.firmware) == (
        "KCM-5611", "A1D-500-V6.11.17-AC")
    steps = by_step(profile)
    cer = steps["https-cer"]
    assert cer.merge == "key-values"
    reply, = cer.replies
    assert (reply.version, reply.status, reply.reason) == ("HTTP/1.0", 200, "OK")
    assert [n for n, _ in reply.headers] == ["Server", "Content-Type", "Content-Length"]
    assert reply.body == b"HTTPS_CER='none'\n"
    assert cer.request.query == (("USER", "<user>"), ("PWD", "<password>"), ("HTTPS_CER", ""))
    assert steps["unknown-command"].replies[0].body == b"ERROR: unknown command 'NOSUCHTHING'\n"
    refused = steps["wrong-password"].replies[0]
    assert (refused.status, refused.reason, refused.body) == (
        401, "Unauthorized", b"ERROR: not authorized\n")
    info = steps["system-info"].replies[0].body.decode()
    assert "Serial Number: <serial>\n" in info and "MAC Address: <mac>\n" in info
    assert "IP Address: <address>\n" in info
    text = out.read_text()
    for secret in (ACTI_PASSWORD, ACTI_SERIAL, ACTI_MAC, HOST):
        assert secret not in text, secret
    # The query's bare command reached the device as a bare name (ACTi's read form).
    assert ("HTTPS_CER", None) in acti.received[-1].query or any(
        ("HTTPS_CER", None) in r.query for r in acti.received)


def test_unreachable_target_exits_2_with_one_line_and_no_file(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    out = tmp_path / "cam.yaml"
    result = emulators("capture", "--kind", "instar-camera", "--target",
                       f"http://127.0.0.1:{port}", "--out", out)
    assert result.returncode == 2
    assert result.stderr.startswith(f"emulators capture: cannot reach http://127.0.0.1:{port}: ")
    assert result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_refused_credentials_exit_2_with_one_line_and_no_file(instar: StandIn,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "cam.yaml"
    result = emulators("capture", "--kind", "instar-camera", "--target", instar.url,
                       "--user", INSTAR_USER, "--password", "not-it", "--out", out)
    assert result.returncode == 2
    assert result.stderr.startswith("emulators capture: ")
    assert "refused the credentials" in result.stderr and "401" in result.stderr
    assert result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["instar-camera", "acti-camera"])
def test_capture_of_the_emulator(farm: RunningFarm, tmp_path: Path, kind: str) -> None:
    index = 0 if kind == "instar-camera" else 1
    url = farm.ready["emulators"][index]["urls"]["http"]
    out = tmp_path / "emu.yaml"
    result = emulators("capture", "--kind", kind, "--target", url, "--out", out)
    assert result.returncode == 0, result.stderr
    profile = fmt.load(out)
    assert profile.kind == kind and len(profile.exchanges) > 5
    drift = emulators("drift", "--profile", out, "--target", url)
    assert drift.returncode == 0, drift.stdout
    assert drift.stdout.startswith("no drift")


# -- the raw client against hostile replies ------------------------------------------------------
HOSTILE = {
    "not-http": b"SSH-2.0-OpenSSH_9.0\r\n",
    "bad-content-length": b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\nhi",
    "body-cut-short": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhi",
    "over-1-mib": b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * (rawhttp.REPLY_LIMIT + 10),
    "bad-chunk-size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "closed-at-once": b"",
    "header-without-colon": b"HTTP/1.1 200 OK\r\nnonsense\r\n\r\n",
}


def _serve_once(reply: bytes) -> tuple[socket.socket, threading.Thread]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(reply)
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


@pytest.mark.parametrize("reply", HOSTILE.values(), ids=HOSTILE.keys())
def test_raw_client_turns_a_broken_reply_into_an_error(reply: bytes) -> None:
    server, thread = _serve_once(reply)
    target = rawhttp.Target("127.0.0.1", server.getsockname()[1], "")
    try:
        with pytest.raises(rawhttp.RawHttpError) as caught:
            asyncio.run(rawhttp.fetch(target, "GET", "/"))
        assert not caught.value.unreachable
    finally:
        thread.join(30)
        server.close()


def test_raw_client_reads_an_lf_only_http_1_0_reply_to_the_close() -> None:
    server, thread = _serve_once(b"HTTP/1.0 200 Fine\nX-Odd-Case: v\n\nline 1\nline 2\n")
    target = rawhttp.Target("127.0.0.1", server.getsockname()[1], "")
    try:
        reply = asyncio.run(rawhttp.fetch(target, "GET", "/"))
    finally:
        thread.join(30)
        server.close()
    assert (reply.version, reply.status, reply.reason, reply.line_ending) == (
        "HTTP/1.0", 200, "Fine", "\n")
    assert reply.headers == (("X-Odd-Case", "v"),)
    assert reply.body == b"line 1\nline 2\n"

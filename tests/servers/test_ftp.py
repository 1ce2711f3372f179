"""Plain FTP: uploads in PORT and PASV mode with ftplib and curl, and every refusal."""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from pyftpdlib import __ver__ as PYFTPDLIB_VERSION

from emulators.testing import RunningFarm, single_member_scenario
from tests.servers.clients import (
    FTP_USER,
    events_of,
    eventually,
    free_port_range,
    ftp_login,
    store,
)

JPEG = b"\xff\xd8\xff\xe0" + os.urandom(3000) + b"\xff\xd9"


@pytest.mark.parametrize("passive", [True, False], ids=["PASV", "PORT"])
def test_upload_is_recorded_with_size_hash_mode_and_farm_time(ftp_server, passive):
    server = ftp_server()
    server.call(lambda m: m.clock.freeze(1_700_000_000))
    try:
        with ftp_login(server) as client:
            client.set_pasv(passive)
            client.mkd("alarm")
            reply = store(client, "alarm/snap.jpg", JPEG)
    finally:
        server.call(lambda m: m.clock.reset())
    assert reply == "226 Transfer complete."
    [record] = server.call(lambda m: m.received_files())
    assert record == {"user": "cam", "path": "alarm/snap.jpg", "size": len(JPEG),
                      "sha256": hashlib.sha256(JPEG).hexdigest(), "time": 1_700_000_000,
                      "protocol": "ftp", "mode": "passive" if passive else "active"}
    on_disk = server.call(lambda m: m.user_root("cam")) / "alarm" / "snap.jpg"
    assert on_disk.read_bytes() == JPEG


def test_curl_uploads_in_both_modes(ftp_server, tmp_path):
    server = ftp_server()
    source = tmp_path / "clip.mp4"
    source.write_bytes(JPEG * 3)
    url = f"ftp://cam:s3cret@127.0.0.1:{server.port}/"
    for name, extra in (("pasv.mp4", []), ("port.mp4", ["--ftp-port", "127.0.0.1"])):
        done = subprocess.run(["curl", "-sS", "--max-time", "20", "-T", str(source), *extra,
                               url + name], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
    records = server.call(lambda m: m.received_files())
    assert [(r["path"], r["mode"], r["size"]) for r in records] == [
        ("pasv.mp4", "passive", len(JPEG) * 3), ("port.mp4", "active", len(JPEG) * 3)]


def test_passive_replies_stay_in_the_configured_range(ftp_server):
    low, high = free_port_range(3)
    server = ftp_server(passive_ports=[low, high])
    with ftp_login(server) as client:
        for i in range(3):
            host, port = ftplib.parse227(client.sendcmd("PASV"))
            assert host == "127.0.0.1"
            assert low <= port <= high
            store(client, f"f{i}.bin", b"x")
    assert server.description["passive_ports"] == [low, high]


def test_banner_and_replies_name_no_software_or_version(ftp_server):
    server = ftp_server()
    with ftp_login(server) as client:
        assert client.getwelcome() == "220 FTP server ready."
        replies = [client.sendcmd("SYST"), client.sendcmd("FEAT"), client.sendcmd("HELP"),
                   client.sendcmd("STAT")]
    for reply in replies:
        assert "pyftpdlib" not in reply.lower()
        assert PYFTPDLIB_VERSION not in reply


def test_bad_password_is_refused_and_recorded(ftp_server):
    server = ftp_server()
    with pytest.raises(ftplib.error_perm, match=r"^530 Authentication failed\.$"):
        ftp_login(server, password="wrong")
    with pytest.raises(ftplib.error_perm, match=r"^530 Authentication failed\.$"):
        ftp_login(server, user="nobody", password="s3cret")
    events = events_of(server, "login_failed", 2)
    assert [(e["event"], e["user"]) for e in events] == [("login_failed", "cam"),
                                                          ("login_failed", "nobody")]
    assert all("s3cret" not in str(e) and "wrong" not in str(e) for e in events)


def test_login_attempt_limit_disconnects(ftp_server):
    server = ftp_server(max_login_attempts=2)
    with ftplib.FTP() as client:
        client.connect("127.0.0.1", server.port, timeout=10)
        with pytest.raises(ftplib.error_perm, match=r"^530 Authentication failed\.$"):
            client.login("cam", "one")
        with pytest.raises(ftplib.error_perm,
                           match=r"^530 Authentication failed\. Disconnecting\.$"):
            client.login("cam", "two")
        with pytest.raises((EOFError, OSError)):
            client.sendcmd("NOOP")
    [refused] = events_of(server, "refused")
    assert refused["reason"] == "too_many_login_attempts"


def test_connection_cap_per_ip(ftp_server):
    server = ftp_server(max_connections_per_ip=1)
    with ftp_login(server), ftplib.FTP() as second:
        with pytest.raises(ftplib.error_temp,
                           match=r"^421 Too many connections from the same IP address\.$"):
            second.connect("127.0.0.1", server.port, timeout=10)
    [refused] = events_of(server, "refused")
    assert refused["reason"] == "too_many_connections"


def test_connection_cap_for_the_whole_server(ftp_server):
    # The listener counts as one of pyftpdlib's channels: 2 leaves room for one session.
    server = ftp_server(max_connections=2, max_connections_per_ip=5)
    with ftp_login(server), ftplib.FTP() as second:
        with pytest.raises(ftplib.error_temp, match=r"^421 Too many connections\. Service "
                                                    r"temporarily unavailable\.$"):
            second.connect("127.0.0.1", server.port, timeout=10)
    [refused] = events_of(server, "refused")
    assert refused["reason"] == "too_many_connections"


@pytest.mark.parametrize(("command", "reply"), [
    ("PORT 10,0,0,7,39,16", "501 Rejected data connection to foreign address 10.0.0.7:10000."),
    ("EPRT |1|192.0.2.1|10000|",
     "501 Rejected data connection to foreign address 192.0.2.1:10000."),
    ("PORT 127,0,0,1,0,21", '501 PORT against the privileged port "21" refused.'),
    ("PORT 1,2,3", "501 Invalid PORT format."),
], ids=["fxp-port", "fxp-eprt", "privileged-port", "malformed-port"])
def test_active_mode_refuses_foreign_and_privileged_targets(ftp_server, command, reply):
    server = ftp_server()
    with ftp_login(server) as client:
        with pytest.raises(ftplib.error_perm) as caught:
            client.sendcmd(command)
        assert str(caught.value) == reply


def test_over_limit_upload_is_refused_and_not_kept(ftp_server):
    server = ftp_server(max_upload_bytes=1000)
    with ftp_login(server) as client:
        with pytest.raises(ftplib.error_perm) as caught:
            # Small enough to sit in the socket buffer before the server cuts the transfer
            # (a bigger one meets a reset data connection, as with any ftpd).
            store(client, "big.bin", b"z" * 5000)
        assert str(caught.value) == ("552 Requested file action aborted. "
                                     "Exceeded storage allocation.")
        # The control connection survives the refusal: a small file still goes through.
        store(client, "small.bin", b"z" * 1000)
    root = server.call(lambda m: m.user_root("cam"))
    assert sorted(p.name for p in root.iterdir()) == ["small.bin"]
    assert [r["path"] for r in server.call(lambda m: m.received_files())] == ["small.bin"]
    refused = events_of(server, "refused")
    assert [(e["reason"], e["path"]) for e in refused] == [("upload_too_large", "big.bin")]


@pytest.mark.parametrize(("target", "reply_start"), [
    ("no/such/dir/x.jpg", "550 No such file or directory"),
    ("", "501 Syntax error: command needs an argument."),
], ids=["missing-folder", "no-name"])
def test_bad_paths_are_refused(ftp_server, target, reply_start):
    server = ftp_server()
    with ftp_login(server) as client:
        with pytest.raises(ftplib.error_perm) as caught:
            client.storbinary(f"STOR {target}".rstrip(), io.BytesIO(b"x"))
        assert str(caught.value).startswith(reply_start)
    assert server.call(lambda m: m.received_files()) == []


def test_dotdot_stays_inside_the_users_root(ftp_server):
    server = ftp_server()
    files_dir = server.call(lambda m: m.files_dir())
    with ftp_login(server) as client:
        assert client.cwd("../../..") == '250 "/" is the current directory.'
        store(client, "../../escape.txt", b"caught")
    root = server.call(lambda m: m.user_root("cam"))
    assert (root / "escape.txt").read_bytes() == b"caught"
    assert not (files_dir.parent / "escape.txt").exists()
    assert [r["path"] for r in server.call(lambda m: m.received_files())] == ["escape.txt"]


def test_symlink_out_of_the_root_is_refused(ftp_server, tmp_path):
    server = ftp_server()
    outside = tmp_path / "outside"
    outside.mkdir()
    root = server.call(lambda m: m.user_root("cam"))
    (root / "link").symlink_to(outside)
    with ftp_login(server) as client:
        with pytest.raises(ftplib.error_perm) as caught:
            store(client, "link/owned.txt", b"x")
        # pyftpdlib names the resolved target, which it shows as "/" since it is outside.
        assert str(caught.value) == ("550 '/' points to a path which is outside "
                                     "the user's root directory.")
        with pytest.raises(ftplib.error_perm, match="outside the user's root"):
            client.cwd("link")
    assert list(outside.iterdir()) == []


def test_read_only_user_cannot_upload(ftp_server):
    server = ftp_server(users=[FTP_USER, {"name": "viewer", "password": "v", "read_only": True}])
    with ftp_login(server, "viewer", "v") as client:
        with pytest.raises(ftplib.error_perm, match=r"^550 Not enough privileges\.$"):
            store(client, "x.jpg", b"x")
        client.nlst()


def test_users_have_separate_homes(ftp_server):
    server = ftp_server(users=[FTP_USER, {"name": "admin", "password": "instar",
                                          "home": "cams/instar"}])
    with ftp_login(server) as client:
        store(client, "cam-only.jpg", b"1")
    with ftp_login(server, "admin", "instar") as client:
        assert client.nlst() == []
        store(client, "admin.jpg", b"2")
    files_dir = server.call(lambda m: m.files_dir()).resolve()
    assert server.call(lambda m: m.user_root("admin")) == files_dir / "cams" / "instar"
    assert (files_dir / "cams" / "instar" / "admin.jpg").read_bytes() == b"2"
    assert [(r["user"], r["path"]) for r in server.call(lambda m: m.received_files())] == [
        ("cam", "cam-only.jpg"), ("admin", "admin.jpg")]


def test_events_reach_subscribers(ftp_server):
    server = ftp_server()
    seen: list[dict] = []
    server.call(lambda m: m.on_event.subscribe(seen.append))
    with ftp_login(server) as client:
        store(client, "a.jpg", b"a")
    eventually(lambda: len(seen) >= 2)
    assert [(e["event"], e["server"], e["protocol"]) for e in seen] == [
        ("login", server.name, "ftp"), ("upload", server.name, "ftp")]
    assert seen[1]["remote"].startswith("127.0.0.1:")


def test_wait_for_upload_returns_the_file_when_it_arrives(ftp_server):
    server = ftp_server()

    def upload_later() -> None:
        with ftp_login(server) as client:
            store(client, "late.jpg", b"late")

    async def wait(member):
        return await member.wait_for_upload(lambda r: r["path"] == "late.jpg", timeout=10)

    uploader = threading.Timer(0.2, upload_later)
    uploader.start()
    try:
        record = server.call(wait)
    finally:
        uploader.join()
    assert record["size"] == 4
    # Already there: answered at once; a path that never comes times out.
    assert server.call(lambda m: m.wait_for_upload(timeout=0.1))["path"] == "late.jpg"
    with pytest.raises(TimeoutError):
        server.call(lambda m: m.wait_for_upload(lambda r: r["path"] == "never", timeout=0.1))


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_stop_frees_the_thread_the_listener_and_open_sessions(emulators_loop):
    threads_before = {t.name for t in threading.enumerate()}
    fds_before = _fds()
    scenario = single_member_scenario("ftp", "ftp-stop", users=[FTP_USER])
    farm = RunningFarm.start(scenario, loop=emulators_loop, control=False)
    port = farm["ftp-stop"].port
    assert "ftp-ftp-stop" in {t.name for t in threading.enumerate()}
    client = ftp_login(farm["ftp-stop"])
    client.sendcmd("PASV")  # a passive listener waiting for a data connection, too
    farm.stop()
    try:
        assert {t.name for t in threading.enumerate()} <= threads_before
        # The server closed our session: the next command finds the connection gone.
        with pytest.raises((EOFError, OSError, ftplib.Error)):
            client.sendcmd("NOOP")
    finally:
        client.close()
    assert _fds() <= fds_before
    with socket.socket() as probe:  # the port is free again
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))


def test_uploads_and_certificate_survive_a_restart_and_reset_empties(farm_factory,
                                                                     tmp_path: Path):
    scenario = single_member_scenario("ftp", "keep", users=[FTP_USER], tls="explicit")
    first = farm_factory(scenario, tmp_path, control=False)
    with ftp_login(first["keep"]) as client:
        store(client, "kept.jpg", b"kept")
    cert = first["keep"].description["tls"]["cert_pem"]
    first.stop()
    second = farm_factory(scenario, tmp_path, control=False)
    server = second["keep"]
    assert [r["path"] for r in server.call(lambda m: m.received_files())] == ["kept.jpg"]
    assert (tmp_path / "keep" / "cam" / "kept.jpg").read_bytes() == b"kept"
    assert server.description["tls"]["cert_pem"] == cert
    server.reset()
    assert server.call(lambda m: m.received_files()) == []
    assert not (tmp_path / "keep" / "cam" / "kept.jpg").exists()
    assert server.description["tls"]["cert_pem"] == cert  # a reset keeps the identity
    with ftp_login(server) as client:
        store(client, "after-reset.jpg", b"new")


@pytest.mark.parametrize(("line", "reply"), [
    (b"FOO", b"500 Command \"FOO\" not understood."),
    (b"\xff\xfe\x00garbage", None),
    (b"A" * 3000, b"500 Command too long."),
    (b"STOR", b"501 Syntax error: command needs an argument."),
    (b"PASV now", b"501 Syntax error: command does not accept arguments."),
    (b"PORT 999,0,0,1,4,1", b"501 Invalid PORT format."),
    (b"EPRT |9|127.0.0.1|5000|", b"501 Unknown network protocol (use 1)."),
    (b"REST -5", b"501 Resuming transfers not allowed in ASCII mode."),
    (b"TYPE Q", b"504 Unsupported type \"Q\"."),
    (b"CWD /\x00etc", b"501 Syntax error in parameters or arguments."),
    (b"STOR a\x00.jpg", b"501 Syntax error in parameters or arguments."),
    (b"RNTO x", b"503 Bad sequence of commands: use RNFR first."),
], ids=["unknown", "binary", "too-long", "stor-no-arg", "pasv-arg", "port-range",
        "eprt-proto", "rest-ascii", "type", "nul-in-cwd", "nul-in-stor", "rnto-first"])
def test_malformed_commands_get_ftp_replies_and_the_session_survives(ftp_server, line, reply):
    server = ftp_server()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        reader = raw.makefile("rb")
        assert reader.readline() == b"220 FTP server ready.\r\n"
        raw.sendall(b"USER cam\r\nPASS s3cret\r\n")
        assert reader.readline().startswith(b"331 ")
        assert reader.readline() == b"230 Login successful.\r\n"
        raw.sendall(line + b"\r\nNOOP\r\n")
        answer = reader.readline().rstrip(b"\r\n")
        if reply is not None:
            assert answer == reply
        else:  # no fixed text, but an FTP error reply and never a crash
            assert answer[:1] in (b"5", b"4"), answer
        # One reply per line: the NOOP's is next (the long line is not answered twice).
        assert reader.readline() == b"200 I successfully did nothing'.\r\n"
        reader.close()


def test_journal_correlates_an_upload_with_the_client_that_registered_it(farm_factory):
    farm = farm_factory(single_member_scenario("ftp", "corr", users=[FTP_USER],
                                               failed_login_delay=0), control=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        local = probe.getsockname()
    farm.loop.call(lambda: farm.farm.journal.register_outbound(local, "camera-req-1"))
    client = ftplib.FTP(source_address=local)
    try:
        client.connect("127.0.0.1", farm["corr"].port, timeout=10)
        client.login("cam", "s3cret")
        client.source_address = None  # ftplib would bind the data connection there too
        store(client, "corr.jpg", b"c")
        client.quit()
    finally:
        client.close()
    entry = farm.wait_for_upload("corr")
    assert entry["correlation_id"] == "camera-req-1"
    assert entry["client"] == f"{local[0]}:{local[1]}"

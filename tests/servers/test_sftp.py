"""SFTP with asyncssh's own client: password and key logins, the host key a camera pins,
confinement (``..``, symlinks), and the refusals."""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import threading
from pathlib import Path

import asyncssh
import pytest

from emulators import scenario
from emulators.testing import RunningFarm, single_member_scenario
from tests.servers.clients import SFTP_USER, events_of, run, ssh_options

PAYLOAD = b"\xff\xd8recording" * 400
CAMERA_KEY = asyncssh.generate_private_key("ssh-rsa", key_size=2048)
CAMERA_LINE = " ".join(CAMERA_KEY.export_public_key().decode().split()[:2])


async def put(handle, path: str, data: bytes, **login) -> None:
    async with asyncssh.connect("127.0.0.1", handle.port, **ssh_options(handle, **login)) as conn:
        async with conn.start_sftp_client() as sftp:
            async with sftp.open(path, "wb") as fh:
                await fh.write(data)


def test_password_upload_is_recorded(sftp_server):
    server = sftp_server()
    server.call(lambda m: m.clock.freeze(1_700_000_123))
    try:
        run(put(server, "clip.mp4", PAYLOAD, password="password"))
    finally:
        server.call(lambda m: m.clock.reset())
    [record] = server.call(lambda m: m.received_files())
    assert record == {"user": "ipcamera", "path": "clip.mp4", "size": len(PAYLOAD),
                      "sha256": hashlib.sha256(PAYLOAD).hexdigest(), "time": 1_700_000_123,
                      "protocol": "sftp"}
    root = server.call(lambda m: m.user_root("ipcamera"))
    assert (root / "clip.mp4").read_bytes() == PAYLOAD
    logins = [e for e in server.call(lambda m: m.events()) if e["event"] == "login"]
    assert [(e["user"], e["method"]) for e in logins] == [("ipcamera", "password")]


def test_key_login_from_the_scenario(sftp_server):
    server = sftp_server(users=[{"name": "camera", "authorized_keys": [CAMERA_LINE]}])
    run(put(server, "recordings.jpg", b"k", username="camera", client_keys=[CAMERA_KEY]))
    assert [r["user"] for r in server.call(lambda m: m.received_files())] == ["camera"]
    other = asyncssh.generate_private_key("ssh-ed25519")
    with pytest.raises(asyncssh.PermissionDenied):
        run(put(server, "x", b"x", username="camera", client_keys=[other]))


def test_authorize_key_at_run_time_like_getpubkey(sftp_server):
    server = sftp_server()
    with pytest.raises(asyncssh.PermissionDenied):
        run(put(server, "x.jpg", b"x", client_keys=[CAMERA_KEY]))
    server.call(lambda m: m.authorize_key("ipcamera", CAMERA_LINE + " camera@instar"))
    run(put(server, "x.jpg", b"x", client_keys=[CAMERA_KEY]))
    assert server.call(lambda m: m.authorized_keys("ipcamera")) == [
        CAMERA_LINE + " camera@instar"]
    server.call(lambda m: m.set_authorized_keys("ipcamera", []))
    with pytest.raises(asyncssh.PermissionDenied):
        run(put(server, "y.jpg", b"y", client_keys=[CAMERA_KEY]))


def test_host_key_is_ed25519_and_matches_what_the_client_sees(sftp_server):
    server = sftp_server()
    host_key = server.description["host_key"]
    blob = server.call(lambda m: m.host_key_blob())
    assert host_key["blob"] == blob
    # The seed's testftp hostkey has this shape: the base64 of an ssh-ed25519 key blob.
    assert blob.startswith("AAAAC3NzaC1lZDI1NTE5AAAA")
    assert len(base64.b64decode(blob)) == 51

    async def seen() -> tuple[str, str, str]:
        options = ssh_options(server, password="password", known_hosts=None)
        async with asyncssh.connect("127.0.0.1", server.port, **options) as conn:
            key = conn.get_server_host_key()
            assert key is not None
            return (base64.b64encode(key.public_data).decode(), key.get_fingerprint(),
                    conn.get_extra_info("server_version"))

    client_blob, fingerprint, version = run(seen())
    assert client_blob == blob
    assert fingerprint == host_key["fingerprint"] == server.call(
        lambda m: m.host_key_fingerprint())
    assert version == "SSH-2.0-Server"  # no software name or version in the banner


def test_unpinned_or_wrong_host_key_cannot_be_verified(sftp_server):
    server = sftp_server()
    stranger = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    wrong = asyncssh.import_known_hosts(f"[127.0.0.1]:{server.port} {stranger}")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        run(put(server, "x", b"x", password="password", known_hosts=wrong))


def test_host_key_survives_restart_and_reset(farm_factory, tmp_path: Path):
    entry = single_member_scenario("sftp", "keep", users=[SFTP_USER])
    first = farm_factory(entry, tmp_path, control=False)
    blob = first["keep"].call(lambda m: m.host_key_blob())
    first["keep"].call(lambda m: m.authorize_key("ipcamera", CAMERA_LINE))
    first.stop()
    second = farm_factory(entry, tmp_path, control=False)
    server = second["keep"]
    assert server.call(lambda m: m.host_key_blob()) == blob
    assert server.call(lambda m: m.authorized_keys("ipcamera")) == [CAMERA_LINE]
    server.reset()
    assert server.call(lambda m: m.host_key_blob()) == blob
    assert server.call(lambda m: m.authorized_keys("ipcamera")) == []


def test_fixed_host_key_option(sftp_server):
    key = asyncssh.generate_private_key("ssh-ed25519")
    server = sftp_server(host_key=key.export_private_key().decode())
    assert server.call(lambda m: m.host_key_fingerprint()) == key.get_fingerprint()


def test_bad_password_and_attempt_limit(sftp_server):
    server = sftp_server(max_login_attempts=3)
    with pytest.raises(asyncssh.PermissionDenied):
        run(put(server, "x", b"x", password="wrong"))

    class Guesser(asyncssh.SSHClient):
        guesses = 0

        def password_auth_requested(self) -> str:
            Guesser.guesses += 1
            return f"guess-{Guesser.guesses}"

    with pytest.raises(asyncssh.PermissionDenied, match="^Too many authentication failures$"):
        run(put(server, "x", b"x", client_factory=Guesser))
    assert Guesser.guesses == 3
    events = server.call(lambda m: m.events())
    assert [e["event"] for e in events] == ["login_failed"] * 4 + ["refused"]
    assert events[-1]["reason"] == "too_many_login_attempts"
    assert server.call(lambda m: m.received_files()) == []


def test_connection_cap_per_ip(sftp_server):
    server = sftp_server(max_connections_per_ip=1)

    async def two() -> None:
        options = ssh_options(server, password="password")
        async with asyncssh.connect("127.0.0.1", server.port, **options):
            with pytest.raises(asyncssh.DisconnectError) as caught:
                await asyncssh.connect("127.0.0.1", server.port, **options)
            assert caught.value.code == asyncssh.DISC_TOO_MANY_CONNECTIONS
            # asyncssh's client appends the code for disconnects it has no class for.
            assert caught.value.reason == "Too many connections from your address (error 12)"
        # The slot is free again once the first session ends.
        async with asyncssh.connect("127.0.0.1", server.port, **options):
            pass

    run(two())
    refused = [e for e in server.call(lambda m: m.events()) if e["event"] == "refused"]
    assert [e["reason"] for e in refused] == ["too_many_connections"]


def test_over_limit_upload_is_refused_and_not_kept(sftp_server):
    server = sftp_server(max_upload_bytes=1000)
    with pytest.raises(asyncssh.SFTPFailure, match="^Upload size limit exceeded$"):
        run(put(server, "big.mp4", b"z" * 5000, password="password"))
    run(put(server, "small.jpg", b"z" * 1000, password="password"))
    root = server.call(lambda m: m.user_root("ipcamera"))
    assert sorted(p.name for p in root.iterdir()) == ["small.jpg"]
    assert [r["path"] for r in server.call(lambda m: m.received_files())] == ["small.jpg"]
    refused = [e for e in server.call(lambda m: m.events()) if e["event"] == "refused"]
    assert [(e["reason"], e["path"]) for e in refused] == [("upload_too_large", "big.mp4")]


def test_dotdot_and_absolute_paths_stay_inside_the_root(sftp_server):
    server = sftp_server()
    files_dir = server.call(lambda m: m.files_dir())

    async def session() -> tuple[str, list[str]]:
        options = ssh_options(server, password="password")
        async with asyncssh.connect("127.0.0.1", server.port, **options) as conn:
            async with conn.start_sftp_client() as sftp:
                async with sftp.open("../../../escape.txt", "wb") as fh:
                    await fh.write(b"caught")
                with pytest.raises(asyncssh.SFTPNoSuchFile):
                    await sftp.get("/etc/passwd", os.devnull)
                return await sftp.realpath("../.."), await sftp.listdir("/")

    top, listing = run(session())
    assert top == "/"
    assert "escape.txt" in listing
    root = server.call(lambda m: m.user_root("ipcamera"))
    assert (root / "escape.txt").read_bytes() == b"caught"
    assert not (files_dir.parent / "escape.txt").exists()


def test_symlink_escape_is_refused(sftp_server, tmp_path):
    server = sftp_server()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    root = server.call(lambda m: m.user_root("ipcamera"))
    (root / "escape").symlink_to(outside)
    (root / "passwd").symlink_to(outside / "secret.txt")

    async def session() -> list[str]:
        options = ssh_options(server, password="password")
        async with asyncssh.connect("127.0.0.1", server.port, **options) as conn:
            async with conn.start_sftp_client() as sftp:
                refusals = []
                for attempt in (sftp.open("escape/owned.txt", "wb"),
                                sftp.open("passwd", "rb"),
                                sftp.listdir("escape"),
                                sftp.mkdir("escape/new")):
                    with pytest.raises(asyncssh.SFTPPermissionDenied) as caught:
                        await attempt
                    refusals.append(caught.value.reason)
                # The links themselves can still be listed and removed.
                names = await sftp.listdir(".")
                await sftp.remove("passwd")
                return refusals + sorted(names)

    result = run(session())
    assert result[:4] == ["Permission denied: path is outside the user's root"] * 4
    assert {"escape", "passwd"} <= set(result[4:])
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert not (root / "passwd").exists()


@pytest.mark.parametrize("target", ["/etc/passwd", "inside.txt"],
                         ids=["pointing-outside", "pointing-inside"])
def test_link_creation_is_refused(sftp_server, target):
    server = sftp_server()

    async def session() -> str:
        options = ssh_options(server, password="password")
        async with asyncssh.connect("127.0.0.1", server.port, **options) as conn:
            async with conn.start_sftp_client() as sftp:
                with pytest.raises(asyncssh.SFTPPermissionDenied) as caught:
                    await sftp.symlink(target, "link")
                return caught.value.reason

    assert run(session()) == "Permission denied: links are not allowed on this server"


def test_bad_path_and_read_only_user(sftp_server):
    server = sftp_server(users=[SFTP_USER, {"name": "viewer", "password": "v",
                                            "read_only": True}])
    with pytest.raises(asyncssh.SFTPNoSuchFile):
        run(put(server, "no/such/folder/x.jpg", b"x", password="password"))
    with pytest.raises(asyncssh.SFTPPermissionDenied, match="^Permission denied: read-only"):
        run(put(server, "x.jpg", b"x", username="viewer", password="v"))
    assert server.call(lambda m: m.received_files()) == []


def test_camera_style_daily_folder_upload(sftp_server):
    server = sftp_server(users=[{"name": "ipcamera", "password": "password",
                                 "home": "home/ipcamera"}])

    async def session() -> None:
        options = ssh_options(server, password="password")
        async with asyncssh.connect("127.0.0.1", server.port, **options) as conn:
            async with conn.start_sftp_client() as sftp:
                await sftp.makedirs("recordings/20261122")
                async with sftp.open("recordings/20261122/A_001.jpg", "wb") as fh:
                    await fh.write(PAYLOAD)

    run(session())
    assert server.call(lambda m: m.received_files())[0]["path"] == "recordings/20261122/A_001.jpg"
    assert server.call(lambda m: m.user_root("ipcamera")).parts[-2:] == ("home", "ipcamera")


def test_stop_closes_sessions_and_frees_everything(emulators_loop):
    threads_before = {t.name for t in threading.enumerate()}
    fds_before = set(os.listdir("/proc/self/fd"))
    farm = RunningFarm.start(single_member_scenario("sftp", "gone", users=[SFTP_USER]),
                             loop=emulators_loop, control=False)
    handle = farm["gone"]

    async def session() -> None:
        options = ssh_options(handle, password="password")
        async with asyncssh.connect("127.0.0.1", handle.port, **options) as conn:
            async with conn.start_sftp_client() as sftp:
                await sftp.listdir(".")
                farm.stop()  # blocks this thread, not the farm's loop
                with pytest.raises((asyncssh.Error, OSError)):
                    await sftp.listdir(".")

    run(session())
    assert {t.name for t in threading.enumerate()} <= threads_before
    assert set(os.listdir("/proc/self/fd")) <= fds_before


@pytest.mark.parametrize(("options", "message"), [
    ({"users": []}, "needs at least one user"),
    ({"users": [{"name": "cam", "authorized_keys": ["ssh-rsa notbase64"]}]},
     "not an OpenSSH public key line"),
    ({"users": [{"name": "cam", "authorized_keys": [""]}]}, "one non-empty line"),
    ({"host_key": "-----BEGIN NOTHING-----"}, "host_key is not an OpenSSH private key"),
    ({"server_version": "OpenSSH 9.6"}, "String should match pattern"),
    ({"max_login_attempts": 0}, "greater than or equal to 1"),
    ({"tls": "explicit"}, "unknown key"),
], ids=["no-users", "bad-key", "empty-key", "bad-host-key", "space-in-version",
        "zero-attempts", "ftp-option"])
def test_scenario_rejects_bad_sftp_options(options, message):
    entry = {"name": "sftp", "kind": "sftp", "users": [SFTP_USER], **options}
    with pytest.raises(scenario.ScenarioInvalid) as caught:
        scenario.load({"servers": [entry]})
    assert message in str(caught.value)


def test_session_gone_with_the_file_open_is_incomplete(sftp_server):
    server = sftp_server()

    async def session() -> None:
        options = ssh_options(server, password="password")
        async with asyncssh.connect("127.0.0.1", server.port, **options) as conn:
            sftp = await conn.start_sftp_client()
            fh = await sftp.open("half.mp4", "wb")
            await fh.write(b"half")
            # No close: the camera loses power mid-upload.

    run(session())
    events = events_of(server, "upload_incomplete")
    assert events[0]["path"] == "half.mp4"
    assert server.call(lambda m: m.received_files()) == []
    assert list(server.call(lambda m: m.user_root("ipcamera")).iterdir()) == []  # not kept


@pytest.mark.parametrize("name", [b"a\x00b.jpg", b"\x00", b"bad-\xff\xfe.jpg", b"dir/\xc3(.jpg"],
                         ids=["nul-inside", "only-nul", "latin1-bytes", "broken-utf8"])
def test_malformed_names_are_refused_and_the_session_survives(sftp_server, name):
    server = sftp_server()

    async def session() -> list[str]:
        options = ssh_options(server, password="password")
        async with asyncssh.connect("127.0.0.1", server.port, **options) as conn:
            async with conn.start_sftp_client() as sftp:
                for attempt in (sftp.open(name, "wb"), sftp.stat(name), sftp.mkdir(name)):
                    with pytest.raises(asyncssh.SFTPFailure, match="^Invalid filename$"):
                        await attempt
                return await sftp.listdir(".")

    assert run(session()) == [".", ".."]
    refused = [e for e in server.call(lambda m: m.events()) if e["event"] == "refused"]
    assert {e["reason"] for e in refused} == {"bad_name"}


def test_sftp_version_reply_names_no_software(sftp_server):
    server = sftp_server()

    async def version_reply() -> bytes:
        options = ssh_options(server, password="password")
        async with asyncssh.connect("127.0.0.1", server.port, **options) as conn:
            writer, reader, _ = await conn.open_session(subsystem="sftp", encoding=None)
            writer.write(struct.pack(">IBI", 5, 1, 3))  # SSH_FXP_INIT, version 3
            length = struct.unpack(">I", await reader.readexactly(4))[0]
            reply = await reader.readexactly(length)
            writer.close()
            return reply

    reply = run(version_reply())
    assert reply[:5] == struct.pack(">BI", 2, 3)  # SSH_FXP_VERSION 3
    assert b"posix-rename@openssh.com" in reply  # the extensions are still announced...
    assert b"AsyncSSH" not in reply  # ...but not the software behind them
    assert asyncssh.__version__.encode() not in reply

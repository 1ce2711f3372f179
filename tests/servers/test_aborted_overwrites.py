"""An upload that replaces a file and does not complete leaves the previous file exactly as it
was, and the listing (``GET /v1/servers/{name}/files``) always matches the stored bytes.
FTP with ftplib and lftp, SFTP with asyncssh and OpenSSH's sftp; every way an upload ends
early that the servers can see."""

from __future__ import annotations

import ftplib
import hashlib
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import asyncssh
import pytest

from tests.servers.clients import (
    FTP_USER,
    SFTP_USER,
    control_get,
    events_of,
    ftp_login,
    require_tools,
    reset,
    run,
    ssh_options,
    store,
)

OLD = b"the previous recording, whole " * 300  # 9,000 bytes
NEW = b"N" * 30_000
LIMIT = 20_000  # max_upload_bytes: OLD fits, NEW does not
CLIENT_KEY = asyncssh.generate_private_key("ssh-ed25519")
CLIENT_LINE = " ".join(CLIENT_KEY.export_public_key().decode().split()[:2])


@pytest.fixture
def farm(farm_factory):
    return farm_factory({"name": "overwrites", "servers": [
        {"name": "ftp", "kind": "ftp", "users": [FTP_USER], "failed_login_delay": 0,
         "max_upload_bytes": LIMIT},
        {"name": "sftp", "kind": "sftp", "max_upload_bytes": LIMIT,
         "users": [{**SFTP_USER, "authorized_keys": [CLIENT_LINE]}]},
    ]}, control_port=0)


def _stored_and_listed(farm, server: str, user: str) -> tuple[bytes, list[dict]]:
    """The bytes the control plane serves for snap.jpg and the listing it gives."""
    url = f"{farm.control_url}/servers/{server}/files/{user}/snap.jpg"
    with urllib.request.urlopen(url, timeout=10) as reply:
        stored = reply.read()
    return stored, control_get(farm, f"/servers/{server}/files")["files"]


def _assert_old_file_kept(farm, server: str, user: str) -> None:
    stored, listing = _stored_and_listed(farm, server, user)
    assert stored == OLD
    assert [(f["path"], f["size"], f["sha256"]) for f in listing] == [
        ("snap.jpg", len(OLD), hashlib.sha256(OLD).hexdigest())]
    root = farm[server].call(lambda m: m.user_root(user))
    assert sorted(p.name for p in Path(root).iterdir()) == ["snap.jpg"]  # no temporary left


# -- FTP with ftplib ---------------------------------------------------------------------------
def _ftp_abor(client: ftplib.FTP) -> None:
    data = client.transfercmd("STOR snap.jpg")
    data.sendall(NEW[:5000])
    time.sleep(0.1)
    client.putcmd("ABOR")
    assert client.getline().startswith("426")
    assert client.getline().startswith("226")
    data.close()


def _ftp_control_dropped(client: ftplib.FTP) -> None:
    """The camera loses power: the control connection goes first, the data one after."""
    data = client.transfercmd("STOR snap.jpg")
    data.sendall(NEW[:5000])
    time.sleep(0.1)
    client.close()  # the reply file and the socket: the control connection is gone
    time.sleep(0.2)
    data.close()


def _ftp_data_reset(client: ftplib.FTP) -> None:
    data = client.transfercmd("STOR snap.jpg")
    data.sendall(NEW[:5000])
    time.sleep(0.1)
    reset(data)
    assert client.getline().startswith("426")


def _ftp_cut_fault(client: ftplib.FTP, farm) -> None:
    farm.add_fault(fault="cut_transfer", member="ftp", after_bytes=1000, times=1)
    try:
        store(client, "snap.jpg", NEW)
    except ftplib.error_temp as exc:
        reply = str(exc)
    except (BrokenPipeError, ConnectionResetError):
        # The cut reached ftplib while it was still sending (a busy machine: the server read
        # its 1000 bytes and closed before the client's last blocks went out); the reply is
        # still on the control connection, unread.
        reply = client.getline()
    else:
        raise AssertionError("the cut upload was answered as complete")
    assert reply.startswith("426"), reply


def _ftp_over_the_limit(client: ftplib.FTP) -> None:
    with pytest.raises(ftplib.error_perm, match="^552"):
        store(client, "snap.jpg", NEW)


FTP_ABORTS: list[tuple[str, Callable[..., None]]] = [
    ("abor", _ftp_abor),
    ("control-connection-dropped", _ftp_control_dropped),
    ("data-connection-reset", _ftp_data_reset),
    ("cut-transfer-fault", _ftp_cut_fault),
    ("over-the-size-limit", _ftp_over_the_limit),
]


@pytest.mark.parametrize("abort", [pytest.param(f, id=name) for name, f in FTP_ABORTS])
@pytest.mark.parametrize("passive", [True, False], ids=["PASV", "PORT"])
def test_ftp_aborted_overwrite_keeps_the_old_file(farm, abort, passive):
    with ftp_login(farm["ftp"]) as client:
        store(client, "snap.jpg", OLD)
    client = ftp_login(farm["ftp"])
    try:
        client.set_pasv(passive)
        client.voidcmd("TYPE I")
        if abort is _ftp_cut_fault:
            abort(client, farm)
        else:
            abort(client)
    finally:
        client.close()
    events_of(farm["ftp"], "refused" if abort is _ftp_over_the_limit else "upload_incomplete")
    _assert_old_file_kept(farm, "ftp", "cam")


def test_ftp_complete_overwrite_replaces_file_and_record(farm):
    with ftp_login(farm["ftp"]) as client:
        store(client, "snap.jpg", OLD)
        store(client, "snap.jpg", NEW[:LIMIT])
    stored, listing = _stored_and_listed(farm, "ftp", "cam")
    assert stored == NEW[:LIMIT]
    assert listing[-1]["sha256"] == hashlib.sha256(NEW[:LIMIT]).hexdigest()


# -- FTP with lftp -----------------------------------------------------------------------------
@pytest.mark.parametrize("fault", [
    pytest.param({"fault": "cut_transfer", "after_bytes": 1000}, id="cut-transfer-fault"),
    pytest.param(None, id="over-the-size-limit"),
])
def test_lftp_aborted_overwrite_keeps_the_old_file(farm, tmp_path, fault):
    require_tools("lftp", package="lftp")
    with ftp_login(farm["ftp"]) as client:
        store(client, "snap.jpg", OLD)
    if fault is not None:
        farm.add_fault(member="ftp", **fault)  # every attempt lftp makes is cut
    source = tmp_path / "snap.jpg"
    source.write_bytes(NEW[:LIMIT] if fault else NEW)  # the cut comes before the limit
    script = (f"set cmd:fail-exit yes; set net:max-retries 2; set net:reconnect-interval-base 0;"
              f" set net:timeout 10; set ftp:passive-mode true;"
              f" open -u cam,s3cret ftp://127.0.0.1:{farm['ftp'].port}; put {source}")
    done = subprocess.run(["lftp", "-c", script], capture_output=True, text=True, timeout=90,
                          check=False)
    assert done.returncode != 0, done.stdout
    farm.clear_faults()
    _assert_old_file_kept(farm, "ftp", "cam")


# -- SFTP with asyncssh ------------------------------------------------------------------------
async def _sftp_session(handle, action) -> None:
    options = ssh_options(handle, password=SFTP_USER["password"])
    async with asyncssh.connect("127.0.0.1", handle.port, **options) as conn:
        sftp = await conn.start_sftp_client()
        await action(conn, sftp)


async def _sftp_connection_dropped(conn, sftp) -> None:
    fh = await sftp.open("snap.jpg", "wb")
    await fh.write(NEW[:5000])
    conn.abort()  # no close: the camera loses power mid-upload


async def _sftp_channel_closed(conn, sftp) -> None:
    fh = await sftp.open("snap.jpg", "wb")
    await fh.write(NEW[:5000])
    sftp.exit()  # the SFTP session ends with the file still open
    await sftp.wait_closed()


async def _sftp_over_the_limit(conn, sftp) -> None:
    with pytest.raises(asyncssh.SFTPFailure, match="Upload size limit exceeded"):
        async with sftp.open("snap.jpg", "wb") as fh:
            await fh.write(NEW)


async def _sftp_put(conn, sftp) -> None:
    async with sftp.open("snap.jpg", "wb") as fh:
        await fh.write(OLD)


SFTP_ABORTS = [
    ("connection-dropped", _sftp_connection_dropped, None),
    ("sftp-session-closed-with-file-open", _sftp_channel_closed, None),
    ("over-the-size-limit", _sftp_over_the_limit, None),
    ("disk-full-fault", None, {"fault": "disk_full"}),
    ("cut-transfer-fault", None, {"fault": "cut_transfer", "after_bytes": 1000}),
]


async def _sftp_put_new(conn, sftp) -> None:
    async with sftp.open("snap.jpg", "wb") as fh:
        await fh.write(NEW[:LIMIT])


@pytest.mark.parametrize(("action", "fault"), [pytest.param(a, f, id=name)
                                               for name, a, f in SFTP_ABORTS])
def test_sftp_aborted_overwrite_keeps_the_old_file(farm, action, fault):
    handle = farm["sftp"]
    run(_sftp_session(handle, _sftp_put))
    if fault is not None:
        farm.add_fault(member="sftp", times=1, **fault)
        with pytest.raises((asyncssh.Error, OSError)):
            run(_sftp_session(handle, _sftp_put_new))
    else:
        try:
            run(_sftp_session(handle, action))
        except (asyncssh.Error, OSError):
            pass  # the session was dropped on purpose
    events_of(handle, "refused" if fault == {"fault": "disk_full"} or
              action is _sftp_over_the_limit else "upload_incomplete")
    _assert_old_file_kept(farm, "sftp", SFTP_USER["name"])


def test_sftp_complete_overwrite_replaces_file_and_record(farm):
    handle = farm["sftp"]
    run(_sftp_session(handle, _sftp_put))
    run(_sftp_session(handle, _sftp_put_new))
    stored, listing = _stored_and_listed(farm, "sftp", SFTP_USER["name"])
    assert stored == NEW[:LIMIT]
    assert [f["sha256"] for f in listing] == [hashlib.sha256(OLD).hexdigest(),
                                              hashlib.sha256(NEW[:LIMIT]).hexdigest()]


# -- SFTP with OpenSSH's sftp ------------------------------------------------------------------
@pytest.mark.parametrize("fault", [
    pytest.param({"fault": "cut_transfer", "after_bytes": 1000}, id="cut-transfer-fault"),
    pytest.param(None, id="over-the-size-limit"),
])
def test_openssh_sftp_aborted_overwrite_keeps_the_old_file(farm, tmp_path, fault):
    require_tools("sftp", package="openssh-client")
    handle = farm["sftp"]
    run(_sftp_session(handle, _sftp_put))
    key = tmp_path / "id_ed25519"
    key.write_bytes(CLIENT_KEY.export_private_key("openssh"))
    key.chmod(0o600)
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{handle.port} {handle.description['host_key']['line']}\n")
    source = tmp_path / "new.jpg"
    source.write_bytes(NEW[:LIMIT] if fault else NEW)  # the cut comes before the limit
    batch = tmp_path / "batch"
    batch.write_text(f"put {source} snap.jpg\n")
    if fault is not None:
        farm.add_fault(member="sftp", times=1, **fault)
    done = subprocess.run(
        ["sftp", "-b", str(batch), "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes",
         "-o", "IdentityAgent=none", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={known}",
         "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
         "-P", str(handle.port), f"{SFTP_USER['name']}@127.0.0.1"],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0, done.stdout
    events_of(handle, "upload_incomplete" if fault else "refused")
    _assert_old_file_kept(farm, "sftp", SFTP_USER["name"])


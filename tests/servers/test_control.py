"""The control plane's server routes, driven over HTTP with urllib, plus the ready document."""

from __future__ import annotations

import ftplib
import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from emulators import scenario
from tests.servers.clients import (
    FTP_USER,
    SFTP_USER,
    events_of,
    ftp_login,
    run,
    ssh_options,
    store,
)

KEY = asyncssh.generate_private_key("ssh-ed25519")
KEY_LINE = " ".join(KEY.export_public_key().decode().split()[:2])
OTHER_LINE = " ".join(asyncssh.generate_private_key("ssh-ed25519").export_public_key()
                      .decode().split()[:2])
SCENARIO = {
    "name": "servers-test",
    "servers": [
        {"name": "ftp", "kind": "ftp", "tls": "explicit", "users": [FTP_USER],
         "failed_login_delay": 0},
        {"name": "sftp", "kind": "sftp", "users": [SFTP_USER]},
    ],
}


def call(farm, method: str, path: str, body: Any = None,
         content_type: str = "application/json") -> tuple[int, Any, bytes]:
    data = None
    if body is not None:
        if isinstance(body, bytes):
            data = body
        else:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    # A state change needs JSON or X-Requested-With (control/origin.py): a text body in
    # authorized_keys format comes with the header, as emulators ctl sends it.
    headers = {"Content-Type": content_type} if data else {}
    if method != "GET":
        headers["X-Requested-With"] = "tests"
    request = urllib.request.Request(farm.control_url + path, data=data, method=method,
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            raw = reply.read()
            status, kind = reply.status, reply.headers.get_content_type()
    except urllib.error.HTTPError as err:
        with err:
            raw = err.read()
            status, kind = err.code, err.headers.get_content_type()
    return status, json.loads(raw) if kind == "application/json" else None, raw


@pytest.fixture
def farm(farm_factory, tmp_path: Path):
    return farm_factory(SCENARIO, tmp_path, control_port=0)


def test_ready_document_describes_both_servers(farm, tmp_path: Path):
    servers = {s["name"]: s for s in farm.ready["servers"]}
    ftp, sftp = servers["ftp"], servers["sftp"]
    assert ftp["urls"] == {"ftp": f"ftp://127.0.0.1:{ftp['port']}",
                           "ftps": f"ftp://127.0.0.1:{ftp['port']}"}
    assert ftp["credentials"]["users"] == [{"name": "cam", "password": "s3cret", "home": "cam",
                                            "read_only": False}]
    assert ftp["tls"]["ca_file"] == str(tmp_path / "farm-ca.pem")
    assert Path(ftp["tls"]["ca_file"]).read_text() == farm.ready["ca"]["pem"]
    assert sftp["urls"] == {"sftp": f"sftp://127.0.0.1:{sftp['port']}"}
    assert sftp["host_key"]["fingerprint"].startswith("SHA256:")
    assert sftp["credentials"]["users"][0]["authorized_keys"] == 0
    # The private host key never leaves the flash through the control plane.
    status, state, _ = call(farm, "GET", "/servers/sftp/state")
    assert status == 200
    assert "host_key" not in state
    assert state["host_key_blob"] == sftp["host_key"]["blob"]


def test_list_and_fetch_received_files(farm):
    with ftp_login(farm["ftp"]) as client:
        client.mkd("2026")
        store(client, "2026/snap.jpg", b"\xff\xd8jpeg")
    run(_sftp_put(farm["sftp"], "clip.mp4", b"mp4"))
    status, listing, _ = call(farm, "GET", "/servers/ftp/files")
    assert status == 200
    assert [(f["user"], f["path"], f["size"]) for f in listing["files"]] == [
        ("cam", "2026/snap.jpg", 6)]
    status, body, raw = call(farm, "GET", "/servers/ftp/files/cam/2026/snap.jpg")
    assert (status, raw) == (200, b"\xff\xd8jpeg")
    status, listing, _ = call(farm, "GET", "/servers/sftp/files?user=ipcamera")
    assert [f["path"] for f in listing["files"]] == ["clip.mp4"]
    assert call(farm, "GET", "/servers/sftp/files?user=nobody")[1]["files"] == []
    status, _, raw = call(farm, "GET", "/servers/sftp/files/ipcamera/clip.mp4")
    assert (status, raw) == (200, b"mp4")


def test_events_route(farm):
    with pytest.raises(ftplib.error_perm):
        ftp_login(farm["ftp"], password="nope")
    events_of(farm["ftp"], "login_failed")
    status, body, _ = call(farm, "GET", "/servers/ftp/events")
    assert status == 200
    assert [(e["event"], e["user"], e["protocol"]) for e in body["events"]] == [
        ("login_failed", "cam", "ftp")]


@pytest.mark.parametrize(("path", "status", "message"), [
    ("/servers/ftp/files/cam/missing.jpg", 404, "no file 'cam/missing.jpg' on ftp"),
    ("/servers/ftp/files/nobody/x.jpg", 404, "no user 'nobody' on ftp"),
    ("/servers/ftp/files/cam", 404, "Not Found"),  # {user}/{path}: no route names a user alone
    ("/servers/ftp/files/cam/%2E%2E/%2E%2E/ftp.json", 400,
     "'cam/../../ftp.json' is not a path under a user's root"),
    ("/servers/ftp/files/cam/a%00b.jpg", 400, "'cam/a\\x00b.jpg' is not a path under a user's root"),
    ("/servers/ftp/files/cam/link/secret.txt", 400,
     "'cam/link/secret.txt' leads outside the user's root"),
    ("/servers/nope/files", 404, "no upload server named 'nope'"),
    ("/servers/ftp/users/cam/authorized_keys", 404, "no sftp server named 'ftp'"),
    ("/servers/sftp/users/nobody/authorized_keys", 404, "no user 'nobody' on sftp"),
], ids=["missing-file", "unknown-user", "no-path", "dotdot", "nul", "symlink-out", "unknown-server",
        "keys-on-ftp", "keys-unknown-user"])
def test_bad_requests_get_the_control_error_form(farm, tmp_path, path, status, message):
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.txt").write_text("secret")
    root = farm["ftp"].call(lambda m: m.user_root("cam"))
    if not (root / "link").exists():
        (root / "link").symlink_to(outside)
    got_status, body, _ = call(farm, "GET", path)
    assert got_status == status
    assert body["error"]["message"] == message
    assert body["error"]["code"] == ("not_found" if status == 404 else "bad_request")


def test_authorized_keys_post_get_put(farm):
    sftp = farm["sftp"]
    status, body, _ = call(farm, "POST", "/servers/sftp/users/ipcamera/authorized_keys",
                           {"key": KEY_LINE + " camera"})
    assert status == 200
    assert body == {"server": "sftp", "user": "ipcamera",
                    "authorized_keys": [KEY_LINE + " camera"]}
    run(_sftp_put(sftp, "by-key.jpg", b"k", client_keys=[KEY], password=None))
    # The same key again changes nothing; text bodies in authorized_keys format work too.
    call(farm, "POST", "/servers/sftp/users/ipcamera/authorized_keys", KEY_LINE + " camera",
         content_type="text/plain")
    assert call(farm, "GET", "/servers/sftp/users/ipcamera/authorized_keys")[1][
        "authorized_keys"] == [KEY_LINE + " camera"]
    status, body, _ = call(farm, "PUT", "/servers/sftp/users/ipcamera/authorized_keys",
                           f"# replaced\n{OTHER_LINE}\n", content_type="text/plain")
    assert (status, body["authorized_keys"]) == (200, [OTHER_LINE])
    with pytest.raises(asyncssh.PermissionDenied):
        run(_sftp_put(sftp, "refused.jpg", b"k", client_keys=[KEY], password=None))
    status, body, _ = call(farm, "PUT", "/servers/sftp/users/ipcamera/authorized_keys",
                           {"authorized_keys": []})
    assert (status, body["authorized_keys"]) == (200, [])


@pytest.mark.parametrize(("method", "body", "content_type", "message"), [
    ("POST", {"key": "ssh-rsa AAAA"}, "application/json", "not an OpenSSH public key line"),
    ("POST", {"key": "hello world"}, "application/json", "not an OpenSSH public key line"),
    ("POST", {"authorized_keys": [KEY_LINE, OTHER_LINE]}, "application/json",
     "POST adds exactly one key; PUT replaces the list"),
    ("POST", {}, "application/json", "give 'authorized_keys' (a list of lines) or 'key'"),
    ("PUT", {"authorized_keys": KEY_LINE}, "application/json",
     "authorized keys are strings, one OpenSSH public key line each"),
    ("PUT", {"authorized_keys": [1]}, "application/json",
     "authorized keys are strings, one OpenSSH public key line each"),
    ("PUT", "{not json", "application/json", "body is not JSON"),
    ("PUT", "[]", "application/json", "body must be a JSON object"),
    ("PUT", b"ssh-ed25519 \xff\xfe", "text/plain", "an authorized_keys body is UTF-8 text"),
    ("POST", "", "text/plain", "POST adds exactly one key; PUT replaces the list"),
], ids=["truncated-key", "not-a-key", "post-two", "post-nothing", "put-string", "put-number",
        "bad-json", "json-list", "binary-text", "empty-text"])
def test_bad_authorized_keys_bodies(farm, method, body, content_type, message):
    status, reply, _ = call(farm, method, "/servers/sftp/users/ipcamera/authorized_keys", body,
                            content_type=content_type)
    assert status == 400
    assert message in reply["error"]["message"]
    assert farm["sftp"].call(lambda m: m.authorized_keys("ipcamera")) == []


def test_example_scenario_is_valid():
    path = Path(__file__).resolve().parents[2] / "scenarios" / "servers.yaml"
    loaded = scenario.load(path)
    assert [(m.name, m.kind) for m in loaded.members] == [("ftp", "ftp"), ("sftp", "sftp")]


async def _sftp_put(handle, path: str, data: bytes, **login: Any) -> None:
    login.setdefault("password", "password")
    if login["password"] is None:
        del login["password"]
    async with asyncssh.connect("127.0.0.1", handle.port, **ssh_options(handle, **login)) as c:
        async with c.start_sftp_client() as sftp:
            async with sftp.open(path, "wb") as fh:
                await fh.write(data)


def test_server_events_reach_the_farm_journal(farm):
    with ftp_login(farm["ftp"]) as client:
        store(client, "journal.jpg", b"j")
    upload = farm.wait_for_upload("ftp", timeout=5)
    assert (upload["member"], upload["protocol"], upload["user"], upload["path"]) == (
        "ftp", "ftp", "cam", "journal.jpg")
    assert upload["detail"]["sha256"] == hashlib.sha256(b"j").hexdigest()
    run(_sftp_put(farm["sftp"], "j.mp4", b"mp4"))
    entries = farm.journal(member="sftp")
    assert [e["event"] for e in entries] == ["login", "upload"]
    assert entries[0]["detail"] == {"method": "password"}
    assert all("password" not in json.dumps(e) for e in entries if e["event"] != "login")


def test_snapshot_restore_brings_back_records_and_files(farm):
    with ftp_login(farm["ftp"]) as client:
        store(client, "before.jpg", b"before")
    farm.snapshot("one-upload", ["ftp"])
    with ftp_login(farm["ftp"]) as client:
        store(client, "after.jpg", b"after")
    farm.restore("one-upload", ["ftp"])
    assert [r["path"] for r in farm["ftp"].call(lambda m: m.received_files())] == [
        "before.jpg"]
    status, _, raw = call(farm, "GET", "/servers/ftp/files/cam/before.jpg")
    assert (status, raw) == (200, b"before")
    assert call(farm, "GET", "/servers/ftp/files/cam/after.jpg")[0] == 404

"""Access: every device endpoint refuses missing and wrong credentials in its vendor's form; the
control plane binds loopback and can require a token; upload servers keep users in their roots;
and a request that declares a 1 GB body is refused before it is read, on every HTTP member.

Confinement cases that tests/servers already holds (``..`` on CWD/STOR and SFTP open, a linked
folder out of the root, link creation) are not repeated here; the rows below add absolute paths,
renames, other users' homes and linked files.
"""

from __future__ import annotations

import asyncio
import ftplib
import io
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from emulators.instar.responses import COMMANDS as INSTAR_COMMANDS
from emulators.iotda.urls import ROUTES as IOTDA_ROUTES
from emulators.testing import MemberHandle, RunningFarm
from tests.control_support import urlopen_reply
from tests.robustness.clients import (
    ACTI_AUTH,
    ENOS_ORG,
    FTP_PASSWORD,
    FTP_USER,
    IOTDA_PROJECT,
    SFTP_PASSWORD,
    SFTP_USER,
    Reply,
    basic,
    exchange,
    http_request,
    member_state,
)

# -- credentials on every device endpoint ------------------------------------------------------

ACTI_ENDPOINTS = {
    # (method, path, command) — every command of both CGIs (README "Commands")
    "update-read-https-cer": ("GET", "/cgi-bin/update", "HTTPS_CER"),
    "update-upload-form": ("GET", "/cgi-bin/update", "HTTPS_CER=upload"),
    "update-remove": ("GET", "/cgi-bin/update", "HTTPS_CER=remove"),
    "update-save-with-credentials": ("POST", "/cgi-bin/update", "HTTPS_CER_SAVE"),
    "update-csr-read": ("GET", "/cgi-bin/update", "HTTPS_CSR_CREATE"),
    "update-csr-create": ("GET", "/cgi-bin/update",
                          "HTTPS_CSR_CREATE=TW,Taipei,Taipei,ACTi,RD,cam,1024"),
    "update-factory-default": ("GET", "/cgi-bin/update", "FACTORY_DEFAULT"),
    "update-config-reset": ("GET", "/cgi-bin/update", "CONFIG_RESET"),
    "system-factory-default": ("GET", "/cgi-bin/system", "FACTORY_DEFAULT=ALL"),
    "system-config-reset": ("GET", "/cgi-bin/system", "CONFIG_RESET"),
}
ACTI_CREDENTIALS = {"missing": "", "wrong-password": "USER=admin&PWD=654321&",
                    "unknown-user": "USER=root&PWD=123456&", "user-only": "USER=admin&"}

INSTAR_CREDENTIALS = {"missing": {}, "wrong-basic": {"Authorization": basic("admin", "nope")},
                      "unknown-user": {"Authorization": basic("root", "instar")},
                      "malformed-basic": {"Authorization": "Basic ###"}}

ENOS_ENDPOINTS = {"apply": "POST", "renew": "POST", "revoke": "POST", "list": "GET"}
ENOS_CREDENTIALS: dict[str, tuple[dict[str, str], int, str]] = {
    "missing": ({}, 1202, "The parameter is empty."),
    "empty-token": ({"apim-accesstoken": ""}, 1202, "The parameter is empty."),
    "forged-signed-token": ({"apim-accesstoken": "forged", "apim-timestamp": "1700000000000",
                             "apim-signature": "0" * 64}, 1004, "Invalid parameter."),
}

IOTDA_CREDENTIALS: dict[str, tuple[dict[str, str], str]] = {
    "missing": ({}, "x-auth-token not found"),
    "unknown-token": ({"X-Auth-Token": "forged"}, "decrypt token fail"),
    "garbage-signature": ({"Authorization": "SDK-HMAC-SHA256 Access=IOTDAEMULATORAK00001, "
                                            "SignedHeaders=host, Signature=00",
                           "X-Sdk-Date": "20260101T000000Z"}, "verify aksk signature fail"),
}


def _iotda_path(canonical: str) -> str:
    return (canonical.replace("{project_id}", IOTDA_PROJECT)
            .replace("{certificate_id}", "0" * 24)
            .replace("{device_id}", "robust_device").replace("{product_id}", "robustproduct")
            .replace("{rule_id}", "robust-rule").replace("{action_id}", "robust-action")
            .replace("{queue_id}", "robust-queue"))


def _access_rows() -> list[Any]:
    rows = []
    for endpoint, (method, path, command) in ACTI_ENDPOINTS.items():
        for cred_id, creds in ACTI_CREDENTIALS.items():
            rows.append(pytest.param("acti", method, f"{path}?{creds}{command}", {}, None,
                                     id=f"acti-{endpoint}-{cred_id}"))
    for name in sorted(INSTAR_COMMANDS):
        for cred_id, headers in INSTAR_CREDENTIALS.items():
            rows.append(pytest.param("instar", "GET", f"/param.cgi?cmd={name}", headers, None,
                                     id=f"instar-{name}-{cred_id}"))
    for action, method in ENOS_ENDPOINTS.items():
        for cred_id, (headers, _status, _msg) in ENOS_CREDENTIALS.items():
            target = (f"/connect-service/v2.0/certificates?action={action}&orgId={ENOS_ORG}"
                      "&assetId=assetA")
            rows.append(pytest.param("enos", method, target, headers, cred_id,
                                     id=f"enos-{action}-{cred_id}"))
    for route in IOTDA_ROUTES:
        path = _iotda_path(route.path)  # type: ignore[attr-defined]
        if route.path.endswith("/action"):  # type: ignore[attr-defined]
            path += ("?action_id=resetSecret" if "{device_id}" in route.path  # type: ignore[attr-defined]
                     else "?action_id=verify")
        name = f"{route.method.lower()}-{route.handler.__name__}"  # type: ignore[attr-defined]
        for cred_id, (headers, _msg) in IOTDA_CREDENTIALS.items():
            rows.append(pytest.param("iotda", route.method, path,  # type: ignore[attr-defined]
                                     headers, cred_id, id=f"iotda-{name}-{cred_id}"))
    return rows


def _check_refusal(member: str, reply: Reply, cred_id: str | None) -> None:
    if member == "acti":
        assert (reply.version, reply.status, reply.reason) == ("HTTP/1.0", 400, "Unauthorized")
        assert reply.body == b"ERROR: not authorized\n"
    elif member == "instar":
        assert reply.status == 401
        assert reply.headers["www-authenticate"] == 'Basic realm="INSTAR"'
        assert reply.body == b"401 Unauthorized"
    elif member == "enos":
        _headers, status, msg = ENOS_CREDENTIALS[cred_id or ""]
        assert reply.status == 200
        assert reply.json() == {"status": status, "msg": msg, "business": "apim-gateway",
                                "apim_status": 4012}
    else:
        _headers, msg = IOTDA_CREDENTIALS[cred_id or ""]
        assert reply.status == 401
        body = reply.json()
        assert body["error_code"] == "APIGW.0301"
        assert body["error_msg"] == f"Incorrect IAM authentication information: {msg}"
        assert len(body["request_id"]) == 32


def test_every_instar_command_and_iotda_route_is_in_the_table() -> None:
    """The table is built from the emulators' own registries, so a new command or route is
    covered the day it is added; this pins the counts a reader can check against the READMEs."""
    assert len(INSTAR_COMMANDS) == 12
    # 10 certificate routes, 18 of device management, 15 of data forwarding
    assert len(IOTDA_ROUTES) == 43


@pytest.mark.parametrize(("member", "method", "target", "headers", "cred_id"), _access_rows())
def test_endpoint_refuses_missing_and_wrong_credentials(
        robust_farm: RunningFarm, member: str, method: str, target: str,
        headers: dict[str, str], cred_id: str | None) -> None:
    handle = robust_farm[member]
    before = member_state(handle)
    body = b'{"certSn": 52770, "csr": "x"}' if method in ("POST", "PUT") else b""
    all_headers = {"Content-Type": "application/json", **headers} if body else headers
    reply = exchange(handle.port, http_request(method, target, headers=all_headers, body=body))
    _check_refusal(member, reply, cred_id)
    assert member_state(handle) == before


def test_public_enos_paths_are_the_documented_ones(robust_farm: RunningFarm) -> None:
    """EnOS's CA downloads and token service are public (README); nothing else is."""
    port = robust_farm["enos"].port
    assert exchange(port, http_request("GET", "/enos/CA/cacert/RSA")).status == 200
    hidden = exchange(port, http_request("GET", "/enos/secret"))
    assert hidden.json()["status"] == 1202


# -- the control plane -------------------------------------------------------------------------

def _control(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    return urlopen_reply(request, timeout=5)


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (from /proc, IPv4)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, hexport = fields[1].split(":")
        if int(hexport, 16) == port and fields[3] == "0A":
            octets = [str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)]
            found.add(".".join(octets))
    return found


def test_control_plane_listens_on_loopback_only_by_default(robust_farm: RunningFarm) -> None:
    port = robust_farm.farm.control.port
    assert _listening_addresses(port) == {"127.0.0.1"}
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.2", port), 2):
        pass
    assert robust_farm.ready["control"]["token_required"] is False


def test_control_plane_token_is_required_when_configured(emulators_loop: Any) -> None:
    token = "s3cret-control-token"
    scenario = {"name": "token", "control": {"token": token},
                "emulators": [{"name": "acti", "kind": "acti-camera"}]}
    with RunningFarm.start(scenario, loop=emulators_loop) as farm:
        url = farm.control_url
        assert farm.ready["control"]["token_required"] is True
        for given in (None, "wrong-token", token + "x", token.upper()):
            status, body = _control(f"{url}/emulators", given)
            assert status == 401, given
            assert b'"error"' in body
        status, _ = _control(f"{url}/emulators/acti/state", token)
        assert status == 200
        # A request with a bad token changes nothing either.
        request = urllib.request.Request(f"{url}/reset", method="POST",
                                         headers={"Authorization": "Bearer nope"})
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        caught.value.close()
        assert caught.value.code == 401


# -- upload servers: confinement ---------------------------------------------------------------

def _ftp(handle: MemberHandle) -> ftplib.FTP:
    client = ftplib.FTP()
    client.connect("127.0.0.1", handle.port, timeout=10)
    client.login(FTP_USER, FTP_PASSWORD)
    return client


def _setup_outside(handle: MemberHandle, user: str, tmp_path: Path) -> tuple[Path, Path]:
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.txt").write_text("secret")
    root = handle.call(lambda m: m.user_root(user))
    for link in ("linked-file", "linked-dir"):
        (root / link).unlink(missing_ok=True)
    (root / "linked-file").symlink_to(outside / "secret.txt")
    (root / "linked-dir").symlink_to(outside)
    return root, outside


FTP_CONFINEMENT: dict[str, tuple[Callable[[ftplib.FTP], Any], str | None, str | None]] = {
    # id: (what the client does, the refusal it gets (None: allowed), where the file lands)
    "absolute-path-lands-in-root": (
        lambda c: c.storbinary("STOR /etc/owned.txt", io.BytesIO(b"x")), "550 ", None),
    "absolute-root-file": (
        lambda c: c.storbinary("STOR /owned.txt", io.BytesIO(b"x")), None, "owned.txt"),
    "retr-linked-file": (lambda c: c.retrbinary("RETR linked-file", lambda _b: None),
                         "550 ", None),
    "rename-out-with-dotdot": (
        lambda c: (c.storbinary("STOR a.txt", io.BytesIO(b"x")),
                   c.rename("a.txt", "../../../renamed.txt")), None, "renamed.txt"),
    "rename-into-linked-dir": (
        lambda c: (c.storbinary("STOR b.txt", io.BytesIO(b"x")),
                   c.rename("b.txt", "linked-dir/b.txt")), "550 ", None),
    "mkd-through-linked-dir": (lambda c: c.mkd("linked-dir/new"), "550 ", None),
    "other-users-home": (
        lambda c: c.storbinary("STOR ../other/owned.txt", io.BytesIO(b"x")), "550 ", None),
    "dele-linked-target": (lambda c: c.delete("linked-dir/secret.txt"), "550 ", None),
}


@pytest.mark.parametrize("case_id", list(FTP_CONFINEMENT))
def test_ftp_user_stays_in_root(robust_farm: RunningFarm, tmp_path: Path, case_id: str) -> None:
    handle = robust_farm["ftp"]
    handle.reset()
    root, outside = _setup_outside(handle, FTP_USER, tmp_path)
    action, refusal, lands = FTP_CONFINEMENT[case_id]
    with _ftp(handle) as client:
        if refusal is None:
            action(client)
        else:
            with pytest.raises(ftplib.error_perm) as caught:
                action(client)
            assert str(caught.value).startswith(refusal)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "secret"
    files_dir = handle.call(lambda m: m.files_dir())
    assert not (files_dir / "other" / "owned.txt").exists()
    assert not (files_dir.parent / "renamed.txt").exists()
    if lands:
        assert (root / lands).is_file()


SFTP_CONFINEMENT = {
    "rename-out-with-dotdot": ("rename", "a.txt", "../../../renamed.txt", None),
    "rename-into-linked-dir": ("rename", "a.txt", "linked-dir/a.txt",
                               "Permission denied: path is outside the user's root"),
    # `/..` clamps at the user's root, where no folder "other" exists.
    "absolute-other-home": ("put", "/../other/owned.txt", None, "No such file or directory"),
    "stat-linked-file": ("stat", "linked-file", None,
                         "Permission denied: path is outside the user's root"),
    "remove-through-linked-dir": ("remove", "linked-dir/secret.txt", None,
                                  "Permission denied: path is outside the user's root"),
    "setstat-through-linked-dir": ("chmod", "linked-dir/secret.txt", None,
                                   "Permission denied: path is outside the user's root"),
}


@pytest.mark.parametrize("case_id", list(SFTP_CONFINEMENT))
def test_sftp_user_stays_in_root(robust_farm: RunningFarm, tmp_path: Path, case_id: str) -> None:
    handle = robust_farm["sftp"]
    handle.reset()
    root, outside = _setup_outside(handle, SFTP_USER, tmp_path)
    op, first, second, refusal = SFTP_CONFINEMENT[case_id]

    async def session() -> str | None:
        async with asyncssh.connect(
                "127.0.0.1", handle.port, username=SFTP_USER, password=SFTP_PASSWORD,
                known_hosts=None, client_keys=None, agent_path=None, connect_timeout=10,
        ) as conn, conn.start_sftp_client() as sftp:
            async with sftp.open("a.txt", "wb") as fh:
                await fh.write(b"x")
            try:
                if op == "rename":
                    await sftp.rename(first, second)
                elif op == "put":
                    async with sftp.open(first, "wb") as fh:
                        await fh.write(b"x")
                elif op == "stat":
                    await sftp.stat(first)
                elif op == "remove":
                    await sftp.remove(first)
                else:
                    await sftp.chmod(first, 0o777)
            except asyncssh.SFTPError as exc:
                return str(exc.reason)
            return None

    assert asyncio.run(session()) == refusal
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").stat().st_mode & 0o777 != 0o777
    files_dir = handle.call(lambda m: m.files_dir())
    assert not (files_dir / "other" / "owned.txt").exists()
    assert not (files_dir.parent / "renamed.txt").exists()
    if case_id == "rename-out-with-dotdot":
        assert (root / "renamed.txt").is_file()


# -- request size limits: a declared 1 GB body ---------------------------------------------------

GIGABYTE = 1073741824


def _declare_gigabyte(method: str, target: str, headers: dict[str, str]) -> bytes:
    head = http_request(method, target, headers={**headers, "Content-Length": str(GIGABYTE)},
                        content_length=False)
    return head + b"{\"a"  # a few bytes of the body, then nothing


def _gb_rows() -> list[Any]:
    json_ct = {"Content-Type": "application/json"}
    return [
        pytest.param("acti", "POST", f"/cgi-bin/update?{ACTI_AUTH}&HTTPS_CER_SAVE",
                     {"Content-Type": "multipart/form-data; boundary=x"},
                     (200, b"ERROR: internal error. file too large.\n"), id="acti-upload"),
        pytest.param("acti", "POST", "/cgi-bin/update?HTTPS_CER_SAVE",
                     {"Content-Type": "multipart/form-data; boundary=x"},
                     (400, b"ERROR: not authorized\n"), id="acti-upload-without-stage1"),
        pytest.param("acti", "GET", f"/cgi-bin/update?{ACTI_AUTH}&HTTPS_CER", {},
                     (200, b"HTTPS_CER='none'\n"), id="acti-get-with-body"),
        pytest.param("instar", "GET", "/param.cgi?cmd=getftpattr&user=admin&pwd=instar", {},
                     (413, b"413: Request Entity Too Large"), id="instar-get-with-body"),
        pytest.param("instar", "POST", "/param.cgi?cmd=setftpattr", {},
                     (413, b"413: Request Entity Too Large"), id="instar-post"),
        pytest.param("enos", "POST",
                     f"/connect-service/v2.0/certificates?action=apply&orgId={ENOS_ORG}"
                     "&assetId=assetA", {**json_ct, "apim-accesstoken": "sdk"},
                     (413, b'{"status": 413, "msg": "Request Entity Too Large", '
                           b'"business": "apim-gateway"}'), id="enos-apply"),
        pytest.param("enos", "POST", "/apim-token-service/v2.0/token/get", json_ct,
                     (413, b'{"status": 413, "msg": "Request Entity Too Large", '
                           b'"business": "apim-gateway"}'), id="enos-token-service"),
        pytest.param("iotda", "POST", f"/v5/iot/{IOTDA_PROJECT}/certificates",
                     {**json_ct, "X-Auth-Token": "forged"},
                     (400, b'{"error_code": "IOTDA.000008", "error_msg": "Invalid input. Bad '
                           b'request, for more detail, refer to the error message."}'),
                     id="iotda-add-certificate"),
        pytest.param("iotda", "PUT", f"/v5/iot/{IOTDA_PROJECT}/certificates/{'0' * 24}",
                     json_ct,
                     (400, b'{"error_code": "IOTDA.000008", "error_msg": "Invalid input. Bad '
                           b'request, for more detail, refer to the error message."}'),
                     id="iotda-update-certificate"),
    ]


@pytest.mark.parametrize(("member", "method", "target", "headers", "expected"), _gb_rows())
def test_declared_gigabyte_is_refused_before_it_is_read(
        robust_farm: RunningFarm, member: str, method: str, target: str,
        headers: dict[str, str], expected: tuple[int, bytes]) -> None:
    handle = robust_farm[member]
    before = member_state(handle)
    started = time.monotonic()
    reply = exchange(handle.port, _declare_gigabyte(method, target, headers), timeout=5,
                     close_within=2.5)
    assert (reply.status, reply.body) == expected
    assert reply.elapsed < 1.0, f"the reply took {reply.elapsed:.2f} s"
    # Closed once the client has been quiet a moment (up to 1 s of draining what it sends).
    assert reply.closed, "the connection stayed open after the refusal"
    assert time.monotonic() - started < 3.0
    assert member_state(handle) == before


@pytest.mark.parametrize(("member", "method", "target", "headers", "expected"),
                         [p for p in _gb_rows() if p.id != "acti-get-with-body"])
def test_oversized_body_actually_sent_still_gets_the_reply(
        robust_farm: RunningFarm, member: str, method: str, target: str,
        headers: dict[str, str], expected: tuple[int, bytes]) -> None:
    """A client that really sends 3 MiB (over every member's limit) while the refusal is
    already on its way still reads that refusal: the server drops the body rather than reset
    a connection the client is writing to."""
    handle = robust_farm[member]
    body = b"A" * (3 * 1024 * 1024)
    reply = exchange(handle.port, http_request(method, target, headers=headers, body=body),
                     timeout=10)
    assert (reply.status, reply.body) == expected


def test_control_plane_refuses_a_declared_gigabyte(robust_farm: RunningFarm) -> None:
    port = robust_farm.farm.control.port
    reply = exchange(port, _declare_gigabyte("POST", "/v1/faults",
                                             {"Content-Type": "application/json"}),
                     timeout=3, close_within=2.5)
    assert reply.status == 413
    assert reply.closed
    assert json.loads(reply.body)["error"]["code"] == "too_large"

"""testftp over sFTP against the farm's SFTP server: the seed's walk-through end to end (host
key answered, pinned with sethost, verified), the camera's own key, and the failure codes.
Both ways (tests/ways.py): one process, and four shards with the camera on shard 1 and the
SFTP servers on shard 0."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import asyncssh
import pytest

from emulators.testing import RemoteMember, ShardedFarm
from tests.ways import WAYS, both_ways

from .clients import FIXTURE_JPEG, SilentServer, cgi, free_port

USERS = [{"name": "ipcamera", "password": "password"},
         {"name": "viewer", "password": "look", "read_only": True}]

SCENARIO: dict[str, Any] = {
    "name": "instar-sftp",
    "servers": [
        {"name": "sftp", "kind": "sftp", "users": USERS},
        {"name": "sftp-other", "kind": "sftp", "users": USERS},
        {"name": "sftp-small", "kind": "sftp", "users": USERS, "max_upload_bytes": 600},
    ],
    "emulators": [
        {"name": "cam", "kind": "instar-camera", "upload_server": "sftp", "ssh_key_bits": 2048,
         "connect_timeout": 1.0, "io_timeout": 2.0,
         "ftp": {"ft_dirname": "recordings", "ft_dirmode": 0, "ft_insecure": 1,
                 "ft_autocreatedir": 1}},
    ],
}


@pytest.fixture(scope="module", params=WAYS)
def farm(request: pytest.FixtureRequest) -> Iterator[ShardedFarm]:
    yield from both_ways(SCENARIO, request.param, across=["cam"])


@pytest.fixture
def cam(farm: ShardedFarm) -> RemoteMember:
    handle = farm["cam"]
    handle.reset()
    farm.set_authorized_keys("sftp", "ipcamera", [])
    return handle


def setftp(cam: RemoteMember, **settings: Any) -> None:
    query = "&".join(f"{k}={v}" for k, v in settings.items())
    assert cgi(cam.url, f"cmd=setftpattr&{query}").response == "200"


def run_testftp(cam: RemoteMember, extra: str = "") -> dict[str, str]:
    reply = cgi(cam.url, f"cmd=testftp{extra}")
    assert (reply.status, reply.response) == (200, "200")
    return reply.values


def blob(server: RemoteMember) -> str:
    return server.description["host_key"]["blob"]  # type: ignore[no-any-return]


def events(server: RemoteMember, kind: str) -> list[dict[str, Any]]:
    return [e for e in server.farm.events(server.name) if e["event"] == kind]


def received(server: RemoteMember) -> list[dict[str, Any]]:
    return server.farm.files(server.name)


def sftp_mkdir(server: RemoteMember, user: str, password: str, path: str) -> None:
    """``mkdir`` as ``user`` with an SFTP client, the way the seed's user makes the folder."""
    line = server.description["host_key"]["line"]
    known = asyncssh.import_known_hosts(f"[{server.host}]:{server.port} {line}\n")

    async def mkdir() -> None:
        async with asyncssh.connect(server.host, server.port, username=user, password=password,
                                    known_hosts=known, client_keys=None, agent_path=None,
                                    connect_timeout=10) as conn, conn.start_sftp_client() as sftp:
            if not await sftp.exists(path):
                await sftp.mkdir(path)

    asyncio.run(mkdir())


def test_the_seeds_sftp_walkthrough(cam: RemoteMember, farm: ShardedFarm) -> None:
    server = farm["sftp"]
    # "mkdir recordings" as the ipcamera user, then upload without auto-creating it.
    sftp_mkdir(server, "ipcamera", "password", "recordings")
    setftp(cam, ft_autocreatedir=0)
    assert cgi(cam.url, "cmd=getftpattr").values["ft_ssl"] == "2"

    # With ft_insecure=1 testftp works and answers the server's host key, in the seed's layout.
    reply = cgi(cam.url, "cmd=testftp")
    key = blob(server)
    assert reply.body == (f'cmd="testftp";\r\nhostkey="{key}";\r\nresult="0";\r\n'
                          'response="200";\r\n')
    record = received(server)[-1]
    assert (record["user"], record["path"], record["protocol"]) == (
        "ipcamera", "recordings/Test-Snapshot.jpeg", "sftp")
    assert record["sha256"] == hashlib.sha256(FIXTURE_JPEG).hexdigest()
    assert farm.file("sftp", "ipcamera", "recordings/Test-Snapshot.jpeg") == FIXTURE_JPEG

    # Verifying without a pinned key fails with -5 before any login is tried.
    logins = len(events(server, "login")) + len(events(server, "login_failed"))
    setftp(cam, ft_insecure=0)
    refused = run_testftp(cam)
    assert refused == {"cmd": "testftp", "hostkey": key, "result": "-5", "response": "200"}
    assert len(events(server, "login")) + len(events(server, "login_failed")) == logins

    # sethost (URL-encoded, "+" as %2B) pins the key; the same request already verifies.
    assert run_testftp(cam, f"&sethost={quote(key, safe='')}")["result"] == "0"
    assert cam.state()["pinned_hostkey"] == key
    assert run_testftp(cam)["result"] == "0"


def test_a_pinned_key_of_another_server_is_refused(cam: RemoteMember, farm: ShardedFarm) -> None:
    other = blob(farm["sftp-other"])
    setftp(cam, ft_insecure=0)
    values = run_testftp(cam, f"&sethost={quote(other, safe='')}")
    assert values["result"] == "-5"
    assert values["hostkey"] == blob(farm["sftp"])


def test_the_camera_logs_in_with_its_getpubkey_key(cam: RemoteMember, farm: ShardedFarm) -> None:
    server = farm["sftp"]
    line = cgi(cam.url, "cmd=getpubkey").values["publickey"]
    assert line.startswith("ssh-rsa AAAAB3Nz")
    farm.authorize_key("sftp", "ipcamera", line)
    setftp(cam, ft_password="not-the-password")  # only the key can get it in now
    assert run_testftp(cam)["result"] == "0"
    assert events(server, "login")[-1]["method"] == "publickey"
    assert cam.state()["uploads"][-1]["auth"] == "publickey"


def test_password_login_when_the_key_is_not_authorised(cam: RemoteMember,
                                                       farm: ShardedFarm) -> None:
    assert run_testftp(cam)["result"] == "0"
    assert events(farm["sftp"], "login")[-1]["method"] == "password"
    assert cam.state()["uploads"][-1]["auth"] == "password"


def test_minus_1_when_nothing_listens(cam: RemoteMember) -> None:
    setftp(cam, ft_server="127.0.0.1", ft_port=free_port())
    values = run_testftp(cam)
    assert values["result"] == "-1"
    assert "hostkey" not in values


def test_minus_2_when_neither_key_nor_password_is_accepted(cam: RemoteMember) -> None:
    setftp(cam, ft_password="wrong")
    assert run_testftp(cam)["result"] == "-2"


def test_minus_3_when_the_folder_is_missing(cam: RemoteMember) -> None:
    setftp(cam, ft_dirname="no/such/folder", ft_autocreatedir=0)
    assert run_testftp(cam)["result"] == "-3"


def test_minus_3_when_the_account_is_read_only(cam: RemoteMember) -> None:
    setftp(cam, ft_username="viewer", ft_password="look", ft_dirname="./")
    assert run_testftp(cam)["result"] == "-3"


def test_minus_4_when_the_server_never_speaks(cam: RemoteMember,
                                              silent_server: SilentServer) -> None:
    setftp(cam, ft_server="127.0.0.1", ft_port=silent_server.port)
    assert run_testftp(cam)["result"] == "-4"


def test_minus_9_when_the_upload_is_cut_short(cam: RemoteMember, farm: ShardedFarm) -> None:
    server = farm["sftp-small"]
    setftp(cam, ft_port=server.port)
    assert run_testftp(cam)["result"] == "-9"
    assert received(server) == []


@pytest.mark.parametrize(("fault", "result"), [
    pytest.param({"fault": "refuse_login"}, "-2", id="refused-login"),
    pytest.param({"fault": "disk_full"}, "-9", id="disk-full"),
    pytest.param({"fault": "cut_transfer", "after_bytes": 200}, "-9", id="cut-transfer"),
])
def test_server_faults_give_the_matching_result(cam: RemoteMember, farm: ShardedFarm,
                                                fault: dict[str, Any], result: str) -> None:
    before = len(received(farm["sftp"]))
    farm.add_fault(member="sftp", times=1, **fault)
    try:
        assert run_testftp(cam)["result"] == result
    finally:
        farm.clear_faults()
    new = received(farm["sftp"])[before:]
    assert all(r["size"] < len(FIXTURE_JPEG) for r in new)  # a cut may leave a partial file


def test_the_servers_events_carry_the_testftp_requests_correlation(
        cam: RemoteMember, farm: ShardedFarm) -> None:
    farm.clear_journal()
    assert run_testftp(cam)["result"] == "0"
    request = farm.assert_requested(1, member="cam", path="/param.cgi")[0]
    events = {e["event"] for e in farm.journal(member="sftp",
                                               correlation_id=request["correlation_id"])}
    assert {"login", "upload"} <= events

"""testftp over FTP and explicit FTPS against the farm's own servers: what arrives, and each
result code from the real failure it names. Both ways (tests/ways.py): one process, and four
shards with the cameras on shards 1-3 and the servers on shard 0."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from emulators.testing import MemberHandle, RemoteMember, ShardedFarm
from tests.servers.clients import ftp_login
from tests.ways import WAYS, both_ways

from .clients import FIXTURE_JPEG, SilentServer, cgi, free_port

USERS = [{"name": "cam", "password": "secret"},
         {"name": "viewer", "password": "look", "read_only": True}]

SCENARIO: dict[str, Any] = {
    "name": "instar-ftp",
    "servers": [
        {"name": "ftp", "kind": "ftp", "users": USERS},
        {"name": "ftp-small", "kind": "ftp", "users": USERS, "max_upload_bytes": 600},
        {"name": "ftps", "kind": "ftp", "tls": "explicit", "users": USERS},
        {"name": "ftps-self", "kind": "ftp", "tls": "explicit", "certificate": "self-signed",
         "users": USERS},
        {"name": "ftps-wrongname", "kind": "ftp", "tls": "explicit",
         "certificate": "wrong-name", "users": USERS},
    ],
    "emulators": [
        {"name": "cam", "kind": "instar-camera", "upload_server": "ftp", "ssh_key_bits": 1024,
         "connect_timeout": 1.0, "io_timeout": 2.0,
         "ftp": {"ft_dirname": "uploads", "ft_autocreatedir": 1, "ft_dirmode": 0}},
        # An hour east of UTC, and one that trusts only the system's CAs.
        {"name": "cam-cet", "kind": "instar-camera", "upload_server": "ftp",
         "ssh_key_bits": 1024, "utc_offset_minutes": 60},
        {"name": "cam-system-ca", "kind": "instar-camera", "upload_server": "ftps",
         "ssh_key_bits": 1024, "trust_store": "system"},
    ],
}


@pytest.fixture(scope="module", params=WAYS)
def farm(request: pytest.FixtureRequest) -> Iterator[ShardedFarm]:
    yield from both_ways(SCENARIO, request.param, across=["cam", "cam-cet", "cam-system-ca"])


@pytest.fixture
def cam(farm: ShardedFarm) -> Iterator[RemoteMember]:
    handle = farm["cam"]
    handle.reset()
    yield handle
    farm.reset_clock()


def point(cam: MemberHandle | RemoteMember, server: MemberHandle | RemoteMember,
          **settings: Any) -> None:
    """Aim the camera at ``server`` (user cam) with extra setftpattr keys."""
    values = {"ft_server": server.host, "ft_port": server.port, "ft_username": "cam",
              "ft_password": "secret", **settings}
    query = "&".join(f"{k}={v}" for k, v in values.items())
    assert cgi(cam.url, f"cmd=setftpattr&{query}").response == "200"


def run_testftp(cam: RemoteMember | RemoteMember, extra: str = "") -> dict[str, str]:
    reply = cgi(cam.url, f"cmd=testftp{extra}")
    assert reply.status == 200
    assert reply.response == "200"
    return reply.values


def arrived(server: RemoteMember) -> list[dict[str, Any]]:
    return server.farm.files(server.name)


def stored_bytes(server: RemoteMember, user: str, path: str) -> bytes | None:
    return server.farm.file(server.name, user, path)


def listing(server: RemoteMember, user: str, password: str) -> list[str]:
    """The user's root as an FTP client lists it."""
    with ftp_login(server, user, password) as client:  # type: ignore[arg-type]
        return client.nlst()


# -- success ----------------------------------------------------------------------------------

def test_the_seeds_reply_layout_for_plain_ftp(cam: RemoteMember, farm: ShardedFarm) -> None:
    point(cam, farm["ftp"], ft_ssl=0)
    reply = cgi(cam.url, "cmd=testftp")
    assert reply.body == 'cmd="testftp";\r\nresult="0";\r\nresponse="200";\r\n'


@pytest.mark.parametrize(("ft_mode", "data_mode"), [
    pytest.param(1, "passive", id="PASV"), pytest.param(0, "active", id="PORT")])
def test_plain_ftp_upload_arrives_intact(cam: RemoteMember, farm: ShardedFarm,
                                         ft_mode: int, data_mode: str) -> None:
    server = farm["ftp"]
    before = len(arrived(server))
    point(cam, server, ft_ssl=0, ft_mode=ft_mode, ft_dirname=f"cams/{data_mode}")
    assert run_testftp(cam)["result"] == "0"
    new = arrived(server)[before:]
    assert len(new) == 1
    record = new[0]
    assert record["path"] == f"cams/{data_mode}/Test-Snapshot.jpeg"
    assert record["protocol"] == "ftp"
    assert record["mode"] == data_mode
    assert record["sha256"] == hashlib.sha256(FIXTURE_JPEG).hexdigest()
    data = stored_bytes(server, "cam", record["path"])
    assert data == FIXTURE_JPEG
    assert data[:3] == b"\xff\xd8\xff"
    assert data[-2:] == b"\xff\xd9"


@pytest.mark.parametrize(("ft_mode", "data_mode"), [
    pytest.param(1, "passive", id="PASV"), pytest.param(0, "active", id="PORT")])
def test_ftps_with_a_farm_ca_certificate_verifies(cam: RemoteMember, farm: ShardedFarm,
                                                  ft_mode: int, data_mode: str) -> None:
    server = farm["ftps"]
    point(cam, server, ft_ssl=1, ft_insecure=0, ft_dirname="./", ft_mode=ft_mode)
    assert run_testftp(cam)["result"] == "0"
    record = arrived(server)[-1]
    assert (record["path"], record["protocol"]) == ("Test-Snapshot.jpeg", "ftps")
    assert record["mode"] == data_mode
    assert stored_bytes(server, "cam", record["path"]) == FIXTURE_JPEG


def test_daily_folder_is_named_by_the_cameras_date(cam: RemoteMember, farm: ShardedFarm) -> None:
    farm.set_clock(1767225600 + 3600 * 23.5)  # 2026-01-01 23:30 UTC
    cet = farm["cam-cet"]  # 00:30 on the 2nd by the camera's own clock
    point(cet, farm["ftp"], ft_ssl=0, ft_dirmode=1, ft_dirname="daily", ft_autocreatedir=1)
    assert run_testftp(cet)["result"] == "0"
    assert arrived(farm["ftp"])[-1]["path"] == "daily/20260102/Test-Snapshot.jpeg"


def test_absolute_folder_is_under_the_users_root(cam: RemoteMember, farm: ShardedFarm) -> None:
    point(cam, farm["ftp"], ft_ssl=0, ft_dirname="/abs/path", ft_dirmode=0)
    assert run_testftp(cam)["result"] == "0"
    assert arrived(farm["ftp"])[-1]["path"] == "abs/path/Test-Snapshot.jpeg"


def test_self_signed_certificate_passes_with_ft_insecure(cam: RemoteMember,
                                                         farm: ShardedFarm) -> None:
    point(cam, farm["ftps-self"], ft_ssl=1, ft_insecure=1, ft_dirname="./", ft_dirmode=0)
    assert run_testftp(cam)["result"] == "0"


# -- failures, each from the real cause -------------------------------------------------------

def test_minus_1_when_nothing_listens(cam: RemoteMember) -> None:
    point_to = {"ft_server": "127.0.0.1", "ft_port": free_port()}
    cgi(cam.url, "cmd=setftpattr&" + "&".join(f"{k}={v}" for k, v in point_to.items()))
    assert run_testftp(cam)["result"] == "-1"


def test_minus_1_without_a_server(cam: RemoteMember) -> None:
    assert cgi(cam.url, "cmd=setftpattr&ft_server=").response == "200"
    assert run_testftp(cam)["result"] == "-1"


def test_minus_2_when_the_login_is_refused(cam: RemoteMember, farm: ShardedFarm) -> None:
    point(cam, farm["ftp"], ft_ssl=0, ft_password="wrong")
    assert run_testftp(cam)["result"] == "-2"


def test_minus_3_when_the_folder_is_missing_and_not_created(cam: RemoteMember,
                                                           farm: ShardedFarm) -> None:
    point(cam, farm["ftp"], ft_ssl=0, ft_dirname="not/there", ft_autocreatedir=0,
          ft_dirmode=0)
    assert run_testftp(cam)["result"] == "-3"
    assert "not" not in listing(farm["ftp"], "cam", "secret")


def test_minus_3_when_the_account_may_not_write(cam: RemoteMember, farm: ShardedFarm) -> None:
    point(cam, farm["ftp"], ft_ssl=0, ft_username="viewer", ft_password="look",
          ft_dirname="./", ft_dirmode=0)
    assert run_testftp(cam)["result"] == "-3"


def test_minus_4_when_the_server_never_answers(cam: RemoteMember,
                                               silent_server: SilentServer) -> None:
    cgi(cam.url, f"cmd=setftpattr&ft_server=127.0.0.1&ft_port={silent_server.port}&ft_ssl=0")
    started = time.monotonic()
    assert run_testftp(cam)["result"] == "-4"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("server", ["ftps-self", "ftps-wrongname"])
def test_minus_5_when_the_certificate_does_not_verify(cam: RemoteMember, farm: ShardedFarm,
                                                      server: str) -> None:
    before = len(arrived(farm[server]))
    point(cam, farm[server], ft_ssl=1, ft_insecure=0, ft_dirname="./", ft_dirmode=0)
    assert run_testftp(cam)["result"] == "-5"
    assert len(arrived(farm[server])) == before


def test_minus_5_when_the_farm_ca_is_not_in_the_trust_store(farm: ShardedFarm) -> None:
    camera = farm["cam-system-ca"]
    point(camera, farm["ftps"], ft_ssl=1, ft_insecure=0, ft_dirname="./", ft_dirmode=0)
    assert run_testftp(camera)["result"] == "-5"


def test_minus_6_and_213_while_a_testftp_runs(cam: RemoteMember,
                                              silent_server: SilentServer) -> None:
    cgi(cam.url, f"cmd=setftpattr&ft_server=127.0.0.1&ft_port={silent_server.port}&ft_ssl=0")
    host = cam.url.removeprefix("http://")
    first = subprocess.Popen(["curl", "-sS", f"http://admin:instar@{host}/param.cgi?cmd=testftp"],
                             stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 5
        while not cam.state()["testftp_running"]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert run_testftp(cam)["result"] == "-6"
        busy = cgi(cam.url, "cmd=setftpattr&ft_port=2121")
        assert busy.body == 'cmd="setftpattr";\r\nresponse="213";\r\n'
    finally:
        out, _ = first.communicate(timeout=10)
    assert b'result="-4";' in out


def test_minus_8_when_an_ftps_camera_meets_a_plain_server(cam: RemoteMember,
                                                         farm: ShardedFarm) -> None:
    point(cam, farm["ftp"], ft_ssl=1, ft_insecure=1)
    assert run_testftp(cam)["result"] == "-8"


def test_minus_9_when_the_server_drops_the_transfer(cam: RemoteMember,
                                                    farm: ShardedFarm) -> None:
    server = farm["ftp-small"]
    point(cam, server, ft_ssl=0, ft_dirname="./", ft_dirmode=0)
    assert run_testftp(cam)["result"] == "-9"
    assert arrived(server) == []
    assert stored_bytes(server, "cam", "Test-Snapshot.jpeg") is None


@pytest.mark.parametrize(("server", "fault", "result"), [
    pytest.param("ftp", {"fault": "busy"}, "-1", id="421-greeting"),
    pytest.param("ftp", {"fault": "refuse_login"}, "-2", id="refused-login"),
    pytest.param("ftp", {"fault": "disk_full"}, "-9", id="552-disk-full"),
    pytest.param("ftp", {"fault": "cut_transfer", "after_bytes": 200}, "-9", id="cut-transfer"),
    pytest.param("ftps", {"fault": "tls_expired"}, "-5", id="expired-certificate"),
    pytest.param("ftps", {"fault": "tls_wrong_name"}, "-5", id="wrong-name-certificate"),
])
def test_server_faults_give_the_matching_result(cam: RemoteMember, farm: ShardedFarm,
                                                server: str, fault: dict[str, Any],
                                                result: str) -> None:
    before = len(arrived(farm[server]))
    point(cam, farm[server], ft_ssl=1 if server == "ftps" else 0, ft_insecure=0,
          ft_dirname="./", ft_dirmode=0)
    farm.add_fault(member=server, times=1, **fault)
    try:
        assert run_testftp(cam)["result"] == result
    finally:
        farm.clear_faults()
    assert len(arrived(farm[server])) == before


def test_the_servers_events_carry_the_testftp_requests_correlation(
        cam: RemoteMember, farm: ShardedFarm) -> None:
    point(cam, farm["ftp"], ft_ssl=0, ft_dirname="./", ft_dirmode=0)
    farm.clear_journal()
    assert run_testftp(cam)["result"] == "0"
    request = farm.assert_requested(1, member="cam", path="/param.cgi")[0]
    correlation = request["correlation_id"]
    assert correlation
    events = {e["event"] for e in farm.journal(member="ftp", correlation_id=correlation)}
    assert {"login", "upload"} <= events


def test_injected_vendor_error_is_the_cameras_own_form(cam: RemoteMember,
                                                      farm: ShardedFarm) -> None:
    farm.add_fault(fault="vendor_error", member="cam", command="setftpattr", times=1)
    try:
        reply = cgi(cam.url, "cmd=setftpattr&ft_port=2121")
    finally:
        farm.clear_faults()
    assert (reply.status, reply.body) == (200, 'cmd="setftpattr";\r\nresponse="213";\r\n')
    assert cgi(cam.url, "cmd=getftpattr").values["ft_port"] != "2121"


def test_upload_log_in_the_control_view(cam: RemoteMember, farm: ShardedFarm) -> None:
    point(cam, farm["ftp"], ft_ssl=0, ft_password="wrong")
    run_testftp(cam)
    entry = cam.state()["uploads"][-1]
    assert (entry["trigger"], entry["result"], entry["protocol"]) == ("testftp", -2, "ftp")
    assert "ft_password" not in cam.state()["ftp"]


def test_camera_follows_its_upload_server_to_a_new_port(farm_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    scenario = {"name": "restart", "servers": [{"name": "ftp", "kind": "ftp", "users": USERS}],
                "emulators": [{"name": "cam", "kind": "instar-camera", "upload_server": "ftp",
                               "ssh_key_bits": 1024,
                               "ftp": {"ft_ssl": 0, "ft_dirmode": 0, "ft_dirname": "./"}}]}
    first = farm_factory(scenario, tmp_path, control=False)
    old_port = first["ftp"].port
    assert run_testftp(first["cam"])["result"] == "0"
    first.stop()

    with socket.socket() as squatter:  # make sure the old port is taken this time
        # SO_REUSEADDR: the first farm's upload may leave a TIME_WAIT on that port; a
        # listening squatter still keeps the farm's server off it.
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", old_port))
        squatter.listen()
        second = farm_factory(scenario, tmp_path, control=False)
        assert second["ftp"].port != old_port
        assert cgi(second["cam"].url, "cmd=getftpattr").values["ft_port"] == str(
            second["ftp"].port)
        assert run_testftp(second["cam"])["result"] == "0"
        # A port the user set is the user's: it does not follow.
        cgi(second["cam"].url, "cmd=setftpattr&ft_port=2100")
        second.stop()
        third = farm_factory(scenario, tmp_path, control=False)
        assert cgi(third["cam"].url, "cmd=getftpattr").values["ft_port"] == "2100"

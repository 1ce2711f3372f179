"""The farm's fault rules (docs/FAULTS.md) as FTP, FTPS and SFTP clients meet them."""

from __future__ import annotations

import ftplib
import ssl
import time

import asyncssh
import pytest

from emulators.testing import single_member_scenario
from tests.servers.clients import (
    FTP_USER,
    SFTP_USER,
    events_of,
    ftp_login,
    ftps_context,
    run,
    ssh_options,
    store,
)


@pytest.fixture
def ftp_farm(farm_factory):
    def start(**options):
        options.setdefault("failed_login_delay", 0)
        return farm_factory(single_member_scenario("ftp", "up", users=[FTP_USER], **options),
                            control=False)
    return start


@pytest.fixture
def sftp_farm(farm_factory):
    return farm_factory(single_member_scenario("sftp", "up", users=[SFTP_USER]), control=False)


async def sftp_put(handle, path: str, data: bytes) -> None:
    options = ssh_options(handle, password="password")
    async with asyncssh.connect("127.0.0.1", handle.port, **options) as conn:
        async with conn.start_sftp_client() as sftp:
            async with sftp.open(path, "wb") as fh:
                await fh.write(data)


@pytest.mark.parametrize(("message", "reply"), [
    (None, "421 Service not available, closing control connection."),
    ("Server busy, try later.", "421 Server busy, try later."),
], ids=["default-text", "own-text"])
def test_ftp_busy_answers_421_on_connect_then_recovers(ftp_farm, message, reply):
    farm = ftp_farm()
    farm.add_fault(fault="busy", member="up", times=1,
                   **({"message": message} if message else {}))
    with ftplib.FTP() as client:
        with pytest.raises(ftplib.error_temp) as caught:
            client.connect("127.0.0.1", farm["up"].port, timeout=10)
        assert str(caught.value) == reply
    with ftp_login(farm["up"]) as client:  # times=1: the next connection is served
        store(client, "ok.jpg", b"ok")
    assert [e["event"] for e in farm.journal(event="fault")] == ["fault"]


def test_ftp_refuse_login_looks_like_a_wrong_password(ftp_farm):
    farm = ftp_farm()
    farm.add_fault(fault="refuse_login", member="up", protocol="ftp", times=1)
    with pytest.raises(ftplib.error_perm, match=r"^530 Authentication failed\.$"):
        ftp_login(farm["up"])
    ftp_login(farm["up"]).close()
    assert events_of(farm["up"], "login_failed")[0]["user"] == "cam"


@pytest.mark.parametrize("passive", [True, False], ids=["PASV", "PORT"])
def test_ftp_disk_full_refuses_the_upload(ftp_farm, passive):
    farm = ftp_farm()
    farm.add_fault(fault="disk_full", member="up", path="alarm/*")
    with ftp_login(farm["up"]) as client:
        client.set_pasv(passive)
        client.mkd("alarm")
        with pytest.raises(ftplib.error_perm) as caught:
            store(client, "alarm/snap.jpg", b"x" * 100)
        assert str(caught.value) == ("552 Requested file action aborted. "
                                     "Exceeded storage allocation.")
        store(client, "elsewhere.jpg", b"x")  # the rule's path does not match here
    assert [r["path"] for r in farm["up"].call(lambda m: m.received_files())] == [
        "elsewhere.jpg"]


def test_ftp_cut_transfer_says_426_and_keeps_nothing(ftp_farm):
    farm = ftp_farm()
    farm.add_fault(fault="cut_transfer", member="up", after_bytes=100)
    with ftp_login(farm["up"]) as client:
        with pytest.raises(ftplib.error_temp, match=r"^426 Connection closed; transfer aborted"):
            store(client, "cut.mp4", b"v" * 5000)
    root = farm["up"].call(lambda m: m.user_root("cam"))
    assert list(root.iterdir()) == []  # an upload that did not complete is not kept
    assert farm["up"].call(lambda m: m.received_files()) == []
    assert events_of(farm["up"], "upload_incomplete")[0]["path"] == "cut.mp4"


def test_ftp_throttle_slows_the_upload(ftp_farm):
    farm = ftp_farm()
    farm.add_fault(fault="throttle", member="up", bytes_per_second=40_000)
    with ftp_login(farm["up"]) as client:
        started = time.monotonic()
        store(client, "slow.mp4", b"s" * 100_000)
        elapsed = time.monotonic() - started
    assert elapsed > 1.0
    assert farm["up"].call(lambda m: m.received_files())[0]["size"] == 100_000


@pytest.mark.parametrize(("fault", "why"), [
    ("tls_wrong_name", "IP address mismatch"),
    ("tls_expired", "certificate has expired"),
], ids=["wrong-name", "expired"])
def test_ftps_certificate_faults_fail_verification_once(ftp_farm, fault, why):
    farm = ftp_farm(tls="explicit")
    farm.add_fault(fault=fault, member="up", times=1)
    context = ftps_context(farm["up"].description["tls"]["ca_pem"])
    with ftplib.FTP_TLS(context=context) as client:
        client.connect("127.0.0.1", farm["up"].port, timeout=10)
        with pytest.raises(ssl.SSLCertVerificationError, match=why):
            client.auth()
    with ftplib.FTP_TLS(context=context) as client:
        client.connect("127.0.0.1", farm["up"].port, timeout=10)
        client.auth()
        client.login(FTP_USER["name"], FTP_USER["password"])


def test_sftp_refuse_login(sftp_farm):
    sftp_farm.add_fault(fault="refuse_login", member="up", times=1)
    with pytest.raises(asyncssh.PermissionDenied):
        run(sftp_put(sftp_farm["up"], "x.jpg", b"x"))
    run(sftp_put(sftp_farm["up"], "x.jpg", b"x"))
    events = sftp_farm["up"].call(lambda m: m.events())
    assert [e["event"] for e in events] == ["login_failed", "login", "upload"]


def test_sftp_disk_full(sftp_farm):
    sftp_farm.add_fault(fault="disk_full", member="up", times=1, id="disk")
    with pytest.raises(asyncssh.SFTPFailure, match="^No space left on device$"):
        run(sftp_put(sftp_farm["up"], "full.jpg", b"x" * 100))
    root = sftp_farm["up"].call(lambda m: m.user_root("ipcamera"))
    assert not (root / "full.jpg").exists()
    assert sftp_farm["up"].call(lambda m: m.received_files()) == []
    [refused] = events_of(sftp_farm["up"], "refused")
    assert (refused["reason"], refused["fault"], refused["path"]) == ("fault", "disk", "full.jpg")


def test_sftp_cut_transfer_drops_the_connection(sftp_farm):
    sftp_farm.add_fault(fault="cut_transfer", member="up", after_bytes=100)
    with pytest.raises((asyncssh.Error, OSError)):
        run(sftp_put(sftp_farm["up"], "cut.mp4", b"v" * 5000))
    root = sftp_farm["up"].call(lambda m: m.user_root("ipcamera"))
    assert list(root.iterdir()) == []  # an upload that did not complete is not kept
    assert events_of(sftp_farm["up"], "upload_incomplete")[0]["path"] == "cut.mp4"
    assert sftp_farm["up"].call(lambda m: m.received_files()) == []


def test_sftp_throttle_slows_the_upload(sftp_farm):
    sftp_farm.add_fault(fault="throttle", member="up", bytes_per_second=100_000)
    started = time.monotonic()
    run(sftp_put(sftp_farm["up"], "slow.mp4", b"s" * 150_000))
    assert time.monotonic() - started > 1.2
    assert sftp_farm["up"].call(lambda m: m.received_files())[0]["size"] == 150_000

"""The default farm as one test double: every kind and both servers in one journal with their
secrets masked, and injected faults as the vendors' own clients meet them."""

from __future__ import annotations

import asyncio
import ftplib
import gc
import io
import json
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from typing import Any

import asyncssh
import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions as sdk_errors
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkiotda.v5 import IoTDAClient, ListCertificatesRequest

from emulators.testing import RunningFarm
from tests.leaks import open_sockets
from tests.sdk_clients import DEFAULT_FARM_DEVICE_CAS, close_iotda

_default_https = ssl._create_default_https_context
from poseidon import poseidon  # noqa: E402 - it switches TLS checks off for the process

ssl._create_default_https_context = _default_https

ENOS_ORG, ENOS_ASSET = "o15589290120871", "zBrjuW7q"
ENOS_KEY = "7b4fa3c2-1d5e-4f60-9a8b-2c3d4e5f6a7b"
ENOS_SECRET = "e1d2c3b4-a596-4788-9900-aabbccddeeff"
IOTDA_AK, IOTDA_SK = "IOTDAEMULATORAK00001", "IotdaEmulatorSecretKey000000000000000001"
IOTDA_PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
SECRETS = ["PWD=123456", "pwd=instar", ENOS_SECRET, IOTDA_SK, '"123456"', "'123456'",
           "password=password"]


def get(url: str, timeout: float = 10) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return reply.read()


def enos_list(farm: RunningFarm) -> Any:
    """List through enos-poseidon as published, as a client pointed at the farm does."""
    query = urllib.parse.urlencode({"action": "list", "orgId": ENOS_ORG, "assetId": ENOS_ASSET})
    return poseidon.urlopen(ENOS_KEY, ENOS_SECRET,
                            f"{farm['enos'].url}/connect-service/v2.0/certificates?{query}")


def iotda_client(farm: RunningFarm, timeout: float | None = None) -> IoTDAClient:
    config = HttpConfig.get_default_config()
    if timeout is not None:
        config.timeout = (timeout, timeout)
    config.retry_times = 0
    return (IoTDAClient.new_builder()
            .with_credentials(BasicCredentials(IOTDA_AK, IOTDA_SK, IOTDA_PROJECT))
            .with_endpoints([farm["iotda"].url]).with_http_config(config).build())


async def sftp_put(farm: RunningFarm) -> None:
    sftp = farm["sftp"]
    async with asyncssh.connect(sftp.host, sftp.port, username="ipcamera", password="password",
                                known_hosts=None) as conn, conn.start_sftp_client() as client:
        async with client.open("hello.txt", "wb") as remote:
            await remote.write(b"hello from the integration test")


def hang_then_list_and_close(farm: RunningFarm, client: IoTDAClient) -> None:
    """A hung request is the SDK's read timeout (which the SDK, through requests, reports as a
    ConnectionException); the next request lists the device CAs; then the client is closed."""
    farm.add_fault(fault="hang", member="iotda", times=1, seconds=10)
    with pytest.raises(sdk_errors.ConnectionException, match="Read timed out"):
        client.list_certificates(ListCertificatesRequest())
    assert [c.cn_name for c in client.list_certificates(
            ListCertificatesRequest()).certificates] == DEFAULT_FARM_DEVICE_CAS
    close_iotda(client)


def test_every_kind_and_both_servers_land_in_one_masked_journal(farm: RunningFarm) -> None:
    acti = subprocess.run(["curl", "-sS", farm["acti-camera"].url
                           + "/cgi-bin/update?USER=admin&PWD=123456&HTTPS_CER"],
                          capture_output=True, check=True, timeout=20).stdout
    assert acti == b"HTTPS_CER='none'\n"
    assert b'result="0";' in get(farm["instar-camera"].url
                                 + "/param.cgi?cmd=testftp&user=admin&pwd=instar")
    assert enos_list(farm)["code"] == 0
    client = iotda_client(farm)
    assert [c.cn_name for c in client.list_certificates(
            ListCertificatesRequest()).certificates] == DEFAULT_FARM_DEVICE_CAS
    close_iotda(client)
    with ftplib.FTP() as ftp:
        ftp.connect(farm["ftp"].host, farm["ftp"].port, timeout=10)
        ftp.login("ftpuser", "123456")
        ftp.storbinary("STOR direct.txt", io.BytesIO(b"stored by ftplib"))
    asyncio.run(sftp_put(farm))
    farm.wait_for_upload("sftp", path="*hello.txt")

    for member in ("acti-camera", "instar-camera", "enos", "iotda"):
        entries = farm.journal(member=member, event="request")
        assert entries and all(e["status"] == 200 for e in entries), member
    uploads = {(e["member"], e["user"], e["path"].rsplit("/", 1)[-1])
               for e in farm.journal(event="upload")}
    assert {("ftp", "ftpuser", "Test-Snapshot.jpeg"), ("ftp", "ftpuser", "direct.txt"),
            ("sftp", "ipcamera", "hello.txt")} <= uploads
    assert {e["member"] for e in farm.journal(event="login")} >= {"ftp", "sftp"}
    # The camera's testftp request and the upload it caused share a correlation id.
    [testftp] = farm.journal(member="instar-camera", path="/param.cgi")
    assert any(e["correlation_id"] == testftp["correlation_id"] and e["member"] == "ftp"
               for e in farm.journal(event="upload"))
    dump = json.dumps(farm.journal())
    for secret in SECRETS:
        assert secret not in dump, secret


def test_injected_faults_as_the_vendor_sdks_meet_them(farm: RunningFarm) -> None:
    # IoTDA: a vendor error arrives as the SDK's own exception, code and message intact.
    farm.add_fault(fault="vendor_error", member="iotda", message="IOTDA.014307", times=1)
    client = iotda_client(farm, timeout=1.0)
    with pytest.raises(sdk_errors.ClientRequestException) as info:
        client.list_certificates(ListCertificatesRequest())
    assert (info.value.status_code, info.value.error_code) == (400, "IOTDA.014307")
    assert info.value.request_id  # X-Request-Id, as on every IoTDA reply
    farm.add_fault(fault="vendor_error", member="iotda", times=1)
    with pytest.raises(sdk_errors.ServerResponseException) as info5:
        client.list_certificates(ListCertificatesRequest())
    assert (info5.value.status_code, info5.value.error_code) == (500, "IOTDA.000001")
    # ... a reset is a connection error, a hang the SDK's read timeout (which the SDK, through
    # requests, also reports as a ConnectionException).
    farm.add_fault(fault="reset", member="iotda", times=1)
    with pytest.raises(sdk_errors.ConnectionException, match="reset by peer|aborted"):
        client.list_certificates(ListCertificatesRequest())
    hang_then_list_and_close(farm, client)

    # EnOS: the poseidon SDK reads a 99500 in the Connection Service envelope.
    farm.add_fault(fault="vendor_error", member="enos", command="list", times=1)
    failed = enos_list(farm)
    assert (failed["code"], failed["msg"]) == (99500, "injected fault")
    assert enos_list(farm)["code"] == 0

    # ACTi: curl sees the camera's ERROR: form, then a reset as exit status 56.
    url = farm["acti-camera"].url + "/cgi-bin/update?USER=admin&PWD=123456&HTTPS_CER"
    farm.add_fault(fault="vendor_error", member="acti-camera", message="flash busy", times=1)
    out = subprocess.run(["curl", "-sS", url], capture_output=True, timeout=20)
    assert out.stdout == b"ERROR: flash busy\n"
    farm.add_fault(fault="reset", member="acti-camera", times=1)
    assert subprocess.run(["curl", "-sS", url], capture_output=True, timeout=20).returncode == 56

    fired = [(e["member"], e["detail"]["fault_type"]) for e in farm.journal(event="fault")]
    assert fired == [("iotda", "vendor_error"), ("iotda", "vendor_error"), ("iotda", "reset"),
                     ("iotda", "hang"), ("enos", "vendor_error"),
                     ("acti-camera", "vendor_error"), ("acti-camera", "reset")]


def test_a_client_closed_after_faults_leaves_no_connection_open(farm: RunningFarm) -> None:
    """The SDK client of the test above, closed after a vendor error, a reset and a hung
    request it gave up on, leaves no connection open, neither its own nor the farm's, and
    without the garbage collector's help: the farm sees the close and drops its side."""
    before = open_sockets()
    was_enabled = gc.isenabled()
    gc.disable()  # nothing may depend on the collector happening to run
    try:
        client = iotda_client(farm, timeout=0.5)
        farm.add_fault(fault="vendor_error", member="iotda", times=1)
        with pytest.raises(sdk_errors.ServerResponseException):
            client.list_certificates(ListCertificatesRequest())
        farm.add_fault(fault="reset", member="iotda", times=1)
        with pytest.raises(sdk_errors.ConnectionException):
            client.list_certificates(ListCertificatesRequest())
        hang_then_list_and_close(farm, client)
        deadline = time.monotonic() + 1.0  # the farm's side goes as soon as it reads the EOF
        while (left := open_sockets() - before) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not left, f"{len(left)} socket(s) still open after the client was closed"
    finally:
        if was_enabled:
            gc.enable()


def test_snapshot_round_trip_of_the_whole_default_farm(farm: RunningFarm) -> None:
    cam = farm["instar-camera"].url + "/param.cgi?user=admin&pwd=instar&cmd="
    farm.snapshot("clean")
    get(cam + "setftpactionattr&snapcount=9")
    assert b'result="0";' in get(cam + "testftp")
    client = iotda_client(farm)
    assert enos_list(farm)["code"] == 0
    farm.restore("clean")
    assert b'snapcount="5";' in get(cam + "getftpactionattr")
    assert farm["ftp"].call(lambda m: m.received_files()) == []
    close_iotda(client)


def test_tls_faults_serve_an_expired_or_wrongly_named_certificate(farm: RunningFarm,
                                                                   tmp_path: Any) -> None:
    ca = tmp_path / "farm-ca.pem"
    ca.write_text(farm.ready["ca"]["pem"])
    url = farm["enos"].urls["https"] + "/enos/CA/cacert/RSA"

    def curl() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["curl", "-sS", "--cacert", str(ca), "-o", "/dev/null",
                               "-w", "%{http_code}", url],
                              capture_output=True, text=True, timeout=20)

    assert curl().stdout == "200"  # the listener's own certificate verifies
    farm.add_fault(fault="tls_expired", member="enos", times=1)
    expired = curl()
    assert expired.returncode == 60 and "expired" in expired.stderr
    farm.add_fault(fault="tls_wrong_name", member="enos", times=1)
    wrong = curl()
    assert wrong.returncode == 60 and "subject name" in wrong.stderr
    assert curl().stdout == "200"  # the rules were used up: back to the real certificate
    assert [e["detail"]["fault_type"] for e in farm.journal(event="fault")] == [
        "tls_expired", "tls_wrong_name"]


def test_a_failure_of_ours_answers_in_each_vendors_form(farm: RunningFarm,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing a kind leaves unmapped reaches the client as a bare 500: the farm's last line
    of defence logs it and answers with the kind's own internal error."""
    from emulators.enos.models.certificates import CertificateService
    from emulators.iotda.models import DeviceCAs

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(CertificateService, "listing", boom)
    monkeypatch.setattr(DeviceCAs, "list", boom)
    failed = enos_list(farm)
    assert (failed["code"], failed["msg"]) == (99500, "Internal error of certificate service.")
    client = iotda_client(farm)
    with pytest.raises(sdk_errors.ServerResponseException) as info:
        client.list_certificates(ListCertificatesRequest())
    close_iotda(client)
    assert (info.value.status_code, info.value.error_code) == (500, "IOTDA.000001")
    assert info.value.request_id
    assert [e["status"] for e in farm.journal(member="iotda")][-1] == 500

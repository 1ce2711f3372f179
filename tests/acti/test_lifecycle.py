"""Flash across restarts, the factory default (HTTPS goes, HTTP stays), CONFIG_RESET (the
certificate stays), and what the control plane shows and resets."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from emulators import pki
from emulators.testing import MemberHandle, RunningFarm

from .clients import ADMIN, body_of, get, hostport, https_refused, served_certificate, upload

OK = b"HTTP/1.0 200 OK\r\nContent-type: text/plain\r\nContent-Length: 3\r\n\r\nOK\n"
SCENARIO: dict[str, Any] = {"name": "acti-lifecycle",
                            "emulators": [{"name": "cam", "kind": "acti-camera"}]}


def start(farm_factory: Callable[..., RunningFarm], state_dir: Path) -> RunningFarm:
    return farm_factory(SCENARIO, state_dir=state_dir, control_port=0)


def control(farm: RunningFarm, path: str, method: str = "GET", body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(farm.control_url + path, method=method, data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.load(reply)


def cer(camera: MemberHandle) -> bytes:
    return body_of(get(camera.url, f"{ADMIN}&HTTPS_CER"))


def test_certificate_key_and_csr_survive_a_restart(
        farm_factory: Callable[..., RunningFarm], tmp_path: Path, test_ca) -> None:
    farm = start(farm_factory, tmp_path)
    csr = body_of(get(farm["cam"].url,
                      f"{ADMIN}&HTTPS_CSR_CREATE=TW,Taipei,Neihu,ACTi,RD,camera.test,2048"))
    signed = test_ca.sign_csr(csr.decode())
    assert upload(farm["cam"].url, signed.encode()) == OK
    farm.stop()

    again = start(farm_factory, tmp_path)
    camera = again["cam"]
    assert cer(camera) == b"HTTPS_CER='certSrv.pem'\n"
    assert pki.load_cert(served_certificate(camera.urls["https"])) == pki.load_cert(signed)
    assert body_of(get(camera.url, f"{ADMIN}&HTTPS_CSR_CREATE")) == csr
    assert camera.state()["files"]["key"] == {"source": "csr"}


@pytest.mark.parametrize("url", [
    "/cgi-bin/system?USER=admin&PWD=123456&FACTORY_DEFAULT",
    "/cgi-bin/system?USER=admin&PWD=123456&FACTORY_DEFAULT=ALL",
    "/cgi-bin/update?USER=admin&PWD=123456&FACTORY_DEFAULT",
], ids=["system", "system-all", "update"])
def test_factory_default_removes_https_and_keeps_http(
        farm_factory: Callable[..., RunningFarm], tmp_path: Path, self_signed,
        url: str) -> None:
    farm = start(farm_factory, tmp_path)
    camera = farm["cam"]
    upload(camera.url, self_signed.combined)
    host, port = hostport(camera.urls["https"])
    path, query = url.split("?")
    assert get(camera.url, query, path=path) == OK
    assert https_refused(host, port)
    assert cer(camera) == b"HTTPS_CER='none'\n"  # over HTTP, which stays
    assert camera.state()["files"] == {"certificate": None, "key": None, "csr": None}
    farm.stop()
    assert cer(start(farm_factory, tmp_path)["cam"]) == b"HTTPS_CER='none'\n"


def test_config_reset_keeps_the_certificate(farm_factory: Callable[..., RunningFarm],
                                            tmp_path: Path, self_signed) -> None:
    farm = start(farm_factory, tmp_path)
    camera = farm["cam"]
    upload(camera.url, self_signed.combined)
    https = camera.urls["https"]
    get(camera.url, f"{ADMIN}&HTTPS_CER=upload")  # a pending stage 1 is configuration: gone
    assert get(camera.url, f"{ADMIN}&CONFIG_RESET", path="/cgi-bin/system") == OK
    assert camera.state()["upload_grants"] == {}
    assert pki.load_cert(served_certificate(https)) == pki.load_cert(self_signed.cert_pem)
    assert get(camera.url, f"{ADMIN}&CONFIG_RESET") == OK  # on the update CGI too
    farm.stop()
    again = start(farm_factory, tmp_path)["cam"]
    assert cer(again) == b"HTTPS_CER='certSrv.pem'\n"
    assert pki.load_cert(served_certificate(again.urls["https"])) == pki.load_cert(
        self_signed.cert_pem)


def test_full_cycle(farm_factory: Callable[..., RunningFarm], tmp_path: Path, self_signed,
                    test_ca) -> None:
    """upload -> restart -> CONFIG_RESET -> restart -> factory default -> restart -> CSR."""
    farm = start(farm_factory, tmp_path)
    upload(farm["cam"].url, self_signed.combined)
    farm.stop()
    farm = start(farm_factory, tmp_path)
    assert get(farm["cam"].url, f"{ADMIN}&CONFIG_RESET") == OK
    farm.stop()
    farm = start(farm_factory, tmp_path)
    assert farm["cam"].state()["https"]["active"] is True
    assert get(farm["cam"].url, f"{ADMIN}&FACTORY_DEFAULT") == OK
    farm.stop()
    farm = start(farm_factory, tmp_path)
    camera = farm["cam"]
    assert camera.state()["https"]["active"] is False
    csr = body_of(get(camera.url, f"{ADMIN}&HTTPS_CSR_CREATE=TW,,,,,camera.test,2048"))
    assert upload(camera.url, test_ca.sign_csr(csr.decode()).encode()) == OK
    assert camera.state()["https"]["active"] is True


def test_control_plane_shows_why_https_is_down_and_resets(
        farm_factory: Callable[..., RunningFarm], self_signed, test_ca) -> None:
    scenario = {"name": "acti-control", "emulators": [
        {"name": "cam", "kind": "acti-camera", "https_certificate": self_signed.combined.decode()}]}
    farm = farm_factory(scenario, control_port=0)
    camera = farm["cam"]
    state = control(farm, "/emulators/cam/state")
    assert state["https"]["active"] is True
    assert state["firmware"] == {"version": "A1D-310-V4.10", "platform": "PlatformT",
                                 "devices": ["Camera", "Video server"], "https": True,
                                 "https_since": "A1D-310-V4.10"}
    assert control(farm, "/emulators/cam")["urls"]["https"] == camera.urls["https"]

    orphan = test_ca.sign_csr(pki.csr_pem(pki.make_csr(pki.ec_key(), pki.name(CN="lost"))))
    get(camera.url, f"{ADMIN}&HTTPS_CER=remove")
    assert upload(camera.url, orphan.encode()) == OK
    state = control(farm, "/emulators/cam/state")
    assert state["https"]["active"] is False
    assert "the key made with HTTPS_CSR_CREATE, which is gone" in state["https"]["reason"]
    assert state["files"]["certificate"]["subject"] == "CN=lost"

    control(farm, "/emulators/cam/reset", method="POST")  # back to the scenario's certificate
    state = control(farm, "/emulators/cam/state")
    assert state["https"]["active"] is True
    assert state["files"]["certificate"]["subject"] == "CN=camera.test"
    assert pki.load_cert(served_certificate(camera.urls["https"])) == pki.load_cert(
        self_signed.cert_pem)


def test_fixed_https_port(emulator_factory: Callable[..., MemberHandle], self_signed) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    camera = emulator_factory("acti-camera", https_port=port,
                              https_certificate=self_signed.combined.decode())
    assert camera.urls["https"] == f"https://127.0.0.1:{port}"


def test_injected_vendor_error_uses_the_camera_form(
        farm_factory: Callable[..., RunningFarm]) -> None:
    farm = farm_factory(SCENARIO, control_port=0)
    control(farm, "/faults", "POST", {"fault": "vendor_error", "member": "cam",
                                      "command": "HTTPS_CER", "message": "system busy",
                                      "times": 1})
    camera = farm["cam"]
    assert get(camera.url, f"{ADMIN}&CONFIG_RESET") == OK  # another command: untouched
    assert get(camera.url, f"{ADMIN}&HTTPS_CER") == (
        b"HTTP/1.0 200 OK\r\nContent-type: text/plain\r\nContent-Length: 19\r\n\r\n"
        b"ERROR: system busy\n")
    assert cer(camera) == b"HTTPS_CER='none'\n"  # fired once


def test_snapshot_restore_brings_https_back(farm_factory: Callable[..., RunningFarm],
                                            self_signed) -> None:
    farm = farm_factory(SCENARIO, control_port=0)
    camera = farm["cam"]
    upload(camera.url, self_signed.combined)
    control(farm, "/snapshots", "POST", {"name": "with-cert"})
    assert get(camera.url, f"{ADMIN}&FACTORY_DEFAULT") == OK
    assert camera.state()["https"]["active"] is False
    control(farm, "/snapshots/with-cert/restore", "POST", {})
    assert camera.state()["https"]["active"] is True
    assert pki.load_cert(served_certificate(camera.urls["https"])) == pki.load_cert(
        self_signed.cert_pem)

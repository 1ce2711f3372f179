"""The real HTTPS listener: it serves exactly the certificate in flash with its key, as
``openssl s_client`` and curl see it, and stays down (saying why) when the key is gone."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from emulators import pki
from emulators.testing import MemberHandle

from .clients import (
    ADMIN,
    body_of,
    curl,
    get,
    hostport,
    https_refused,
    served_certificate,
    upload,
)

OK = b"HTTP/1.0 200 OK\r\nContent-type: text/plain\r\nContent-Length: 3\r\n\r\nOK\n"
CSR_ARGS = "TW,Taipei,Neihu,ACTi Corporation,RD,camera.test,2048"


def csr_create(camera: MemberHandle, args: str = CSR_ARGS) -> str:
    reply = get(camera.url, f"{ADMIN}&HTTPS_CSR_CREATE={args.replace(' ', '%20')}")
    assert reply.startswith(b"HTTP/1.0 200 OK\r\nContent-type: text/plain\r\nContent-Length: ")
    return body_of(reply).decode()


def https_url(camera: MemberHandle) -> str:
    return camera.urls["https"]


def same_cert(a: str, b: str) -> bool:
    return pki.load_cert(a) == pki.load_cert(b)


def https_cer_as_camera_test(url: str, trusted_pem: str, tmp_path: Path) -> bytes:
    """What curl reads from HTTPS_CER at ``url`` named camera.test (the name the certificates
    carry), trusting ``trusted_pem`` alone: it fails unless the chain and the name verify."""
    trust = tmp_path / "trust.pem"
    trust.write_text(trusted_pem)
    host, port = hostport(url)
    return curl("--cacert", str(trust), "--resolve", f"camera.test:{port}:{host}",
                f"https://camera.test:{port}/cgi-bin/update?{ADMIN}&HTTPS_CER").stdout


def test_no_https_until_a_certificate_is_there(camera: MemberHandle) -> None:
    assert "https" not in camera.urls
    assert camera.state()["https"] == {"active": False, "port": None,
                                       "reason": "no certificate (certSrv.pem)"}


def test_self_signed_with_its_key_is_served(camera: MemberHandle, self_signed,
                                            tmp_path: Path) -> None:
    assert upload(camera.url, self_signed.combined) == OK
    url = https_url(camera)
    assert same_cert(served_certificate(url), self_signed.cert_pem)
    assert https_cer_as_camera_test(url, self_signed.cert_pem, tmp_path) == (
        b"HTTPS_CER='certSrv.pem'\n")
    assert camera.state()["https"] == {"active": True, "port": hostport(url)[1], "reason": None}
    # HTTP stays up beside HTTPS.
    assert body_of(get(camera.url, f"{ADMIN}&HTTPS_CER")) == b"HTTPS_CER='certSrv.pem'\n"


def test_new_upload_replaces_the_served_certificate_on_the_same_port(
        camera: MemberHandle, self_signed, other_self_signed) -> None:
    upload(camera.url, self_signed.combined)
    first = https_url(camera)
    assert upload(camera.url, other_self_signed.combined) == OK
    assert https_url(camera) == first
    assert same_cert(served_certificate(first), other_self_signed.cert_pem)


def test_csr_signed_by_a_ca_is_served_with_the_csr_key(camera: MemberHandle, test_ca,
                                                       tmp_path: Path) -> None:
    csr_pem = csr_create(camera)
    csr = pki.load_csr(csr_pem)
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == (
        "CN=camera.test,OU=RD,O=ACTi Corporation,L=Neihu,ST=Taipei,C=TW")
    assert csr.public_key().key_size == 2048
    assert camera.state()["https"]["reason"] == "no certificate (certSrv.pem)"

    signed = test_ca.sign_csr(csr_pem)
    assert upload(camera.url, signed.encode(), filename="camera.crt") == OK
    url = https_url(camera)
    assert same_cert(served_certificate(url), signed)
    assert https_cer_as_camera_test(url, test_ca.pem, tmp_path) == b"HTTPS_CER='certSrv.pem'\n"
    assert camera.state()["files"]["key"] == {"source": "csr"}


def test_ca_signed_certificate_whose_key_is_gone(camera: MemberHandle, test_ca) -> None:
    signed = test_ca.sign_csr(csr_create(camera))
    assert get(camera.url, f"{ADMIN}&HTTPS_CER=remove") == OK  # the CSR's key goes too
    # The firmware does not check: the upload is "OK", yet HTTPS cannot come up.
    assert upload(camera.url, signed.encode()) == OK
    assert body_of(get(camera.url, f"{ADMIN}&HTTPS_CER")) == b"HTTPS_CER='certSrv.pem'\n"
    state = camera.state()["https"]
    assert state["active"] is False
    assert state["reason"].startswith("no private key for certSrv.pem")
    assert "https" not in camera.urls


def test_certificate_for_an_older_csr_does_not_match_the_new_key(
        camera: MemberHandle, test_ca) -> None:
    old = test_ca.sign_csr(csr_create(camera))
    csr_create(camera)
    assert upload(camera.url, old.encode()) == OK
    assert camera.state()["https"] == {
        "active": False, "port": None,
        "reason": "the private key does not match certSrv.pem"}


def test_csr_create_takes_https_down_and_remove_too(camera: MemberHandle, self_signed) -> None:
    upload(camera.url, self_signed.combined)
    host, port = hostport(https_url(camera))
    csr_create(camera)
    assert body_of(get(camera.url, f"{ADMIN}&HTTPS_CER")) == b"HTTPS_CER='none'\n"
    assert https_refused(host, port)
    upload(camera.url, self_signed.combined)  # its own key replaces the CSR's
    assert camera.state()["files"]["key"] == {"source": "upload"}
    assert not https_refused(host, port)
    get(camera.url, f"{ADMIN}&HTTPS_CER=remove")
    assert https_refused(host, port)


def test_key_inside_the_old_file_goes_with_it(camera: MemberHandle, self_signed) -> None:
    upload(camera.url, self_signed.combined)
    # A certificate alone: the key that lived in the old certSrv.pem is no longer there.
    assert upload(camera.url, self_signed.cert_pem.encode()) == OK
    assert camera.state()["https"]["active"] is False
    assert camera.state()["https"]["reason"].startswith("no private key")


def test_chain_in_certsrv_is_served(camera: MemberHandle, test_ca) -> None:
    signed = test_ca.sign_csr(csr_create(camera))
    assert upload(camera.url, (signed + test_ca.pem).encode()) == OK
    host, port = hostport(https_url(camera))
    out = subprocess.run(["openssl", "s_client", "-connect", f"{host}:{port}", "-showcerts"],
                         input=b"", capture_output=True, timeout=10).stdout
    assert out.count(b"-----BEGIN CERTIFICATE-----") == 2


def test_1024_bit_csr_key_is_served_as_the_firmware_would(
        emulator_factory: Callable[..., MemberHandle], test_ca) -> None:
    camera = emulator_factory("acti-camera")
    csr_pem = csr_create(camera, "TW,Taipei,Neihu,ACTi,RD,camera.test,1024")
    assert pki.load_csr(csr_pem).public_key().key_size == 1024
    signed = test_ca.sign_csr(csr_pem)
    assert upload(camera.url, signed.encode()) == OK
    # A modern client must lower its own security level to accept it; the camera does not care.
    assert same_cert(served_certificate(https_url(camera), "-cipher", "DEFAULT:@SECLEVEL=0"),
                     signed)


@pytest.mark.parametrize("wire", ["crlf", "lf"])
def test_the_cgi_answers_over_https_too(emulator_factory: Callable[..., MemberHandle],
                                        self_signed, wire: str) -> None:
    camera = emulator_factory("acti-camera", wire=wire,
                              https_certificate=self_signed.combined.decode())
    reply = curl("-i", "--insecure",
                 f"{https_url(camera)}/cgi-bin/update?{ADMIN}&HTTPS_CER").stdout
    eol = b"\r\n" if wire == "crlf" else b"\n"
    assert reply == eol.join([b"HTTP/1.0 200 OK", b"Content-type: text/plain",
                              b"Content-Length: 24", b"", b"HTTPS_CER='certSrv.pem'\n"])


def test_key_before_certificate_in_the_file(camera: MemberHandle, self_signed) -> None:
    assert upload(camera.url, (self_signed.key_pem + self_signed.cert_pem).encode()) == OK
    assert same_cert(served_certificate(https_url(camera)), self_signed.cert_pem)
    assert camera.state()["files"]["certificate"]["subject"] == "CN=camera.test"


def test_key_that_does_not_match_the_uploaded_certificate(
        camera: MemberHandle, self_signed, other_self_signed) -> None:
    mixed = (self_signed.cert_pem + other_self_signed.key_pem).encode()
    assert upload(camera.url, mixed) == OK  # the firmware does not check
    assert camera.state()["https"]["reason"] == "the private key does not match certSrv.pem"


def test_a_hand_edited_flash_does_not_stop_the_camera(
        emulator_factory: Callable[..., MemberHandle], tmp_path: Path) -> None:
    (tmp_path / "cam.json").write_text(json.dumps({"https_files": {
        "cert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "key": "junk", "key_source": "upload", "csr": "junk"}}))
    camera = emulator_factory("acti-camera", name="cam", state_dir=tmp_path)
    state = camera.state()
    assert state["https"]["reason"] == "certSrv.pem or its key in flash does not parse"
    assert state["files"]["certificate"] == {"file": "certSrv.pem", "error": "does not parse"}
    assert body_of(get(camera.url, f"{ADMIN}&HTTPS_CER")) == b"HTTPS_CER='certSrv.pem'\n"
    assert get(camera.url, f"{ADMIN}&HTTPS_CER=remove") == OK


def test_scenario_can_start_with_a_ca_signed_certificate_and_its_key(
        emulator_factory: Callable[..., MemberHandle], test_ca) -> None:
    key = pki.ec_key()
    csr = pki.csr_pem(pki.make_csr(key, pki.name(CN="camera.test")))
    signed = test_ca.sign_csr(csr)
    camera = emulator_factory("acti-camera", https_certificate=signed,
                              https_key=pki.key_pem(key))
    assert same_cert(served_certificate(https_url(camera)), signed)
    assert camera.state()["files"]["key"] == {"source": "csr"}
    # Without the key the same certificate uploads fine but cannot be served.
    bare = emulator_factory("acti-camera", https_certificate=signed)
    assert bare.state()["https"]["active"] is False
    assert body_of(get(bare.url, f"{ADMIN}&HTTPS_CER")) == b"HTTPS_CER='certSrv.pem'\n"

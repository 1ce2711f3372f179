"""HTTPS_CER read / upload / remove: the three-stage upload, its binding to stage 1, and a
table of uploads the device must answer with "ERROR: internal error. ..." (never a crash)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from emulators import pki
from emulators.testing import MemberHandle

from .clients import ADMIN, body_of, curl, get, hostport, multipart_body, post, upload

OK = b"HTTP/1.0 200 OK\r\nContent-type: text/plain\r\nContent-Length: 3\r\n\r\nOK\n"
REFUSED = (b"HTTP/1.0 400 Unauthorized\r\nContent-type: text/plain\r\n"
           b"Content-Length: 22\r\n\r\nERROR: not authorized\n")


def cer(camera: MemberHandle) -> bytes:
    return body_of(get(camera.url, f"{ADMIN}&HTTPS_CER"))


def test_curl_session_uploads_and_reads_back(camera: MemberHandle, self_signed,
                                             tmp_path: Path) -> None:
    pem = tmp_path / "mycert.pem"
    pem.write_bytes(self_signed.combined)
    form = curl("-i", f"{camera.url}/cgi-bin/update?{ADMIN}&HTTPS_CER=upload").stdout
    assert b'action="update?HTTPS_CER_SAVE"' in form
    reply = curl("-i", "-F", f"UPLOAD_FILE=@{pem}", "-F", "URL_FIRMWARE_SUBMIT=Apply",
                 f"{camera.url}/cgi-bin/update?HTTPS_CER_SAVE").stdout
    assert reply == OK
    assert curl(f"{camera.url}/cgi-bin/update?{ADMIN}&HTTPS_CER").stdout == \
        b"HTTPS_CER='certSrv.pem'\n"


@pytest.mark.parametrize("filename", [
    "certSrv.pem", "server.crt", r"C:\Documents and Settings\admin\My Cert.pem",
    "../../../../etc/passwd", "/tmp/evil.pem", "", "certSrv.pem\x00.txt",
], ids=["same-name", "other-name", "msie-full-path", "dot-dot", "absolute", "empty",
        "nul-byte"])
def test_any_file_name_is_stored_as_certSrv_pem(
        emulator_factory: Callable[..., MemberHandle], self_signed, tmp_path: Path,
        filename: str) -> None:
    camera = emulator_factory("acti-camera", name="cam", state_dir=tmp_path)
    assert upload(camera.url, self_signed.combined, filename=filename) == OK
    assert cer(camera) == b"HTTPS_CER='certSrv.pem'\n"
    assert camera.state()["files"]["certificate"]["file"] == "certSrv.pem"
    # The name reached no file system: flash is the state document and nothing else.
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["cam.json"]


def test_part_content_type_is_not_trusted(camera: MemberHandle, self_signed) -> None:
    for part_type in ("application/x-gzip-compressed", "image/jpeg", "text/plain"):
        assert upload(camera.url, self_signed.combined, part_type=part_type) == OK


def _der(self_signed) -> bytes:
    return pki.load_cert(self_signed.cert_pem).public_bytes(serialization.Encoding.DER)


BAD_FILES = [
    ("empty", lambda s: b"", "empty certificate file."),
    ("whitespace", lambda s: b"\r\n \n", "empty certificate file."),
    ("text", lambda s: b"hello camera\n", "not a PEM certificate."),
    ("der", _der, "not a PEM certificate."),
    ("key-only", lambda s: s.key_pem.encode(), "not a PEM certificate."),
    ("csr", lambda s: pki.csr_pem(pki.make_csr(pki.load_key(s.key_pem), pki.name(CN="x")))
     .encode(), "not a PEM certificate."),
    ("garbage-base64", lambda s: b"-----BEGIN CERTIFICATE-----\nnot!base64\n"
     b"-----END CERTIFICATE-----\n", "certificate does not parse."),
    ("truncated-cert", lambda s: s.cert_pem.encode()[:200] + b"\n-----END CERTIFICATE-----\n",
     "certificate does not parse."),
    ("encrypted-key", lambda s: s.cert_pem.encode() + pki.key_pem(
        pki.load_key(s.key_pem), b"secret").encode(), "private key does not parse."),
    ("garbage-key", lambda s: s.cert_pem.encode() + b"-----BEGIN PRIVATE KEY-----\nAAAA\n"
     b"-----END PRIVATE KEY-----\n", "private key does not parse."),
    ("binary", lambda s: bytes(range(256)) * 4, "not a PEM certificate."),
]


@pytest.mark.parametrize(("make", "message"), [(m, msg) for _, m, msg in BAD_FILES],
                         ids=[i for i, _, _ in BAD_FILES])
def test_bad_certificate_files(camera: MemberHandle, self_signed, make, message: str) -> None:
    reply = upload(camera.url, make(self_signed))
    expected = f"ERROR: internal error. {message}\n".encode()
    assert reply == (b"HTTP/1.0 200 OK\r\nContent-type: text/plain\r\nContent-Length: "
                     + str(len(expected)).encode() + b"\r\n\r\n" + expected)
    assert cer(camera) == b"HTTPS_CER='none'\n"


BOUNDARY = "----b"
GOOD_PART = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"UPLOAD_FILE\"; "
             'filename="a.pem"\r\n\r\n')
BAD_BODIES = [
    ("not-multipart", "application/x-www-form-urlencoded", b"UPLOAD_FILE=x",
     "not a multipart/form-data request."),
    ("no-content-type", "", b"", "not a multipart/form-data request."),
    ("no-boundary", "multipart/form-data", b"--x\r\n", "not a multipart/form-data request."),
    ("no-closing-boundary", f"multipart/form-data; boundary={BOUNDARY}",
     GOOD_PART.encode() + b"data", "multipart body does not parse."),
    ("wrong-boundary", "multipart/form-data; boundary=other",
     GOOD_PART.encode() + f"x\r\n--{BOUNDARY}--\r\n".encode(), "multipart body does not parse."),
    ("empty-body", f"multipart/form-data; boundary={BOUNDARY}", b"",
     "multipart body does not parse."),
    ("header-garbage", f"multipart/form-data; boundary={BOUNDARY}",
     f"--{BOUNDARY}\r\nno colon here\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(),
     "multipart body does not parse."),
    ("other-field-name", f"multipart/form-data; boundary={BOUNDARY}",
     f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.pem\"\r\n"
     f"\r\nx\r\n--{BOUNDARY}--\r\n".encode(), "no UPLOAD_FILE in the form."),
]


@pytest.mark.parametrize(("content_type", "body", "message"),
                         [(c, b, m) for _, c, b, m in BAD_BODIES],
                         ids=[i for i, *_ in BAD_BODIES])
def test_bad_multipart_bodies(camera: MemberHandle, content_type: str, body: bytes,
                              message: str) -> None:
    get(camera.url, f"{ADMIN}&HTTPS_CER=upload")
    reply = post(camera.url, "HTTPS_CER_SAVE", content_type, body)
    assert reply.startswith(b"HTTP/1.0 200 OK\r\nContent-type: text/plain\r\n")
    assert body_of(reply) == f"ERROR: internal error. {message}\n".encode()


def test_over_the_size_limit(emulator_factory: Callable[..., MemberHandle], self_signed,
                             tmp_path: Path) -> None:
    camera = emulator_factory("acti-camera", max_upload_bytes=1024)
    padded = b"# comment\n" * 200 + self_signed.combined  # > 1024 bytes, still a good PEM
    expected = b"ERROR: internal error. file too large.\n"
    assert body_of(upload(camera.url, padded)) == expected
    # A declared length far over the limit: refused without reading it all, still answered.
    pem = tmp_path / "big.pem"
    pem.write_bytes(padded * 300)
    curl(f"{camera.url}/cgi-bin/update?{ADMIN}&HTTPS_CER=upload")
    reply = curl("-H", "Expect:", "-F", f"UPLOAD_FILE=@{pem}",
                 f"{camera.url}/cgi-bin/update?HTTPS_CER_SAVE").stdout
    assert reply == expected
    assert cer(camera) == b"HTTPS_CER='none'\n"
    # And the camera still works: the same file at a size it takes.
    assert upload(camera.url, self_signed.combined) == OK


def test_failed_upload_keeps_the_old_certificate(camera: MemberHandle, self_signed) -> None:
    assert upload(camera.url, self_signed.combined) == OK
    assert body_of(upload(camera.url, b"junk")) == (
        b"ERROR: internal error. not a PEM certificate.\n")
    assert cer(camera) == b"HTTPS_CER='certSrv.pem'\n"
    assert camera.state()["https"]["active"] is True


# -- binding stage 3 to an authorised stage 1 -------------------------------------------------

def _form(self_signed) -> tuple[str, bytes]:
    return multipart_body(self_signed.combined)


def test_post_without_stage1_is_refused(camera: MemberHandle, self_signed) -> None:
    assert post(camera.url, "HTTPS_CER_SAVE", *_form(self_signed)) == REFUSED
    assert cer(camera) == b"HTTPS_CER='none'\n"


def test_stage1_grants_one_upload_only(camera: MemberHandle, self_signed) -> None:
    get(camera.url, f"{ADMIN}&HTTPS_CER=upload")
    assert post(camera.url, "HTTPS_CER_SAVE", *_form(self_signed)) == OK
    assert post(camera.url, "HTTPS_CER_SAVE", *_form(self_signed)) == REFUSED


def test_failed_upload_also_uses_up_the_grant(camera: MemberHandle, self_signed) -> None:
    assert body_of(upload(camera.url, b"")).startswith(b"ERROR: internal error.")
    assert post(camera.url, "HTTPS_CER_SAVE", *_form(self_signed)) == REFUSED


def test_stage1_from_another_address_does_not_authorise(camera: MemberHandle,
                                                         self_signed) -> None:
    get(camera.url, f"{ADMIN}&HTTPS_CER=upload", source="127.0.0.2")
    assert post(camera.url, "HTTPS_CER_SAVE", *_form(self_signed)) == REFUSED
    assert post(camera.url, "HTTPS_CER_SAVE", *_form(self_signed), source="127.0.0.2") == OK


def test_grant_expires_after_the_window(emulator_factory: Callable[..., MemberHandle],
                                        self_signed) -> None:
    camera = emulator_factory("acti-camera", upload_window=60)
    get(camera.url, f"{ADMIN}&HTTPS_CER=upload")
    assert list(camera.state()["upload_grants"]) == ["127.0.0.1"]
    camera.call(lambda m: m.clock.advance(61))
    assert post(camera.url, "HTTPS_CER_SAVE", *_form(self_signed)) == REFUSED
    get(camera.url, f"{ADMIN}&HTTPS_CER=upload")
    camera.call(lambda m: m.clock.advance(59))
    assert post(camera.url, "HTTPS_CER_SAVE", *_form(self_signed)) == OK


@pytest.mark.parametrize("query", [
    "USER=admin&PWD=wrong&HTTPS_CER=upload",
    "USER=viewer&PWD=viewer&HTTPS_CER=upload",
    "HTTPS_CER=upload",
], ids=["wrong-password", "non-root", "no-credentials"])
def test_refused_stage1_grants_nothing(emulator_factory: Callable[..., MemberHandle],
                                       self_signed, query: str) -> None:
    camera = emulator_factory("acti-camera", users=[
        {"user": "admin", "password": "123456", "root": True},
        {"user": "viewer", "password": "viewer"}])
    assert get(camera.url, query) == REFUSED
    assert post(camera.url, "HTTPS_CER_SAVE", *_form(self_signed)) == REFUSED


def test_post_with_credentials_in_the_url_needs_no_stage1(camera: MemberHandle,
                                                          self_signed) -> None:
    assert post(camera.url, "USER=admin&PWD=wrong&HTTPS_CER_SAVE", *_form(self_signed)) == REFUSED
    assert post(camera.url, f"{ADMIN}&HTTPS_CER_SAVE", *_form(self_signed)) == OK


# -- remove and the other values --------------------------------------------------------------

def test_remove_when_there_is_nothing_is_ok(camera: MemberHandle) -> None:
    assert get(camera.url, f"{ADMIN}&HTTPS_CER=remove") == OK
    assert cer(camera) == b"HTTPS_CER='none'\n"


def test_remove_deletes_csr_key_and_certificate(camera: MemberHandle, test_ca) -> None:
    csr = body_of(get(camera.url, f"{ADMIN}&HTTPS_CSR_CREATE=TW,Taipei,Neihu,ACTi,RD,"
                                  "camera.test,2048")).decode()
    assert upload(camera.url, test_ca.sign_csr(csr).encode()) == OK
    assert camera.state()["https"]["active"] is True
    assert get(camera.url, f"{ADMIN}&HTTPS_CER=remove") == OK
    state = camera.state()
    assert state["https_files"] == {"cert": None, "key": None, "key_source": None, "csr": None}
    assert state["files"] == {"certificate": None, "key": None, "csr": None}
    assert state["https"]["active"] is False
    assert cer(camera) == b"HTTPS_CER='none'\n"
    assert body_of(get(camera.url, f"{ADMIN}&HTTPS_CSR_CREATE")) == b"HTTPS_CSR_CREATE='none'\n"


@pytest.mark.parametrize("value", ["UPLOAD", "delete", "", "certSrv.pem"])
def test_other_values_echo_the_current_value(camera: MemberHandle, self_signed,
                                             value: str) -> None:
    assert body_of(get(camera.url, f"{ADMIN}&HTTPS_CER={value}")) == b"ERROR: HTTPS_CER='none'\n"
    upload(camera.url, self_signed.combined)
    assert body_of(get(camera.url, f"{ADMIN}&HTTPS_CER={value}")) == \
        b"ERROR: HTTPS_CER='certSrv.pem'\n"


def test_stalled_upload_times_out_with_the_error_form(
        emulator_factory: Callable[..., MemberHandle]) -> None:
    camera = emulator_factory("acti-camera", upload_timeout=0.3)
    get(camera.url, f"{ADMIN}&HTTPS_CER=upload")
    with socket.create_connection(hostport(camera.url), timeout=10) as sock:
        sock.sendall(b"POST /cgi-bin/update?HTTPS_CER_SAVE HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: 1000\r\n\r\n--b\r\n")  # ...and nothing more
        reply = b"".join(iter(lambda: sock.recv(65536), b""))
    assert reply == (b"HTTP/1.0 200 OK\r\nContent-type: text/plain\r\nContent-Length: 41\r\n"
                     b"\r\nERROR: internal error. upload timed out.\n")


def test_no_interim_100_continue(camera: MemberHandle, self_signed) -> None:
    get(camera.url, f"{ADMIN}&HTTPS_CER=upload")
    content_type, body = multipart_body(self_signed.combined)
    with socket.create_connection(hostport(camera.url), timeout=10) as sock:
        sock.sendall((f"POST /cgi-bin/update?HTTPS_CER_SAVE HTTP/1.1\r\nHost: x\r\n"
                      f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                      "Expect: 100-continue\r\n\r\n").encode())
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # an HTTP/1.0 device says nothing until it has the body
        sock.settimeout(10)
        sock.sendall(body)
        reply = b"".join(iter(lambda: sock.recv(65536), b""))
    assert reply == OK

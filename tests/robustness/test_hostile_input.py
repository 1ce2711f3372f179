"""Hostile input, one table across every emulator: each malformed, duplicated, missing,
overlong, mis-encoded or mis-signed request gets its vendor's documented error form and
status, promptly, never a 500 or a traceback, and leaves the member's state as it was.

Requests go out as raw bytes (``clients.exchange``) so that what reaches the emulator is
exactly what the row says. One farm serves the module; the member under test is reset
before each row.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncssh
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest

from emulators import pki
from emulators.testing import MemberHandle, RunningFarm
from tests.robustness.clients import (
    ACTI_AUTH,
    ENOS_APP_KEY,
    ENOS_APP_SECRET,
    ENOS_ORG,
    FTP_PASSWORD,
    FTP_USER,
    INSTAR_PASSWORD,
    INSTAR_USER,
    IOTDA_AK,
    IOTDA_PROJECT,
    IOTDA_SK,
    IOTDA_TOKEN,
    REPLY_TIMEOUT,
    SFTP_PASSWORD,
    SFTP_USER,
    Reply,
    basic,
    enos_sdk_token,
    exchange,
    http_request,
    member_state,
)

Check = Callable[[Reply], None]
Build = Callable[[MemberHandle, Any], bytes]


@dataclass(frozen=True)
class Case:
    member: str
    build: Build
    check: Check
    # Runs before the state is taken (a token the request then abuses, for example).
    prepare: Callable[[MemberHandle], Any] | None = None
    # "http": build gives request bytes; "ftp": command lines; "sftp": an SFTP client action.
    transport: str = "http"


def row(case_id: str, member: str, build: Build | bytes, check: Check,
        prepare: Callable[[MemberHandle], Any] | None = None) -> Any:
    builder: Build = build if callable(build) else (lambda _h, _c, raw=build: raw)
    return pytest.param(Case(member, builder, check, prepare), id=f"{member}-{case_id}")


def ftp_row(case_id: str, lines: list[bytes], *replies: str, login: bool = False) -> Any:
    """Command lines sent raw on the FTP control connection (after a login when ``login``);
    each reply must start with the text given for it."""
    def check(answers: list[str]) -> None:
        assert len(answers) == len(replies), answers
        for answer, want in zip(answers, replies, strict=True):
            assert answer.startswith(want), (answer, want)

    return pytest.param(Case("ftp", lambda _h, _c: (login, lines), check,  # type: ignore[arg-type]
                             transport="ftp"), id=f"ftp-{case_id}")


def sftp_row(case_id: str, action: Callable[[Any], Any], reason: str, *,
             password: str | None = None, user: str = SFTP_USER) -> Any:
    """One SFTP operation (or a login); the refusal's reason text must be ``reason``."""
    def check(got: str) -> None:
        assert got == reason

    return pytest.param(Case("sftp", lambda _h, _c: (user, password, action),  # type: ignore[arg-type]
                             check, transport="sftp"), id=f"sftp-{case_id}")


# -- what each vendor's refusals look like --------------------------------------------------

def acti(status: int, reason: str, text: str) -> Check:
    """ACTi: hand-written HTTP/1.0, text/plain, the body line ending in a newline."""
    want = text.encode("utf-8", "surrogateescape") + b"\n"

    def check(reply: Reply) -> None:
        assert (reply.version, reply.status, reply.reason) == ("HTTP/1.0", status, reason)
        assert reply.headers.get("content-type") == "text/plain"
        assert reply.body == want
        assert reply.closed

    return check


ACTI_REFUSED = acti(400, "Unauthorized", "ERROR: not authorized")


def acti_upload(message: str) -> Check:
    return acti(200, "OK", f"ERROR: internal error. {message}")


def acti_csr(detail_start: str) -> Check:
    def check(reply: Reply) -> None:
        assert (reply.version, reply.status) == ("HTTP/1.0", 200)
        assert reply.body.startswith(b"ERROR: invalid argument. " + detail_start.encode())
        assert reply.body.endswith(b"\n")

    return check


def parser_400(reply: Reply) -> None:
    """A request aiohttp's HTTP parser cannot read: its own 400, then the connection closes
    (ACTi README, choice 15; the same parser fronts every HTTP member)."""
    assert reply.status == 400
    assert reply.closed


def instar(code: int, cmd: str | None) -> Check:
    want = ("" if cmd is None else f'cmd="{cmd}";\r\n') + f'response="{code}";\r\n'

    def check(reply: Reply) -> None:
        assert reply.status == 200
        assert reply.headers["content-type"].startswith("text/plain")
        assert reply.body.decode() == want

    return check


def instar_401(reply: Reply) -> None:
    assert reply.status == 401
    assert reply.headers["www-authenticate"] == 'Basic realm="INSTAR"'
    assert reply.body == b"401 Unauthorized"


def aiohttp_status(status: int) -> Check:
    """A method or path the camera has no handler for: the web server's own page."""
    def check(reply: Reply) -> None:
        assert reply.status == status
        assert reply.body.startswith(f"{status}: ".encode())

    return check


def enos(code: int, msg: str) -> Check:
    """The Connection Service envelope, always HTTP 200; ``msg`` ending in ``...`` is a
    prefix (the detailed rows carry the emulator's own wording after it)."""
    def check(reply: Reply) -> None:
        assert reply.status == 200
        body = reply.json()
        assert set(body) == {"code", "msg", "requestId", "data"}
        assert body["code"] == code
        assert body["data"] is None
        if msg.endswith("..."):
            assert body["msg"].startswith(msg[:-3]), body["msg"]
        else:
            assert body["msg"] == msg

    return check


def enos_gateway(status: int, msg: str, *, business: str = "apim-gateway",
                 apim_status: int | None = None, http: int = 200) -> Check:
    def check(reply: Reply) -> None:
        assert reply.status == http
        body = reply.json()
        assert {k: body[k] for k in ("status", "msg", "business")} == {
            "status": status, "msg": msg, "business": business}
        assert body.get("apim_status") == apim_status

    return check


def enos_token(status: int, msg: str) -> Check:
    return enos_gateway(status, msg, business="apim-token-service")


def iotda(status: int, code: str, msg: str, *, gateway: bool = False) -> Check:
    def check(reply: Reply) -> None:
        assert reply.status == status
        assert len(reply.headers["x-request-id"]) == 32
        body = reply.json()
        assert (body["error_code"], body["error_msg"]) == (code, msg)
        assert ("request_id" in body) == gateway

    return check


IOTDA_BAD_INPUT = iotda(400, "IOTDA.000006", "Invalid input data.")
IOTDA_BAD_FORMAT = iotda(
    400, "IOTDA.000008", "Invalid input. Bad request, for more detail, refer to the error message.")
IOTDA_LIMIT = iotda(400, "IOTDA.000017",
                    "Invalid input. The specified parameter 'limit' is out of range.")
IOTDA_BAD_CERT = iotda(400, "IOTDA.014301", "Invalid certificate content.")
IOTDA_SIGNATURE = iotda(401, "APIGW.0301",
                        "Incorrect IAM authentication information: verify aksk signature fail",
                        gateway=True)
IOTDA_NO_TOKEN = iotda(401, "APIGW.0301",
                       "Incorrect IAM authentication information: x-auth-token not found",
                       gateway=True)
IOTDA_BAD_TOKEN = iotda(401, "APIGW.0301",
                        "Incorrect IAM authentication information: decrypt token fail",
                        gateway=True)
IOTDA_FORBIDDEN = iotda(403, "IOTDA.000022",
                        "Operation not allowed. The user does not have the permission")
IOTDA_NO_PATH = iotda(404, "IOTDA.000029", "The requested resource does not exist.")
IOTDA_NO_CERT = iotda(404, "IOTDA.014303", "The certificate does not exist.")


# -- request builders -----------------------------------------------------------------------

def get(target: str | bytes, **headers: str) -> bytes:
    return http_request("GET", target, headers=headers)


def acti_get(query: str | bytes, path: str = "/cgi-bin/update") -> bytes:
    target = path.encode() + b"?" + (query if isinstance(query, bytes) else query.encode())
    return http_request("GET", target)


def multipart(parts: list[tuple[str, bytes]], boundary: str = "xBOUNDARYx",
              filename: str = "certSrv.pem", close: bool = True) -> bytes:
    out = b""
    for name, content in parts:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                ).encode() + content + b"\r\n"
    return out + (f"--{boundary}--\r\n".encode() if close else b"")


def acti_upload_request(body: bytes, content_type: str = "multipart/form-data; boundary=xBOUNDARYx",
                        ) -> bytes:
    return http_request("POST", f"/cgi-bin/update?{ACTI_AUTH}&HTTPS_CER_SAVE",
                        headers={"Content-Type": content_type}, body=body)


def upload_file(content: bytes) -> bytes:
    return acti_upload_request(multipart([("UPLOAD_FILE", content)]))


def instar_get(query: str | bytes, *, auth: str | None = None) -> bytes:
    target = b"/param.cgi?" + (query if isinstance(query, bytes) else query.encode())
    headers = {"Authorization": auth or basic(INSTAR_USER, INSTAR_PASSWORD)}
    if auth == "":
        headers = {}
    return http_request("GET", target, headers=headers)


ENOS_CERTS = "/connect-service/v2.0/certificates"
SDK_TOKEN = "<a genuine SDK token>"  # enos_call's default: stands for enos_sdk_token()


def enos_call(query: str | bytes, body: bytes | None = None, *, method: str = "POST",
              content_type: str = "application/json", token: str | None = SDK_TOKEN,
              **headers: str) -> bytes:
    """A certificate call; by default with a genuine enos-poseidon token, made afresh."""
    if token == SDK_TOKEN:
        token = enos_sdk_token()
    target = ENOS_CERTS.encode() + b"?" + (query if isinstance(query, bytes) else query.encode())
    all_headers = {"Content-Type": content_type, **headers}
    if token is not None:
        all_headers["apim-accesstoken"] = token
    return http_request(method, target, headers=all_headers, body=body or b"")


def enos_apply(body: bytes, **kw: Any) -> bytes:
    return enos_call(f"action=apply&orgId={ENOS_ORG}&assetId=assetA", body, **kw)


def enos_token_get(body: bytes, content_type: str = "application/json") -> bytes:
    return http_request("POST", "/apim-token-service/v2.0/token/get",
                        headers={"Content-Type": content_type}, body=body)


def enos_issue_token(handle: MemberHandle) -> str:
    import hashlib

    ts = int(handle.call(lambda m: m.clock.time()) * 1000)
    body = json.dumps({"appKey": ENOS_APP_KEY, "timestamp": ts, "encryption": hashlib.sha256(
        f"{ENOS_APP_KEY}{ts}{ENOS_APP_SECRET}".encode()).hexdigest()}).encode()
    reply = exchange(handle.port, enos_token_get(body))
    return str(reply.json()["data"]["accessToken"])


def enos_signed(bad: str) -> Build:
    """A signed certificate call with a real token and one piece wrong."""
    def build(handle: MemberHandle, token: str) -> bytes:
        ts = str(int(handle.call(lambda m: m.clock.time()) * 1000))
        headers = {"apim-timestamp": ts, "apim-signature": "0" * 64}
        if bad == "timestamp":
            headers["apim-timestamp"] = "yesterday"
        if bad == "no-signature":
            del headers["apim-signature"]
        return enos_call(f"action=list&orgId={ENOS_ORG}&assetId=assetA", method="GET",
                         token=token, **headers)

    return build


IOTDA_BASE = f"/v5/iot/{IOTDA_PROJECT}"


def iotda_call(method: str, path: str, body: bytes = b"", *, token: str | None = IOTDA_TOKEN,
               content_type: str | None = "application/json", **headers: str) -> bytes:
    all_headers = dict(headers)
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    if token is not None:
        all_headers["X-Auth-Token"] = token
    return http_request(method, path if path.startswith("/") else f"{IOTDA_BASE}/{path}",
                        headers=all_headers, body=body)


def iotda_json(method: str, path: str, doc: Any) -> bytes:
    return iotda_call(method, path, json.dumps(doc).encode())


def iotda_signed(tamper: str) -> Build:
    """A request the SDK's own signer signed, then altered the way a broken client would."""
    def build(handle: MemberHandle, _ctx: Any) -> bytes:
        path = f"{IOTDA_BASE}/certificates"
        request = SdkRequest(method="GET", schema="http", host=f"127.0.0.1:{handle.port}",
                             resource_path=path, query_params=[],
                             header_params={"Content-Type": "application/json"})
        headers = dict(BasicCredentials(IOTDA_AK, IOTDA_SK, IOTDA_PROJECT)
                       .sign_request(request).header_params)
        headers.pop("Host", None)
        headers.pop("host", None)
        if tamper == "signature":
            headers["Authorization"] = headers["Authorization"][:-4] + "0000"
        elif tamper == "ak":
            headers["Authorization"] = headers["Authorization"].replace(IOTDA_AK, "UNKNOWNAK0000000000")
        elif tamper == "date":
            headers["X-Sdk-Date"] = "20200101T000000Z"
        elif tamper == "query":
            path += "?limit=5"  # not what was signed
        raw = http_request("GET", path, headers=headers)
        return raw.replace(b"Host: 127.0.0.1", f"Host: 127.0.0.1:{handle.port}".encode(), 1)

    return build


# -- material -------------------------------------------------------------------------------

_KEY = pki.ec_key()
CERT_PEM = pki.cert_pem(pki.issue(_KEY.public_key(), pki.name(CN="camera.test"), None, _KEY,
                                  dns_names=("camera.test",), server=True)).encode()
CSR_PEM = pki.csr_pem(pki.make_csr(_KEY, pki.name(CN="camera.test"))).encode()
GARBLED_PEM = b"-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
BROKEN_KEY = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
ENCRYPTED_KEY = _KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
    serialization.BestAvailableEncryption(b"secret"))
DER_CERT = x509.load_pem_x509_certificate(CERT_PEM).public_bytes(serialization.Encoding.DER)
NON_UTF8 = b"\xff\xfe\xc3\x28 not text \x80"
LONG = "A" * 6000


CASES = [
    # ---- ACTi: credentials -----------------------------------------------------------
    row("no-query", "acti", acti_get(""), ACTI_REFUSED),
    row("user-without-password", "acti", acti_get("USER=admin&HTTPS_CER"), ACTI_REFUSED),
    row("password-without-user", "acti", acti_get("PWD=123456&HTTPS_CER"), ACTI_REFUSED),
    row("wrong-password", "acti", acti_get("USER=admin&PWD=wrong&HTTPS_CER=remove"),
        ACTI_REFUSED),
    row("empty-credentials", "acti", acti_get("USER=&PWD=&FACTORY_DEFAULT"), ACTI_REFUSED),
    row("duplicate-user-first-wrong", "acti",
        acti_get("USER=intruder&USER=admin&PWD=123456&FACTORY_DEFAULT"), ACTI_REFUSED),
    row("duplicate-password-first-wrong", "acti",
        acti_get("USER=admin&PWD=nope&PWD=123456&FACTORY_DEFAULT"), ACTI_REFUSED),
    row("plus-is-not-space-in-password", "acti", acti_get("USER=admin&PWD=123+456&HTTPS_CER"),
        ACTI_REFUSED),
    row("overlong-password", "acti", acti_get(f"USER=admin&PWD={LONG}&HTTPS_CER"), ACTI_REFUSED),
    row("non-utf8-password", "acti", acti_get("USER=admin&PWD=%FF%FE&HTTPS_CER"), ACTI_REFUSED),
    row("stage3-without-stage1", "acti",
        http_request("POST", "/cgi-bin/update?HTTPS_CER_SAVE",
                     headers={"Content-Type": "multipart/form-data; boundary=xBOUNDARYx"},
                     body=multipart([("UPLOAD_FILE", CERT_PEM)])), ACTI_REFUSED),
    # ---- ACTi: the query --------------------------------------------------------------
    row("no-command", "acti", acti_get(ACTI_AUTH), acti(200, "OK", "ERROR: no command")),
    row("only-ampersands", "acti", acti_get(f"&&&{ACTI_AUTH}&&&"),
        acti(200, "OK", "ERROR: no command")),
    row("two-commands", "acti", acti_get(f"{ACTI_AUTH}&HTTPS_CER=remove&FACTORY_DEFAULT"),
        acti(200, "OK", "ERROR: only one command per update URL")),
    row("duplicated-command", "acti", acti_get(f"{ACTI_AUTH}&HTTPS_CER=remove&HTTPS_CER=remove"),
        acti(200, "OK", "ERROR: only one command per update URL")),
    row("unknown-command", "acti", acti_get(f"{ACTI_AUTH}&FORMAT_DISK"),
        acti(200, "OK", "ERROR: FORMAT_DISK not found")),
    row("lowercase-command", "acti", acti_get(f"{ACTI_AUTH}&https_cer=remove"),
        acti(200, "OK", "ERROR: https_cer not found")),
    row("bad-percent-escape", "acti", acti_get(f"{ACTI_AUTH}&%ZZ%"),
        acti(200, "OK", "ERROR: %ZZ% not found")),
    row("non-utf8-command-echoed", "acti", acti_get(f"{ACTI_AUTH}&CMD%FF"),
        acti(200, "OK", "ERROR: CMD\udcff not found")),
    row("bad-https-cer-value", "acti", acti_get(f"{ACTI_AUTH}&HTTPS_CER=delete"),
        acti(200, "OK", "ERROR: HTTPS_CER='none'")),
    row("empty-https-cer-value", "acti", acti_get(f"{ACTI_AUTH}&HTTPS_CER="),
        acti(200, "OK", "ERROR: HTTPS_CER='none'")),
    row("overlong-https-cer-value", "acti", acti_get(f"{ACTI_AUTH}&HTTPS_CER={LONG}"),
        acti(200, "OK", "ERROR: HTTPS_CER='none'")),
    row("typo-with-other-value", "acti", acti_get(f"{ACTI_AUTH}&HTTPS=remove"),
        acti(200, "OK", "ERROR: HTTPS not found")),
    row("csr-too-few-fields", "acti", acti_get(f"{ACTI_AUTH}&HTTPS_CSR_CREATE=TW,Taipei"),
        acti_csr("")),
    row("csr-bad-country", "acti",
        acti_get(f"{ACTI_AUTH}&HTTPS_CSR_CREATE=TWN,Taipei,Taipei,ACTi,RD,cam,2048"),
        acti_csr("")),
    row("csr-bad-key-length", "acti",
        acti_get(f"{ACTI_AUTH}&HTTPS_CSR_CREATE=TW,Taipei,Taipei,ACTi,RD,cam,512"),
        acti_csr("")),
    row("csr-no-common-name", "acti",
        acti_get(f"{ACTI_AUTH}&HTTPS_CSR_CREATE=TW,Taipei,Taipei,ACTi,RD,,2048"), acti_csr("")),
    row("csr-overlong-province", "acti",
        acti_get(f"{ACTI_AUTH}&HTTPS_CSR_CREATE=TW,{'P' * 41},Taipei,ACTi,RD,cam,2048"),
        acti_csr("")),
    row("csr-non-utf8-field", "acti",
        acti_get(f"{ACTI_AUTH}&HTTPS_CSR_CREATE=TW,Taipei,Taipei,AC%FFTi,RD,cam,2048"),
        acti_csr("fields must be UTF-8 text.")),
    row("csr-overlong-value", "acti", acti_get(f"{ACTI_AUTH}&HTTPS_CSR_CREATE={LONG}"),
        acti_csr("")),
    row("unknown-cgi", "acti", acti_get(ACTI_AUTH, "/cgi-bin/encoder"),
        acti(401, "Not Found", "ERROR: /cgi-bin/encoder not found")),
    row("type2-url", "acti", acti_get(f"{ACTI_AUTH}&HTTPS_CER", "/cgi-bin/cmd/update"),
        acti(401, "Not Found", "ERROR: /cgi-bin/cmd/update not found")),
    row("dot-dot-path", "acti", acti_get(ACTI_AUTH, "/cgi-bin/../../etc/passwd"),
        acti(401, "Not Found", "ERROR: /cgi-bin/../../etc/passwd not found")),
    row("raw-non-utf8-in-request-line", "acti", get(b"/cgi-bin/update?USER=\xff\xfe&HTTPS_CER"),
        parser_400),
    row("request-line-over-8k", "acti", acti_get(f"{ACTI_AUTH}&HTTPS_CER={'A' * 9000}"),
        parser_400),
    row("tls-hello-on-http-port", "acti", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 64,
        parser_400),
    row("header-without-colon", "acti",
        b"GET /cgi-bin/update?HTTPS_CER HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n", parser_400),
    # ---- ACTi: the multipart upload ---------------------------------------------------
    row("upload-not-multipart", "acti",
        acti_upload_request(CERT_PEM, "application/x-pem-file"),
        acti_upload("not a multipart/form-data request.")),
    row("upload-multipart-without-boundary", "acti",
        acti_upload_request(multipart([("UPLOAD_FILE", CERT_PEM)]), "multipart/form-data"),
        acti_upload("not a multipart/form-data request.")),
    row("upload-no-content-type", "acti",
        http_request("POST", f"/cgi-bin/update?{ACTI_AUTH}&HTTPS_CER_SAVE",
                     body=multipart([("UPLOAD_FILE", CERT_PEM)])),
        acti_upload("not a multipart/form-data request.")),
    row("upload-wrong-boundary", "acti",
        acti_upload_request(multipart([("UPLOAD_FILE", CERT_PEM)]),
                            "multipart/form-data; boundary=other"),
        acti_upload("multipart body does not parse.")),
    row("upload-truncated", "acti",
        acti_upload_request(multipart([("UPLOAD_FILE", CERT_PEM)])[:200]),
        acti_upload("multipart body does not parse.")),
    row("upload-no-closing-boundary", "acti",
        acti_upload_request(multipart([("UPLOAD_FILE", CERT_PEM)], close=False)),
        acti_upload("multipart body does not parse.")),
    row("upload-huge-part-header", "acti",
        acti_upload_request(multipart([("UPLOAD_FILE", CERT_PEM)], filename="x" * 20000)),
        acti_upload("file too large.")),
    row("upload-many-parts", "acti",
        acti_upload_request(multipart([(f"f{i}", b"x") for i in range(200)])),
        acti_upload("file too large.")),
    row("upload-no-file-field", "acti",
        acti_upload_request(multipart([("OTHER", CERT_PEM)])),
        acti_upload("no UPLOAD_FILE in the form.")),
    row("upload-empty-body", "acti", acti_upload_request(b""),
        acti_upload("multipart body does not parse.")),
    row("upload-empty-file", "acti", upload_file(b""), acti_upload("empty certificate file.")),
    row("upload-garbage", "acti", upload_file(b"hello, camera"),
        acti_upload("not a PEM certificate.")),
    row("upload-non-utf8", "acti", upload_file(NON_UTF8), acti_upload("not a PEM certificate.")),
    row("upload-der-certificate", "acti", upload_file(DER_CERT),
        acti_upload("not a PEM certificate.")),
    row("upload-csr-not-certificate", "acti", upload_file(CSR_PEM),
        acti_upload("not a PEM certificate.")),
    row("upload-garbled-pem", "acti", upload_file(GARBLED_PEM),
        acti_upload("certificate does not parse.")),
    row("upload-broken-key", "acti", upload_file(CERT_PEM + BROKEN_KEY),
        acti_upload("private key does not parse.")),
    row("upload-encrypted-key", "acti", upload_file(CERT_PEM + ENCRYPTED_KEY),
        acti_upload("private key does not parse.")),
    row("upload-oversized-certificate", "acti",
        upload_file(CERT_PEM + b"#" * (70 * 1024)), acti_upload("file too large.")),
    # ---- INSTAR: credentials ------------------------------------------------------------
    row("no-credentials", "instar", instar_get("cmd=setftpattr&ft_port=2121", auth=""),
        instar_401),
    row("wrong-basic-password", "instar",
        instar_get("cmd=setftpattr&ft_port=2121", auth=basic("admin", "wrong")), instar_401),
    row("basic-not-base64", "instar",
        instar_get("cmd=setftpattr&ft_port=2121", auth="Basic !!!not-base64!!!"), instar_401),
    row("basic-without-colon", "instar",
        instar_get("cmd=setftpattr&ft_port=2121", auth="Basic YWRtaW4="), instar_401),
    row("basic-non-utf8", "instar",
        instar_get("cmd=setftpattr&ft_port=2121", auth="Basic //79OmluaXN0YXI="), instar_401),
    row("bearer-instead-of-basic", "instar",
        instar_get("cmd=setftpattr&ft_port=2121", auth="Bearer abc"), instar_401),
    row("query-password-wrong-wins-over-basic", "instar",
        instar_get("cmd=setftpattr&ft_port=2121&user=admin&pwd=wrong"), instar_401),
    row("query-user-without-pwd", "instar",
        instar_get("cmd=setftpattr&ft_port=2121&user=admin", auth=""), instar_401),
    # ---- INSTAR: the query ---------------------------------------------------------------
    row("no-cmd", "instar", instar_get("ft_port=21"), instar(208, None)),
    row("empty-query", "instar", instar_get(""), instar(208, None)),
    row("unknown-cmd", "instar", instar_get("cmd=reboot"), instar(204, "reboot")),
    row("cmd-forging-reply-lines", "instar",
        instar_get("cmd=x%22%3B%0D%0Aresponse%3D%22200"),
        instar(204, "x%22;%0D%0Aresponse=%22200")),
    row("cmd-non-utf8", "instar", instar_get("cmd=%FF%FE"), instar(204, "%EF%BF%BD%EF%BF%BD")),
    row("unknown-key", "instar", instar_get("cmd=setftpattr&ft_port=21&ft_evil=1"),
        instar(201, "setftpattr")),
    row("set-without-keys", "instar", instar_get("cmd=setftpattr"), instar(208, "setftpattr")),
    row("port-not-a-number", "instar", instar_get("cmd=setftpattr&ft_port=abc"),
        instar(202, "setftpattr")),
    row("port-zero", "instar", instar_get("cmd=setftpattr&ft_port=0"), instar(202, "setftpattr")),
    row("port-too-big", "instar", instar_get("cmd=setftpattr&ft_port=65536"),
        instar(202, "setftpattr")),
    row("port-with-plus", "instar", instar_get("cmd=setftpattr&ft_port=%2B21"),
        instar(202, "setftpattr")),
    row("port-decimal", "instar", instar_get("cmd=setftpattr&ft_port=21.0"),
        instar(202, "setftpattr")),
    row("port-empty", "instar", instar_get("cmd=setftpattr&ft_port="), instar(202, "setftpattr")),
    row("port-huge-number", "instar", instar_get("cmd=setftpattr&ft_port=" + "9" * 5000),
        instar(202, "setftpattr")),
    row("duplicate-key-first-invalid", "instar",
        instar_get("cmd=setftpattr&ft_port=abc&ft_port=21"), instar(202, "setftpattr")),
    row("ssl-out-of-range", "instar", instar_get("cmd=setftpattr&ft_ssl=3"),
        instar(202, "setftpattr")),
    row("switch-not-0-or-1", "instar", instar_get("cmd=setftpattr&ft_mode=2"),
        instar(202, "setftpattr")),
    row("server-with-quote", "instar", instar_get("cmd=setftpattr&ft_server=a%22b"),
        instar(202, "setftpattr")),
    row("server-overlong", "instar", instar_get("cmd=setftpattr&ft_server=" + "a" * 128),
        instar(202, "setftpattr")),
    row("server-non-utf8", "instar", instar_get("cmd=setftpattr&ft_server=ab%FFcd"),
        instar(202, "setftpattr")),
    row("password-with-newline", "instar", instar_get("cmd=setftpattr&ft_password=a%0D%0Ab"),
        instar(202, "setftpattr")),
    row("username-overlong", "instar", instar_get("cmd=setftpattr&ft_username=" + "u" * 64),
        instar(202, "setftpattr")),
    row("one-bad-key-changes-nothing", "instar",
        instar_get("cmd=setftpattr&ft_port=2121&ft_server=example.test&ft_ssl=9"),
        instar(202, "setftpattr")),
    row("action-without-type", "instar", instar_get("cmd=setftpaction&enable=1"),
        instar(208, "setftpaction")),
    row("action-unknown-type", "instar", instar_get("cmd=setftpaction&type=laser&enable=1"),
        instar(202, "setftpaction")),
    row("schedule-garbage-times", "instar", instar_get("cmd=setsnapschedftpattr&times=soon"),
        instar(202, "setsnapschedftpattr")),
    row("schedule-too-many-times", "instar",
        instar_get("cmd=setsnapschedftpattr&times=" + ",".join(["60-1"] * 25)),
        instar(202, "setsnapschedftpattr")),
    row("schedule-bad-file-name", "instar", instar_get("cmd=setsnapschedftpattr&name=../x"),
        instar(202, "setsnapschedftpattr")),
    row("sethost-garbage", "instar", instar_get("cmd=testftp&sethost=not-a-key"),
        instar(202, "testftp")),
    row("post-method", "instar",
        http_request("POST", "/param.cgi?cmd=setftpattr&ft_port=21",
                     headers={"Authorization": basic(INSTAR_USER, INSTAR_PASSWORD)},
                     body=b"ft_port=21"), aiohttp_status(405)),
    row("unknown-path", "instar", get("/cgi-bin/hi3510/param.cgi?cmd=getftpattr"),
        aiohttp_status(404)),
    row("raw-non-utf8-in-request-line", "instar", get(b"/param.cgi?cmd=\xff\xfe"), parser_400),
    row("request-line-over-8k", "instar", instar_get("cmd=setftpattr&ft_dirname=" + "d" * 9000),
        parser_400),
    # ---- EnOS: gateway --------------------------------------------------------------------
    row("no-token", "enos", enos_apply(b"{}", token=None),
        enos_gateway(1202, "The parameter is empty.", apim_status=4012)),
    row("blank-token", "enos", enos_apply(b"{}", token="   "),
        enos_gateway(1202, "The parameter is empty.", apim_status=4012)),
    row("signed-unknown-token", "enos", lambda h, _c: enos_signed("signature")(h, "forged-token"),
        enos_gateway(1004, "Invalid parameter.", apim_status=4012)),
    row("signed-wrong-signature", "enos", enos_signed("signature"),
        enos_gateway(1003, "The encryption is not valid."), prepare=enos_issue_token),
    row("signed-bad-timestamp", "enos", enos_signed("timestamp"),
        enos_gateway(1004, "Invalid parameter."), prepare=enos_issue_token),
    row("signed-missing-signature", "enos", enos_signed("no-signature"),
        enos_gateway(1202, "The parameter is empty."), prepare=enos_issue_token),
    # ---- EnOS: token service ----------------------------------------------------------------
    row("token-empty-body", "enos", enos_token_get(b""),
        enos_token(1202, "The parameter is empty.")),
    row("token-not-json", "enos", enos_token_get(b"{appKey:"),
        enos_token(1004, "Invalid parameter.")),
    row("token-json-array", "enos", enos_token_get(b"[]"), enos_token(1004, "Invalid parameter.")),
    row("token-missing-fields", "enos", enos_token_get(b'{"appKey": "k"}'),
        enos_token(1202, "The parameter is empty.")),
    row("token-unknown-app", "enos",
        enos_token_get(b'{"appKey": "nobody", "encryption": "x", "timestamp": 1}'),
        enos_token(1002, "The appKey does not exist.")),
    row("token-wrong-encryption", "enos",
        enos_token_get(json.dumps({"appKey": ENOS_APP_KEY, "encryption": "0" * 64,
                                   "timestamp": 1}).encode()),
        enos_token(1003, "The encryption is not valid.")),
    row("token-timestamp-not-integer", "enos",
        enos_token_get(json.dumps({"appKey": ENOS_APP_KEY, "encryption": "0" * 64,
                                   "timestamp": "noon"}).encode()),
        enos_token(1004, "Invalid parameter.")),
    row("token-non-utf8-body", "enos", enos_token_get(b'{"appKey": "\xff\xfe"}'),
        enos_token(1004, "Invalid parameter.")),
    row("refresh-unknown-token", "enos",
        http_request("POST", "/apim-token-service/v2.0/token/refresh",
                     headers={"Content-Type": "application/json"},
                     body=json.dumps({"appKey": ENOS_APP_KEY, "encryption": "0" * 64,
                                      "timestamp": 1, "accessToken": "nope"}).encode()),
        enos_token(1003, "The encryption is not valid.")),
    # ---- EnOS: Connection Service -------------------------------------------------------------
    row("missing-org", "enos", enos_call("action=apply&assetId=assetA", b"{}"),
        enos(99400, "Invalid Argument orgId:orgId is missing")),
    row("missing-action", "enos", enos_call(f"orgId={ENOS_ORG}&assetId=assetA", b"{}"),
        enos(99400, "Invalid Argument action:action is missing")),
    row("unknown-action", "enos", enos_call(f"action=steal&orgId={ENOS_ORG}&assetId=assetA", b"{}"),
        enos(99400, "Invalid Argument action:action is invalid")),
    row("apply-by-get", "enos",
        enos_call(f"action=apply&orgId={ENOS_ORG}&assetId=assetA", method="GET"),
        enos(99400, "Invalid Argument action:action is invalid")),
    row("missing-device", "enos", enos_call(f"action=apply&orgId={ENOS_ORG}", b"{}"),
        enos(99400, "...")),
    row("unknown-device", "enos", enos_call(f"action=apply&orgId={ENOS_ORG}&assetId=ghost", b'{"csr": "x"}'),
        enos(11404, "Device cannot be found")),
    row("unknown-org", "enos", enos_call("action=apply&orgId=o0&assetId=assetA", b'{"csr": "x"}'),
        enos(11404, "Device cannot be found")),
    row("body-not-json", "enos", enos_apply(b'{"csr": '),
        enos(99400, "Invalid Argument requestBody:requestBody is invalid")),
    row("body-json-array", "enos", enos_apply(b"[1, 2]"),
        enos(99400, "Invalid Argument requestBody:requestBody is invalid")),
    row("body-json-string", "enos", enos_apply(b'"csr"'),
        enos(99400, "Invalid Argument requestBody:requestBody is invalid")),
    row("body-non-utf8", "enos", enos_apply(b'{"csr": "\xff\xfe"}'),
        enos(99400, "Invalid Argument requestBody:requestBody is invalid")),
    row("body-deeply-nested", "enos", enos_apply(b"[" * 100000 + b"]" * 100000),
        enos(99400, "Invalid Argument requestBody:requestBody is invalid")),
    row("valid-day-not-number", "enos", enos_apply(b'{"csr": "x", "validDay": "forever"}'),
        enos(99400, "Invalid Argument validDay:validDay is invalid")),
    row("valid-day-negative", "enos", enos_apply(b'{"csr": "x", "validDay": -5}'),
        enos(99400, "Invalid Argument validDay:validDay is invalid")),
    row("valid-day-huge", "enos", enos_apply(b'{"csr": "x", "validDay": 1' + b"0" * 400 + b"}"),
        enos(99400, "...")),
    row("authority-unknown", "enos", enos_apply(b'{"csr": "x", "issueAuthority": "DSA"}'),
        enos(99400, "Invalid Argument issueAuthority:issueAuthority is invalid")),
    row("csr-not-string", "enos", enos_apply(b'{"csr": 42}'),
        enos(99400, "Invalid Argument csr:csr is invalid")),
    row("csr-garbage", "enos", enos_apply(b'{"csr": "hello"}'),
        enos(99400, "Invalid cert request!...")),
    row("csr-is-a-certificate", "enos", enos_apply(json.dumps({"csr": CERT_PEM.decode()}).encode()),
        enos(99400, "Invalid cert request!...")),
    row("csr-oversized", "enos",
        enos_apply(json.dumps({"csr": "-----BEGIN CERTIFICATE REQUEST-----\n" + "A" * 200000
                               + "\n-----END CERTIFICATE REQUEST-----\n"}).encode()),
        enos(99400, "Invalid cert request!...")),
    row("renew-without-cert-sn", "enos",
        enos_call(f"action=renew&orgId={ENOS_ORG}&assetId=assetA", b"{}"),
        enos(99400, "Invalid Argument certSn:certSn is missing")),
    row("renew-cert-sn-not-integer", "enos",
        enos_call(f"action=renew&orgId={ENOS_ORG}&assetId=assetA", b'{"certSn": "abc"}'),
        enos(99400, "Invalid Argument certSn:certSn is invalid")),
    row("revoke-bad-reason", "enos",
        enos_call(f"action=revoke&orgId={ENOS_ORG}&assetId=assetA",
                  b'{"certSn": 52770, "reason": 2}'),
        enos(99400, "When calling Certificate Services, the call parameters are invalid...")),
    row("unknown-path", "enos", enos_call("x=1", b"{}").replace(ENOS_CERTS.encode(), b"/enos/secret"),
        enos_gateway(404, "Not Found", http=404)),
    row("raw-non-utf8-in-request-line", "enos",
        get(b"/connect-service/v2.0/certificates?action=list&orgId=\xff"), parser_400),
    # ---- IoTDA: the gateway --------------------------------------------------------------------
    row("no-credentials", "iotda", iotda_call("GET", "certificates", token=None), IOTDA_NO_TOKEN),
    row("unknown-token", "iotda", iotda_call("GET", "certificates", token="forged"),
        IOTDA_BAD_TOKEN),
    row("authorization-garbage", "iotda",
        iotda_call("GET", "certificates", token=None, Authorization="SDK-HMAC-SHA256 garbage"),
        IOTDA_SIGNATURE),
    row("authorization-unknown-scheme", "iotda",
        iotda_call("GET", "certificates", token=None, Authorization="Basic YTpi"),
        IOTDA_SIGNATURE),
    row("signature-tampered", "iotda", iotda_signed("signature"), IOTDA_SIGNATURE),
    row("signature-unknown-ak", "iotda", iotda_signed("ak"), IOTDA_SIGNATURE),
    row("signature-stale-date", "iotda", iotda_signed("date"), IOTDA_SIGNATURE),
    row("signature-query-changed", "iotda", iotda_signed("query"), IOTDA_SIGNATURE),
    row("other-project", "iotda", iotda_call("GET", "/v5/iot/ffff0000/certificates"),
        IOTDA_FORBIDDEN),
    row("x-project-id-mismatch", "iotda",
        iotda_call("GET", "certificates", **{"X-Project-Id": "ffff0000"}), IOTDA_FORBIDDEN),
    row("unknown-path", "iotda", iotda_call("GET", "batchtasks"), IOTDA_NO_PATH),
    row("unknown-method", "iotda", iotda_call("PATCH", "certificates", b"{}"), IOTDA_NO_PATH),
    # ---- IoTDA: bodies and parameters ----------------------------------------------------------
    row("body-not-json", "iotda", iotda_call("POST", "certificates", b'{"content": '),
        IOTDA_BAD_FORMAT),
    row("body-json-array", "iotda", iotda_call("POST", "certificates", b"[]"), IOTDA_BAD_FORMAT),
    row("body-non-utf8", "iotda", iotda_call("POST", "certificates", b'{"content": "\xff"}'),
        IOTDA_BAD_FORMAT),
    row("body-wrong-content-type", "iotda",
        iotda_call("POST", "certificates", b'{"content": "x"}', content_type="text/plain"),
        IOTDA_BAD_FORMAT),
    row("body-no-content-type", "iotda",
        iotda_call("POST", "certificates", b'{"content": "x"}', content_type=None),
        IOTDA_BAD_FORMAT),
    row("body-form-encoded", "iotda",
        iotda_call("POST", "certificates", b"content=x",
                   content_type="application/x-www-form-urlencoded"), IOTDA_BAD_FORMAT),
    row("ca-missing-content", "iotda", iotda_json("POST", "certificates", {}), IOTDA_BAD_INPUT),
    row("ca-content-not-string", "iotda", iotda_json("POST", "certificates", {"content": 5}),
        IOTDA_BAD_INPUT),
    row("ca-garbage", "iotda", iotda_json("POST", "certificates", {"content": "hello"}),
        IOTDA_BAD_CERT),
    row("ca-garbled-pem", "iotda",
        iotda_json("POST", "certificates", {"content": GARBLED_PEM.decode()}), IOTDA_BAD_CERT),
    row("ca-not-a-ca", "iotda", iotda_json("POST", "certificates", {"content": CERT_PEM.decode()}),
        IOTDA_BAD_CERT),
    row("ca-oversized", "iotda",
        iotda_json("POST", "certificates", {"content": CERT_PEM.decode() + "#" * 70000}),
        IOTDA_BAD_INPUT),
    row("server-cert-missing-fields", "iotda",
        iotda_json("POST", "server-certificates", {"certificate_pem": CERT_PEM.decode()}), IOTDA_BAD_INPUT),
    row("server-cert-garbage", "iotda",
        iotda_json("POST", "server-certificates",
                   {"certificate_pem": "hello", "private_key": "world"}), IOTDA_BAD_CERT),
    row("server-cert-broken-key", "iotda",
        iotda_json("POST", "server-certificates",
                   {"certificate_pem": CERT_PEM.decode(),
                    "private_key": BROKEN_KEY.decode()}), IOTDA_BAD_CERT),
    row("limit-zero", "iotda", iotda_call("GET", "certificates?limit=0"), IOTDA_LIMIT),
    row("limit-too-big", "iotda", iotda_call("GET", "certificates?limit=51"), IOTDA_LIMIT),
    row("limit-not-number", "iotda", iotda_call("GET", "certificates?limit=ten"), IOTDA_LIMIT),
    row("offset-negative", "iotda", iotda_call("GET", "certificates?offset=-1"), IOTDA_BAD_INPUT),
    row("offset-not-number", "iotda", iotda_call("GET", "certificates?offset=%FF"),
        IOTDA_BAD_INPUT),
    row("marker-garbage", "iotda", iotda_call("GET", "server-certificates?marker=../../x"),
        IOTDA_BAD_INPUT),
    row("id-overlong", "iotda", iotda_call("GET", "certificates/" + "a" * 40), IOTDA_BAD_INPUT),
    row("id-bad-characters", "iotda", iotda_call("DELETE", "certificates/a%2Fb%20c"),
        IOTDA_BAD_INPUT),
    row("id-unknown", "iotda", iotda_call("DELETE", "server-certificates/" + "0" * 24),
        IOTDA_NO_CERT),
    row("verify-unknown-ca", "iotda",
        iotda_json("POST", "certificates/" + "0" * 24 + "/action?action_id=verify",
                   {"verify_content": "x"}), IOTDA_NO_CERT),
    row("raw-non-utf8-in-request-line", "iotda", get(b"/v5/iot/\xff/certificates"), parser_400),
    # ---- FTP (raw control connection) --------------------------------------------------------
    ftp_row("wrong-password", [f"USER {FTP_USER}".encode(), b"PASS wrong"], "331 ",
            "530 Authentication failed."),
    ftp_row("unknown-user", [b"USER nobody", b"PASS x"], "331 ", "530 Authentication failed."),
    ftp_row("pass-before-user", [b"PASS x"], "503 "),
    ftp_row("nul-in-user", [b"USER c\x00am"], "501 Syntax error in parameters or arguments."),
    ftp_row("nul-in-path", [b"CWD a\x00b"], "501 Syntax error in parameters or arguments.",
            login=True),
    ftp_row("non-utf8-user", [b"USER \xff\xfe", b"PASS x"], "331 ", "530 "),
    ftp_row("overlong-line", [b"USER " + b"a" * 5000], "500 "),
    ftp_row("unknown-command", [b"SITE EXEC /bin/sh"], '500 Command "SITE EXEC" not understood.'),
    ftp_row("unknown-command-logged-in", [b"XYZZY"], "500 ", login=True),
    ftp_row("stor-before-login", [b"STOR x.jpg"], "530 "),
    ftp_row("port-foreign-address", [b"PORT 10,0,0,7,39,16"],
            "501 Rejected data connection to foreign address 10.0.0.7:10000.", login=True),
    ftp_row("port-privileged", [b"PORT 127,0,0,1,0,21"],
            '501 PORT against the privileged port "21" refused.', login=True),
    ftp_row("port-malformed", [b"PORT 1,2,3"], "501 ", login=True),
    ftp_row("port-out-of-range", [b"PORT 127,0,0,1,999,999"], "501 ", login=True),
    ftp_row("cwd-missing-folder", [b"CWD /no/such/folder"], "550 ", login=True),
    ftp_row("rest-not-a-number", [b"REST abc"], "501 ", login=True),
    ftp_row("type-unknown", [b"TYPE Z"], "504 ", login=True),
    ftp_row("empty-line", [b""], "500 "),
    # ---- SFTP -------------------------------------------------------------------------------
    sftp_row("wrong-password", lambda sftp: sftp.listdir("."),
             f"login refused: Permission denied for user {SFTP_USER} on host 127.0.0.1",
             password="wrong"),
    sftp_row("unknown-user", lambda sftp: sftp.listdir("."),
             "login refused: Permission denied for user nobody on host 127.0.0.1",
             user="nobody"),
    sftp_row("nul-in-name", lambda sftp: sftp.open(b"a\x00b.jpg", "wb"), "Invalid filename"),
    sftp_row("non-utf8-name", lambda sftp: sftp.open(b"\xff\xfe.jpg", "wb"), "Invalid filename"),
    sftp_row("nul-in-folder", lambda sftp: sftp.mkdir(b"d\x00ir"), "Invalid filename"),
    sftp_row("missing-folder", lambda sftp: sftp.open("no/such/x.jpg", "wb"),
             "No such file or directory"),
    sftp_row("remove-missing", lambda sftp: sftp.remove("ghost.jpg"), "No such file or directory"),
    sftp_row("symlink", lambda sftp: sftp.symlink("/etc/passwd", "p"),
             "Permission denied: links are not allowed on this server"),
]


def ftp_exchange(port: int, login: bool, lines: list[bytes]) -> list[str]:
    """Each command line's reply (the last line of a multi-line reply), on one connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=REPLY_TIMEOUT) as sock:
        stream = sock.makefile("rb")

        def reply() -> str:
            while True:
                line = stream.readline().decode("utf-8", "replace")
                assert line, "the server closed the connection without a reply"
                if line[:3].isdigit() and line[3:4] == " ":
                    return line.rstrip("\r\n")

        assert reply().startswith("220 ")
        if login:
            for command in (f"USER {FTP_USER}", f"PASS {FTP_PASSWORD}"):
                sock.sendall(command.encode() + b"\r\n")
                reply()
        answers = []
        for line in lines:
            sock.sendall(line + b"\r\n")
            answers.append(reply())
        return answers


def sftp_exchange(port: int, user: str, password: str | None,
                  action: Callable[[Any], Any]) -> str:
    async def session() -> str:
        try:
            async with asyncssh.connect(
                    "127.0.0.1", port, username=user, password=password or SFTP_PASSWORD,
                    known_hosts=None, client_keys=None, agent_path=None,
                    connect_timeout=REPLY_TIMEOUT) as conn, conn.start_sftp_client() as sftp:
                await action(sftp)
        except asyncssh.SFTPError as exc:
            return str(exc.reason)
        except asyncssh.PermissionDenied as exc:
            return f"login refused: {exc.reason}"
        return "no refusal"

    return asyncio.run(asyncio.wait_for(session(), REPLY_TIMEOUT * 2))


@pytest.mark.parametrize("case", CASES)
def test_hostile_request_gets_the_vendor_error_and_changes_nothing(
        robust_farm: RunningFarm, case: Case) -> None:
    handle = robust_farm[case.member]
    handle.reset()
    context = case.prepare(handle) if case.prepare else None
    before = member_state(handle)
    sent = case.build(handle, context)
    if case.transport == "ftp":
        login, lines = sent  # type: ignore[misc]
        case.check(ftp_exchange(handle.port, login, lines))  # type: ignore[arg-type]
    elif case.transport == "sftp":
        case.check(sftp_exchange(handle.port, *sent))  # type: ignore[arg-type, misc]
    else:
        reply = exchange(handle.port, sent)
        assert reply.status != 500
        assert b"Traceback" not in reply.raw
        case.check(reply)
    assert member_state(handle) == before

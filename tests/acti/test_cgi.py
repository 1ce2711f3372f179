"""The update CGI's rules: root-only credentials, one command per URL, the spec's ERROR
forms, HTTPS_CSR_CREATE's arguments, and URLs no CGI answers. The camera with USERS runs
both ways (tests/ways.py): one process, and shard 1 of four."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from emulators import pki
from emulators.testing import MemberHandle, RemoteMember, ShardedFarm
from tests.ways import WAYS, both_ways

from .clients import ADMIN, body_of, curl, get, raw_exchange, upload

USERS = [{"user": "admin", "password": "123456", "root": True},
         {"user": "viewer", "password": "viewer", "root": False},
         {"user": "ops", "password": "p+w d&x", "root": True}]
REFUSED = (b"HTTP/1.0 400 Unauthorized\r\nContent-type: text/plain\r\n"
           b"Content-Length: 22\r\n\r\nERROR: not authorized\n")


def plain(body: bytes, status: bytes = b"200 OK") -> bytes:
    return (b"HTTP/1.0 " + status + b"\r\nContent-type: text/plain\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


@pytest.fixture(scope="module", params=WAYS)
def farm(request: pytest.FixtureRequest) -> Iterator[ShardedFarm]:
    yield from both_ways({"name": "acti-cgi", "emulators": [
        {"name": "camera", "kind": "acti-camera", "https_port": 0, "users": USERS}]},
        request.param, across=["camera"])


@pytest.fixture
def camera(farm: ShardedFarm) -> RemoteMember:
    handle = farm["camera"]
    handle.reset()
    return handle


BAD_CREDENTIALS = [
    ("wrong-password", "USER=admin&PWD=12345"),
    ("password-trailing-space", "USER=admin&PWD=123456%20"),
    ("unknown-user", "USER=root&PWD=123456"),
    ("non-root", "USER=viewer&PWD=viewer"),
    ("no-user", "PWD=123456"),
    ("no-password", "USER=admin"),
    ("none", ""),
    ("empty-both", "USER=&PWD="),
    ("bare-user", "USER&PWD=123456"),
    ("lowercase-keys", "user=admin&pwd=123456"),
    ("plus-is-not-space", "USER=ops&PWD=p%20w%20d%26x"),
    ("other-users-password", "USER=admin&PWD=viewer"),
]


@pytest.mark.parametrize("credentials", [c for _, c in BAD_CREDENTIALS],
                         ids=[i for i, _ in BAD_CREDENTIALS])
@pytest.mark.parametrize("command", ["HTTPS_CER", "HTTPS_CER=remove", "FACTORY_DEFAULT"])
def test_bad_credentials_are_refused(camera: MemberHandle, self_signed, credentials: str,
                                     command: str) -> None:
    assert upload(camera.url, self_signed.combined).endswith(b"\r\n\r\nOK\n")
    query = f"{credentials}&{command}" if credentials else command
    assert get(camera.url, query) == REFUSED
    assert camera.state()["https"]["active"] is True  # nothing was removed


@pytest.mark.parametrize("credentials", [
    "USER=admin&PWD=123456", "USER=Admin&PWD=123456", "USER=ADMIN&PWD=123456",
    "PWD=123456&USER=admin", "USER=ops&PWD=p%2Bw%20d%26x", "USER=ops&PWD=p+w%20d%26x",
], ids=["seed-trace", "seed-example-url", "upper", "order", "escaped", "literal-plus"])
def test_good_credentials(camera: MemberHandle, credentials: str) -> None:
    assert get(camera.url, f"{credentials}&HTTPS_CER") == plain(b"HTTPS_CER='none'\n")


def test_user_names_can_be_case_sensitive(emulator_factory: Callable[..., MemberHandle]) -> None:
    camera = emulator_factory("acti-camera", user_names_case_sensitive=True)
    assert get(camera.url, "USER=Admin&PWD=123456&HTTPS_CER") == REFUSED
    assert get(camera.url, "USER=admin&PWD=123456&HTTPS_CER") == plain(b"HTTPS_CER='none'\n")


def test_refusal_is_overridable(emulator_factory: Callable[..., MemberHandle]) -> None:
    camera = emulator_factory("acti-camera", refusal={
        "status": 200, "reason": "OK", "body": "ERROR: Unauthorized"})
    assert get(camera.url, "USER=admin&PWD=x&HTTPS_CER") == plain(b"ERROR: Unauthorized\n")


def test_curl_sees_the_refusal_status(camera: MemberHandle) -> None:
    result = curl("-o", "/dev/null", "-w", "%{http_code}",
                  f"{camera.url}/cgi-bin/update?USER=admin&PWD=x&HTTPS_CER")
    assert result.stdout == b"400"


COMMAND_ERRORS = [
    ("no-command", ADMIN, b"ERROR: no command\n"),
    ("two-commands", f"{ADMIN}&HTTPS_CER&HTTPS_CER=remove",
     b"ERROR: only one command per update URL\n"),
    ("two-different", f"{ADMIN}&HTTPS_CER&CONFIG_RESET",
     b"ERROR: only one command per update URL\n"),
    ("unknown", f"{ADMIN}&FOO", b"ERROR: FOO not found\n"),
    ("unknown-write", f"{ADMIN}&FOO=1", b"ERROR: FOO not found\n"),
    ("lowercase", f"{ADMIN}&https_cer", b"ERROR: https_cer not found\n"),
    ("not-emulated", f"{ADMIN}&FIRMWARE=upload", b"ERROR: FIRMWARE not found\n"),
    ("typo-read", f"{ADMIN}&HTTPS", b"ERROR: HTTPS not found\n"),
    ("typo-remove", f"{ADMIN}&HTTPS=remove", b"ERROR: HTTPS not found\n"),
    ("escaped-name", f"{ADMIN}&%48TTPS_CER", b"HTTPS_CER='none'\n"),
    ("bad-escape", f"{ADMIN}&%ZZ", b"ERROR: %ZZ not found\n"),
    ("utf8", f"{ADMIN}&%E2%9C%93", b"ERROR: \xe2\x9c\x93 not found\n"),
    ("not-utf8", f"{ADMIN}&%FF%FE=1", b"ERROR: \xff\xfe not found\n"),
]


@pytest.mark.parametrize(("query", "body"), [(q, b) for _, q, b in COMMAND_ERRORS],
                         ids=[i for i, _, _ in COMMAND_ERRORS])
def test_command_errors(camera: MemberHandle, query: str, body: bytes) -> None:
    reply = get(camera.url, query)
    assert reply == plain(body)


GENERAL_ERRORS = [
    ("root", "GET / HTTP/1.1"),
    ("other-cgi", "GET /cgi-bin/encoder?USER=admin&PWD=123456&VIDEO_RESOLUTION HTTP/1.1"),
    ("type2-url", "GET /cgi-bin/cmd/update?HTTPS_CER HTTP/1.1"),
    ("trailing-slash", "GET /cgi-bin/update/?USER=admin&PWD=123456&HTTPS_CER HTTP/1.1"),
    ("put", "PUT /nothing HTTP/1.1"),
]


@pytest.mark.parametrize("request_line", [r for _, r in GENERAL_ERRORS],
                         ids=[i for i, _ in GENERAL_ERRORS])
def test_urls_no_cgi_answers_get_the_general_error(camera: MemberHandle,
                                                   request_line: str) -> None:
    path = request_line.split(" ")[1].split("?")[0]
    reply = raw_exchange(camera.url, f"{request_line}\r\nHost: x\r\n\r\n".encode())
    assert reply == plain(f"ERROR: {path} not found\n".encode(), b"401 Not Found")


def test_post_works_like_get_for_commands(camera: MemberHandle) -> None:
    reply = curl("-i", "--data", "ignored=1", f"{camera.url}/cgi-bin/update?{ADMIN}&HTTPS_CER")
    assert reply.stdout == plain(b"HTTPS_CER='none'\n")


def test_head_gets_the_header_only(camera: MemberHandle) -> None:
    reply = raw_exchange(camera.url, f"HEAD /cgi-bin/update?{ADMIN}&HTTPS_CER HTTP/1.0\r\n"
                                     "\r\n".encode())
    assert reply == plain(b"HTTPS_CER='none'\n")[:-len(b"HTTPS_CER='none'\n")]


def test_malformed_http_is_not_a_crash(camera: MemberHandle) -> None:
    reply = raw_exchange(camera.url, b"\x16\x03\x01garbage\r\n\r\n")
    assert reply.startswith(b"HTTP/1.")
    assert b"Traceback" not in reply
    assert get(camera.url, f"{ADMIN}&HTTPS_CER") == plain(b"HTTPS_CER='none'\n")


# -- HTTPS_CSR_CREATE arguments -----------------------------------------------------------------

BAD_CSR = [
    ("too-few", "TW,Taipei,Neihu,ACTi,RD,cam",
     "expected Country,Province,Locality,Organization,Division,CommonName,KeyLen."),
    ("too-many", "TW,Taipei,Neihu,ACTi,RD,cam,2048,x",
     "expected Country,Province,Locality,Organization,Division,CommonName,KeyLen."),
    ("empty", "", "expected Country,Province,Locality,Organization,Division,CommonName,KeyLen."),
    ("country-3", "TWN,Taipei,Neihu,ACTi,RD,cam,2048", "Country must be 2 letters."),
    ("country-digits", "12,Taipei,Neihu,ACTi,RD,cam,2048", "Country must be 2 letters."),
    ("no-country", ",Taipei,Neihu,ACTi,RD,cam,2048", "Country must be 2 letters."),
    ("province-41", f"TW,{'p' * 41},Neihu,ACTi,RD,cam,2048",
     "Province must be at most 40 characters."),
    ("locality-41", f"TW,Taipei,{'l' * 41},ACTi,RD,cam,2048",
     "Locality must be at most 40 characters."),
    ("cn-65", f"TW,Taipei,Neihu,ACTi,RD,{'c' * 65},2048",
     "CommonName must be at most 64 characters."),
    ("no-cn", "TW,Taipei,Neihu,ACTi,RD,,2048", "CommonName is required."),
    ("keylen-512", "TW,Taipei,Neihu,ACTi,RD,cam,512", "KeyLen must be one of 1024, 2048, 4096."),
    ("keylen-text", "TW,Taipei,Neihu,ACTi,RD,cam,big", "KeyLen must be one of 1024, 2048, 4096."),
    ("keylen-negative", "TW,Taipei,Neihu,ACTi,RD,cam,-2048",
     "KeyLen must be one of 1024, 2048, 4096."),
    ("not-utf8", "TW,%FF,Neihu,ACTi,RD,cam,2048", "fields must be UTF-8 text."),
]


@pytest.mark.parametrize(("args", "detail"), [(a, d) for _, a, d in BAD_CSR],
                         ids=[i for i, _, _ in BAD_CSR])
def test_bad_csr_arguments(camera: MemberHandle, self_signed, args: str, detail: str) -> None:
    assert get(camera.url, f"{ADMIN}&HTTPS_CSR_CREATE={args}") == plain(
        f"ERROR: invalid argument. {detail}\n".encode())
    assert camera.state()["files"]["key"] is None  # nothing made, nothing removed


def test_csr_create_answers_the_csr_and_keeps_the_key(camera: MemberHandle, test_ca) -> None:
    reply = get(camera.url, f"{ADMIN}&HTTPS_CSR_CREATE=tw,%E5%8F%B0%E5%8C%97,Neihu,ACTi,"
                            "R%26D,cam.example,2048")
    csr_pem = body_of(reply).decode()
    assert reply == plain(csr_pem.encode())
    assert csr_pem.startswith("-----BEGIN CERTIFICATE REQUEST-----\n")
    csr = pki.load_csr(csr_pem)
    assert csr.subject.rfc4514_string() == "CN=cam.example,OU=R&D,O=ACTi,L=Neihu,ST=台北,C=TW"
    saved = camera.state()["https_files"]
    assert saved["csr"] == csr_pem
    assert saved["key"] == "[private key withheld]"  # the control plane never shows it
    assert body_of(get(camera.url, f"{ADMIN}&HTTPS_CSR_CREATE")) == csr_pem.encode()
    # The key it kept is the CSR's: a certificate for the CSR alone brings HTTPS up.
    assert body_of(upload(camera.url, test_ca.sign_csr(csr_pem).encode(),
                          filename="camera.crt")) == b"OK\n"
    assert camera.state()["https"]["active"] is True
    assert camera.state()["files"]["key"] == {"source": "csr"}


@pytest.mark.parametrize("raw_path", [b"/%FF%FE", b"/cgi-bin/%75pdate/x", b"/" + b"a" * 4000],
                         ids=["escaped-not-utf8", "escaped-name", "long"])
def test_odd_paths_get_the_general_error(camera: MemberHandle, raw_path: bytes) -> None:
    reply = raw_exchange(camera.url, b"GET " + raw_path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 401 Not Found\r\nContent-type: text/plain\r\n"), reply
    assert body_of(reply).startswith(b"ERROR: /")
    assert body_of(reply).endswith(b" not found\n")

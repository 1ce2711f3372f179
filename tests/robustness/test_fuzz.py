"""Property-based fuzzing (hypothesis) of every emulator's request parsing: query strings,
parameters, JSON bodies and multipart uploads built from each vendor's own vocabulary mixed
with noise. Whatever arrives, a reply comes, it is never a 500, and it is in the vendor's form.

Bounded here (FUZZ_EXAMPLES per property, default 60, derandomized so a failure reproduces);
``scripts/fuzz.py`` runs the same properties for much longer with fresh randomness.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulators.instar.responses import COMMANDS as INSTAR_COMMANDS
from emulators.iotda.exceptions import ALL_ERRORS as IOTDA_ERRORS
from emulators.testing import RunningFarm
from tests.robustness.clients import (
    ACTI_AUTH,
    ENOS_ORG,
    IOTDA_PROJECT,
    IOTDA_TOKEN,
    Reply,
    basic,
    enos_sdk_token,
    exchange,
    http_request,
)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
RANDOM = os.environ.get("FUZZ_RANDOM") == "1"  # scripts/fuzz.py: new examples every run
REPORT = os.environ.get("FUZZ_REPORT")          # scripts/fuzz.py: where to write the counts
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not RANDOM,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TRIED: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report() -> Any:
    yield
    if REPORT:
        Path(REPORT).write_text(json.dumps(dict(TRIED), indent=2))


def send(farm: RunningFarm, member: str, request: bytes, property_name: str) -> Reply:
    TRIED[property_name] += 1
    reply = exchange(farm[member].port, request, timeout=10)
    assert reply.status != 500, reply.raw[:300]
    assert b"Traceback" not in reply.raw
    return reply


# -- building blocks ---------------------------------------------------------------------------

noise = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=24)
raw_bytes = st.binary(max_size=24)
# Characters that mean something to a query parser, left unescaped on purpose.
STRUCTURAL = "&=%+;,/?:@!$'()*"


def encode(value: str | bytes, raw: bool) -> str:
    """Percent-encode ``value``; with ``raw`` the structural characters stay as they are
    (so ``%`` may start a broken escape), but the request line stays printable ASCII."""
    data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    return quote(data, safe=STRUCTURAL if raw else "")


def query_of(pairs: list[tuple[str | bytes, str | bytes | None]], raw: bool) -> str:
    parts = []
    for name, value in pairs:
        parts.append(encode(name, raw) if value is None
                     else f"{encode(name, raw)}={encode(value, raw)}")
    return "&".join(parts)


def pairs_from(names: list[str]) -> st.SearchStrategy[list[tuple[Any, Any]]]:
    name = st.sampled_from(names) | noise
    value = st.none() | noise | raw_bytes | st.sampled_from(["", "0", "1", "-1", "65536",
                                                              "upload", "remove", "%", "%zz"])
    return st.lists(st.tuples(name, value), max_size=8)


# -- ACTi ----------------------------------------------------------------------------------------

ACTI_WORDS = ["USER", "PWD", "HTTPS_CER", "HTTPS_CER_SAVE", "HTTPS_CSR_CREATE", "HTTPS",
              "FACTORY_DEFAULT", "CONFIG_RESET", "FIRMWARE"]
ACTI_STATUS = {(200, "OK"), (400, "Unauthorized"), (401, "Not Found")}


def check_acti(reply: Reply) -> None:
    assert reply.version == "HTTP/1.0"
    assert (reply.status, reply.reason) in ACTI_STATUS
    assert reply.headers["content-type"] in ("text/plain", "text/html")
    assert reply.body.endswith(b"\n")
    if reply.status != 200:
        assert reply.body.startswith(b"ERROR: ")


@FUZZ
@given(path=st.sampled_from(["/cgi-bin/update", "/cgi-bin/system", "/cgi-bin/x"]),
       auth=st.booleans(), pairs=pairs_from(ACTI_WORDS), raw=st.booleans())
def test_acti_any_query(robust_farm: RunningFarm, path: str, auth: bool,
                        pairs: list[tuple[Any, Any]], raw: bool) -> None:
    # A CSR with a real key length would spend seconds of CPU on a key: not parsing, skipped.
    pairs = [(n, v) for n, v in pairs if n != "HTTPS_CSR_CREATE" or v is None]
    query = query_of(pairs, raw)
    if auth:
        query = f"{ACTI_AUTH}&{query}"
    check_acti(send(robust_farm, "acti", http_request("GET", f"{path}?{query}"), "acti-query"))


multipart_piece = st.sampled_from([
    b"--B\r\n", b"--B--\r\n", b"\r\n", b"Content-Disposition: form-data; name=\"UPLOAD_FILE\"; "
    b"filename=\"c.pem\"\r\n", b"Content-Type: text/plain\r\n", b"-----BEGIN CERTIFICATE-----\n",
    b"-----END CERTIFICATE-----\n", b"MIIB", b"-----BEGIN PRIVATE KEY-----\n",
    b"Content-Disposition: form-data; name=\"x\"\r\n"]) | st.binary(max_size=40)


@FUZZ
@given(pieces=st.lists(multipart_piece, max_size=14),
       content_type=st.sampled_from(["multipart/form-data; boundary=B", "multipart/form-data",
                                     "multipart/form-data; boundary=", "text/plain",
                                     "multipart/form-data; boundary=\"B\"; charset=x"]))
def test_acti_any_multipart_upload(robust_farm: RunningFarm, pieces: list[bytes],
                                   content_type: str) -> None:
    request = http_request("POST", f"/cgi-bin/update?{ACTI_AUTH}&HTTPS_CER_SAVE",
                           headers={"Content-Type": content_type}, body=b"".join(pieces))
    reply = send(robust_farm, "acti", request, "acti-multipart")
    check_acti(reply)
    assert reply.body == b"OK\n" or reply.body.startswith(b"ERROR: internal error. ")


# -- INSTAR --------------------------------------------------------------------------------------

# testftp is left out: it uploads to whatever server the fuzzed settings name.
INSTAR_CMDS = sorted(set(INSTAR_COMMANDS) - {"testftp"})
INSTAR_KEYS = sorted({k for c in INSTAR_COMMANDS.values() for k in c.keys} | {"user", "pwd"})
INSTAR_CODES = {"200", "201", "202", "204", "208", "211", "213", "214"}
INSTAR_LINE = re.compile(r'[A-Za-z_]+(\[\'[a-z]+\'\])?="[^"\r\n]*";')


def check_instar(reply: Reply) -> None:
    if reply.status == 401:
        assert reply.headers["www-authenticate"] == 'Basic realm="INSTAR"'
        return
    assert reply.status == 200
    text = reply.body.decode()
    assert text.endswith("\r\n")
    lines = text.split("\r\n")[:-1]
    assert all(INSTAR_LINE.fullmatch(line) for line in lines), lines
    assert lines[-1].startswith("response=")
    assert lines[-1].split('"')[1] in INSTAR_CODES


@FUZZ
@given(cmd=st.sampled_from(INSTAR_CMDS) | noise, pairs=pairs_from(INSTAR_KEYS),
       raw=st.booleans(), repeat_cmd=st.booleans())
def test_instar_any_query(robust_farm: RunningFarm, cmd: str, pairs: list[tuple[Any, Any]],
                          raw: bool, repeat_cmd: bool) -> None:
    pairs = [(n, v) for n, v in pairs if n != "cmd"]
    lead: list[tuple[Any, Any]] = [("cmd", cmd)] + ([("cmd", "testftp")] if repeat_cmd else [])
    query = query_of(lead + pairs, raw)
    request = http_request("GET", f"/param.cgi?{query}",
                           headers={"Authorization": basic("admin", "instar")})
    check_instar(send(robust_farm, "instar", request, "instar-query"))


# -- EnOS ----------------------------------------------------------------------------------------

ENOS_CODES = {0, 99400, 99500, 11404, 11833}
ENOS_GATEWAY = {1001, 1002, 1003, 1004, 1005, 1202, 1203, 1204, 404, 405, 413}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**64, 2**64) | st.floats(allow_nan=False) | noise,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(noise, inner, max_size=3),
    max_leaves=8)
ENOS_FIELDS = ["csr", "certSn", "validDay", "issueAuthority", "reason", "appKey", "encryption",
               "timestamp", "accessToken"]


def check_enos(reply: Reply) -> None:
    body = reply.json()
    if "code" in body:
        assert reply.status == 200
        assert set(body) == {"code", "msg", "requestId", "data"}
        assert body["code"] in ENOS_CODES
        assert isinstance(body["msg"], str) and body["msg"]
    else:
        assert body["business"] in ("apim-gateway", "apim-token-service")
        assert body["status"] in ENOS_GATEWAY, body
        assert isinstance(body["msg"], str) and body["msg"]


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "PUT"]),
       pairs=pairs_from(["action", "orgId", "assetId", "productKey", "deviceKey"]),
       raw=st.booleans(),
       body=st.dictionaries(st.sampled_from(ENOS_FIELDS) | noise, json_values, max_size=5),
       token=st.sampled_from(["genuine", "sdk-token", "", None]))
def test_enos_any_certificate_call(robust_farm: RunningFarm, method: str,
                                   pairs: list[tuple[Any, Any]], raw: bool,
                                   body: dict[str, Any], token: str | None) -> None:
    query = query_of([("orgId", ENOS_ORG), *pairs], raw)
    headers = {"Content-Type": "application/json"}
    if token is not None:  # "genuine": the business logic is fuzzed, not only the gateway
        headers["apim-accesstoken"] = enos_sdk_token() if token == "genuine" else token
    request = http_request(method, f"/connect-service/v2.0/certificates?{query}",
                           headers=headers, body=json.dumps(body).encode())
    check_enos(send(robust_farm, "enos", request, "enos-certificates"))


@FUZZ
@given(path=st.sampled_from(["get", "refresh"]),
       body=st.dictionaries(st.sampled_from(ENOS_FIELDS) | noise, json_values, max_size=5)
       .map(lambda d: json.dumps(d).encode()) | st.binary(max_size=60))
def test_enos_any_token_request(robust_farm: RunningFarm, path: str, body: bytes) -> None:
    request = http_request("POST", f"/apim-token-service/v2.0/token/{path}",
                           headers={"Content-Type": "application/json"}, body=body)
    check_enos(send(robust_farm, "enos", request, "enos-token"))


# -- IoTDA ---------------------------------------------------------------------------------------

IOTDA_TABLE = {(e.status, e.code, e.message) for e in IOTDA_ERRORS}
IOTDA_FIELDS = ["content", "app_id", "verify_content", "certificate_pem", "private_key",
                "private_key_password", "provision_enable", "template_id", "ocsp_enable",
                "ocsp_ssl_enable", "ocsp_server_ca_id"]


def check_iotda(reply: Reply) -> None:
    assert len(reply.headers["x-request-id"]) == 32
    if reply.status < 300:
        return
    body = reply.json()
    assert (reply.status, body["error_code"], body["error_msg"]) in IOTDA_TABLE, body
    assert reply.status != 500


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
       resource=st.sampled_from(["certificates", "server-certificates"]),
       ident=st.none() | st.sampled_from(["0" * 24, "x" * 30, "a_b-c"]) | noise,
       action=st.booleans(),
       pairs=pairs_from(["limit", "offset", "marker", "app_id", "action_id"]), raw=st.booleans(),
       body=st.dictionaries(st.sampled_from(IOTDA_FIELDS) | noise, json_values, max_size=5)
       .map(lambda d: json.dumps(d).encode()) | st.binary(max_size=60),
       content_type=st.sampled_from(["application/json", "application/json;charset=UTF-8",
                                     "text/plain", ""]))
def test_iotda_any_request(robust_farm: RunningFarm, method: str, resource: str,
                           ident: str | None, action: bool, pairs: list[tuple[Any, Any]],
                           raw: bool, body: bytes, content_type: str) -> None:
    path = f"/v5/iot/{IOTDA_PROJECT}/{resource}"
    if ident is not None:
        path += "/" + encode(ident, False)
        if action:
            path += "/action"
    query = query_of(pairs, raw)
    headers = {"X-Auth-Token": IOTDA_TOKEN}
    if content_type:
        headers["Content-Type"] = content_type
    request = http_request(method, f"{path}?{query}" if query else path, headers=headers,
                           body=body if method in ("POST", "PUT") else b"")
    check_iotda(send(robust_farm, "iotda", request, "iotda-request"))

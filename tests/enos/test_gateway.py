"""The APIM gateway: the token service, signed calls, expiry on the farm clock, and what an
SDK call or a call with no credentials gets."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
from typing import Any

import pytest

from .clients import (
    APP_KEY,
    APP_SECRET,
    CERTS,
    ORG,
    OTHER_KEY,
    OTHER_SECRET,
    Enos,
    make_csr,
    rsa_key,
    sha256hex,
)

LIST = {"action": "list", "orgId": ORG, "assetId": "assetA"}
TOKEN_SERVICE = "apim-token-service"


def refused(reply: Any, status: int, msg: str, business: str = "apim-gateway",
            **extra: Any) -> None:
    assert reply == {"status": status, "msg": msg, "business": business, **extra}


# -- the token service ------------------------------------------------------------------------

def test_token_get_answers_in_the_spec_form_and_repeats_the_valid_token(enos: Enos) -> None:
    first = enos.token_call("get", enos.token_body())
    assert set(first) == {"status", "msg", "business", "data"}
    assert (first["status"], first["msg"], first["business"]) == (0, "SUCCESS", TOKEN_SERVICE)
    assert first["data"]["expire"] == 7200
    token = first["data"]["accessToken"]
    assert isinstance(token, str) and len(token) >= 32
    enos.advance(100)
    again = enos.token_call("get", enos.token_body())
    assert again["data"]["accessToken"] == token
    assert 7090 <= again["data"]["expire"] <= 7100
    other = enos.token_call("get", enos.token_body(key=OTHER_KEY, secret=OTHER_SECRET))
    assert other["data"]["accessToken"] != token


def test_token_get_with_curl(enos: Enos) -> None:
    body = json.dumps(enos.token_body())
    out = subprocess.run(
        ["curl", "-sS", "-X", "POST", "-H", "Content-Type: application/json", "--data", body,
         f"{enos.url}/apim-token-service/v2.0/token/get"],
        capture_output=True, text=True, check=True, timeout=30).stdout
    reply = json.loads(out)
    assert reply["status"] == 0 and reply["data"]["expire"] == 7200


def _body(enos: Enos, **changes: Any) -> dict[str, Any]:
    body = enos.token_body()
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


TOKEN_ERRORS = [
    pytest.param(lambda e: "", 1202, "The parameter is empty.", id="empty-body"),
    pytest.param(lambda e: _body(e, appKey=...), 1202, "The parameter is empty.",
                 id="appkey-missing"),
    pytest.param(lambda e: _body(e, encryption=""), 1202, "The parameter is empty.",
                 id="encryption-empty"),
    pytest.param(lambda e: _body(e, timestamp=None), 1202, "The parameter is empty.",
                 id="timestamp-null"),
    pytest.param(lambda e: _body(e, timestamp="soon"), 1004, "Invalid parameter.",
                 id="timestamp-not-a-number"),
    pytest.param(lambda e: _body(e, appKey=7), 1004, "Invalid parameter.", id="appkey-a-number"),
    pytest.param(lambda e: "{not json", 1004, "Invalid parameter.", id="body-not-json"),
    pytest.param(lambda e: "[]", 1004, "Invalid parameter.", id="body-an-array"),
    pytest.param(lambda e: e.token_body(key="ffffffff-0000-4000-8000-000000000000"), 1002,
                 "The appKey does not exist.", id="appkey-unknown"),
    pytest.param(lambda e: _body(e, encryption=sha256hex("something else")), 1003,
                 "The encryption is not valid.", id="encryption-wrong"),
    pytest.param(lambda e: e.token_body(secret=OTHER_SECRET), 1003,
                 "The encryption is not valid.", id="encryption-with-another-secret"),
]


@pytest.mark.parametrize(("make", "status", "msg"), TOKEN_ERRORS)
def test_token_get_errors(enos: Enos, make: Any, status: int, msg: str) -> None:
    refused(enos.token_call("get", make(enos)), status, msg, TOKEN_SERVICE)


def test_a_repeated_encryption_is_refused(enos: Enos) -> None:
    body = enos.token_body()
    assert enos.token_call("get", body)["status"] == 0
    refused(enos.token_call("get", body), 1001, "Repeated requests with duplicated encryption.",
            TOKEN_SERVICE)


def test_refresh_gives_a_new_token_and_retires_the_old_one(enos: Enos) -> None:
    old = enos.token()
    reply = enos.token_call("refresh", {**enos.token_body(), "accessToken": old})
    assert (reply["status"], reply["msg"], reply["business"]) == (0, "SUCCESS", TOKEN_SERVICE)
    new = reply["data"]["accessToken"]
    assert new != old and reply["data"]["expire"] == 7200
    status, ok = enos.signed("GET", LIST, token=new)
    assert status == 200 and ok["code"] == 0
    status, no = enos.signed("GET", LIST, token=old)
    refused(no, 1004, "Invalid parameter.", apim_status=4012)


@pytest.mark.parametrize(("token", "status", "msg"), [
    pytest.param(..., 1202, "The parameter is empty.", id="access-token-missing"),
    pytest.param("0" * 64, 1204, "Failed to refresh access token.", id="unknown-token"),
    pytest.param("other-app", 1204, "Failed to refresh access token.",
                 id="another-apps-token"),
])
def test_refresh_errors(enos: Enos, token: Any, status: int, msg: str) -> None:
    if token == "other-app":
        token = enos.token_call("get", enos.token_body(key=OTHER_KEY, secret=OTHER_SECRET))[
            "data"]["accessToken"]
    body = enos.token_body()
    if token is not ...:
        body["accessToken"] = token
    refused(enos.token_call("refresh", body), status, msg, TOKEN_SERVICE)


def test_injected_token_service_failure_is_1005(start_enos) -> None:
    enos = start_enos(faults={"next_calls": 1, "service": "gateway"})
    refused(enos.token_call("get", enos.token_body()), 1005, "Internal service exception.",
            TOKEN_SERVICE)
    assert enos.token_call("get", enos.token_body())["status"] == 0
    assert enos.sdk("list")["code"] == 0  # certificate calls were never affected


# -- signed business calls ----------------------------------------------------------------------

def test_signed_calls_list_apply_and_revoke(enos: Enos) -> None:
    status, reply = enos.signed("GET", LIST)
    assert status == 200 and reply["code"] == 0 and reply["msg"] == "OK"
    query = {**LIST, "action": "apply"}
    status, reply = enos.signed("POST", query, {"csr": make_csr(rsa_key(), "signed")})
    assert reply["code"] == 0, reply
    sn = reply["data"]["certSN"]
    status, reply = enos.signed("POST", {**LIST, "action": "revoke"}, {"certSn": int(sn)})
    assert reply["code"] == 0 and reply["data"] is None
    listed = {c["certSN"]: c for c in enos.sdk("list")["data"]}
    assert listed[sn]["revoker"] == APP_KEY  # the app that signed the revoke


@pytest.mark.parametrize(("change", "status", "msg"), [
    pytest.param({"signature": "0" * 64}, 1003, "The encryption is not valid.",
                 id="wrong-signature"),
    pytest.param({"secret": OTHER_SECRET}, 1003, "The encryption is not valid.",
                 id="signed-with-another-secret"),
    pytest.param({"signature": "é"}, 1003, "The encryption is not valid.",
                 id="non-ascii-signature"),
    pytest.param({"timestamp": "yesterday"}, 1004, "Invalid parameter.",
                 id="timestamp-not-a-number"),
    pytest.param({"token": ""}, 1202, "The parameter is empty.", id="token-empty"),
])
def test_signed_call_refusals(enos: Enos, change: dict[str, str], status: int,
                              msg: str) -> None:
    code, reply = enos.signed("GET", LIST, **change)  # type: ignore[arg-type]
    assert code == 200
    refused(reply, status, msg)


def test_a_signature_covers_the_query(enos: Enos) -> None:
    token = enos.token()
    ts = str(enos.now_ms())
    params = "".join(k + v for k, v in sorted(LIST.items()))
    sig = sha256hex(token + params + ts + APP_SECRET)
    headers = {"apim-accesstoken": token, "apim-timestamp": ts, "apim-signature": sig}
    status, ok, _ = enos.raw("GET", f"{CERTS}?{urllib.parse.urlencode(LIST)}", None, headers)
    assert ok["code"] == 0
    other = {**LIST, "assetId": "assetB"}
    status, no, _ = enos.raw("GET", f"{CERTS}?{urllib.parse.urlencode(other)}", None, headers)
    refused(no, 1003, "The encryption is not valid.")


def test_a_signature_covers_the_body(enos: Enos) -> None:
    token = enos.token()
    ts = str(enos.now_ms())
    query = {**LIST, "action": "revoke"}
    params = "".join(k + v for k, v in sorted(query.items()))
    sig = sha256hex(token + params + '{"certSn": 1}' + ts + APP_SECRET)
    headers = {"apim-accesstoken": token, "apim-timestamp": ts, "apim-signature": sig}
    status, no, _ = enos.raw("POST", f"{CERTS}?{urllib.parse.urlencode(query)}",
                             '{"certSn": 2}', headers)
    refused(no, 1003, "The encryption is not valid.")


def test_an_expired_token_is_refused_with_the_refresh_hint(enos: Enos) -> None:
    token = enos.token()
    enos.advance(7190)
    assert enos.signed("GET", LIST, token=token)[1]["code"] == 0
    enos.advance(20)
    status, reply = enos.signed("GET", LIST, token=token)
    assert status == 200
    refused(reply, 1203, "The access token has expired.", apim_status=4011,
            apim_refreshtoken=token)
    # The client's way back: refresh, or get a new token (not the expired one).
    fresh = enos.token_call("refresh", {**enos.token_body(), "accessToken": token})
    assert enos.signed("GET", LIST, token=fresh["data"]["accessToken"])[1]["code"] == 0
    assert enos.token() == fresh["data"]["accessToken"]


def test_an_unknown_token_gets_4012(enos: Enos) -> None:
    status, reply = enos.signed("GET", LIST, token="f" * 64)
    refused(reply, 1004, "Invalid parameter.", apim_status=4012)


# -- unsigned calls -------------------------------------------------------------------------------

def test_a_call_without_credentials_is_refused_in_the_gateway_form(enos: Enos) -> None:
    status, reply, headers = enos.raw("GET", f"{CERTS}?{urllib.parse.urlencode(LIST)}")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    refused(reply, 1202, "The parameter is empty.", apim_status=4012)
    status, reply, _ = enos.raw("GET", f"{CERTS}?{urllib.parse.urlencode(LIST)}",
                                headers={"apim-accesstoken": "  "})
    refused(reply, 1202, "The parameter is empty.", apim_status=4012)


def test_the_sdk_token_is_accepted_only_while_the_switch_allows(enos: Enos, start_enos,
                                                               capsys) -> None:
    status, reply, _ = enos.raw("GET", f"{CERTS}?{urllib.parse.urlencode(LIST)}",
                                headers={"apim-accesstoken": enos.sdk_token()})
    assert reply["code"] == 0
    strict = start_enos(accept_sdk_tokens=False)
    # 4012 sends enos-poseidon round its retry path once; a GET's second answer comes back as
    # the raw text, still refused.
    again = strict.sdk("list")
    assert "the second time request" in capsys.readouterr().out
    assert isinstance(again, str)
    refused(json.loads(again), 1004, "Invalid parameter.", apim_status=4012)
    # A POST's retry trips over the SDK's own re-encoding; it returns the first refusal.
    first = strict.sdk("apply", {"csr": make_csr(rsa_key(), "strict")})
    refused(first, 1004, "Invalid parameter.", apim_status=4012)


def test_gateway_refusals_can_use_an_http_status(start_enos, capsys) -> None:
    enos = start_enos(gateway_error_status=401)
    status, reply, _ = enos.raw("GET", f"{CERTS}?{urllib.parse.urlencode(LIST)}")
    assert status == 401
    refused(reply, 1202, "The parameter is empty.", apim_status=4012)
    # enos-poseidon turns any HTTP error into None (and prints it).
    strict = start_enos(gateway_error_status=401, accept_sdk_tokens=False)
    assert strict.sdk("list") is None
    assert "401" in capsys.readouterr().out
    # Service errors stay HTTP 200 whatever the gateway does.
    assert enos.sdk("list", assetId="nope")["code"] == 11404


def test_an_open_gateway_needs_no_credentials(start_enos) -> None:
    enos = start_enos(require_auth=False)
    status, reply, _ = enos.raw("GET", f"{CERTS}?{urllib.parse.urlencode(LIST)}")
    assert status == 200 and reply["code"] == 0


@pytest.mark.parametrize(("method", "path", "status", "msg"), [
    pytest.param("GET", "/connect-service/v2.0/devices", 404, "Not Found", id="unknown-path"),
    pytest.param("DELETE", CERTS, 405, "Method Not Allowed", id="unknown-method"),
    pytest.param("GET", "/enos/CA/cacert/DSA", 404, "Not Found", id="unknown-root"),
])
def test_no_api_behind_the_path(enos: Enos, method: str, path: str, status: int,
                                msg: str) -> None:
    code, reply, _ = enos.raw(method, path, headers={"apim-accesstoken": enos.sdk_token()})
    assert code == status
    refused(reply, status, msg)


def test_https_with_the_farm_ca(start_enos, monkeypatch) -> None:
    import ssl
    import urllib.request

    from .clients import poseidon

    enos = start_enos(https_port=0)
    https = enos.handle.urls["https"]
    farm_ca = enos.handle._farm.ready["ca"]["pem"]
    # A verifying client that trusts the farm's CA.
    ctx = ssl.create_default_context(cadata=farm_ca)
    body = json.dumps(enos.token_body()).encode()
    req = urllib.request.Request(f"{https}/apim-token-service/v2.0/token/get", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
        assert json.loads(resp.read())["status"] == 0
    # The SDK over HTTPS, as it runs in the field: it switches verification off on import.
    monkeypatch.setattr(ssl, "_create_default_https_context", ssl._create_unverified_context)
    url = f"{https}{CERTS}?{urllib.parse.urlencode({**LIST, 'action': 'apply'})}"
    reply = poseidon.urlopen(APP_KEY, APP_SECRET, url, data={"csr": make_csr(rsa_key(), "tls")})
    assert reply["code"] == 0, reply
    assert reply["data"]["certChainURL"] == f"{https}/enos/CA/cacert/RSA"
    with urllib.request.urlopen(reply["data"]["certChainURL"], timeout=10,
                                context=ctx) as resp:
        assert resp.read().decode().rstrip("\n") == reply["data"]["caCert"]

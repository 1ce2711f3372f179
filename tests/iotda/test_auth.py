"""The API gateway: SDK-HMAC-SHA256 and V11-HMAC-SHA256 as the SDK signs, tokens, projects."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from typing import Any

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import DerivationAKSKSigner, Signer
from huaweicloudsdkiotda.v5 import (
    IoTDAClient,
    ListCertificatesRequest,
    ListServerCertificateRequest,
)

from emulators.iotda import auth
from emulators.testing import MemberHandle
from tests.sdk_clients import close_iotda

from .clients import (
    AK,
    INSTANCE,
    OPTIONS,
    OTHER_PROJECT,
    PROJECT,
    SK,
    TOKEN,
    ClientFactory,
)

SIGNATURE_FAIL = "Incorrect IAM authentication information: verify aksk signature fail"

# The spec's test vector (spec/iotda.md, "Authentication").
VECTOR_AK = "AKEXAMPLE0000000000"
VECTOR_SK = "SKEXAMPLEsecretkey0000000000000000000000"
VECTOR_HEADERS = {"content-type": "application/json", "host": "127.0.0.1:8080",
                  "x-project-id": "proj123", "x-sdk-date": "20240101T000000Z"}
VECTOR_SIGNATURE = "a80369c425a1b8bc0abfec652f95c3624574d05f86085e514e54d74b397451ae"


def vector_request() -> SdkRequest:
    return SdkRequest(
        method="POST", schema="http", host="127.0.0.1:8080",
        resource_path="/v5/iot/proj123/certificates/cert-1/action",
        query_params=[("action_id", "verify")],
        header_params={"Content-Type": "application/json", "X-Project-Id": "proj123",
                       "X-Sdk-Date": "20240101T000000Z"},
        body='{"verify_content": "abc"}')


def test_our_signature_matches_the_spec_test_vector() -> None:
    canonical = auth.canonical_request(
        "POST", "/v5/iot/proj123/certificates/cert-1/action", [("action_id", "verify")],
        VECTOR_HEADERS, sorted(VECTOR_HEADERS), b'{"verify_content": "abc"}')
    assert auth.sign(VECTOR_SK, canonical, "20240101T000000Z") == VECTOR_SIGNATURE


def test_the_sdk_signer_gives_the_same_signature() -> None:
    signed = Signer(BasicCredentials(VECTOR_AK, VECTOR_SK, "proj123")).sign(vector_request())
    assert signed.header_params["Authorization"] == (
        "SDK-HMAC-SHA256 Access=AKEXAMPLE0000000000, "
        "SignedHeaders=content-type;host;x-project-id;x-sdk-date, "
        f"Signature={VECTOR_SIGNATURE}")


def test_derived_signature_matches_the_sdk_derivation_signer() -> None:
    signed = DerivationAKSKSigner(BasicCredentials(VECTOR_AK, VECTOR_SK, "proj123")).sign(
        vector_request(), "iotdm", "cn-north-4")
    header = signed.header_params["Authorization"]
    scope = "20240101/cn-north-4/iotdm"
    assert header.startswith(f"V11-HMAC-SHA256 Credential={VECTOR_AK}/{scope}, ")
    canonical = auth.canonical_request(
        "POST", "/v5/iot/proj123/certificates/cert-1/action", [("action_id", "verify")],
        VECTOR_HEADERS, sorted(VECTOR_HEADERS), b'{"verify_content": "abc"}')
    ours = auth.sign_derived(VECTOR_AK, VECTOR_SK, canonical, "20240101T000000Z", scope)
    assert header.endswith(f"Signature={ours}")


# -- through the wire ------------------------------------------------------------------------------

def test_sdk_with_basic_credentials_is_let_in(client: Any) -> None:
    reply = client.list_server_certificate(ListServerCertificateRequest())
    assert reply.server_certificates == []
    assert reply.page.count == 0


def test_sdk_with_derived_aksk_is_let_in(make_client: ClientFactory) -> None:
    client = make_client(derived=True)
    assert client.list_certificates(ListCertificatesRequest()).certificates == []


def test_derived_signature_for_another_region_is_refused(make_client: ClientFactory) -> None:
    client = make_client(derived=True, region="ap-southeast-1")
    with pytest.raises(ClientRequestException) as caught:
        client.list_certificates(ListCertificatesRequest())
    assert (caught.value.status_code, caught.value.error_code, caught.value.error_msg) == (
        401, "APIGW.0301", SIGNATURE_FAIL)


@pytest.mark.parametrize(("ak", "sk"), [
    pytest.param(AK, SK[:-1] + "X", id="wrong-secret-key"),
    pytest.param("UNKNOWNACCESSKEY0000", SK, id="unknown-access-key"),
])
def test_bad_keys_get_the_gateway_401(make_client: ClientFactory, ak: str, sk: str) -> None:
    with pytest.raises(ClientRequestException) as caught:
        make_client(ak, sk).list_server_certificate(ListServerCertificateRequest())
    error = caught.value
    assert (error.status_code, error.error_code, error.error_msg) == (
        401, "APIGW.0301", SIGNATURE_FAIL)
    assert len(error.request_id or "") == 32


YEAR = 365 * 86400


def test_the_sdk_as_shipped_gets_in_after_a_test_moves_the_farm_clock(
        iotda: MemberHandle, client: Any) -> None:
    """The SDK stamps X-Sdk-Date with the host's clock; a test that moves the farm clock a
    year (to expire a certificate, say) must not lock it out."""
    for jump in (YEAR, -2 * YEAR):
        iotda.call(lambda m, jump=jump: m.clock.advance(jump))
        assert client.list_server_certificate(ListServerCertificateRequest()).status_code == 200


@pytest.mark.parametrize(("skew", "accepted"), [
    pytest.param(14 * 60, True, id="14-minutes-ok"),
    pytest.param(16 * 60, False, id="16-minutes-refused"),
    pytest.param(-16 * 60, False, id="16-minutes-ahead-refused"),
])
def test_with_freshness_clocks_farm_sdk_date_must_be_within_15_minutes_of_the_farm_clock(
        emulator_factory: Any, skew: float, accepted: bool) -> None:
    iotda = emulator_factory("iotda", freshness_clocks="farm", **OPTIONS)
    client = (IoTDAClient.new_builder().with_credentials(BasicCredentials(AK, SK, PROJECT))
              .with_endpoints([iotda.url]).build())
    try:
        iotda.call(lambda m: m.clock.advance(skew))
        if accepted:
            client.list_server_certificate(ListServerCertificateRequest())
            return
        with pytest.raises(ClientRequestException) as caught:
            client.list_server_certificate(ListServerCertificateRequest())
        assert caught.value.error_code == "APIGW.0301"
    finally:
        close_iotda(client)


def test_another_projects_path_is_forbidden(make_client: ClientFactory) -> None:
    # The key is good, but it belongs to PROJECT: asking for OTHER_PROJECT's certificates.
    with pytest.raises(ClientRequestException) as caught:
        make_client(AK, SK, OTHER_PROJECT).list_certificates(ListCertificatesRequest())
    assert (caught.value.status_code, caught.value.error_code, caught.value.error_msg) == (
        403, "IOTDA.000022", "Operation not allowed. The user does not have the permission")


def test_known_instance_is_accepted_and_unknown_refused(client: Any) -> None:
    assert client.list_certificates(ListCertificatesRequest(instance_id=INSTANCE)).page.count == 0
    with pytest.raises(ClientRequestException) as caught:
        client.list_certificates(ListCertificatesRequest(instance_id="not-an-instance"))
    assert (caught.value.status_code, caught.value.error_code) == (403, "IOTDA.000022")


# -- raw requests: a signature that does not cover what arrived, tokens ----------------------------

def signed(iotda: MemberHandle, method: str, path: str, body: bytes = b"",
           query: list[tuple[str, str]] | None = None) -> dict[str, str]:
    """Headers the SDK's own signer makes for this request."""
    host = iotda.url.removeprefix("http://")
    request = SdkRequest(method=method, schema="http", host=host, resource_path=path,
                         query_params=query or [],
                         header_params={"Content-Type": "application/json"}, body=body)
    return dict(BasicCredentials(AK, SK, PROJECT).sign_request(request).header_params)


def send(url: str, method: str, headers: dict[str, str], body: bytes = b""
         ) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, data=body or None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, dict(response.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), json.loads(exc.read())


def test_body_changed_after_signing_is_refused(iotda: MemberHandle) -> None:
    path = f"/v5/iot/{PROJECT}/certificates"
    headers = signed(iotda, "POST", path, b'{"content": "a"}')
    status, reply_headers, body = send(iotda.url + path, "POST", headers, b'{"content": "b"}')
    assert status == 401
    assert body == {"error_msg": SIGNATURE_FAIL, "error_code": "APIGW.0301",
                    "request_id": reply_headers["X-Request-Id"]}


def test_query_changed_after_signing_is_refused(iotda: MemberHandle) -> None:
    path = f"/v5/iot/{PROJECT}/certificates"
    headers = signed(iotda, "GET", path, query=[("limit", "5")])
    status, _, body = send(f"{iotda.url}{path}?limit=6", "GET", headers)
    assert (status, body["error_code"]) == (401, "APIGW.0301")


def test_request_signed_by_the_sdk_signer_is_accepted(iotda: MemberHandle) -> None:
    path = f"/v5/iot/{PROJECT}/certificates"
    headers = signed(iotda, "GET", path, query=[("limit", "5"), ("app_id", "default")])
    status, _, body = send(f"{iotda.url}{path}?app_id=default&limit=5", "GET", headers)
    assert (status, body) == (200, {"certificates": [], "page": {"count": 0}})


def curl(*args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", *args], capture_output=True,
                          text=True, timeout=20, check=True)
    body, _, code = done.stdout.rpartition("\n")
    return int(code), json.loads(body) if body else {}


def test_configured_token_is_let_in(iotda: MemberHandle) -> None:
    status, body = curl("-H", f"X-Auth-Token: {TOKEN}",
                        f"{iotda.url}/v5/iot/{PROJECT}/server-certificates")
    assert (status, body) == (200, {"server_certificates": [], "page": {"count": 0}})


@pytest.mark.parametrize(("headers", "message"), [
    pytest.param([], "Incorrect IAM authentication information: x-auth-token not found",
                 id="no-credentials"),
    pytest.param(["-H", "X-Auth-Token: MIIforged"],
                 "Incorrect IAM authentication information: decrypt token fail",
                 id="unknown-token"),
    pytest.param(["-H", "Authorization: Basic dXNlcjpwYXNz"], SIGNATURE_FAIL, id="basic-auth"),
    pytest.param(["-H", f"Authorization: SDK-HMAC-SHA256 Access={AK}, SignedHeaders=host, "
                  "Signature=" + "0" * 64], SIGNATURE_FAIL, id="no-x-sdk-date"),
])
def test_anything_else_gets_the_gateway_401(iotda: MemberHandle, headers: list[str],
                                            message: str) -> None:
    status, body = curl(*headers, f"{iotda.url}/v5/iot/{PROJECT}/certificates")
    assert status == 401
    assert (body["error_code"], body["error_msg"]) == ("APIGW.0301", message)


def test_x_project_id_header_must_match_the_path(iotda: MemberHandle) -> None:
    path = f"/v5/iot/{PROJECT}/certificates"
    request = SdkRequest(method="GET", schema="http", host=iotda.url.removeprefix("http://"),
                         resource_path=path, query_params=[],
                         header_params={"Content-Type": "application/json"})
    # The SDK's signer with the other project's id: X-Project-Id says OTHER, the path PROJECT.
    headers = BasicCredentials(AK, SK, OTHER_PROJECT).sign_request(request).header_params
    status, _, body = send(iotda.url + path, "GET", dict(headers))
    assert (status, body["error_code"]) == (403, "IOTDA.000022")


def test_token_works_only_in_its_project(iotda: MemberHandle) -> None:
    status, body = curl("-H", f"X-Auth-Token: {TOKEN}",
                        f"{iotda.url}/v5/iot/{OTHER_PROJECT}/certificates")
    assert (status, body["error_code"]) == (403, "IOTDA.000022")


def test_any_instance_id_is_accepted_when_the_scenario_sets_none(
        emulator_factory: Any, make_client: ClientFactory) -> None:
    plain = emulator_factory("iotda")  # the default key pair is the tests' AK/SK
    client = make_client(endpoint=plain.url)
    reply = client.list_certificates(ListCertificatesRequest(instance_id="any-instance"))
    assert reply.page.count == 0


def test_instance_id_can_be_required(emulator_factory: Any,
                                     make_client: ClientFactory) -> None:
    strict = emulator_factory("iotda", require_instance_id=True, **OPTIONS)
    client = make_client(endpoint=strict.url)
    with pytest.raises(ClientRequestException) as caught:
        client.list_certificates(ListCertificatesRequest())
    assert caught.value.error_code == "IOTDA.000022"
    assert client.list_certificates(ListCertificatesRequest(instance_id=INSTANCE)).page.count == 0


@pytest.mark.parametrize("app_id", ["a&b=c", "50%", "x+y", "空间"])
def test_signature_covers_encoded_query_values(client: Any, app_id: str) -> None:
    # The signature must hold for values the SDK percent-encodes; the app_id itself is then
    # refused for its characters, which proves the request got past the gateway.
    with pytest.raises(ClientRequestException) as caught:
        client.list_certificates(ListCertificatesRequest(app_id=app_id))
    assert (caught.value.status_code, caught.value.error_code) == (400, "IOTDA.000006")

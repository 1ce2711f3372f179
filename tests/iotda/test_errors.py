"""IoTDA's error form on the wire: one body shape, X-Request-Id everywhere, the documented codes."""

from __future__ import annotations

from typing import Any

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkiotda.v5 import ListCertificatesRequest, ListServerCertificateRequest

from emulators.testing import MemberHandle

from .clients import PROJECT, curl

BAD_FORMAT = ("IOTDA.000008",
              "Invalid input. Bad request, for more detail, refer to the error message.")


CERTS = f"/v5/iot/{PROJECT}/certificates"


@pytest.mark.parametrize(("args", "path"), [
    pytest.param(["-X", "POST", "-H", "Content-Type: application/json", "-d", "{not json"],
                 CERTS, id="malformed-json"),
    pytest.param(["-X", "POST", "-H", "Content-Type: application/json", "-d", '["content"]'],
                 CERTS, id="json-array-not-object"),
    pytest.param(["-X", "POST", "-H", "Content-Type: application/json"], CERTS, id="empty-body"),
    pytest.param(["-X", "POST", "-H", "Content-Type: text/plain", "-d", '{"content": "x"}'],
                 CERTS, id="text-plain"),
    pytest.param(["-X", "POST", "-F", "content=x"], CERTS, id="multipart-form"),
    pytest.param(["-X", "PUT", "-H", "Content-Type: application/xml", "-d", "<a/>"],
                 CERTS + "/0123456789abcdef01234567", id="xml-update"),
    pytest.param(["-X", "POST", "-H", "Content-Type: application/json", "-d", "\xff{"],
                 f"/v5/iot/{PROJECT}/server-certificates", id="garbage-before-brace"),
])
def test_bad_body_or_media_type_is_000008(iotda: MemberHandle, args: list[str],
                                          path: str) -> None:
    status, headers, body = curl(iotda.url + path, *args)
    assert status == 400
    assert (body["error_code"], body["error_msg"]) == BAD_FORMAT
    assert len(headers["x-request-id"]) == 32


@pytest.mark.parametrize(("method", "path"), [
    pytest.param("GET", f"/v5/iot/{PROJECT}/batchtasks", id="unemulated-resource"),
    pytest.param("GET", "/v3/iot/certificates", id="other-version"),
    pytest.param("GET", "/", id="root"),
    pytest.param("PATCH", CERTS, id="wrong-method"),
    pytest.param("POST", f"/v5/iot/{PROJECT}/server-certificates/0123456789abcdef01234567",
                 id="post-to-an-item"),
])
def test_unknown_path_is_000029(iotda: MemberHandle, method: str, path: str) -> None:
    status, headers, body = curl(iotda.url + path, "-X", method)
    assert (status, body) == (404, {"error_code": "IOTDA.000029",
                                    "error_msg": "The requested resource does not exist."})
    assert headers["x-request-id"]


@pytest.mark.parametrize("limit", [0, 51, 1000])
@pytest.mark.parametrize("operation", ["list_certificates", "list_server_certificate"])
def test_limit_out_of_range_is_000017_through_the_sdk(client: Any, limit: int,
                                                      operation: str) -> None:
    request = (ListCertificatesRequest(limit=limit) if operation == "list_certificates"
               else ListServerCertificateRequest(limit=limit))
    with pytest.raises(ClientRequestException) as caught:
        getattr(client, operation)(request)
    assert (caught.value.status_code, caught.value.error_code, caught.value.error_msg) == (
        400, "IOTDA.000017", "Invalid input. The specified parameter 'limit' is out of range.")


@pytest.mark.parametrize("query", [
    pytest.param("limit=ten", id="limit-not-a-number"),
    pytest.param("limit=", id="limit-empty"),
])
def test_unreadable_limit_is_000017(iotda: MemberHandle, query: str) -> None:
    status, _, body = curl(f"{iotda.url}{CERTS}?{query}")
    assert (status, body["error_code"]) == (400, "IOTDA.000017")


@pytest.mark.parametrize("query", [
    pytest.param("offset=501", id="offset-above-500"),
    pytest.param("offset=-1", id="offset-negative"),
    pytest.param("marker=xyz", id="marker-not-an-id"),
    pytest.param("app_id=" + "a" * 37, id="app-id-too-long"),
    pytest.param("app_id=a%20b", id="app-id-with-space"),
])
def test_other_bad_list_parameters_are_000006(iotda: MemberHandle, query: str) -> None:
    status, _, body = curl(f"{iotda.url}{CERTS}?{query}")
    assert (status, body) == (400, {"error_code": "IOTDA.000006",
                                    "error_msg": "Invalid input data."})


def test_every_reply_carries_a_fresh_request_id(iotda: MemberHandle) -> None:
    ids = set()
    for _ in range(3):
        status, headers, _ = curl(f"{iotda.url}{CERTS}")
        assert status == 200
        ids.add(headers["x-request-id"])
    assert len(ids) == 3


def test_sdk_error_carries_the_request_id_header(client: Any) -> None:
    with pytest.raises(ClientRequestException) as caught:
        client.list_certificates(ListCertificatesRequest(limit=99))
    assert len(caught.value.request_id or "") == 32


def test_body_above_two_mebibytes_is_000008(iotda: MemberHandle, tmp_path: Any) -> None:
    big = tmp_path / "big.json"
    big.write_text('{"content": "' + "A" * (3 * 1024 * 1024) + '"}')
    # "Expect:" off: otherwise curl prints an interim "100 Continue" header block first.
    status, headers, body = curl(iotda.url + CERTS, "-X", "POST", "-H",
                                 "Content-Type: application/json", "-H", "Expect:",
                                 "--data-binary", f"@{big}")
    assert (status, body["error_code"]) == (400, "IOTDA.000008")
    assert headers["x-request-id"]

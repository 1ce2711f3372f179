"""Captured SDK requests, tampered with on the wire: the gateway refuses every change the
signature does not cover, and still lets in what the SDK sent (and wire-equivalent forms).

A capture is the exact bytes ``huaweicloudsdkiotda`` sends, caught by a one-shot server; it is
then replayed to the emulator, changed or not. The rules are huaweicloudsdkcore's
``signer/signer.py``: every header in ``header_params`` is signed (``_process_signed_headers``:
lower-cased, sorted, names with ``_`` skipped), ``X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`` is
added *before* signing for a non-JSON body (``_process_content_header``), so it is signed
whenever the SDK sends it; an empty body hashes as ``_EMPTY_HASH`` whatever that header says.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.region.region import Region
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from huaweicloudsdkiotda.v5 import (
    AddCertificateRequest,
    CreateCertificateDTO,
    IoTDAClient,
    ListCertificatesRequest,
    ShowCertificateRequest,
)

from emulators.testing import MemberHandle

from .clients import AK, CA, INSTANCE, OPTIONS, PROJECT, SK

SIGNATURE_FAIL = "Incorrect IAM authentication information: verify aksk signature fail"
CONTENT_SHA = "X-Sdk-Content-Sha256"


# -- capturing what the SDK sends, and replaying it ------------------------------------------------

@dataclass(frozen=True)
class Captured:
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str:
        [value] = [v for k, v in self.headers if k.lower() == name.lower()]
        return value

    def with_header(self, name: str, value: str) -> Captured:
        """``name`` set to ``value`` in place (or added at the end)."""
        if not any(k.lower() == name.lower() for k, _ in self.headers):
            return replace(self, headers=(*self.headers, (name, value)))
        return replace(self, headers=tuple((k, value if k.lower() == name.lower() else v)
                                           for k, v in self.headers))

    def without_header(self, name: str) -> Captured:
        return replace(self, headers=tuple((k, v) for k, v in self.headers
                                           if k.lower() != name.lower()))

    def plus_header(self, name: str, value: str, *, first: bool = False) -> Captured:
        """One more line of ``name`` (a duplicate when it is there already)."""
        line = ((name, value),)
        return replace(self, headers=line + self.headers if first else self.headers + line)

    def signed_headers(self, edit: Callable[[str], str]) -> Captured:
        auth = self.header("Authorization")
        changed = re.sub(r"SignedHeaders=([^,]+)", lambda m: "SignedHeaders=" + edit(m[1]), auth)
        return self.with_header("Authorization", changed)


def capture(call: Callable[[IoTDAClient], Any], *, derived: bool = False) -> Captured:
    """The request the real SDK sends for ``call``, caught by a server that answers ``{}``."""
    server = socket.create_server(("127.0.0.1", 0))
    caught: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head)[1]  # type: ignore[index]
                         if re.search(rb"(?im)^content-length:", head) else 0)
            while len(body) < length:
                body += conn.recv(65536)
            caught.append(head + b"\r\n\r\n" + body)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
    credentials = BasicCredentials(AK, SK, PROJECT)
    builder = IoTDAClient.new_builder().with_credentials(credentials)
    if derived:
        credentials.with_derived_predicate(BasicCredentials.get_default_derived_predicate())
        builder = builder.with_region(Region("cn-north-4", endpoint))
    else:
        builder = builder.with_endpoints([endpoint])
    client = builder.build()
    try:
        call(client)
    finally:
        client.close()
        thread.join(10)
        server.close()
    head, _, body = caught[0].partition(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ")
    headers = tuple((k, v.strip()) for k, _, v in (line.partition(":") for line in lines)
                    if k.lower() != "content-length")
    return Captured(method, target, headers, body)


def replay(iotda: MemberHandle, request: Captured) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection(iotda.host, iotda.port, timeout=10)
    try:
        conn.putrequest(request.method, request.target, skip_host=True,
                        skip_accept_encoding=True)
        for name, value in request.headers:
            conn.putheader(name, value)
        if request.body or request.method in ("POST", "PUT"):
            conn.putheader("Content-Length", str(len(request.body)))
        conn.endheaders(request.body or None)
        response = conn.getresponse()
        raw = response.read()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                json.loads(raw) if raw else None)
    finally:
        conn.close()


def assert_signature_refused(reply: tuple[int, dict[str, str], Any]) -> None:
    status, headers, body = reply
    assert (status, body) == (401, {"error_msg": SIGNATURE_FAIL, "error_code": "APIGW.0301",
                                    "request_id": headers["x-request-id"]})


# -- the captures ------------------------------------------------------------------------------

def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def cas() -> tuple[CA, CA]:
    return CA("Captured CA"), CA("Swapped-in CA")


def add_request(ca: CA) -> Callable[[IoTDAClient], Any]:
    return lambda c: c.add_certificate(AddCertificateRequest(
        instance_id=INSTANCE, body=CreateCertificateDTO(content=ca.pem)))


LIST = lambda c: c.list_certificates(  # noqa: E731
    ListCertificatesRequest(instance_id=INSTANCE, limit=5, app_id="default"))


def one_second_later(sdk_date: str) -> str:
    at = dt.datetime.strptime(sdk_date, "%Y%m%dT%H%M%SZ") + dt.timedelta(seconds=1)
    return at.strftime("%Y%m%dT%H%M%SZ")


def swap_body(new: bytes) -> Callable[[Captured], Captured]:
    return lambda r: replace(r, body=new)


def swap_body_and(name: str, value: Callable[[Captured, bytes], str], new: bytes
                  ) -> Callable[[Captured], Captured]:
    return lambda r: replace(r, body=new).with_header(name, value(r, new))


def _query(edit: Callable[[str], str]) -> Callable[[Captured], Captured]:
    def change(r: Captured) -> Captured:
        path, _, query = r.target.partition("?")
        return replace(r, target=f"{path}?{edit(query)}")
    return change


# Each row: a change made to a captured POST (add_certificate) or GET (list_certificates).
POST_REFUSED = {
    "body-swapped": lambda new: swap_body(new),
    "body-swapped-plus-unsigned-sha-of-the-captured-body":
        lambda new: swap_body_and(CONTENT_SHA, lambda r, _: sha256(r.body), new),
    "body-swapped-plus-unsigned-UNSIGNED-PAYLOAD":
        lambda new: swap_body_and(CONTENT_SHA, lambda r, _: "UNSIGNED-PAYLOAD", new),
    "body-swapped-plus-unsigned-sha-of-the-new-body":
        lambda new: swap_body_and(CONTENT_SHA, lambda r, b: sha256(b), new),
    "body-truncated": lambda new: lambda r: replace(r, body=r.body[:-1]),
    "body-emptied": lambda new: lambda r: replace(r, body=b""),
}

GET_REFUSED: dict[str, Callable[[Captured], Captured]] = {
    "body-added-to-a-get": lambda r: replace(r, body=b'{"content": "x"}'),
    "body-added-plus-unsigned-empty-hash": lambda r: replace(r, body=b"{}").with_header(
        CONTENT_SHA, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    "signed-instance-id-changed": lambda r: r.with_header("Instance-Id", "another-instance"),
    "signed-user-agent-changed": lambda r: r.with_header("User-Agent", "curl/8.0"),
    "signed-content-type-changed": lambda r: r.with_header("Content-Type", "text/plain"),
    "signed-host-changed": lambda r: r.with_header("Host", "iotda.example.com"),
    "signed-x-project-id-changed": lambda r: r.with_header("X-Project-Id", "f" * 32),
    "signed-x-sdk-date-changed": lambda r: r.with_header(
        "X-Sdk-Date", one_second_later(r.header("X-Sdk-Date"))),
    "signed-header-removed-from-the-request": lambda r: r.without_header("Instance-Id"),
    "header-dropped-from-signed-headers": lambda r: r.signed_headers(
        lambda h: h.replace("instance-id;", "")),
    "signed-headers-upper-case": lambda r: r.signed_headers(
        lambda h: ";".join(n.title() for n in h.split(";"))),
    "signed-headers-reordered": lambda r: r.signed_headers(
        lambda h: ";".join(reversed(h.split(";")))),
    "signed-headers-entry-duplicated": lambda r: r.signed_headers(lambda h: h + ";x-sdk-date"),
    "signed-headers-list-authorization": lambda r: r.signed_headers(
        lambda h: "authorization;" + h),
    "signed-headers-empty-entry": lambda r: r.signed_headers(lambda h: h.replace(";", ";;", 1)),
    "signed-header-duplicated-before": lambda r: r.plus_header(
        "Instance-Id", "another-instance", first=True),
    "signed-header-duplicated-after": lambda r: r.plus_header("Instance-Id", "another-instance"),
    "signed-header-duplicated-same-value": lambda r: r.plus_header("Instance-Id", INSTANCE),
    "x-sdk-date-duplicated-fresh-first": lambda r: r.plus_header(
        "X-Sdk-Date", "20990101T000000Z", first=True),
    "authorization-duplicated": lambda r: r.plus_header(
        "Authorization", r.header("Authorization"), first=True),
    "signature-upper-case": lambda r: r.with_header(
        "Authorization", re.sub(r"Signature=(\w+)", lambda m: "Signature=" + m[1].upper(),
                                r.header("Authorization"))),
    "query-value-changed": _query(lambda q: q.replace("limit=5", "limit=6")),
    "query-pair-added": _query(lambda q: q + "&offset=1"),
    "query-pair-duplicated": _query(lambda q: q + "&limit=50"),
    "query-pair-removed": _query(lambda q: "&".join(p for p in q.split("&")
                                                    if not p.startswith("limit"))),
    "query-removed": lambda r: replace(r, target=r.target.partition("?")[0]),
    "path-changed": lambda r: replace(r, target=r.target.replace("/certificates",
                                                                 "/server-certificates")),
    "method-changed": lambda r: replace(r, method="POST", body=b"{}"),
}

# Changes that do not change the request's meaning: the SDK's own capture still gets in.
GET_ACCEPTED: dict[str, Callable[[Captured], Captured]] = {
    "as-captured": lambda r: r,
    "query-reordered-on-the-wire": _query(lambda q: "&".join(reversed(q.split("&")))),
    "header-names-in-other-case": lambda r: replace(
        r, headers=tuple((k.upper(), v) for k, v in r.headers)),
    "header-lines-reordered": lambda r: replace(r, headers=tuple(reversed(r.headers))),
    "unsigned-extra-header": lambda r: r.plus_header("X-Forwarded-For", "10.0.0.1"),
    "unsigned-content-sha-with-no-body": lambda r: r.with_header(CONTENT_SHA, "UNSIGNED-PAYLOAD"),
}


@pytest.mark.parametrize("row", sorted(POST_REFUSED))
def test_a_captured_post_with_its_body_changed_is_refused(
        iotda: MemberHandle, cas: tuple[CA, CA], row: str) -> None:
    captured_ca, other_ca = cas
    captured = capture(add_request(captured_ca))
    new_body = json.dumps({"content": other_ca.pem}).encode()
    assert captured.body and captured.body != new_body
    assert_signature_refused(replay(iotda, POST_REFUSED[row](new_body)(captured)))
    assert iotda.state()["device_cas"]["records"] == []  # nothing was uploaded


def test_the_captured_post_itself_is_accepted(iotda: MemberHandle, cas: tuple[CA, CA]) -> None:
    status, _, body = replay(iotda, capture(add_request(cas[0])))
    assert (status, body["cn_name"]) == (201, "Captured CA")


@pytest.mark.parametrize("row", sorted(GET_REFUSED))
def test_a_captured_get_changed_in_what_is_signed_is_refused(iotda: MemberHandle,
                                                             row: str) -> None:
    captured = capture(LIST)
    assert "instance-id" in captured.header("Authorization")  # the SDK signs it
    assert_signature_refused(replay(iotda, GET_REFUSED[row](captured)))


@pytest.mark.parametrize("row", sorted(GET_ACCEPTED))
def test_a_captured_get_in_a_wire_equivalent_form_is_accepted(iotda: MemberHandle,
                                                              row: str) -> None:
    status, _, body = replay(iotda, GET_ACCEPTED[row](capture(LIST)))
    assert (status, body) == (200, {"certificates": [], "page": {"count": 0}})


@pytest.mark.parametrize(("skew", "accepted"), [
    pytest.param(14 * 60, True, id="replayed-14-minutes-later"),
    pytest.param(16 * 60, False, id="replayed-16-minutes-later"),
    pytest.param(-16 * 60, False, id="replayed-to-a-clock-16-minutes-behind"),
])
def test_a_captured_request_replayed_outside_the_skew_of_the_farm_clock_is_refused(
        emulator_factory: Any, skew: float, accepted: bool) -> None:
    """With ``freshness_clocks: farm`` the farm clock alone judges X-Sdk-Date."""
    iotda = emulator_factory("iotda", freshness_clocks="farm", **OPTIONS)
    captured = capture(LIST)
    iotda.call(lambda m: m.clock.advance(skew))
    reply = replay(iotda, captured)
    if accepted:  # the gateway keeps no nonces: a replay inside the window is let in
        assert reply[0] == 200
    else:
        assert_signature_refused(reply)


def _dated(offset: float, *, farm: bool = False) -> Callable[[MemberHandle], str]:
    """An X-Sdk-Date ``offset`` seconds from the host's clock (or the farm's)."""
    def date(iotda: MemberHandle) -> str:
        base = iotda.call(lambda m: m.clock.time()) if farm else time.time()
        return dt.datetime.fromtimestamp(base + offset, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return date


YEAR = 365 * 86400


@pytest.mark.parametrize(("moved", "date", "accepted"), [
    pytest.param(YEAR, _dated(0), True, id="farm-a-year-ahead-dated-by-the-host"),
    pytest.param(YEAR, _dated(0, farm=True), True, id="farm-a-year-ahead-dated-by-the-farm"),
    pytest.param(YEAR, _dated(-14 * 60), True, id="farm-ahead-dated-14-minutes-ago"),
    pytest.param(YEAR, _dated(-16 * 60), False, id="farm-ahead-dated-16-minutes-ago"),
    pytest.param(YEAR, _dated(16 * 60, farm=True), False,
                 id="farm-ahead-dated-16-minutes-after-the-farm"),
    pytest.param(0, _dated(16 * 60), False, id="unmoved-dated-16-minutes-ahead"),
    pytest.param(-YEAR, _dated(-16 * 60), False, id="farm-behind-dated-16-minutes-ago"),
])
def test_by_default_x_sdk_date_fits_the_host_clock_or_the_farm_clock(
        iotda: MemberHandle, moved: float, date: Callable[[MemberHandle], str],
        accepted: bool) -> None:
    iotda.call(lambda m: m.clock.advance(moved))
    signed = sdk_signed(iotda, "GET", f"/v5/iot/{PROJECT}/certificates", b"",
                        {"X-Sdk-Date": date(iotda), "Instance-Id": INSTANCE})
    reply = replay(iotda, signed)
    if accepted:
        assert reply[0] == 200, reply
    else:
        assert_signature_refused(reply)


@pytest.mark.parametrize("row", [
    "as-captured", "body-swapped-plus-unsigned-sha-of-the-captured-body",
    "header-dropped-from-signed-headers", "query-value-changed"])
def test_the_derived_v11_signature_follows_the_same_rules(
        iotda: MemberHandle, cas: tuple[CA, CA], row: str) -> None:
    if row == "as-captured":
        status, _, body = replay(iotda, capture(LIST, derived=True))
        assert status == 200, body
        return
    if row in POST_REFUSED:
        captured = capture(add_request(cas[0]), derived=True)
        assert captured.header("Authorization").startswith("V11-HMAC-SHA256 ")
        tampered = POST_REFUSED[row](json.dumps({"content": cas[1].pem}).encode())(captured)
    else:
        tampered = GET_REFUSED[row](capture(LIST, derived=True))
    assert_signature_refused(replay(iotda, tampered))


# -- headers the emulator acts on count only when signed ------------------------------------------

def test_an_unsigned_instance_id_does_not_count(emulator_factory: Any) -> None:
    strict = emulator_factory("iotda", require_instance_id=True, **OPTIONS)
    captured = capture(lambda c: c.list_certificates(ListCertificatesRequest()))
    assert "instance-id" not in captured.header("Authorization")
    status, _, body = replay(strict, captured.plus_header("Instance-Id", INSTANCE))
    assert (status, body["error_code"]) == (403, "IOTDA.000022")
    signed = capture(LIST)  # the same instance, signed by the SDK: let in
    assert replay(strict, signed)[0] == 200


# -- X-Sdk-Content-Sha256 when it is signed ------------------------------------------------------

def sdk_signed(iotda: MemberHandle, method: str, path: str, body: bytes,
               headers: dict[str, str]) -> Captured:
    """Headers from the SDK's own Signer (the code every SDK client runs)."""
    request = SdkRequest(method=method, schema="http", host=f"{iotda.host}:{iotda.port}",
                         resource_path=path, query_params=[], header_params=dict(headers),
                         body=body)
    signed = Signer(BasicCredentials(AK, SK, PROJECT)).sign(request)
    return Captured(method, path, tuple(signed.header_params.items()), body)


def test_the_sdk_signs_unsigned_payload_for_a_non_json_body(iotda: MemberHandle) -> None:
    """``Signer._process_content_header`` sets the header before the headers are listed, so
    it is signed; the body is then not covered, as the signing guide says ("Must the Request
    Body Be Signed? No ... X-Sdk-Content-Sha256:UNSIGNED-PAYLOAD")."""
    path = f"/v5/iot/{PROJECT}/certificates"
    captured = sdk_signed(iotda, "POST", path, b"raw bytes", {"Content-Type": "text/plain"})
    assert captured.header(CONTENT_SHA) == "UNSIGNED-PAYLOAD"
    assert "x-sdk-content-sha256" in captured.header("Authorization")
    # Past the gateway with another body: IoTDA itself refuses a body that is not JSON.
    status, _, body = replay(iotda, replace(captured, body=b"other bytes"))
    assert (status, body["error_code"]) == (400, "IOTDA.000008")


@pytest.mark.parametrize(("value", "accepted"), [
    pytest.param(lambda b: sha256(b), True, id="sha-of-the-body"),
    pytest.param(lambda b: sha256(b).upper(), True, id="sha-of-the-body-upper-case"),
    pytest.param(lambda b: sha256(b + b" "), False, id="sha-of-another-body"),
    pytest.param(lambda b: "not-a-hash", False, id="not-a-hash"),
])
def test_a_signed_content_sha_must_be_the_bodys(iotda: MemberHandle, cas: tuple[CA, CA],
                                               value: Callable[[bytes], str],
                                               accepted: bool) -> None:
    path = f"/v5/iot/{PROJECT}/certificates"
    body = json.dumps({"content": cas[0].pem}).encode()
    captured = sdk_signed(iotda, "POST", path, body, {
        "Content-Type": "application/json", "X-Project-Id": PROJECT, CONTENT_SHA: value(body)})
    assert "x-sdk-content-sha256" in captured.header("Authorization")
    reply = replay(iotda, captured)
    if accepted:
        assert reply[0] == 201
    else:
        assert_signature_refused(reply)


# -- the path is signed as sent ------------------------------------------------------------------

@pytest.mark.parametrize("cert_id", ["a%41", "50%25", "a b"])
def test_an_sdk_request_for_an_odd_id_gets_past_the_gateway(client: Any, cert_id: str) -> None:
    """The SDK percent-encodes path values, then signs ``quote(unquote(path))``: the gateway
    must rebuild that from the path as sent, not from a decoded one (decoded twice, ``a%41``
    would sign as ``aA``). The id is then IoTDA's to refuse."""
    from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException

    with pytest.raises(ClientRequestException) as caught:
        client.show_certificate(ShowCertificateRequest(certificate_id=cert_id))
    assert (caught.value.status_code, caught.value.error_code) == (400, "IOTDA.000006")

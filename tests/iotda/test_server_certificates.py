"""Server certificates (seed 004) through the official SDK: create, list, show, delete, limits."""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkiotda.v5 import (
    CreateServerCertificateDTO,
    CreateServerCertificateRequest,
    DeleteServerCertificateRequest,
    ListServerCertificateRequest,
    ShowServerCertificateRequest,
)

from emulators import pki
from emulators.testing import MemberHandle, RunningFarm, single_member_scenario

from .clients import OPTIONS, ClientFactory, fixture_json

INVALID_CERT = ("IOTDA.014301", "Invalid certificate content.")
INVALID_INPUT = ("IOTDA.000006", "Invalid input data.")
NOT_FOUND = (404, "IOTDA.014303", "The certificate does not exist.")

# The seed's CA name and validity ("Example Responses", seed 004).
SEED_CA = "CN=Huawei Cloud Core Network Product CA, O=Huawei, C=CN"
START = dt.datetime(2025, 12, 12, 12, 12, 12, tzinfo=dt.UTC)


def identity(cn: str = "iotda", days: float = 1826) -> tuple[str, pki.PrivateKey]:
    """A certificate issued by a CA named like the seed's, valid 20251212T121212Z..20301212."""
    ca_key = pki.ec_key()
    ca = pki.make_ca(pki.name(C="CN", O="Huawei", CN="Huawei Cloud Core Network Product CA"),
                     ca_key)
    key = pki.ec_key()
    cert = pki.issue(key.public_key(), pki.name(C="CN", O="Huawei", CN=cn), ca, ca_key,
                     not_before=START, days=days, server=True)
    return pki.cert_pem(cert), key


def create(client: Any, cert_pem: str, key_pem: str, password: str | None = None) -> Any:
    body = CreateServerCertificateDTO(certificate_pem=cert_pem, private_key=key_pem,
                                      private_key_password=password)
    return client.create_server_certificate(CreateServerCertificateRequest(body=body))


def error_of(call: Callable[[], Any]) -> tuple[int, str, str]:
    with pytest.raises(ClientRequestException) as caught:
        call()
    return caught.value.status_code, caught.value.error_code, caught.value.error_msg


def test_create_reads_the_reply_from_the_certificate(client: Any) -> None:
    cert_pem, key = identity()
    reply = create(client, cert_pem, pki.key_pem(key))
    assert re.fullmatch(r"[0-9a-f]{24}", reply.server_certificate_id)
    assert reply.to_json_object() == {
        "server_certificate_id": reply.server_certificate_id,
        "common_name": "iotda",
        "effective_date": "20251212T121212Z",
        "expiry_date": "20301212T121212Z",
        "certificate_owner": "CN=iotda, O=Huawei, C=CN",
        "certificate_issuer": SEED_CA,
    }


def test_owner_from_issuer_reproduces_the_seed_example_reply(
        emulator_factory: Callable[..., MemberHandle], make_client: ClientFactory) -> None:
    seeded = emulator_factory("iotda", server_certificate_owner="issuer", **OPTIONS)
    cert_pem, key = identity()
    reply = create(make_client(endpoint=seeded.url), cert_pem, pki.key_pem(key))
    expected = fixture_json("seed004_example_response.json")  # verbatim from seed 004
    expected["server_certificate_id"] = reply.server_certificate_id
    assert reply.to_json_object() == expected


def test_show_adds_the_pem_and_delete_answers_204(client: Any) -> None:
    cert_pem, key = identity("app.example.com")
    created = create(client, cert_pem, pki.key_pem(key))
    shown = client.show_server_certificate(
        ShowServerCertificateRequest(server_certificate_id=created.server_certificate_id))
    assert shown.certificate_pem == cert_pem
    assert shown.common_name == "app.example.com"
    deleted = client.delete_server_certificate(
        DeleteServerCertificateRequest(server_certificate_id=created.server_certificate_id))
    assert deleted.status_code == 204
    assert error_of(lambda: client.show_server_certificate(ShowServerCertificateRequest(
        server_certificate_id=created.server_certificate_id))) == NOT_FOUND
    assert error_of(lambda: client.delete_server_certificate(DeleteServerCertificateRequest(
        server_certificate_id=created.server_certificate_id))) == NOT_FOUND


def test_quota_is_two_and_a_delete_frees_a_place(client: Any) -> None:
    ids = []
    for n in range(2):
        cert_pem, key = identity(f"app{n}")
        ids.append(create(client, cert_pem, pki.key_pem(key)).server_certificate_id)
    cert_pem, key = identity("app2")
    assert error_of(lambda: create(client, cert_pem, pki.key_pem(key))) == (
        400, "IOTDA.014302",
        "Operation not allowed. The number of certificates has reached the upper limit.")
    client.delete_server_certificate(DeleteServerCertificateRequest(server_certificate_id=ids[0]))
    assert create(client, cert_pem, pki.key_pem(key)).common_name == "app2"


def test_list_pages_newest_first_with_marker_and_offset(client: Any) -> None:
    ids = []
    for n in range(2):
        cert_pem, key = identity(f"app{n}")
        ids.append(create(client, cert_pem, pki.key_pem(key)).server_certificate_id)
    newest, oldest = ids[1], ids[0]
    everything = client.list_server_certificate(ListServerCertificateRequest())
    assert [c.server_certificate_id for c in everything.server_certificates] == [newest, oldest]
    assert (everything.page.count, everything.page.marker) == (2, oldest)

    first = client.list_server_certificate(ListServerCertificateRequest(limit=1))
    assert [c.common_name for c in first.server_certificates] == ["app1"]
    assert first.page.marker == newest
    second = client.list_server_certificate(
        ListServerCertificateRequest(limit=1, marker=first.page.marker))
    assert [c.common_name for c in second.server_certificates] == ["app0"]
    skipped = client.list_server_certificate(ListServerCertificateRequest(offset=1))
    assert [c.common_name for c in skipped.server_certificates] == ["app0"]
    past_end = client.list_server_certificate(ListServerCertificateRequest(offset=2))
    assert past_end.server_certificates == []
    assert past_end.page.count == 2


@pytest.mark.parametrize("traditional", [False, True], ids=["pkcs8", "traditional-openssl"])
def test_encrypted_key_opens_with_its_letters_only_password(client: Any,
                                                            traditional: bool) -> None:
    cert_pem, key = identity()
    key_pem = pki.key_pem(key, b"SecretLetters", traditional=traditional)
    assert "ENCRYPTED" in key_pem
    assert create(client, cert_pem, key_pem, "SecretLetters").common_name == "iotda"


def _rsa_identity() -> tuple[str, str]:
    key = pki.rsa_key(1024)
    cert = pki.issue(key.public_key(), pki.name(CN="rsa"), None, key, days=10)
    return pki.cert_pem(cert), pki.key_pem(key, traditional=True)


def _bad_cases() -> list[Any]:
    cert_pem, key = identity()
    key_pem = pki.key_pem(key)
    other_key_pem = pki.key_pem(pki.ec_key())
    locked = pki.key_pem(key, b"Letters")
    der_b64 = base64.b64encode(pki.load_cert(cert_pem).public_bytes(
        serialization.Encoding.DER)).decode()
    seed = fixture_json("seed004_example_request.json")  # verbatim from seed 004
    return [
        pytest.param(dict(certificate_pem="hello", private_key=key_pem), INVALID_CERT,
                     id="cert-not-pem"),
        pytest.param(dict(certificate_pem=der_b64, private_key=key_pem), INVALID_CERT,
                     id="cert-base64-der-without-armour"),
        # "-----BEGINCERTIFICATE-----" (sic), and its key is not the certificate's.
        pytest.param(seed, INVALID_CERT, id="seed-004-example-request"),
        pytest.param(dict(certificate_pem=cert_pem.replace("M", "N", 3), private_key=key_pem),
                     INVALID_CERT, id="cert-corrupted"),
        pytest.param(dict(certificate_pem=cert_pem, private_key=other_key_pem), INVALID_CERT,
                     id="key-mismatch"),
        pytest.param(dict(certificate_pem=cert_pem, private_key="not a key"), INVALID_CERT,
                     id="key-not-pem"),
        pytest.param(dict(certificate_pem=cert_pem, private_key=locked,
                          private_key_password="Wrong"), INVALID_CERT, id="wrong-password"),
        pytest.param(dict(certificate_pem=cert_pem, private_key=locked), INVALID_CERT,
                     id="encrypted-key-without-password"),
        pytest.param(dict(certificate_pem=cert_pem + " " * (65_536 - len(cert_pem)),
                          private_key=key_pem), INVALID_INPUT, id="cert-above-65535-chars"),
        pytest.param(dict(certificate_pem=cert_pem, private_key=key_pem + "\n" * 10_241),
                     INVALID_INPUT, id="key-above-10240-chars"),
        pytest.param(dict(certificate_pem=cert_pem, private_key=locked,
                          private_key_password="Letters123"), INVALID_INPUT,
                     id="password-with-digits"),
        pytest.param(dict(certificate_pem=cert_pem, private_key=locked,
                          private_key_password="L" * 65), INVALID_INPUT, id="password-65-letters"),
        pytest.param(dict(certificate_pem=cert_pem), INVALID_INPUT, id="no-private-key"),
        pytest.param(dict(private_key=key_pem), INVALID_INPUT, id="no-certificate"),
    ]


@pytest.mark.parametrize(("fields", "expected"), _bad_cases())
def test_bad_certificates_and_keys_are_refused(client: Any, fields: dict[str, Any],
                                               expected: tuple[str, str]) -> None:
    body = CreateServerCertificateDTO(**fields)
    status, code, message = error_of(lambda: client.create_server_certificate(
        CreateServerCertificateRequest(body=body)))
    assert (status, code, message) == (400, *expected)
    assert client.list_server_certificate(ListServerCertificateRequest()).page.count == 0


def test_rsa_key_in_traditional_form_is_accepted(client: Any) -> None:
    cert_pem, key_pem = _rsa_identity()
    assert "BEGIN RSA PRIVATE KEY" in key_pem  # the seed's key form
    assert create(client, cert_pem, key_pem).certificate_owner == "CN=rsa"


@pytest.mark.parametrize("cert_id", [
    pytest.param("0123456789abcdef01234567", id="well-formed-unknown"),
    pytest.param("x" * 25, id="longer-than-24"),
])
def test_unknown_or_malformed_id(client: Any, cert_id: str) -> None:
    status, code, _ = error_of(lambda: client.show_server_certificate(
        ShowServerCertificateRequest(server_certificate_id=cert_id)))
    assert (status, code) == ((404, "IOTDA.014303") if len(cert_id) == 24
                              else (400, "IOTDA.000006"))


def test_certificates_survive_a_restart(farm_factory: Callable[..., RunningFarm],
                                        make_client: ClientFactory, tmp_path: Path,
                                        iotda: MemberHandle) -> None:
    scenario = single_member_scenario("iotda", "iotda-persist", **OPTIONS)
    first = farm_factory(scenario, tmp_path, control=False)
    cert_pem, key = identity("kept")
    created = create(_client_for(make_client, first), cert_pem, pki.key_pem(key))
    first.stop()
    second = farm_factory(scenario, tmp_path, control=False)
    shown = _client_for(make_client, second).show_server_certificate(
        ShowServerCertificateRequest(server_certificate_id=created.server_certificate_id))
    assert (shown.common_name, shown.certificate_pem) == ("kept", cert_pem)


def _client_for(make_client: ClientFactory, farm: RunningFarm) -> Any:
    return make_client(endpoint=farm["iotda-persist"].url)

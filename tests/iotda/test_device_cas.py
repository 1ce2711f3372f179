"""Device CA certificates (seed 003) through the official SDK, with the seed's openssl flow."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkiotda.v5 import (
    AddCertificateRequest,
    CheckCertificateRequest,
    CreateCertificateDTO,
    DeleteCertificateRequest,
    ListCertificatesRequest,
    ShowCertificateRequest,
    UpdateCertificateDTO,
    UpdateCertificateRequest,
    VerifyCertificateDTO,
)

from emulators import pki
from emulators.testing import MemberHandle, single_member_scenario

from .clients import (
    CA,
    OPTIONS,
    OTHER_AK,
    OTHER_PROJECT,
    OTHER_SK,
    PROJECT,
    ClientFactory,
    curl,
)

INVALID_CERT = (400, "IOTDA.014301", "Invalid certificate content.")
INVALID_INPUT = (400, "IOTDA.000006", "Invalid input data.")
VERIFY_FAILED = (400, "IOTDA.014307",
                 "Operation not allowed. The certificates verify verifyCode failed")
NOT_FOUND = (404, "IOTDA.014303", "The certificate does not exist.")


def error_of(call: Callable[[], Any]) -> tuple[int, str, str]:
    with pytest.raises(ClientRequestException) as caught:
        call()
    return caught.value.status_code, caught.value.error_code, caught.value.error_msg


def upload(client: Any, content: str, app_id: str | None = None) -> Any:
    return client.add_certificate(AddCertificateRequest(
        body=CreateCertificateDTO(content=content, app_id=app_id)))


def verify(client: Any, cert_id: str, proof_pem: str) -> Any:
    return client.check_certificate(CheckCertificateRequest(
        certificate_id=cert_id, action_id="verify",
        body=VerifyCertificateDTO(verify_content=proof_pem)))


def show(client: Any, cert_id: str) -> Any:
    return client.show_certificate(ShowCertificateRequest(certificate_id=cert_id))


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


# -- seed 003, step by step ----------------------------------------------------------------------

def test_seed_003_verification_flow_with_openssl(client: Any, tmp_path: Path) -> None:
    # The CA the user already has (the seed starts from rootCA.cer / rootCA.key).
    openssl("genrsa", "-out", "rootCA.key", "2048", cwd=tmp_path)
    openssl("req", "-x509", "-new", "-key", "rootCA.key", "-out", "rootCA.cer", "-days", "3650",
            "-subj", "/C=CN/O=Farm Devices/CN=Farm Device Root CA", cwd=tmp_path)
    uploaded = upload(client, (tmp_path / "rootCA.cer").read_text())
    assert (uploaded.cn_name, uploaded.owner, uploaded.status) == (
        "Farm Device Root CA", "CN=Farm Device Root CA, O=Farm Devices, C=CN", False)
    code = uploaded.verify_code

    # Steps 3 to 5, the seed's commands (-subj answers the prompt with the code as CN).
    openssl("genrsa", "-out", "verificationCert.key", "2048", cwd=tmp_path)
    openssl("req", "-new", "-key", "verificationCert.key", "-out", "verificationCert.csr",
            "-subj", f"/CN={code}", cwd=tmp_path)
    openssl("x509", "-req", "-in", "verificationCert.csr", "-CA", "rootCA.cer", "-CAkey",
            "rootCA.key", "-CAcreateserial", "-out", "verificationCert.crt", "-days", "36500",
            "-sha256", cwd=tmp_path)

    # Step 6: upload the verification certificate.
    reply = verify(client, uploaded.certificate_id, (tmp_path / "verificationCert.crt").read_text())
    assert reply.status_code == 200
    assert show(client, uploaded.certificate_id).status is True
    listed = client.list_certificates(ListCertificatesRequest()).certificates
    assert [(c.certificate_id, c.status) for c in listed] == [(uploaded.certificate_id, True)]


def test_der_upload_is_accepted_as_base64(client: Any, tmp_path: Path) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.der", "-outform", "DER", "-days", "30",
            "-subj", "/CN=DER CA", cwd=tmp_path)
    content = base64.b64encode((tmp_path / "ca.der").read_bytes()).decode()
    uploaded = upload(client, content)
    assert uploaded.cn_name == "DER CA"
    assert show(client, uploaded.certificate_id).content == content


# -- bad CA certificates -------------------------------------------------------------------------

def _build(*, ski: bool = True, aki: bool = True, bc: bool | None = True) -> str:
    key = pki.ec_key()
    subject = pki.name(CN="Broken CA")
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(key.public_key()).serial_number(pki.random_serial())
               .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30)))
    if bc is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=bc, path_length=None), True)
    if ski:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    if aki:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
    return pki.cert_pem(builder.sign(key, hashes.SHA256()))


@pytest.fixture(scope="module")
def v1_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A version 1 CA: ``openssl x509 -req -signkey`` writes no extensions."""
    where = tmp_path_factory.mktemp("v1")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.csr", "-subj", "/CN=Old CA", cwd=where)
    openssl("x509", "-req", "-in", "ca.csr", "-signkey", "ca.key", "-out", "ca.cer",
            "-days", "30", cwd=where)
    text = (where / "ca.cer").read_text()
    assert pki.load_cert(text).version == x509.Version.v1
    return text


BAD_CAS: list[Any] = [
    pytest.param(lambda _: "hello world", INVALID_CERT, id="not-pem"),
    pytest.param(lambda _: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
                 INVALID_CERT, id="pem-armour-garbage-inside"),
    pytest.param(lambda _: base64.b64encode(b"\x30\x03\x02\x01\x01").decode(), INVALID_CERT,
                 id="base64-not-a-certificate"),
    pytest.param(lambda _: pki.csr_pem(pki.make_csr(pki.ec_key(), pki.name(CN="x"))),
                 INVALID_CERT, id="a-csr-not-a-certificate"),
    pytest.param(lambda v1: v1, INVALID_CERT, id="version-1"),
    pytest.param(lambda _: _build(ski=False), INVALID_CERT, id="no-subject-key-identifier"),
    pytest.param(lambda _: _build(aki=False), INVALID_CERT, id="no-authority-key-identifier"),
    pytest.param(lambda _: _build(bc=None), INVALID_CERT, id="no-basic-constraints"),
    pytest.param(lambda _: _build(bc=False), INVALID_CERT, id="basic-constraints-not-a-ca"),
    pytest.param(lambda _: _build() + "\n" * 65_536, INVALID_INPUT, id="above-65535-chars"),
    pytest.param(lambda _: "", INVALID_INPUT, id="empty"),
]


@pytest.mark.parametrize(("make", "expected"), BAD_CAS)
def test_bad_ca_certificates_are_refused(client: Any, v1_ca: str,
                                         make: Callable[[str], str],
                                         expected: tuple[int, str, str]) -> None:
    assert error_of(lambda: upload(client, make(v1_ca))) == expected
    assert client.list_certificates(ListCertificatesRequest()).page.count == 0


def test_good_ca_from_our_builder_is_accepted(client: Any) -> None:
    # The same builder as the bad table, with everything present: the table tests one thing.
    assert upload(client, _build()).cn_name == "Broken CA"


@pytest.mark.parametrize("app_id", ["a" * 37, "space space", "semi;colon"])
def test_bad_app_id_is_invalid_input(client: Any, app_id: str) -> None:
    assert error_of(lambda: upload(client, CA().pem, app_id)) == INVALID_INPUT


# -- verification --------------------------------------------------------------------------------

@pytest.fixture
def ca_and_record(client: Any) -> tuple[CA, Any]:
    ca = CA()
    return ca, upload(client, ca.pem)


def proof(ca: CA, cn: str) -> str:
    return pki.cert_pem(ca.sign(cn))


def test_wrong_common_name_fails_with_014307(client: Any, ca_and_record: Any) -> None:
    ca, record = ca_and_record
    assert error_of(lambda: verify(client, record.certificate_id,
                                   proof(ca, "not-the-code"))) == VERIFY_FAILED
    assert show(client, record.certificate_id).status is False


def test_code_signed_by_another_ca_fails_with_014307(client: Any, ca_and_record: Any) -> None:
    _, record = ca_and_record
    impostor = CA("Device Root CA")  # same name, different key
    assert error_of(lambda: verify(client, record.certificate_id,
                                   proof(impostor, record.verify_code))) == VERIFY_FAILED


@pytest.mark.parametrize(("elapsed", "ok"), [
    pytest.param(7 * 86_400 - 60, True, id="a-minute-before-7-days"),
    pytest.param(7 * 86_400 + 60, False, id="a-minute-after-7-days"),
])
def test_code_lives_seven_days_on_the_farm_clock(iotda: MemberHandle, make_client: ClientFactory,
                                                 ca_and_record: Any, elapsed: float,
                                                 ok: bool) -> None:
    ca, record = ca_and_record
    iotda.call(lambda m: m.clock.advance(elapsed))
    # The SDK signs with the real time: a token stands in for AK/SK once the farm clock jumped.
    status, _, body = curl(
        f"{iotda.url}/v5/iot/{PROJECT}/certificates/{record.certificate_id}/action"
        "?action_id=verify", "-X", "POST", "-H", "Content-Type: application/json",
        "--data-binary", json.dumps({"verify_content": proof(ca, record.verify_code)}))
    if ok:
        assert (status, body) == (200, None)
    else:
        assert (status, body["error_code"], body["error_msg"]) == VERIFY_FAILED


def test_new_code_replaces_the_old(iotda: MemberHandle, client: Any,
                                   ca_and_record: Any) -> None:
    ca, record = ca_and_record
    renewed = iotda.call(lambda m: m.new_verify_code(record.certificate_id))
    assert renewed.verify_code != record.verify_code
    assert show(client, record.certificate_id).verify_code == renewed.verify_code
    assert error_of(lambda: verify(client, record.certificate_id,
                                   proof(ca, record.verify_code))) == VERIFY_FAILED
    verify(client, record.certificate_id, proof(ca, renewed.verify_code))
    assert show(client, record.certificate_id).status is True


def test_check_needs_action_id_verify(client: Any, ca_and_record: Any) -> None:
    ca, record = ca_and_record
    assert error_of(lambda: client.check_certificate(CheckCertificateRequest(
        certificate_id=record.certificate_id, action_id="approve",
        body=VerifyCertificateDTO(verify_content=proof(ca, record.verify_code))))
    ) == INVALID_INPUT


def test_check_with_unreadable_content_is_014301(client: Any, ca_and_record: Any) -> None:
    _, record = ca_and_record
    assert error_of(lambda: verify(client, record.certificate_id, "junk")) == INVALID_CERT


# -- update, delete, list ------------------------------------------------------------------------

def test_update_sets_fields_and_resets_verification(client: Any, ca_and_record: Any) -> None:
    ca, record = ca_and_record
    verify(client, record.certificate_id, proof(ca, record.verify_code))
    updated = client.update_certificate(UpdateCertificateRequest(
        certificate_id=record.certificate_id,
        body=UpdateCertificateDTO(provision_enable=True, template_id="tmpl_01",
                                  ocsp_enable=True)))
    assert (updated.provision_enable, updated.template_id, updated.ocsp_enable,
            updated.status) == (True, "tmpl_01", True, False)
    assert show(client, record.certificate_id).status is False


@pytest.mark.parametrize("body", [
    pytest.param(UpdateCertificateDTO(provision_enable=True), id="provision-without-template"),
    pytest.param(UpdateCertificateDTO(ocsp_ssl_enable=True), id="ocsp-ssl-without-server-ca"),
    pytest.param(UpdateCertificateDTO(template_id="bad id!"), id="template-id-characters"),
])
def test_inconsistent_update_is_invalid_input(client: Any, ca_and_record: Any,
                                              body: UpdateCertificateDTO) -> None:
    _, record = ca_and_record
    assert error_of(lambda: client.update_certificate(UpdateCertificateRequest(
        certificate_id=record.certificate_id, body=body))) == INVALID_INPUT


def test_delete_answers_204_then_the_ca_is_gone(client: Any, ca_and_record: Any) -> None:
    _, record = ca_and_record
    reply = client.delete_certificate(DeleteCertificateRequest(
        certificate_id=record.certificate_id))
    assert reply.status_code == 204
    for call in (lambda: show(client, record.certificate_id),
                 lambda: client.delete_certificate(DeleteCertificateRequest(
                     certificate_id=record.certificate_id)),
                 lambda: client.update_certificate(UpdateCertificateRequest(
                     certificate_id=record.certificate_id,
                     body=UpdateCertificateDTO(ocsp_enable=True)))):
        assert error_of(call) == NOT_FOUND


def test_list_filters_by_app_id_and_pages(client: Any) -> None:
    pem = CA().pem
    ids = [upload(client, pem, app_id="space_a" if n % 2 else None).certificate_id
           for n in range(5)]
    newest_first = ids[::-1]
    everything = client.list_certificates(ListCertificatesRequest())
    assert [c.certificate_id for c in everything.certificates] == newest_first
    assert everything.page.count == 5

    only_a = client.list_certificates(ListCertificatesRequest(app_id="space_a"))
    assert [c.certificate_id for c in only_a.certificates] == [ids[3], ids[1]]
    default = client.list_certificates(ListCertificatesRequest(app_id="default"))
    assert [c.certificate_id for c in default.certificates] == [ids[4], ids[2], ids[0]]

    page1 = client.list_certificates(ListCertificatesRequest(limit=2))
    page2 = client.list_certificates(ListCertificatesRequest(limit=2, marker=page1.page.marker))
    page3 = client.list_certificates(ListCertificatesRequest(limit=2, marker=page2.page.marker))
    assert [c.certificate_id for p in (page1, page2, page3) for c in p.certificates] == (
        newest_first)
    assert page3.page.marker == ids[0]
    after_last = client.list_certificates(ListCertificatesRequest(marker=ids[0]))
    assert after_last.certificates == []
    offset = client.list_certificates(ListCertificatesRequest(limit=2, offset=3))
    assert [c.certificate_id for c in offset.certificates] == newest_first[3:5]
    past_end = client.list_certificates(ListCertificatesRequest(offset=500))
    assert (past_end.certificates, past_end.page.count) == ([], 5)


def test_quota_is_one_hundred(client: Any) -> None:
    pem = CA().pem
    for _ in range(100):
        upload(client, pem)
    assert error_of(lambda: upload(client, pem)) == (
        400, "IOTDA.014302",
        "Operation not allowed. The number of certificates has reached the upper limit.")


def test_projects_do_not_see_each_other(client: Any, make_client: ClientFactory,
                                        ca_and_record: Any) -> None:
    _, record = ca_and_record
    other = make_client(OTHER_AK, OTHER_SK, OTHER_PROJECT)
    assert other.list_certificates(ListCertificatesRequest()).page.count == 0
    assert error_of(lambda: show(other, record.certificate_id)) == NOT_FOUND


def test_show_has_name_and_content(client: Any, ca_and_record: Any) -> None:
    ca, record = ca_and_record
    shown = show(client, record.certificate_id)
    assert (shown.name, shown.content) == ("Device Root CA", ca.pem)
    der = ca.cert.public_bytes(serialization.Encoding.DER)
    assert pki.load_cert(shown.content).public_bytes(serialization.Encoding.DER) == der


def test_code_and_status_survive_a_restart(farm_factory: Callable[..., Any],
                                           make_client: ClientFactory, tmp_path: Path) -> None:
    scenario = single_member_scenario("iotda", "iotda-kept", **OPTIONS)
    first = farm_factory(scenario, tmp_path, control=False)
    ca = CA()
    record = upload(make_client(endpoint=first["iotda-kept"].url), ca.pem)
    first.stop()
    second = farm_factory(scenario, tmp_path, control=False)
    client = make_client(endpoint=second["iotda-kept"].url)
    verify(client, record.certificate_id, proof(ca, record.verify_code))
    assert show(client, record.certificate_id).status is True

"""Every error of the renew seed and the spec, through the SDK, with its exact code and msg.

The message strings are written out here, not imported, so a changed table fails a test.
"""

from __future__ import annotations

import base64
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from emulators import pki

from .clients import CERTS, ORG, Enos, ec_key, make_csr, rsa_key

DAY = 86400
DEVICE_ID = "invalid argument: The device identifier is invalid"
NOT_FOUND = "Device cannot be found"
ONE_WAY = ("The product to which the device belongs to is not a product that supports "
           "bi-directional authorization.")
OVER_MAX = ("The specified validity period exceeds the maximum certificate validity period of "
            "the product to which this device belongs.")
NOT_BOUND = ("The certificate list bound to the device does not have the certificate, or the "
             "certificate is bound to other devices.")
BOUND_ELSEWHERE = "Certificate is already bound to another device."


def fail(reply: Any, code: int, msg: str) -> None:
    assert isinstance(reply, dict), reply
    assert (reply["code"], reply["msg"], reply["data"]) == (code, msg, None)
    assert len(reply["requestId"]) == 36


# -- requests that are wrong on their face ---------------------------------------------------

SHAPE = [
    pytest.param("apply", {"csr": "x"}, {}, DEVICE_ID, id="no-device-identifier"),
    pytest.param("apply", {"csr": "x"}, {"assetId": ""}, DEVICE_ID, id="asset-id-empty"),
    pytest.param("apply", {"csr": "x"}, {"productKey": "PBiDir01"}, DEVICE_ID,
                 id="product-key-without-device-key"),
    pytest.param("list", None, {"deviceKey": "devA"}, DEVICE_ID,
                 id="device-key-without-product-key"),
    pytest.param("apply", {}, None, "Invalid Argument csr:csr is missing", id="csr-missing"),
    pytest.param("apply", {"csr": ""}, None, "Invalid Argument csr:csr is missing",
                 id="csr-empty"),
    pytest.param("apply", {"csr": 42}, None, "Invalid Argument csr:csr is invalid",
                 id="csr-not-text"),
    pytest.param("renew", {"validDay": 10}, None, "Invalid Argument certSn:certSn is missing",
                 id="renew-certsn-missing"),
    pytest.param("revoke", {"reason": 0}, None, "Invalid Argument certSn:certSn is missing",
                 id="revoke-certsn-missing"),
    pytest.param("renew", {"certSn": None}, None,
                 "The serial number of the certificate to be updated is required.",
                 id="renew-certsn-null"),
    pytest.param("renew", {"certSn": ""}, None,
                 "The serial number of the certificate to be updated is required.",
                 id="renew-certsn-empty"),
    pytest.param("renew", {"certSn": -1}, None,
                 "The serial number of the new certificate is invalid (less than 0).",
                 id="renew-certsn-negative"),
    pytest.param("renew", {"certSn": "abc"}, None, "Invalid Argument certSn:certSn is invalid",
                 id="renew-certsn-not-a-number"),
    pytest.param("renew", {"certSn": True}, None, "Invalid Argument certSn:certSn is invalid",
                 id="renew-certsn-boolean"),
    pytest.param("renew", {"certSn": 999999}, None, NOT_BOUND, id="renew-certsn-unknown"),
    pytest.param("apply", {"csr": "x", "validDay": 0}, None,
                 "Invalid Argument validDay:validDay is invalid", id="validday-zero"),
    pytest.param("apply", {"csr": "x", "validDay": "ten"}, None,
                 "Invalid Argument validDay:validDay is invalid", id="validday-text"),
    pytest.param("apply", {"csr": "x", "validDay": 1.5}, None,
                 "Invalid Argument validDay:validDay is invalid", id="validday-fraction"),
    pytest.param("apply", {"csr": "x", "issueAuthority": "DSA"}, None,
                 "Invalid Argument issueAuthority:issueAuthority is invalid",
                 id="issue-authority-unknown"),
    pytest.param("apply", {"csr": "x", "issueAuthority": "rsa"}, None,
                 "Invalid Argument issueAuthority:issueAuthority is invalid",
                 id="issue-authority-lower-case"),
    pytest.param("revoke", {"certSn": 1, "reason": 2}, None,
                 "When calling Certificate Services, the call parameters are invalid.message: "
                 "The revocation reason is not supported, detail message: reason 2 is not one "
                 "of 0, 1, 3, 4, 5, 6, 9", id="revoke-reason-2"),
    pytest.param("revoke", {"certSn": 999999}, None,
                 "Revoke cert is failed!message: The certificate is not bound to the device, "
                 "detail message: certSn 999999 is not in the certificate list of asset assetA",
                 id="revoke-unknown-certsn"),
    pytest.param("apply", {"csr": "x"}, {"assetId": "nope"}, NOT_FOUND, id="unknown-asset"),
    pytest.param("list", None, {"productKey": "PBiDir01", "deviceKey": "nope"}, NOT_FOUND,
                 id="unknown-device-key"),
    pytest.param("list", None, {"assetId": "assetX"}, NOT_FOUND, id="device-of-another-org"),
    pytest.param("apply", {"csr": "x"}, {"assetId": "assetM"}, ONE_WAY,
                 id="apply-one-way-product"),
    pytest.param("renew", {"certSn": 1}, {"assetId": "assetM"}, ONE_WAY,
                 id="renew-one-way-product"),
    pytest.param("apply", {"csr": "x", "validDay": 366}, {"assetId": "assetS"}, OVER_MAX,
                 id="apply-validday-over-product-max"),
    pytest.param("apply", "{not json", None,
                 "Invalid Argument requestBody:requestBody is invalid", id="body-not-json"),
    pytest.param("apply", "[1, 2]", None,
                 "Invalid Argument requestBody:requestBody is invalid", id="body-an-array"),
    pytest.param("delete", {"certSn": 1}, None, "Invalid Argument action:action is invalid",
                 id="unknown-action"),
    pytest.param("apply", None, None, "Invalid Argument action:action is invalid",
                 id="apply-by-get"),
]


@pytest.mark.parametrize(("action", "body", "device", "msg"), SHAPE)
def test_malformed_requests_get_the_documented_99400(enos: Enos, action: str, body: Any,
                                                     device: dict[str, str] | None,
                                                     msg: str) -> None:
    reply = enos.sdk(action, body, no_device=device == {}, **(device or {}))
    code = 11404 if msg == NOT_FOUND else 99400
    fail(reply, code, msg)


def test_unknown_org_is_a_missing_device(enos: Enos) -> None:
    fail(enos.sdk("list", org="o-nobody"), 11404, NOT_FOUND)


@pytest.mark.parametrize(("query", "msg"), [
    pytest.param("action=list&assetId=assetA", "Invalid Argument orgId:orgId is missing",
                 id="org-missing"),
    pytest.param("action=list&orgId=&assetId=assetA", "Invalid Argument orgId:orgId is missing",
                 id="org-empty"),
    pytest.param(f"orgId={ORG}&assetId=assetA", "Invalid Argument action:action is missing",
                 id="action-missing"),
])
def test_query_errors(enos: Enos, query: str, msg: str) -> None:
    status, reply, headers = enos.raw("GET", f"{CERTS}?{query}",
                                      headers={"apim-accesstoken": enos.sdk_token()})
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    fail(reply, 99400, msg)


# -- CSRs that break the seed's rules -----------------------------------------------------------

def _raw_csr(key: Any, attrs: list[tuple[x509.ObjectIdentifier, str]]) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # these names are wrong on purpose
        name = x509.Name([x509.NameAttribute(oid, v, _validate=False) for oid, v in attrs])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return pki.csr_pem(csr)


FULL = [(NameOID.COUNTRY_NAME, "CN"), (NameOID.STATE_OR_PROVINCE_NAME, "Shanghai"),
        (NameOID.LOCALITY_NAME, "Shanghai"), (NameOID.ORGANIZATION_NAME, "EnOS"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "EnOS"), (NameOID.COMMON_NAME, "bad-csr")]


def _tampered() -> str:
    der = x509.load_pem_x509_csr(make_csr(rsa_key(), "tampered").encode()).public_bytes(
        serialization.Encoding.DER)
    broken = der[:-1] + bytes([der[-1] ^ 0x01])
    body = base64.encodebytes(broken).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


def _prefix(message: str, detail: str) -> str:
    return f"Invalid cert request!message: {message}, detail message: {detail}"


RSA_KEY = "The public key of the CSR does not match issueAuthority RSA"
ECC_KEY = "The public key of the CSR does not match issueAuthority ECC"
INCOMPLETE = "The subject of the CSR is incomplete"
BAD_SUBJECT = "The subject of the CSR is invalid"
SIG_ALG = "The signature algorithm of the CSR is not supported"

CSRS = [
    pytest.param(lambda: "not a csr", "RSA",
                 _prefix("The CSR cannot be parsed",
                         "csr must be a PEM encoded PKCS#10 certificate signing request"),
                 id="garbage"),
    pytest.param(lambda: make_csr(rsa_key(1024), "small"), "RSA",
                 _prefix(RSA_KEY, "a 2048-bit RSA key is required, the CSR has a 1024-bit RSA "
                                  "key"), id="rsa-1024"),
    pytest.param(lambda: make_csr(ec_key(), "ec-as-rsa"), "RSA",
                 _prefix(RSA_KEY, "a 2048-bit RSA key is required, the CSR has a 256-bit EC key "
                                  "on secp256r1"), id="ec-key-for-rsa"),
    pytest.param(lambda: make_csr(rsa_key(), "rsa-as-ec"), "ECC",
                 _prefix(ECC_KEY, "a 256-bit prime256v1 EC key is required, the CSR has a "
                                  "2048-bit RSA key"), id="rsa-key-for-ecc"),
    pytest.param(lambda: make_csr(ec_key("secp384r1"), "p384"), "ECC",
                 _prefix(ECC_KEY, "a 256-bit prime256v1 EC key is required, the CSR has a "
                                  "384-bit EC key on secp384r1"), id="p384-for-ecc"),
    pytest.param(lambda: make_csr(rsa_key(), "sha512", hashes.SHA512()), "RSA",
                 _prefix(SIG_ALG, "SHA256withRSA is required, the CSR is signed with "
                                  "SHA512withRSA"), id="sha512-with-rsa"),
    pytest.param(lambda: make_csr(ec_key(), "sha384", hashes.SHA384()), "ECC",
                 _prefix(SIG_ALG, "SHA256withECDSA is required, the CSR is signed with "
                                  "SHA384withECDSA"), id="sha384-with-ecdsa"),
    pytest.param(lambda: make_csr(rsa_key(), "no-ou", OU=None), "RSA",
                 _prefix(INCOMPLETE, "the subject needs C, ST, L, O, OU and CN; OU is missing"),
                 id="no-ou"),
    pytest.param(lambda: make_csr(ec_key(), "", C=None), "ECC",
                 _prefix(INCOMPLETE, "the subject needs C, ST, L, O, OU and CN; C is missing"),
                 id="no-c-no-cn"),
    pytest.param(lambda: _raw_csr(rsa_key(), [(NameOID.COUNTRY_NAME, "CHN"), *FULL[1:]]),
                 "RSA", _prefix(BAD_SUBJECT, "C must be a two-letter country code"),
                 id="country-three-letters"),
    pytest.param(lambda: _raw_csr(rsa_key(), [*FULL[:-1], (NameOID.COMMON_NAME, "x" * 65)]),
                 "RSA", _prefix(BAD_SUBJECT, "CN is longer than 64 characters"),
                 id="cn-65-characters"),
    pytest.param(_tampered, "RSA",
                 _prefix("The signature of the CSR is invalid",
                         "the CSR is not signed by the key it carries"), id="tampered-signature"),
]


@pytest.mark.parametrize(("make", "authority", "msg"), CSRS)
def test_bad_csrs_are_invalid_cert_requests(enos: Enos, make: Any, authority: str,
                                            msg: str) -> None:
    fail(enos.sdk("apply", {"csr": make(), "issueAuthority": authority}), 99400, msg)


def test_a_sha1_csr_from_the_openssl_cli_is_refused(enos: Enos, tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text(pki.key_pem(rsa_key()))
    csr = subprocess.run(
        ["openssl", "req", "-new", "-key", str(key), "-sha1", "-subj",
         "/C=CN/ST=Shanghai/L=Shanghai/O=EnOS/OU=EnOS/CN=sha1-device"],
        capture_output=True, text=True, check=True, timeout=30).stdout
    fail(enos.sdk("apply", {"csr": csr}), 99400,
         _prefix(SIG_ALG, "SHA256withRSA is required, the CSR is signed with SHA1withRSA"))
    # The same CLI with SHA-256 is what the seed asks for, and passes.
    good = subprocess.run(
        ["openssl", "req", "-new", "-key", str(key), "-sha256", "-subj",
         "/C=CN/ST=Shanghai/L=Shanghai/O=EnOS/OU=EnOS/CN=sha256-device"],
        capture_output=True, text=True, check=True, timeout=30).stdout
    assert enos.sdk("apply", {"csr": good})["code"] == 0


# -- errors that depend on what is already issued ---------------------------------------------

def _issue(enos: Enos, cn: str, key: Any = None, authority: str = "RSA", **extra: Any) -> str:
    key = key or (rsa_key() if authority == "RSA" else ec_key())
    reply = enos.sdk("apply", {"csr": make_csr(key, cn), "issueAuthority": authority},
                     **(extra or {"assetId": "assetA"}))
    assert reply["code"] == 0, reply
    return reply["data"]["certSN"]  # type: ignore[no-any-return]


def test_duplicate_subject_on_apply(enos: Enos) -> None:
    # assetB's bound certificate (from the scenario) has CN=bound-b.
    fail(enos.sdk("apply", {"csr": make_csr(rsa_key(), "bound-b")}), 99400,
         "Duplicate subject by certificate request!message: The subject of the CSR is already "
         "in use, detail message: CN=bound-b belongs to a certificate of another device")


def test_a_key_bound_to_another_device_is_11833_on_apply_and_renew(enos: Enos) -> None:
    b_key = ec_key("secp256r1", 1)  # the key of assetB's bound certificate
    fail(enos.sdk("apply", {"csr": make_csr(b_key, "mine-now"), "issueAuthority": "ECC"}),
         11833, BOUND_ELSEWHERE)
    sn = _issue(enos, "a-own")
    fail(enos.sdk("renew", {"certSn": sn, "csr": make_csr(b_key, "a-own"),
                            "issueAuthority": "ECC"}), 11833, BOUND_ELSEWHERE)
    fail(enos.sdk("renew", {"certSn": sn, "csr": make_csr(rsa_key(2048, 1), "bound-b")}),
         11833, BOUND_ELSEWHERE)


def test_of_two_clashing_certificates_the_first_issued_decides_the_error(enos: Enos) -> None:
    # assetB's bound certificate (key ec_key 1, CN bound-b) comes before this one of assetS.
    _issue(enos, "later-s", ec_key("secp256r1", 7), "ECC", assetId="assetS")
    fail(enos.sdk("apply", {"csr": make_csr(ec_key("secp256r1", 7), "bound-b"),
                            "issueAuthority": "ECC"}), 99400,
         "Duplicate subject by certificate request!message: The subject of the CSR is already "
         "in use, detail message: CN=bound-b belongs to a certificate of another device")
    fail(enos.sdk("apply", {"csr": make_csr(ec_key("secp256r1", 1), "later-s"),
                            "issueAuthority": "ECC"}), 11833, BOUND_ELSEWHERE)


def test_renew_of_another_devices_certificate_is_not_bound(enos: Enos) -> None:
    b_sn = enos.state()["certificates"][0]["cert_sn"]
    fail(enos.sdk("renew", {"certSn": b_sn}), 99400, NOT_BOUND)
    fail(enos.sdk("revoke", {"certSn": b_sn}), 99400,
         "Revoke cert is failed!message: The certificate is not bound to the device, detail "
         f"message: certSn {b_sn} is not in the certificate list of asset assetA")


def test_renew_of_a_revoked_certificate(enos: Enos) -> None:
    sn = _issue(enos, "revoked-one")
    assert enos.sdk("revoke", {"certSn": sn})["code"] == 0
    fail(enos.sdk("renew", {"certSn": sn}), 99400,
         "The original certificate has been revoked and cannot be updated.")
    fail(enos.sdk("revoke", {"certSn": sn}), 99400,
         "Revoke cert is failed!message: The certificate has already been revoked, detail "
         f"message: certSn {sn} was revoked before")


def test_renew_of_an_expired_certificate_judged_by_the_farm_clock(enos: Enos) -> None:
    reply = enos.sdk("apply", {"csr": make_csr(rsa_key(), "expiring"), "validDay": 1})
    sn = reply["data"]["certSN"]
    enos.advance(DAY - 60)
    assert enos.sdk("renew", {"certSn": sn, "validDay": 1})["code"] == 0  # still valid
    enos.advance(120)
    fail(enos.sdk("renew", {"certSn": sn}), 99400,
         "The original certificate has expired and cannot be updated.")


def test_renew_validday_over_the_product_maximum(enos: Enos) -> None:
    sn = _issue(enos, "short-one", assetId="assetS")
    fail(enos.sdk("renew", {"certSn": sn, "validDay": 366}, assetId="assetS"), 99400, OVER_MAX)


def test_default_validday_over_the_product_maximum_can_fail(start_enos) -> None:
    enos = start_enos(default_valid_day_over_max="fail")
    fail(enos.sdk("apply", {"csr": make_csr(rsa_key(), "s")}, assetId="assetS"), 99400, OVER_MAX)


def test_renew_without_csr_cannot_switch_authority(enos: Enos) -> None:
    sn = _issue(enos, "stay-rsa")
    fail(enos.sdk("renew", {"certSn": sn, "issueAuthority": "ECC"}), 99400,
         "Renew cert is failed!message: issueAuthority does not match the original "
         f"certificate, detail message: certificate {sn} was issued by the RSA CA; send a CSR "
         "to change it")


def test_an_expired_root_is_a_call_ca_error(start_enos) -> None:
    enos = start_enos(ca={"validDays": 10})
    ca_pem = enos.state()["ca"]["RSA"]
    end = x509.load_pem_x509_certificate(ca_pem.encode()).not_valid_after_utc
    enos.advance(11 * DAY)
    fail(enos.sdk("apply", {"csr": make_csr(rsa_key(), "late")}), 99400,
         "Call ca error!: Certificate service err info:, code: 40001, message: The root "
         f"certificate has expired, detail message: the RSA root CA expired at "
         f"{end.isoformat()}")


# -- injected failures ------------------------------------------------------------------------

@pytest.mark.parametrize(("service", "msg"), [
    pytest.param("certificate", "Internal error of certificate service.", id="certificate"),
    pytest.param("product", "Internal error of product service.", id="product"),
    pytest.param("iothub", "Internal error of IoT Hub service.", id="iothub"),
])
def test_the_next_calls_fail_with_99500_then_the_service_recovers(start_enos, service: str,
                                                                   msg: str) -> None:
    enos = start_enos(faults={"next_calls": 2, "service": service})
    fail(enos.sdk("list"), 99500, msg)
    fail(enos.sdk("apply", {"csr": make_csr(rsa_key(), "retry")}), 99500, msg)
    assert enos.state()["faults"]["remaining"] == 0
    assert enos.sdk("apply", {"csr": make_csr(rsa_key(), "retry")})["code"] == 0


def test_probability_one_fails_every_call_and_injection_at_run_time(start_enos,
                                                                    enos: Enos) -> None:
    always = start_enos(faults={"probability": 1.0})
    for _ in range(3):
        fail(always.sdk("list"), 99500, "Internal error of certificate service.")
    enos.inject_internal_errors(1)
    fail(enos.sdk("list"), 99500, "Internal error of certificate service.")
    assert enos.sdk("list")["code"] == 0


def test_certificate_service_failures_per_action(start_enos) -> None:
    enos = start_enos(faults={"next_calls": 4, "service": "ca"})
    unavailable = "message: The certificate service is unavailable, detail message: injected " \
                  "by the scenario"
    fail(enos.sdk("list"), 99400, f"Query cert is failed!{unavailable}")
    fail(enos.sdk("apply", {"csr": make_csr(rsa_key(), "x")}), 99400,
         f"Call ca error!: Certificate service err info:, code: 50000, {unavailable}")
    fail(enos.sdk("renew", {"certSn": 1}), 99400, f"Renew cert is failed!{unavailable}")
    fail(enos.sdk("revoke", {"certSn": 1}), 99400, f"Revoke cert is failed!{unavailable}")
    assert enos.sdk("list")["code"] == 0


def test_farm_vendor_error_faults_use_the_enos_forms(enos_farm, enos: Enos) -> None:
    """The control plane's ``vendor_error`` fault, matched on the EnOS action, answers in the
    envelope (a message of the table keeps its code) or in the token service's form."""
    try:
        enos_farm.add_fault(fault="vendor_error", member="enos", command="list",
                            message="Device cannot be found", times=1)
        fail(enos.sdk("list"), 11404, "Device cannot be found")
        assert enos.sdk("list")["code"] == 0  # times: 1
        enos_farm.add_fault(fault="vendor_error", member="enos", command="apply",
                            message="backend on fire", times=1)
        fail(enos.sdk("apply", {"csr": make_csr(rsa_key(), "f")}), 99500, "backend on fire")
        enos_farm.add_fault(fault="vendor_error", member="enos",
                            path="/apim-token-service/*", message="Internal service exception.",
                            times=1)
        reply = enos.token_call("get", enos.token_body())
        assert reply == {"status": 1005, "msg": "Internal service exception.",
                         "business": "apim-token-service"}
        assert enos_farm.journal(member="enos", event="fault")
    finally:
        enos_farm.clear_faults()

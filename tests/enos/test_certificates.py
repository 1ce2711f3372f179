"""Apply, renew, revoke and list through the enos-poseidon SDK; every certificate checked with
``cryptography`` against the ``caCert`` it came with."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import SignatureAlgorithmOID

from .clients import FIXTURES, Enos, ec_key, make_csr, rsa_key

DAY = 86400


def spki(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def check_issued(enos: Enos, data: dict, *, subject: x509.Name, public_key: object,
                 days: float, authority: str = "RSA") -> x509.Certificate:
    """What a client relies on: signed by caCert, the right key, subject and period."""
    assert set(data) == {"certChainURL", "caCert", "cert", "certSN", "issueAuthority"}
    assert data["issueAuthority"] == authority
    ca = x509.load_pem_x509_certificate(data["caCert"].encode())
    cert = x509.load_pem_x509_certificate(data["cert"].encode())
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.serial_number == int(data["certSN"])
    assert cert.subject == subject
    assert spki(cert.public_key()) == spki(public_key)
    now = dt.datetime.fromtimestamp(enos.now_ms() / 1000, dt.UTC)
    assert abs((cert.not_valid_before_utc - now).total_seconds()) < 5
    period = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert period == dt.timedelta(days=days)
    expected_sig = (SignatureAlgorithmOID.RSA_WITH_SHA256 if authority == "RSA"
                    else SignatureAlgorithmOID.ECDSA_WITH_SHA256)
    assert cert.signature_algorithm_oid == expected_sig
    # certChainURL is the emulator itself and serves the same root.
    assert data["certChainURL"] == f"{enos.url}/enos/CA/cacert/{authority}"
    with urllib.request.urlopen(data["certChainURL"], timeout=10) as resp:
        served = x509.load_pem_x509_certificate(resp.read())
    assert served == ca
    return cert


def test_apply_rsa_with_the_sdk_gives_a_certificate_signed_by_ca_cert(enos: Enos) -> None:
    key = rsa_key()
    reply = enos.sdk("apply", {"csr": make_csr(key, "dev-a-1"), "validDay": 220})
    assert reply["code"] == 0 and reply["msg"] == "OK"
    assert len(reply["requestId"]) == 36
    csr = x509.load_pem_x509_csr(make_csr(key, "dev-a-1").encode())
    check_issued(enos, reply["data"], subject=csr.subject, public_key=key.public_key(), days=220)


def test_apply_ecc_is_signed_by_the_ecc_root(enos: Enos) -> None:
    key = ec_key()
    reply = enos.sdk("apply", {"csr": make_csr(key, "dev-a-ecc"), "issueAuthority": "ECC"})
    assert reply["code"] == 0, reply
    csr = x509.load_pem_x509_csr(make_csr(key, "dev-a-ecc").encode())
    cert = check_issued(enos, reply["data"], subject=csr.subject, public_key=key.public_key(),
                        days=730, authority="ECC")
    ca = x509.load_pem_x509_certificate(reply["data"]["caCert"].encode())
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    rsa_root = enos.sdk("apply", {"csr": make_csr(rsa_key(), "dev-a-rsa")})["data"]["caCert"]
    assert rsa_root != reply["data"]["caCert"]
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)


def test_apply_by_product_key_and_device_key(enos: Enos) -> None:
    reply = enos.sdk("apply", {"csr": make_csr(rsa_key(), "by-keys")},
                     productKey="PBiDir01", deviceKey="devA")
    assert reply["code"] == 0, reply
    listed = enos.sdk("list")["data"]
    assert reply["data"]["certSN"] in [c["certSN"] for c in listed]


def test_the_seed_csr_is_accepted_byte_for_byte_and_the_reply_has_the_seed_shape(
        enos: Enos) -> None:
    seed_csr = (FIXTURES / "seed_renew_request.csr").read_text()
    seed_reply = json.loads((FIXTURES / "seed_renew_response.json").read_text())
    reply = enos.sdk("apply", {"csr": seed_csr, "validDay": 220, "issueAuthority": "RSA"})
    assert reply["code"] == 0, reply
    assert list(reply) == list(seed_reply)
    assert list(reply["data"]) == list(seed_reply["data"])
    # Like the seed: caCert without a final newline, cert with one, certSN a string.
    assert not reply["data"]["caCert"].endswith("\n")
    assert reply["data"]["cert"].endswith("-----END CERTIFICATE-----\n")
    assert isinstance(reply["data"]["certSN"], str)
    ours = x509.load_pem_x509_certificate(reply["data"]["cert"].encode())
    theirs = x509.load_pem_x509_certificate(seed_reply["data"]["cert"].encode())
    assert ours.subject == theirs.subject  # the seed cert was issued from this very CSR
    assert ([(e.oid, e.critical) for e in ours.extensions]
            == [(e.oid, e.critical) for e in theirs.extensions])
    assert ours.issuer.rfc4514_string() == theirs.issuer.rfc4514_string()
    ext = {e.oid.dotted_string: e.value for e in ours.extensions}
    assert ext["2.16.840.1.113730.1.13"].value.endswith(b"Enos Generated Certificate")
    assert ext["2.16.840.1.113730.1.4"].value.endswith(b"/enos/CA/crl/RSA")


def test_validday_defaults_to_730(enos: Enos) -> None:
    key = rsa_key()
    data = enos.sdk("apply", {"csr": make_csr(key, "default-days")})["data"]
    cert = x509.load_pem_x509_certificate(data["cert"].encode())
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=730)


def test_validday_at_the_product_maximum_is_used(enos: Enos) -> None:
    data = enos.sdk("apply", {"csr": make_csr(rsa_key(), "short-max"), "validDay": 365},
                    assetId="assetS")["data"]
    cert = x509.load_pem_x509_certificate(data["cert"].encode())
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=365)


@pytest.mark.parametrize(("rule", "expected_days"), [
    pytest.param("cap", 365, id="cap-to-product-max"),
    pytest.param("keep", 730, id="keep-730"),
])
def test_default_validday_above_the_product_maximum_follows_the_switch(
        start_enos, rule: str, expected_days: int) -> None:
    enos = start_enos(default_valid_day_over_max=rule)
    data = enos.sdk("apply", {"csr": make_csr(rsa_key(), "s")}, assetId="assetS")["data"]
    cert = x509.load_pem_x509_certificate(data["cert"].encode())
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(
        days=expected_days)


def test_validday_beyond_the_roots_remaining_validity_is_cut_to_it(start_enos) -> None:
    enos = start_enos(ca={"validDays": 100})  # roots made by the emulator, 100 days long
    data = enos.sdk("apply", {"csr": make_csr(rsa_key(), "cut"), "validDay": 730})["data"]
    ca = x509.load_pem_x509_certificate(data["caCert"].encode())
    cert = x509.load_pem_x509_certificate(data["cert"].encode())
    cert.verify_directly_issued_by(ca)
    assert cert.not_valid_after_utc == ca.not_valid_after_utc
    # ...and still later: 40 days on, what is left is 60 days.
    enos.advance(40 * DAY)
    data = enos.sdk("apply", {"csr": make_csr(rsa_key(2048, 1), "cut-2"),
                              "validDay": 90})["data"]
    cert = x509.load_pem_x509_certificate(data["cert"].encode())
    assert cert.not_valid_after_utc == ca.not_valid_after_utc


def test_renew_with_a_csr_issues_for_the_new_key(enos: Enos) -> None:
    old = enos.sdk("apply", {"csr": make_csr(rsa_key(), "renew-me")})["data"]
    new_key = rsa_key(2048, 1)
    reply = enos.sdk("renew", {"csr": make_csr(new_key, "renew-me"), "certSn": int(old["certSN"]),
                               "validDay": 220, "issueAuthority": "RSA"})
    assert reply["code"] == 0, reply
    data = reply["data"]
    assert int(data["certSN"]) > int(old["certSN"])
    csr = x509.load_pem_x509_csr(make_csr(new_key, "renew-me").encode())
    check_issued(enos, data, subject=csr.subject, public_key=new_key.public_key(), days=220)


def test_renew_without_a_csr_reissues_from_the_old_subject_and_key(enos: Enos) -> None:
    key = ec_key()
    old = enos.sdk("apply", {"csr": make_csr(key, "again"), "issueAuthority": "ECC",
                             "validDay": 30})["data"]
    enos.advance(10 * DAY)
    reply = enos.sdk("renew", {"certSn": int(old["certSN"]), "validDay": 100})
    assert reply["code"] == 0, reply
    old_cert = x509.load_pem_x509_certificate(old["cert"].encode())
    new = check_issued(enos, reply["data"], subject=old_cert.subject,
                       public_key=key.public_key(), days=100, authority="ECC")
    assert new.not_valid_before_utc - old_cert.not_valid_before_utc >= dt.timedelta(days=10)
    # The old certificate stays valid by default (renew_old_certificate: keep).
    statuses = {c["certSN"]: c["certStatus"] for c in enos.sdk("list")["data"]}
    assert statuses[old["certSN"]] == 0 and statuses[reply["data"]["certSN"]] == 0


def test_renew_of_the_scenario_bound_certificate_by_its_serial(enos: Enos) -> None:
    bound = enos.state()["certificates"][0]
    assert bound["asset_id"] == "assetB"
    reply = enos.sdk("renew", {"certSn": bound["cert_sn"]}, assetId="assetB")
    assert reply["code"] == 0, reply
    assert reply["data"]["issueAuthority"] == "ECC"


def test_renew_can_revoke_the_old_certificate_as_superseded(start_enos) -> None:
    enos = start_enos(renew_old_certificate="revoke")
    old = enos.sdk("apply", {"csr": make_csr(rsa_key(), "sup")})["data"]
    enos.sdk("renew", {"certSn": old["certSN"]})
    listed = {c["certSN"]: c for c in enos.sdk("list")["data"]}
    assert listed[old["certSN"]]["certStatus"] == 1
    assert listed[old["certSN"]]["revokerReason"] == 4


def test_revoke_then_list_shows_it_revoked_and_the_crl_names_it(enos: Enos) -> None:
    data = enos.sdk("apply", {"csr": make_csr(rsa_key(), "to-revoke")})["data"]
    reply = enos.sdk("revoke", {"certSn": int(data["certSN"]), "reason": 1})
    assert reply["code"] == 0 and reply["msg"] == "OK" and reply["data"] is None
    listed = {c["certSN"]: c for c in enos.sdk("list")["data"]}
    entry = listed[data["certSN"]]
    assert entry["certStatus"] == 1 and entry["revokerReason"] == 1
    with urllib.request.urlopen(f"{enos.url}/enos/CA/crl/RSA", timeout=10) as resp:
        crl = x509.load_der_x509_crl(resp.read())
    ca = x509.load_pem_x509_certificate(data["caCert"].encode())
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    revoked = crl.get_revoked_certificate_by_serial_number(int(data["certSN"]))
    assert revoked is not None
    assert revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.key_compromise)


def test_list_reports_every_field_and_status(enos: Enos) -> None:
    valid = enos.sdk("apply", {"csr": make_csr(rsa_key(), "l-valid")})["data"]
    short = enos.sdk("apply", {"csr": make_csr(ec_key(), "l-short"), "issueAuthority": "ECC",
                               "validDay": 1})["data"]
    gone = enos.sdk("apply", {"csr": make_csr(rsa_key(2048, 1), "l-gone")})["data"]
    enos.sdk("revoke", {"certSn": gone["certSN"]})
    enos.advance(2 * DAY)
    reply = enos.sdk("list")
    assert reply["code"] == 0
    listed = {c["certSN"]: c for c in reply["data"]}
    assert [c["certSN"] for c in reply["data"]] == sorted(listed, key=int)
    assert {k: listed[k]["certStatus"] for k in (valid["certSN"], short["certSN"],
                                                 gone["certSN"])} == {
        valid["certSN"]: 0, short["certSN"]: 2, gone["certSN"]: 1}
    entry = listed[valid["certSN"]]
    assert set(entry) == {"certSN", "cert", "certStatus", "issuer", "subject", "signDate",
                          "effetiveDate", "expireDate", "revoker", "revokerReason",
                          "isEnosCert", "issueAuthority"}
    cert = x509.load_pem_x509_certificate(entry["cert"].encode())
    assert entry["expireDate"] == int(cert.not_valid_after_utc.timestamp() * 1000)
    assert entry["effetiveDate"] == int(cert.not_valid_before_utc.timestamp() * 1000)
    assert entry["subject"] == "CN=l-valid, OU=EnOS, O=EnOS, L=Shanghai, ST=Shanghai, C=CN"
    assert entry["issuer"] == ("EMAILADDRESS=ca@eniot.io, CN=EnOS CA, OU=EnOS CA, O=EnOS, "
                               "L=Shanghai, ST=Shanghai, C=CN")
    assert entry["isEnosCert"] is True and entry["revoker"] is None
    # Other devices' certificates are not in this device's list.
    others = enos.sdk("list", assetId="assetB")["data"]
    assert valid["certSN"] not in {c["certSN"] for c in others}


def test_cert_sns_are_unique_integers_across_the_farm(enos: Enos) -> None:
    seen = {str(c["cert_sn"]) for c in enos.state()["certificates"]}
    for i in range(3):
        sn = enos.sdk("apply", {"csr": make_csr(rsa_key(2048, i), f"u{i}")})["data"]["certSN"]
        assert sn.isdigit() and sn not in seen
        seen.add(sn)
    enos.handle.reset()  # a reset does not hand the same numbers out again
    sn = enos.sdk("apply", {"csr": make_csr(rsa_key(), "after-reset")})["data"]["certSN"]
    assert sn not in seen


def test_scenario_bound_certificate_is_real_and_its_made_key_is_published(enos: Enos,
                                                                          start_enos) -> None:
    fresh = start_enos(certificates=[{"assetId": "assetA"}])
    state = fresh.state()
    [bound] = state["certificates"]
    cert = x509.load_pem_x509_certificate(bound["cert"].encode())
    root = x509.load_pem_x509_certificate(state["ca"]["RSA"].encode())
    cert.verify_directly_issued_by(root)
    from emulators import pki

    key = pki.load_key(state["device_keys"][str(bound["cert_sn"])])
    assert isinstance(key, rsa.RSAPrivateKey)
    assert pki.public_key_matches(cert, key)
    assert cert.subject.rfc4514_string() == "CN=devA,OU=EnOS,O=EnOS,L=Shanghai,ST=Shanghai,C=CN"
    # The same shape of record is listed through the SDK.
    assert [c["certSN"] for c in fresh.sdk("list")["data"]] == [str(bound["cert_sn"])]


def test_state_survives_a_restart(start_enos, tmp_path) -> None:
    first = start_enos(state_dir=tmp_path)
    data = first.sdk("apply", {"csr": make_csr(rsa_key(), "persist")})["data"]
    first.sdk("revoke", {"certSn": data["certSN"]})
    root_before = first.state()["ca"]["RSA"]
    first.handle._farm.stop()
    second = start_enos(state_dir=tmp_path)
    assert second.state()["ca"]["RSA"] == root_before
    listed = {c["certSN"]: c["certStatus"] for c in second.sdk("list")["data"]}
    assert listed[data["certSN"]] == 1
    new_sn = second.sdk("apply", {"csr": make_csr(rsa_key(2048, 1), "p2")})["data"]["certSN"]
    assert int(new_sn) > int(data["certSN"])


def test_cert_sns_are_unique_across_the_members_of_a_farm(farm_factory, roots) -> None:
    from .clients import base_options

    farm = farm_factory({"name": "two-enos", "emulators": [
        {"name": "enos", "kind": "enos", "count": 2, "fleet": "ports", **base_options(roots)}]},
        control=False)
    first, second = (Enos(h) for h in farm.group("enos"))
    sns = [c["cert_sn"] for e in (first, second) for c in e.state()["certificates"]]
    for i, enos in enumerate((first, second, first, second)):
        data = enos.sdk("apply", {"csr": make_csr(rsa_key(2048, i % 2), f"fleet-{i}")})["data"]
        sns.append(int(data["certSN"]))
    assert len(set(sns)) == len(sns)


def test_the_seeds_renew_sample_round_trips(start_enos) -> None:
    """The seed's request body, byte for byte, renews certificate 52770 into "52771"."""
    seed_csr = (FIXTURES / "seed_renew_request.csr").read_text()
    seed_body = (FIXTURES / "seed_renew_request.json").read_text()
    seed_reply = json.loads((FIXTURES / "seed_renew_response.json").read_text())
    enos = start_enos(certificates=[{"assetId": "assetA", "csr": seed_csr}])
    assert [c["cert_sn"] for c in enos.state()["certificates"]] == [52770]
    reply = enos.sdk("renew", seed_body)  # a str body goes out exactly as written
    assert reply["code"] == 0 and reply["msg"] == "OK", reply
    assert reply["data"]["certSN"] == seed_reply["data"]["certSN"] == "52771"
    assert reply["data"]["issueAuthority"] == "RSA"
    cert = x509.load_pem_x509_certificate(reply["data"]["cert"].encode())
    seed_cert = x509.load_pem_x509_certificate(seed_reply["data"]["cert"].encode())
    assert cert.serial_number == seed_cert.serial_number == 52771
    assert cert.subject == seed_cert.subject
    # The seed's certificate is 220 days long, like the one renewed here.
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc
            == seed_cert.not_valid_after_utc - seed_cert.not_valid_before_utc
            == dt.timedelta(days=220))
    csr = x509.load_pem_x509_csr(seed_csr.encode())
    assert spki(cert.public_key()) == spki(csr.public_key())

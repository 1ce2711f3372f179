"""The models without HTTP: names as the platform prints them, ids, and hostile content."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulators import pki
from emulators.iotda.exceptions import InvalidCertificate, IotdaError
from emulators.iotda.models import DeviceCAs, ServerCertificates
from emulators.iotda.models.common import distinguished_name, new_id

from .clients import CA


@pytest.mark.parametrize(("attrs", "printed"), [
    pytest.param([("C", "CN"), ("O", "Huawei"), ("CN", "Huawei Cloud Core Network Product CA")],
                 "CN=Huawei Cloud Core Network Product CA, O=Huawei, C=CN", id="seed-004-issuer"),
    pytest.param([("CN", "a, b"), ("OU", "x+y")], 'OU="x+y", CN="a, b"', id="quoted-specials"),
    pytest.param([("CN", 'say "hi"')], 'CN="say \\"hi\\""', id="quoted-quote"),
    pytest.param([("emailAddress", "ops@example.com"), ("CN", "dev")],
                 "CN=dev, EMAILADDRESS=ops@example.com", id="email-keyword"),
])
def test_names_print_like_java_x500principal(attrs: list[tuple[str, str]],
                                             printed: str) -> None:
    name = x509.Name([x509.NameAttribute(pki.NAME_FIELDS[k], v) for k, v in attrs])
    assert distinguished_name(name) == printed


def test_unknown_attribute_prints_as_oid() -> None:
    name = x509.Name([x509.NameAttribute(NameOID.PSEUDONYM, "p")])
    assert distinguished_name(name) == "OID.2.5.4.65=p"


def test_ids_always_grow_even_when_the_clock_goes_back() -> None:
    first = new_id(None, 2_000_000_000)
    second = new_id(first, 1_000_000_000)
    third = new_id(second, 2_000_000_001)
    assert first < second < third
    assert all(len(i) == 24 for i in (first, second, third))


def test_ca_without_armour_must_be_base64_der() -> None:
    cas = DeviceCAs(quota=5, code_ttl_days=7, default_app_id="default",
                    update_resets_verification=True)
    der = CA().cert.public_bytes(serialization.Encoding.DER)
    record = cas.add("p", {"content": base64.encodebytes(der).decode()}, 0.0)  # with newlines
    assert record.cn_name == "Device Root CA"
    with pytest.raises(InvalidCertificate):
        cas.add("p", {"content": base64.b64encode(der[:-10]).decode()}, 0.0)


@settings(max_examples=80, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(content=st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()),
    st.binary(max_size=300).map(
        lambda b: "-----BEGIN CERTIFICATE-----\n" + base64.b64encode(b).decode()
        + "\n-----END CERTIFICATE-----"),
    st.sampled_from([None, 5, [], {}, True]),
))
def test_hostile_ca_content_only_raises_table_errors(content: Any) -> None:
    cas = DeviceCAs(quota=5, code_ttl_days=7, default_app_id="default",
                    update_resets_verification=True)
    with pytest.raises(IotdaError):
        cas.add("p", {"content": content}, 0.0)


@settings(max_examples=60, deadline=None, database=None)
@given(cert=st.one_of(st.text(max_size=200), st.integers()),
       key=st.one_of(st.text(max_size=200), st.none()),
       password=st.one_of(st.text(max_size=70), st.none(), st.integers()))
def test_hostile_server_certificate_fields_only_raise_table_errors(
        cert: Any, key: Any, password: Any) -> None:
    store = ServerCertificates(quota=2)
    with pytest.raises(IotdaError):
        store.create("p", {"certificate_pem": cert, "private_key": key,
                           "private_key_password": password}, 0.0)

"""Fixtures for the ACTi camera tests: a camera on free ports, and real certificates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography import x509

from emulators import pki
from emulators.testing import MemberHandle


@dataclass(frozen=True)
class TestCA:
    cert: x509.Certificate
    key: pki.PrivateKey

    @property
    def pem(self) -> str:
        return pki.cert_pem(self.cert)

    def sign_csr(self, csr_pem: str, days: int = 30) -> str:
        csr = pki.load_csr(csr_pem)
        cert = pki.issue(csr.public_key(), csr.subject, self.cert, self.key, days=days,
                         dns_names=("camera.test",), ip_addresses=("127.0.0.1",), server=True)
        return pki.cert_pem(cert)


@dataclass(frozen=True)
class SelfSigned:
    cert_pem: str
    key_pem: str

    @property
    def combined(self) -> bytes:
        """certSrv.pem with its key inside, as a user uploads a self-signed certificate."""
        return (self.cert_pem + self.key_pem).encode()


@pytest.fixture(scope="session")
def test_ca() -> TestCA:
    key = pki.ec_key()
    return TestCA(pki.make_ca(pki.name(CN="ACTi Test CA", O="tests"), key), key)


def _self_signed(cn: str) -> SelfSigned:
    key = pki.ec_key()
    cert = pki.issue(key.public_key(), pki.name(CN=cn), None, key,
                     dns_names=("camera.test",), ip_addresses=("127.0.0.1",), server=True)
    return SelfSigned(pki.cert_pem(cert), pki.key_pem(key))


@pytest.fixture(scope="session")
def self_signed() -> SelfSigned:
    return _self_signed("camera.test")


@pytest.fixture(scope="session")
def other_self_signed() -> SelfSigned:
    return _self_signed("other-camera.test")


@pytest.fixture
def camera(emulator_factory: Callable[..., MemberHandle]) -> MemberHandle:
    """A camera with the default options: PlatformT A1D-310-V4.10, admin / 123456."""
    return emulator_factory("acti-camera")

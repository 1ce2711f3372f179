"""Certificates for the ACTi camera tests: a test CA that signs the camera's CSRs, and
self-signed pairs as a user uploads them."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from emulators import pki


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


def make_self_signed(cn: str) -> SelfSigned:
    key = pki.ec_key()
    cert = pki.issue(key.public_key(), pki.name(CN=cn), None, key,
                     dns_names=("camera.test",), ip_addresses=("127.0.0.1",), server=True)
    return SelfSigned(pki.cert_pem(cert), pki.key_pem(key))

"""Server certificates (seed 004): the TLS identity an application server gives the platform.

A certificate is accepted only with the private key that matches it (opened with its
password when encrypted); the reply's fields are read from the certificate itself.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from ... import pki
from ..exceptions import InvalidCertificate
from .common import (
    IdSource,
    PageQuery,
    common_name,
    distinguished_name,
    iotda_date,
    load_certificate,
    text_field,
)
from .records import ProjectRecords

MAX_PEM_CHARS = 65_535
MAX_KEY_CHARS = 10_240
PASSWORD = re.compile(r"[A-Za-z]{1,64}")


@dataclass(frozen=True)
class ServerCertificate:
    server_certificate_id: str
    project_id: str
    common_name: str
    effective_date: str
    expiry_date: str
    certificate_owner: str
    certificate_issuer: str
    certificate_pem: str
    # The key is kept (encrypted as given) so that a restored farm could serve TLS with it.
    private_key: str
    private_key_password: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "server_certificate_id": self.server_certificate_id,
            "common_name": self.common_name,
            "effective_date": self.effective_date,
            "expiry_date": self.expiry_date,
            "certificate_owner": self.certificate_owner,
            "certificate_issuer": self.certificate_issuer,
        }

    def detail(self) -> dict[str, Any]:
        doc = self.summary()
        doc["certificate_pem"] = self.certificate_pem
        return doc

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_key(cert_pem: str, key_pem: str, password: str | None) -> None:
    cert, _ = load_certificate(cert_pem, allow_der=False)
    data = key_pem.encode()
    try:
        key = serialization.load_pem_private_key(data, password=password.encode()
                                                 if password else None)
    except TypeError as exc:
        if password and "not encrypted" in str(exc):
            # A password for a clear key is ignored (chosen): it opens nothing.
            key = serialization.load_pem_private_key(data, password=None)
        else:
            raise InvalidCertificate(f"private key needs a password: {exc}") from None
    except (ValueError, UnsupportedAlgorithm) as exc:  # not a key, or the password is wrong
        raise InvalidCertificate(f"private key does not load: {exc}") from None
    try:
        matches = isinstance(key, pki.PrivateKey) and pki.public_key_matches(cert, key)
    except (ValueError, UnsupportedAlgorithm) as exc:  # a public key cryptography cannot read
        raise InvalidCertificate(f"certificate key unreadable: {exc}") from None
    if not matches:
        raise InvalidCertificate("private key does not match the certificate")


@dataclass(frozen=True)
class CheckedIdentity:
    """A create request that passed every rule but the quota."""

    cert: x509.Certificate
    certificate_pem: str
    private_key: str
    password: str | None


class ServerCertificates(ProjectRecords[ServerCertificate]):
    """The server certificates of every project, with the per-project quota."""

    def __init__(self, quota: int, owner_from: str = "subject",
                 ids: IdSource | None = None) -> None:
        super().__init__(ServerCertificate, id_name="server_certificate_id",
                         kind="server certificates", quota=quota, ids=ids)
        # Seed 004's example reply shows the issuer's name as certificate_owner; a switch.
        self.owner_from = owner_from

    @staticmethod
    def check(body: dict[str, Any]) -> CheckedIdentity:
        """Validate a create request; pure and possibly slow (an encrypted key's KDF), so the
        handler runs it in an executor before ``add`` touches the store on the loop."""
        cert_pem = text_field(body, "certificate_pem", required=True, max_len=MAX_PEM_CHARS)
        key_pem = text_field(body, "private_key", required=True, max_len=MAX_KEY_CHARS)
        password = text_field(body, "private_key_password", required=False, max_len=64,
                              pattern=PASSWORD)
        assert cert_pem is not None
        assert key_pem is not None
        cert, _ = load_certificate(cert_pem, allow_der=False)
        _check_key(cert_pem, key_pem, password)
        return CheckedIdentity(cert, cert_pem, key_pem, password)

    def add(self, project_id: str, checked: CheckedIdentity, now: float) -> ServerCertificate:
        self.make_room(project_id)
        cert = checked.cert
        record = ServerCertificate(
            server_certificate_id=self.ids.next(now),
            project_id=project_id,
            common_name=common_name(cert.subject),
            effective_date=iotda_date(cert.not_valid_before_utc),
            expiry_date=iotda_date(cert.not_valid_after_utc),
            certificate_owner=distinguished_name(
                cert.issuer if self.owner_from == "issuer" else cert.subject),
            certificate_issuer=distinguished_name(cert.issuer),
            certificate_pem=checked.certificate_pem,
            private_key=checked.private_key,
            private_key_password=checked.password,
        )
        self.records[record.server_certificate_id] = record
        return record

    def create(self, project_id: str, body: dict[str, Any], now: float) -> ServerCertificate:
        return self.add(project_id, self.check(body), now)

    def list(self, project_id: str, page: PageQuery) -> tuple[list[ServerCertificate],
                                                                dict[str, Any]]:
        return self.page(self.of(project_id), page)

"""Device CA certificates (seed 003): upload, proof of possession with a verification code.

A CA is usable once verified: the owner signs a certificate whose Common Name is the CA's
current verification code with the CA's key, and uploads it. Codes live 7 days on the farm
clock; generating a new one replaces the old.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from ... import pki
from ..exceptions import (
    CertificateNotFound,
    InvalidCertificate,
    InvalidInput,
    VerifyCodeFailed,
)
from .common import (
    APP_ID,
    IdSource,
    PageQuery,
    bool_field,
    common_name,
    distinguished_name,
    iotda_date,
    load_certificate,
    text_field,
)
from .records import ProjectRecords

MAX_CONTENT_CHARS = 65_535
MAX_CA_BYTES = 1024 * 1024  # seed 003: "the file size cannot exceed 1M"
TEMPLATE_ID = re.compile(r"[A-Za-z0-9_-]{1,36}")
DAY = 86_400.0


@dataclass(frozen=True)
class DeviceCA:
    certificate_id: str
    project_id: str
    app_id: str
    content: str
    cn_name: str
    owner: str
    status: bool
    verify_code: str
    verify_code_created: float  # farm time the current code was made
    provision_enable: bool
    template_id: str | None
    ocsp_enable: bool
    ocsp_server_ca_id: str | None
    ocsp_ssl_enable: bool
    create_date: str
    effective_date: str
    expiry_date: str

    def summary(self) -> dict[str, Any]:
        return {
            "certificate_id": self.certificate_id,
            "cn_name": self.cn_name,
            "owner": self.owner,
            "status": self.status,
            "verify_code": self.verify_code,
            "provision_enable": self.provision_enable,
            "template_id": self.template_id,
            "ocsp_enable": self.ocsp_enable,
            "ocsp_server_ca_id": self.ocsp_server_ca_id,
            "ocsp_ssl_enable": self.ocsp_ssl_enable,
            "create_date": self.create_date,
            "effective_date": self.effective_date,
            "expiry_date": self.expiry_date,
        }

    def detail(self) -> dict[str, Any]:
        # ShowCertificateResponse adds ``name`` and ``content``; the name is the CA's CN (chosen).
        return {"certificate_id": self.certificate_id, "name": self.cn_name,
                **{k: v for k, v in self.summary().items() if k != "certificate_id"},
                "content": self.content}

    def to_dict(self) -> dict[str, Any]:
        # Every field is a str, float, bool or None, so a shallow copy equals asdict's deep
        # one; every save dumps all the CAs, and asdict's recursion was most of add/verify.
        return dict(vars(self))


def new_verify_code() -> str:
    return secrets.token_hex(16)


def check_ca(cert: x509.Certificate) -> None:
    """Seed 003's requirements of a device CA: v3, AKI, SKI and Basic Constraints (a CA)."""
    if cert.version != x509.Version.v3:
        raise InvalidCertificate("not an X.509 version 3 certificate")
    for ext_type in (x509.AuthorityKeyIdentifier, x509.SubjectKeyIdentifier):
        try:
            cert.extensions.get_extension_for_class(ext_type)
        except x509.ExtensionNotFound:
            raise InvalidCertificate(f"no {ext_type.__name__} extension") from None
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise InvalidCertificate("no BasicConstraints extension") from None
    if not constraints.ca:
        raise InvalidCertificate("BasicConstraints says this is not a CA")


class DeviceCAs(ProjectRecords[DeviceCA]):
    """The device CA certificates of every project, with the per-project quota."""

    def __init__(self, *, quota: int, code_ttl_days: float, default_app_id: str,
                 update_resets_verification: bool, ids: IdSource | None = None) -> None:
        super().__init__(DeviceCA, id_name="certificate_id", kind="device CAs", quota=quota,
                         ids=ids)
        self.code_ttl = code_ttl_days * DAY
        self.default_app_id = default_app_id
        self.update_resets_verification = update_resets_verification

    def add(self, project_id: str, body: dict[str, Any], now: float) -> DeviceCA:
        content = text_field(body, "content", required=True, max_len=MAX_CONTENT_CHARS)
        app_id = text_field(body, "app_id", required=False, max_len=36, pattern=APP_ID)
        assert content is not None
        cert, _ = load_certificate(content, allow_der=True, max_bytes=MAX_CA_BYTES)
        check_ca(cert)
        self.make_room(project_id)
        record = DeviceCA(
            certificate_id=self.ids.next(now), project_id=project_id,
            app_id=app_id or self.default_app_id, content=content,
            cn_name=common_name(cert.subject), owner=distinguished_name(cert.subject),
            status=False, verify_code=new_verify_code(), verify_code_created=now,
            provision_enable=False, template_id=None, ocsp_enable=False,
            ocsp_server_ca_id=None, ocsp_ssl_enable=False,
            create_date=iotda_date(datetime.fromtimestamp(now, UTC)),
            effective_date=iotda_date(cert.not_valid_before_utc),
            expiry_date=iotda_date(cert.not_valid_after_utc),
        )
        self.records[record.certificate_id] = record
        return record

    def list(self, project_id: str, app_id: str | None, page: PageQuery
             ) -> tuple[list[DeviceCA], dict[str, Any]]:
        if app_id is not None and not APP_ID.fullmatch(app_id):
            raise InvalidInput(f"app_id {app_id!r}")
        return self.page([r for r in self.of(project_id) if app_id is None
                          or r.app_id == app_id], page)

    def update(self, project_id: str, cert_id: str, body: dict[str, Any]) -> DeviceCA:
        record = self.get(project_id, cert_id)
        changes: dict[str, Any] = {}
        for field in ("provision_enable", "ocsp_enable", "ocsp_ssl_enable"):
            value = bool_field(body, field)
            if value is not None:
                changes[field] = value
        for field in ("template_id", "ocsp_server_ca_id"):
            text = text_field(body, field, required=False, max_len=36, pattern=TEMPLATE_ID)
            if text is not None:
                changes[field] = text
        updated = replace(record, **changes)
        # The API reference: self-registration needs a template, OCSP over SSL needs its CA.
        if updated.provision_enable and not updated.template_id:
            raise InvalidInput("provision_enable without template_id")
        if updated.ocsp_ssl_enable and not updated.ocsp_server_ca_id:
            raise InvalidInput("ocsp_ssl_enable without ocsp_server_ca_id")
        if self.update_resets_verification:
            updated = replace(updated, status=False)
        self.records[cert_id] = updated
        return updated

    def renew_code(self, project_id: str | None, cert_id: str, now: float) -> DeviceCA:
        """The console's "Generate Verification Code": a fresh code, the old one void."""
        record = self.records.get(cert_id)
        if record is None or (project_id is not None and record.project_id != project_id):
            raise CertificateNotFound(cert_id)
        updated = replace(record, verify_code=new_verify_code(), verify_code_created=now)
        self.records[cert_id] = updated
        return updated

    def code_valid(self, record: DeviceCA, now: float) -> bool:
        return now - record.verify_code_created <= self.code_ttl

    def verify(self, project_id: str, cert_id: str, body: dict[str, Any], now: float
               ) -> DeviceCA:
        record = self.get(project_id, cert_id)
        content = text_field(body, "verify_content", required=True, max_len=MAX_CONTENT_CHARS)
        assert content is not None
        proof, _ = load_certificate(content, allow_der=True, max_bytes=MAX_CA_BYTES)
        ca, _ = load_certificate(record.content, allow_der=True)
        if not self.code_valid(record, now):
            raise VerifyCodeFailed("the verification code has expired")
        if common_name(proof.subject) != record.verify_code:
            raise VerifyCodeFailed("the Common Name is not the verification code")
        if not pki.verify_signed_by(proof, ca):
            raise VerifyCodeFailed("not signed by this CA's key")
        updated = replace(record, status=True)
        self.records[cert_id] = updated
        return updated

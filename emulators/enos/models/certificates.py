"""Device certificates and the Connection Service's rules for apply, renew, revoke and list.

"What does the renew rule say about validDay" is ``CertificateService.validity``; the CSR
rules are ``check_csr``. Times are passed in (the farm clock), never read here. Signatures
are made off the loop (``Signer``); ``Claims`` keeps concurrent calls answering as if they
came one after another.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import warnings
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from ... import pki
from ...core.state import EncodedRecords
from ..exceptions import (
    CallCaError,
    CertificateBoundElsewhere,
    CertificateNotBound,
    DuplicateSubject,
    InvalidCallParameters,
    InvalidCertRequest,
    OriginalExpired,
    OriginalRevoked,
    RenewFailed,
    RevokeFailed,
    SerialNegative,
    SerialRequired,
    ValidityExceedsProductMax,
)
from .ca import REVOKE_REASONS, Authority, RootCA, Signer, authority_of_key, java_name
from .registry import Device, Product, Registry

DEFAULT_VALID_DAY = 730
SUBJECT_FIELDS = (("C", NameOID.COUNTRY_NAME), ("ST", NameOID.STATE_OR_PROVINCE_NAME),
                  ("L", NameOID.LOCALITY_NAME), ("O", NameOID.ORGANIZATION_NAME),
                  ("OU", NameOID.ORGANIZATIONAL_UNIT_NAME), ("CN", NameOID.COMMON_NAME))
MAX_FIELD = 64

# certStatus in the list reply.
VALID, REVOKED, EXPIRED = 0, 1, 2


def _ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def _from_ms(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def key_id(public_key: Any) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


# Who a certificate is bound to: (assetId, orgId).
Owner = tuple[str, str]


def owner_of(device: Device) -> Owner:
    return (device.asset_id, device.org_id)


@dataclass
class CertRecord:
    """One issued certificate and the device it is bound to."""

    cert_sn: int
    org_id: str
    asset_id: str
    cert: str  # PEM
    issue_authority: Authority
    sign_date: int  # epoch ms, when it was issued
    not_before: int
    not_after: int
    subject: str
    issuer: str
    cn: str
    key_id: str
    revoked: bool = False
    revoked_at: int | None = None
    revoker: str | None = None
    revoke_reason: int | None = None
    renewed_from: int | None = None

    @property
    def owner(self) -> Owner:
        return (self.asset_id, self.org_id)

    def status(self, now: dt.datetime) -> int:
        if self.revoked:
            return REVOKED
        return EXPIRED if self.not_after <= _ms(now) else VALID

    def live(self, now: dt.datetime) -> bool:
        return self.status(now) == VALID

    def x509(self) -> x509.Certificate:
        return pki.load_cert(self.cert)

    def to_dict(self) -> dict[str, Any]:
        # Every field is a str, int, bool or None, so a shallow copy equals asdict's deep one;
        # the whole book is dumped at each save, and asdict's recursion dominated apply.
        return dict(vars(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CertRecord:
        return cls(**data)


class CertificateBook:
    """Every certificate issued, by certSN. Indexes by device, and of the live (not revoked)
    certificates by key and by CN, answer the list and the duplicate checks without walking
    the whole book; so a record changes only through ``add`` and ``mark_revoked``. Every save
    writes the whole book: ``encoded`` keeps it as the state file has it."""

    def __init__(self) -> None:
        self.records: dict[int, CertRecord] = {}
        self._by_owner: dict[Owner, dict[int, CertRecord]] = {}
        # key id (or CN) -> owner -> certSNs of that owner's live certificates with it
        self._live_by_key: dict[str, dict[Owner, set[int]]] = {}
        self._live_by_cn: dict[str, dict[Owner, set[int]]] = {}
        self.encoded = EncodedRecords()
        self.generation = 0  # counts clear(): an issue that began before a reset is not added

    def add(self, record: CertRecord) -> None:
        if record.cert_sn in self.records:
            old = self.records[record.cert_sn]
            self._by_owner[old.owner].pop(old.cert_sn)
            self._drop_live(old)
            self.encoded.drop(old.cert_sn)
        self.records[record.cert_sn] = record
        self._by_owner.setdefault(record.owner, {})[record.cert_sn] = record
        if not record.revoked:
            for index, value in ((self._live_by_key, record.key_id),
                                 (self._live_by_cn, record.cn)):
                index.setdefault(value, {}).setdefault(record.owner, set()).add(record.cert_sn)
        self.encoded.put(record.cert_sn, record)

    def _drop_live(self, record: CertRecord) -> None:
        for index, value in ((self._live_by_key, record.key_id), (self._live_by_cn, record.cn)):
            holders = index.get(value, {})
            serials = holders.get(record.owner)
            if serials is not None:
                serials.discard(record.cert_sn)
                if not serials:
                    del holders[record.owner]
                    if not holders:
                        del index[value]

    def mark_revoked(self, record: CertRecord, at: int, reason: int,
                     revoker: str | None) -> None:
        record.revoked = True
        record.revoked_at = at
        record.revoke_reason = reason
        record.revoker = revoker
        self._drop_live(record)
        self.encoded.put(record.cert_sn, record)

    def clear(self) -> None:
        self.records.clear()
        self._by_owner.clear()
        self._live_by_key.clear()
        self._live_by_cn.clear()
        self.encoded.clear()
        self.generation += 1

    def get(self, cert_sn: int) -> CertRecord | None:
        return self.records.get(cert_sn)

    def bound_to(self, device: Device) -> list[CertRecord]:
        return sorted(self._by_owner.get(owner_of(device), {}).values(),
                      key=lambda r: r.cert_sn)

    def first_taken(self, device: Device, key_id: str,
                    cn: str) -> tuple[CertRecord | None, CertRecord | None]:
        """Another device's first (lowest certSN) live certificate with this key, and with
        this CN."""
        owner = owner_of(device)
        found = []
        for index, value in ((self._live_by_key, key_id), (self._live_by_cn, cn)):
            serials = [min(sns) for holder, sns in index.get(value, {}).items()
                       if holder != owner]
            found.append(self.records[min(serials)] if serials else None)
        return found[0], found[1]

    def to_list(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in sorted(self.records.values(), key=lambda r: r.cert_sn)]


# -- CSR rules -------------------------------------------------------------------------------

def _describe_key(key: Any) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"a {key.key_size}-bit RSA key"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"a {key.curve.key_size}-bit EC key on {key.curve.name}"
    return f"a {type(key).__name__.lstrip('_')}"


def _java_signature(csr: x509.CertificateSigningRequest, key: Any) -> str:
    try:
        digest = csr.signature_hash_algorithm
    except Exception:  # noqa: BLE001 - unsupported algorithms raise their own types
        digest = None
    family = ("RSA" if isinstance(key, rsa.RSAPublicKey)
              else "ECDSA" if isinstance(key, ec.EllipticCurvePublicKey) else None)
    if digest is None or family is None:
        return csr.signature_algorithm_oid.dotted_string
    return f"{digest.name.upper().replace('-', '')}with{family}"


def load_csr(csr_pem: str) -> x509.CertificateSigningRequest:
    try:
        return pki.load_csr(csr_pem)
    except (pki.PkiError, ValueError):
        raise InvalidCertRequest(
            "The CSR cannot be parsed",
            "csr must be a PEM encoded PKCS#10 certificate signing request") from None


@dataclass(frozen=True)
class CertRequest:
    """What a certificate is issued for, read once per call: the public key and subject, and
    what the duplicate checks compare (parsing a subject builds Python objects each time)."""

    public_key: Any
    subject: x509.Name
    key_id: str
    cn: str

    @classmethod
    def of(cls, public_key: Any, subject: x509.Name) -> CertRequest:
        return cls(public_key, subject, key_id(public_key), common_name(subject))

    def claims(self) -> tuple[Hashable, ...]:
        """What the duplicate checks of other calls must not read while this is issued."""
        return (("key", self.key_id), ("cn", self.cn))


def check_csr(csr_pem: str, authority: Authority) -> CertRequest:
    """The seed's rules: RSA 2048 + SHA256withRSA, or P-256 + SHA256withECDSA; a full subject."""
    csr = load_csr(csr_pem)
    try:
        key = csr.public_key()
    except (ValueError, TypeError):
        raise InvalidCertRequest("The public key of the CSR is not supported",
                                 "the key algorithm is unknown") from None
    if authority == "RSA":
        if not (isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048):
            raise InvalidCertRequest("The public key of the CSR does not match issueAuthority RSA",
                                     f"a 2048-bit RSA key is required, the CSR has "
                                     f"{_describe_key(key)}")
        wanted = "SHA256withRSA"
    else:
        if not (isinstance(key, ec.EllipticCurvePublicKey)
                and isinstance(key.curve, ec.SECP256R1)):
            raise InvalidCertRequest("The public key of the CSR does not match issueAuthority ECC",
                                     f"a 256-bit prime256v1 EC key is required, the CSR has "
                                     f"{_describe_key(key)}")
        wanted = "SHA256withECDSA"
    used = _java_signature(csr, key)
    if used != wanted:
        raise InvalidCertRequest("The signature algorithm of the CSR is not supported",
                                 f"{wanted} is required, the CSR is signed with {used}")
    if not csr.is_signature_valid:
        raise InvalidCertRequest("The signature of the CSR is invalid",
                                 "the CSR is not signed by the key it carries")
    with warnings.catch_warnings():
        # A subject with out-of-range lengths is what is being checked, not a reason to warn.
        warnings.simplefilter("ignore")
        subject = csr.subject
        _check_subject(subject)
    return CertRequest.of(key, subject)


def _check_subject(subject: x509.Name) -> None:
    first: dict[x509.ObjectIdentifier, str] = {}
    for attribute in subject:  # one pass: get_attributes_for_oid walks the name per field
        first.setdefault(attribute.oid, str(attribute.value))
    for label, oid in SUBJECT_FIELDS:
        value = first.get(oid)
        if value is None or not value.strip():
            raise InvalidCertRequest("The subject of the CSR is incomplete",
                                     f"the subject needs C, ST, L, O, OU and CN; {label} is "
                                     f"missing")
        if len(value) > MAX_FIELD:
            raise InvalidCertRequest("The subject of the CSR is invalid",
                                     f"{label} is longer than {MAX_FIELD} characters")
        if label == "C" and not (len(value) == 2 and value.isalpha()):
            raise InvalidCertRequest("The subject of the CSR is invalid",
                                     "C must be a two-letter country code")


# -- the service -------------------------------------------------------------------------------

DefaultOverMax = Literal["cap", "fail", "keep"]
RenewOld = Literal["keep", "revoke"]


@dataclass
class Rules:
    """The switches where the sources are silent (see README.md)."""

    default_over_max: DefaultOverMax = "cap"
    renew_old: RenewOld = "keep"


class Claims:
    """What calls issuing a certificate hold until it is in the book: its key and CN, and the
    certificate a renew replaces. A call that needs any of them waits until it is released,
    then checks the book as the holder left it, with no await between its checks and its
    claim; so calls that touch the same key, CN or certificate answer as if they had come one
    after another (the second apply of one key gets 11833), while the others sign in parallel.
    """

    def __init__(self) -> None:
        self._held: dict[Hashable, asyncio.Future[None]] = {}

    async def free(self, *names: Hashable) -> None:
        """Return once none of ``names`` is held (the caller's next checks see its effects)."""
        while busy := [f for f in map(self._held.get, names) if f is not None]:
            await asyncio.wait(busy)

    @asynccontextmanager
    async def hold(self, *names: Hashable) -> AsyncIterator[None]:
        await self.free(*names)
        released = asyncio.get_running_loop().create_future()
        self._held.update(dict.fromkeys(names, released))
        try:
            yield
        finally:
            for name in names:
                del self._held[name]
            released.set_result(None)


class CertificateService:
    def __init__(self, registry: Registry, roots: dict[Authority, RootCA], book: CertificateBook,
                 allocate: Callable[[], int], crl_url: Callable[[Authority], str],
                 rules: Rules | None = None) -> None:
        self.registry = registry
        self.crl_url = crl_url
        self.roots = roots
        self.book = book
        self.allocate = allocate
        self.rules = rules or Rules()
        self.claims = Claims()
        self.signer = Signer()

    # validDay ---------------------------------------------------------------------------
    def validity(self, product: Product, valid_day: int | None, root: RootCA,
                 now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        """notBefore/notAfter per the seed: default 730, over the product max fails, cut to
        what is left of the root."""
        if valid_day is not None:
            if valid_day > product.max_valid_day:
                raise ValidityExceedsProductMax()
            days = valid_day
        else:
            days = DEFAULT_VALID_DAY
            if days > product.max_valid_day:
                if self.rules.default_over_max == "fail":
                    raise ValidityExceedsProductMax()
                if self.rules.default_over_max == "cap":
                    days = product.max_valid_day
        start = now.replace(microsecond=0)
        end = start + dt.timedelta(days=days)
        root_end = root.cert.not_valid_after_utc
        if root_end <= start:
            raise CallCaError(40001, "The root certificate has expired",
                              f"the {root.authority} root CA expired at {root_end.isoformat()}")
        return start, min(end, root_end)

    # issuing ----------------------------------------------------------------------------
    def _record(self, device: Device, request: CertRequest, authority: Authority,
                serial: int, cert: x509.Certificate, start: dt.datetime, end: dt.datetime,
                now: dt.datetime, renewed_from: int | None) -> CertRecord:
        return CertRecord(
            cert_sn=serial, org_id=device.org_id, asset_id=device.asset_id,
            cert=pki.cert_pem(cert), issue_authority=authority, sign_date=_ms(now),
            not_before=_ms(start), not_after=_ms(end), subject=java_name(request.subject),
            issuer=self.roots[authority].issuer, cn=request.cn, key_id=request.key_id,
            renewed_from=renewed_from)

    def _issue(self, device: Device, request: CertRequest, authority: Authority,
               start: dt.datetime, end: dt.datetime, now: dt.datetime) -> CertRecord:
        """Issue on the spot (the genesis, before the farm serves anyone)."""
        root, serial = self.roots[authority], self.allocate()
        cert = root.sign(root.builder(request.public_key, request.subject, serial, start, end,
                                      self.crl_url(authority)))
        record = self._record(device, request, authority, serial, cert, start, end, now, None)
        self.book.add(record)
        return record

    async def _issue_in_executor(self, device: Device, request: CertRequest,
                                 authority: Authority, start: dt.datetime, end: dt.datetime,
                                 now: dt.datetime, renewed: CertRecord | None = None,
                                 ) -> CertRecord:
        """Issue with the signature made off the loop (``Signer``). The caller holds the
        request's claims."""
        root, serial = self.roots[authority], self.allocate()
        builder = root.builder(request.public_key, request.subject, serial, start, end,
                               self.crl_url(authority))
        generation = self.book.generation
        cert = await self.signer.sign(root, builder)
        record = self._record(device, request, authority, serial, cert, start, end, now,
                              renewed.cert_sn if renewed else None)
        if self.book.generation == generation:  # else a reset came first: it wiped this
            self.book.add(record)
            if renewed is not None and self.rules.renew_old == "revoke":
                self.book.mark_revoked(renewed, _ms(now), 4, None)
        return record

    def _check_not_taken(self, device: Device, request: CertRequest, *, renew: bool) -> None:
        """Another device's live certificate with the CSR's key or CN: the first one issued
        decides the error (its key is checked before its CN)."""
        same_key, same_cn = self.book.first_taken(device, request.key_id, request.cn)
        if same_key is not None and (same_cn is None or same_key.cert_sn <= same_cn.cert_sn):
            raise CertificateBoundElsewhere()
        if same_cn is not None:
            if renew:
                raise CertificateBoundElsewhere()
            raise DuplicateSubject("The subject of the CSR is already in use",
                                   f"CN={request.cn} belongs to a certificate of another device")

    async def apply(self, device: Device, csr_pem: str, valid_day: int | None,
                    authority: Authority, now: dt.datetime) -> CertRecord:
        product = self.registry.require_bidirectional(device)
        start, end = self.validity(product, valid_day, self.roots[authority], now)
        request = check_csr(csr_pem, authority)
        async with self.claims.hold(*request.claims()):
            self._check_not_taken(device, request, renew=False)
            return await self._issue_in_executor(device, request, authority, start, end, now)

    async def renew(self, device: Device, cert_sn: int | None, csr_pem: str | None,
                    valid_day: int | None, authority: Authority | None,
                    now: dt.datetime) -> CertRecord:
        product = self.registry.require_bidirectional(device)
        if cert_sn is None:
            raise SerialRequired()
        if cert_sn < 0:
            raise SerialNegative()
        async with self.claims.hold(("sn", cert_sn)):
            old = self.book.get(cert_sn)
            if old is None or old.owner != owner_of(device):
                raise CertificateNotBound()
            if old.revoked:
                raise OriginalRevoked()
            if old.not_after <= _ms(now):
                raise OriginalExpired()
            if csr_pem:
                authority = authority or "RSA"
                start, end = self.validity(product, valid_day, self.roots[authority], now)
                request = check_csr(csr_pem, authority)
            else:
                # No CSR: the old certificate's request data (its subject and key) again.
                if authority is not None and authority != old.issue_authority:
                    raise RenewFailed("issueAuthority does not match the original certificate",
                                      f"certificate {old.cert_sn} was issued by the "
                                      f"{old.issue_authority} CA; send a CSR to change it")
                authority = old.issue_authority
                start, end = self.validity(product, valid_day, self.roots[authority], now)
                previous = old.x509()
                request = CertRequest.of(previous.public_key(), previous.subject)
                if authority_of_key(request.public_key) != authority:
                    raise RenewFailed("The original certificate cannot be renewed",
                                      "its key does not fit the issuing CA")
            async with self.claims.hold(*request.claims()):
                if csr_pem:
                    self._check_not_taken(device, request, renew=True)
                return await self._issue_in_executor(device, request, authority, start, end,
                                                     now, renewed=old)

    async def revoke(self, device: Device, cert_sn: int, reason: int, now: dt.datetime,
                     revoker: str | None) -> CertRecord:
        if reason not in REVOKE_REASONS:
            raise InvalidCallParameters("The revocation reason is not supported",
                                        f"reason {reason} is not one of 0, 1, 3, 4, 5, 6, 9")
        await self.claims.free(("sn", cert_sn))  # a renew of it under way comes first
        record = self.book.get(cert_sn)
        if record is None or record.owner != owner_of(device):
            raise RevokeFailed("The certificate is not bound to the device",
                               f"certSn {cert_sn} is not in the certificate list of asset "
                               f"{device.asset_id}")
        if record.revoked:
            raise RevokeFailed("The certificate has already been revoked",
                               f"certSn {cert_sn} was revoked before")
        self.book.mark_revoked(record, _ms(now), reason, revoker)
        return record

    def listing(self, device: Device) -> list[CertRecord]:
        return self.book.bound_to(device)

    def revoked_by(self, authority: Authority) -> list[tuple[int, dt.datetime, int]]:
        return [(r.cert_sn, _from_ms(r.revoked_at or r.sign_date), r.revoke_reason or 0)
                for sn, r in sorted(self.book.records.items())
                if r.revoked and r.issue_authority == authority]

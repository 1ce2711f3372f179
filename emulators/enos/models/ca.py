"""EnOS's certificate authority: an RSA root and an ECC (prime256v1) root, and what they sign.

Issued certificates copy the seed's shape: serial = certSN, notBefore = the moment of issue,
CA:FALSE, the Netscape comment "Enos Generated Certificate", SKI, AKI and the CRL URL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from ... import pki

Authority = Literal["RSA", "ECC"]
AUTHORITIES: tuple[Authority, ...] = ("RSA", "ECC")

# The seed's root subject (C, ST, L, O, OU, CN, emailAddress in this order).
ROOT_SUBJECT = {"C": "CN", "ST": "Shanghai", "L": "Shanghai", "O": "EnOS", "OU": "EnOS CA",
                "CN": "EnOS CA", "emailAddress": "ca@eniot.io"}
ROOT_CN = {"RSA": "EnOS CA", "ECC": "EnOS ECC CA"}

NETSCAPE_COMMENT = x509.ObjectIdentifier("2.16.840.1.113730.1.13")
NETSCAPE_CA_REVOCATION_URL = x509.ObjectIdentifier("2.16.840.1.113730.1.4")
COMMENT = "Enos Generated Certificate"

# How the list API prints names: Java's X500Name style, last RDN first, ", " between.
_SHORT = {NameOID.COUNTRY_NAME: "C", NameOID.STATE_OR_PROVINCE_NAME: "ST",
          NameOID.LOCALITY_NAME: "L", NameOID.ORGANIZATION_NAME: "O",
          NameOID.ORGANIZATIONAL_UNIT_NAME: "OU", NameOID.COMMON_NAME: "CN",
          NameOID.EMAIL_ADDRESS: "EMAILADDRESS"}


def java_name(name: x509.Name) -> str:
    parts = []
    for rdn in reversed(name.rdns):
        for attr in rdn:
            label = _SHORT.get(attr.oid, attr.oid.dotted_string)
            parts.append(f"{label}={attr.value!s}")
    return ", ".join(parts)


def _ia5(text: str) -> bytes:
    raw = text.encode("ascii")
    if len(raw) < 128:
        return bytes([0x16, len(raw)]) + raw
    length = len(raw).to_bytes((len(raw).bit_length() + 7) // 8, "big")
    return bytes([0x16, 0x80 | len(length)]) + length + raw


def authority_of_key(key: Any) -> Authority | None:
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return "ECC"
    return None


def make_root(authority: Authority, key: pki.PrivateKey, now: dt.datetime,
              days: int) -> x509.Certificate:
    """A self-signed root like the seed's: SKI, AKI, CA:TRUE and keyCertSign+cRLSign, critical."""
    fields = dict(ROOT_SUBJECT, CN=ROOT_CN[authority])
    subject = pki.name(**fields)
    start = now.replace(microsecond=0)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(pki.random_serial())
        .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                     False), critical=True)
        .sign(key, hashes.SHA256())
    )


@dataclass
class RootCA(pki.StoredCA):
    authority: Authority

    @cached_property
    def issuer(self) -> str:
        """The root's subject as the list API prints an issuer."""
        return java_name(self.cert.subject)

    @cached_property
    def _authority_key_id(self) -> x509.AuthorityKeyIdentifier:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(
            self.cert.public_key())  # type: ignore[arg-type]

    def remaining(self, now: dt.datetime) -> dt.timedelta:
        return self.cert.not_valid_after_utc - now

    def builder(self, public_key: Any, subject: x509.Name, serial: int,
                not_before: dt.datetime, not_after: dt.datetime,
                crl_url: str) -> x509.CertificateBuilder:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=False)
            .add_extension(x509.UnrecognizedExtension(NETSCAPE_COMMENT, _ia5(COMMENT)),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(self._authority_key_id, critical=False)
        )
        if crl_url:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(NETSCAPE_CA_REVOCATION_URL, _ia5(crl_url)),
                critical=False)
        return builder

    def sign(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        """The CPU-heavy part of issuing; it releases the GIL, so an executor runs it beside
        the loop."""
        return builder.sign(self.key, hashes.SHA256())

    def crl(self, revoked: list[tuple[int, dt.datetime, int]], now: dt.datetime) -> bytes:
        """A DER CRL of ``(serial, when, reason)``, next update a day on."""
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now).next_update(now + dt.timedelta(days=1))
        )
        for serial, when, reason in revoked:
            entry = (x509.RevokedCertificateBuilder().serial_number(serial)
                     .revocation_date(when))
            flag = REASON_FLAGS.get(reason)
            if flag is not None:
                entry = entry.add_extension(x509.CRLReason(flag), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        crl = builder.sign(self.key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.DER)

    @classmethod
    def from_dict(cls, authority: Authority, data: dict[str, str]) -> RootCA:
        return cls(*cls.parts(data), authority)


class Signer:
    """Signs certificates in the loop's executor, a batch at a time: what is queued while one
    batch is signed makes the next. The signature releases the GIL, so it runs on another core
    beside the loop; one thread is enough (the loop does more per call than the signature),
    and a batch comes back to the loop in one wake-up, so its calls share one save."""

    def __init__(self) -> None:
        self._queue: list[tuple[RootCA, x509.CertificateBuilder,
                                asyncio.Future[x509.Certificate]]] = []
        self._busy = False

    async def sign(self, root: RootCA, builder: x509.CertificateBuilder) -> x509.Certificate:
        loop = asyncio.get_running_loop()
        signed: asyncio.Future[x509.Certificate] = loop.create_future()
        self._queue.append((root, builder, signed))
        if not self._busy:
            self._next_batch(loop)
        return await signed

    def _next_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._queue = self._queue, []
        self._busy = True
        job = loop.run_in_executor(None, _sign_all, [(root, b) for root, b, _ in batch])
        job.add_done_callback(lambda done: self._done(loop, batch, done))

    def _done(self, loop: asyncio.AbstractEventLoop,
              batch: list[tuple[RootCA, x509.CertificateBuilder,
                                asyncio.Future[x509.Certificate]]],
              job: asyncio.Future[list[x509.Certificate | Exception]]) -> None:
        self._busy = False
        if self._queue:
            self._next_batch(loop)  # signing goes on while this batch's calls carry on
        try:
            results: list[x509.Certificate | Exception] = job.result()
        except BaseException as exc:  # the executor failed (or shut down): every call fails
            results = [RuntimeError(f"signing failed: {exc!r}")] * len(batch)
        for (_, _, signed), result in zip(batch, results, strict=True):
            if signed.done():  # the call was cancelled meanwhile
                continue
            if isinstance(result, Exception):
                signed.set_exception(result)
            else:
                signed.set_result(result)


def _sign_all(batch: list[tuple[RootCA, x509.CertificateBuilder]],
              ) -> list[x509.Certificate | Exception]:
    results: list[x509.Certificate | Exception] = []
    for root, builder in batch:
        try:
            results.append(root.sign(builder))
        except Exception as exc:  # noqa: BLE001 - one call's failure, not the batch's
            results.append(exc)
    return results


# RFC 5280 reason codes the revoke API accepts (0 unspecified is written without a reason).
REASON_FLAGS: dict[int, x509.ReasonFlags] = {
    1: x509.ReasonFlags.key_compromise,
    3: x509.ReasonFlags.affiliation_changed,
    4: x509.ReasonFlags.superseded,
    5: x509.ReasonFlags.cessation_of_operation,
    6: x509.ReasonFlags.certificate_hold,
    9: x509.ReasonFlags.privilege_withdrawn,
}
REVOKE_REASONS = frozenset({0, *REASON_FLAGS})


def check_root(authority: Authority, cert_pem: str, key_pem: str) -> str | None:
    """Why a scenario-supplied root cannot serve as ``authority``'s root, or None."""
    try:
        cert = pki.load_cert(cert_pem)
        key = pki.load_key(key_pem)
    except pki.PkiError as exc:
        return str(exc)
    if authority_of_key(key) != authority:
        return f"the {authority} root needs an {'RSA' if authority == 'RSA' else 'EC'} key"
    if isinstance(key, ec.EllipticCurvePrivateKey) and not isinstance(key.curve, ec.SECP256R1):
        return "the ECC root's key must be on prime256v1"
    if not pki.public_key_matches(cert, key):
        return "the certificate and key do not match"
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "the certificate is not a CA (no basicConstraints)"
    if not constraints.ca:
        return "the certificate is not a CA (CA:FALSE)"
    return None

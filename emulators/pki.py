"""Real X.509 for the whole farm: keys, CAs, issued certificates, TLS contexts.

Key generation is CPU-heavy: call the ``a*`` coroutines from the event loop, which run the
work in an executor, never the plain functions.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

NAME_FIELDS = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
    "emailAddress": NameOID.EMAIL_ADDRESS,
}


class PkiError(ValueError):
    """Input that is not the certificate, key or request it should be."""


# -- keys ------------------------------------------------------------------------------------

def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey, password: bytes | None = None, *, traditional: bool = False) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password
        else serialization.NoEncryption())
    fmt = (serialization.PrivateFormat.TraditionalOpenSSL if traditional
           else serialization.PrivateFormat.PKCS8)
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption).decode()


def load_key(pem: str | bytes, password: bytes | None = None, *,
             trusted: bool = False) -> PrivateKey:
    """A private key from PEM. ``trusted`` is for keys the farm made and saved itself: it skips
    OpenSSL's RSA consistency check (about 80 ms per 2048-bit key), which keys from a client
    must still pass."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=password,
                                                 unsafe_skip_rsa_key_validation=trusted)
    except TypeError as exc:  # password given for a clear key, or missing for an encrypted one
        raise PkiError(str(exc)) from None
    except ValueError as exc:
        raise PkiError(f"not a PEM private key: {exc}") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey,
                            ed25519.Ed25519PrivateKey)):
        raise PkiError("unsupported private key type")
    return key


def public_key_matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return cert.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)


# -- names and certificates --------------------------------------------------------------------

def name(**fields: str) -> x509.Name:
    """``name(CN="x", O="y")``: an X.509 name from short field names."""
    return x509.Name([x509.NameAttribute(NAME_FIELDS[k], v) for k, v in fields.items() if v])


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def load_cert(data: str | bytes) -> x509.Certificate:
    """A certificate from PEM (the first block) or DER."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        if b"-----BEGIN" in raw:
            return x509.load_pem_x509_certificate(raw)
        return x509.load_der_x509_certificate(raw)
    except ValueError as exc:
        raise PkiError(f"not an X.509 certificate: {exc}") from None


def load_csr(data: str | bytes) -> x509.CertificateSigningRequest:
    raw = data.encode() if isinstance(data, str) else data
    try:
        return x509.load_pem_x509_csr(raw)
    except ValueError as exc:
        raise PkiError(f"not a PEM certificate request: {exc}") from None


def random_serial() -> int:
    return secrets.randbits(63) | 1


def _now(now: dt.datetime | None) -> dt.datetime:
    return now or dt.datetime.now(dt.UTC)


def _hash_for(key: PrivateKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


@dataclass
class StoredCA:
    """A certificate authority's certificate and key, kept in state as {"cert": PEM, "key":
    PEM}; the farm's own CA and each cloud's roots are stored this one way."""

    cert: x509.Certificate
    key: PrivateKey

    # Read for every certificate issued (the chain's tail): made once.
    @cached_property
    def pem(self) -> str:
        return cert_pem(self.cert)

    def to_dict(self) -> dict[str, str]:
        return {"cert": self.pem, "key": key_pem(self.key)}

    @staticmethod
    def parts(data: dict[str, str]) -> tuple[x509.Certificate, PrivateKey]:
        """The certificate and key of what ``to_dict`` wrote (our own state: trusted)."""
        return load_cert(data["cert"]), load_key(data["key"], trusted=True)


def make_ca(subject: x509.Name, key: PrivateKey, *, days: int = 3650,
            now: dt.datetime | None = None, serial: int | None = None,
            path_length: int | None = None) -> x509.Certificate:
    """A self-signed CA certificate with SKI, AKI and basic constraints."""
    start = _now(now) - dt.timedelta(minutes=5)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial or random_serial())
        .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                       critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
    )
    return builder.sign(key, _hash_for(key))


def issue(
    public_key: Any,
    subject: x509.Name,
    issuer_cert: x509.Certificate | None,
    issuer_key: PrivateKey,
    *,
    days: float = 365,
    now: dt.datetime | None = None,
    not_before: dt.datetime | None = None,
    serial: int | None = None,
    is_ca: bool = False,
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str] = (),
    server: bool = False,
    client: bool = False,
    extensions: Iterable[tuple[x509.ExtensionType, bool]] = (),
) -> x509.Certificate:
    """Sign ``public_key`` for ``subject``; ``issuer_cert`` None means self-signed."""
    start = not_before or (_now(now) - dt.timedelta(minutes=5))
    issuer_name = issuer_cert.subject if issuer_cert is not None else subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(serial or random_serial())
        .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    issuer_public: Any = issuer_cert.public_key() if issuer_cert is not None else public_key
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(issuer_key, _hash_for(issuer_key))


def make_csr(key: PrivateKey, subject: x509.Name) -> x509.CertificateSigningRequest:
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, _hash_for(key))


def csr_pem(csr: x509.CertificateSigningRequest) -> str:
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def verify_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s key signed ``cert`` (and the names chain)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, Exception):  # InvalidSignature is not a ValueError
        return False
    return True


def x509_time(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


# -- TLS ---------------------------------------------------------------------------------------

def server_context(cert_chain_pem: str, key_pem_text: str,
                   password: bytes | None = None) -> ssl.SSLContext:
    """A TLS server context from PEM text (``ssl`` only loads files: a private temp dir)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="emulators-tls-") as tmp:
        cert_path = os.path.join(tmp, "cert.pem")
        key_path = os.path.join(tmp, "key.pem")
        for path, text in ((cert_path, cert_chain_pem), (key_path, key_pem_text)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
        try:
            ctx.load_cert_chain(cert_path, key_path, password=password)
        except ssl.SSLError as exc:
            raise PkiError(f"certificate and key do not make a TLS identity: {exc}") from None
    return ctx


def client_context(cafile_pem: str | None = None, *, verify: bool = True) -> ssl.SSLContext:
    """A TLS client context trusting ``cafile_pem`` (or nothing checked when not verifying)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if cafile_pem:
        ctx.load_verify_locations(cadata=cafile_pem)
    return ctx

"""The camera's state and rules, without HTTP: accounts, the HTTPS files in flash, the
certificate upload and CSR rules, and the stage-1 grants that authorise a stage-3 upload."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from cryptography import x509

from .. import pki
from . import exceptions as errors

CERT_FILE = "certSrv.pem"  # the device's fixed name for the certificate (seed)
CSR_FILE = "certreqSrv.pem"  # where the manual suggests saving the CSR

_PEM_BLOCK = re.compile(
    rb"-----BEGIN (?P<label>[A-Z0-9 ]+)-----\r?\n.*?-----END (?P=label)-----", re.DOTALL)
# parse_query keeps bytes that are not UTF-8 as lone surrogates.
_NOT_UTF8 = re.compile("[\udc80-\udcff]")
_KEY_LABELS = {b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY", b"ENCRYPTED PRIVATE KEY"}


# -- accounts --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Account:
    name: str
    password: str
    root: bool


class Accounts:
    """The camera's user accounts; only root may use the ``update`` CGI (spec)."""

    def __init__(self, accounts: list[Account], *, case_sensitive_names: bool) -> None:
        self.accounts = accounts
        self.case_sensitive_names = case_sensitive_names

    def _same_name(self, a: str, b: str) -> bool:
        return a == b if self.case_sensitive_names else a.casefold() == b.casefold()

    def find(self, user: str | None, password: str | None) -> Account | None:
        """The account these credentials name (root or not), else None."""
        if user is None or password is None:
            return None
        return next((a for a in self.accounts
                     if self._same_name(a.name, user) and a.password == password), None)

    def root(self, user: str | None, password: str | None) -> Account:
        """The root account these credentials name, else ``NotAuthorized``."""
        if user is None or password is None:
            raise errors.NotAuthorized("USER or PWD missing")
        for account in self.accounts:
            if self._same_name(account.name, user) and account.password == password:
                if not account.root:
                    raise errors.NotAuthorized(f"{user!r} is not a root account")
                return account
        raise errors.NotAuthorized(f"wrong user or password for {user!r}")


# -- the HTTPS files in flash ----------------------------------------------------------------

@dataclass(frozen=True)
class HttpsFiles:
    """certSrv.pem, the private key and the CSR, as the device keeps them in flash."""

    cert: str | None = None  # certSrv.pem exactly as uploaded (may include a key)
    key: str | None = None  # the private key PEM the HTTPS server uses
    key_source: str | None = None  # "csr": made by HTTPS_CSR_CREATE; "upload": in certSrv.pem
    csr: str | None = None  # certreqSrv.pem

    def to_dict(self) -> dict[str, Any]:
        return {"cert": self.cert, "key": self.key, "key_source": self.key_source,
                "csr": self.csr}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> HttpsFiles:
        data = data or {}
        return cls(data.get("cert"), data.get("key"), data.get("key_source"), data.get("csr"))

    @property
    def cer_value(self) -> str:
        """The value ``HTTPS_CER`` reads: ``none`` or the fixed file name."""
        return CERT_FILE if self.cert is not None else "none"

    def with_upload(self, upload: CertificateUpload) -> HttpsFiles:
        """certSrv.pem replaced by an upload.

        A key inside the new file becomes the server key; otherwise the key made with the CSR
        stays, while a key that lived inside the old certSrv.pem goes with the old file.
        """
        if upload.key is not None:
            return replace(self, cert=upload.text, key=upload.key, key_source="upload")
        if self.key_source == "upload":
            return replace(self, cert=upload.text, key=None, key_source=None)
        return replace(self, cert=upload.text)

    def describe(self) -> dict[str, Any]:
        """What the control plane shows of the files (names, subjects, dates)."""
        doc: dict[str, Any] = {"certificate": None, "key": None, "csr": None}
        if self.cert is not None:
            try:
                cert = pki.load_cert(certificate_blocks(self.cert)[0])
                doc["certificate"] = {
                    "file": CERT_FILE, "subject": cert.subject.rfc4514_string(),
                    "issuer": cert.issuer.rfc4514_string(),
                    "self_signed": cert.subject == cert.issuer,
                    "not_after": pki.x509_time(cert.not_valid_after_utc).isoformat(),
                    "serial": format(cert.serial_number, "x"),
                }
            except (IndexError, pki.PkiError):  # only a hand-edited state file gets here
                doc["certificate"] = {"file": CERT_FILE, "error": "does not parse"}
        if self.key is not None:
            doc["key"] = {"source": self.key_source}
        if self.csr is not None:
            try:
                subject: str | None = pki.load_csr(self.csr).subject.rfc4514_string()
            except pki.PkiError:
                subject = None
            doc["csr"] = {"file": CSR_FILE, "subject": subject}
        return doc


def certificate_blocks(text: str) -> list[bytes]:
    """The CERTIFICATE PEM blocks of a file, in order (the first is the server's own)."""
    return [m.group(0) for m in _PEM_BLOCK.finditer(text.encode("latin-1"))
            if m["label"] == b"CERTIFICATE"]


@dataclass(frozen=True)
class TlsIdentity:
    chain_pem: str
    key_pem: str


def tls_identity(files: HttpsFiles) -> TlsIdentity | str:
    """What the HTTPS server can serve from the files, or why it cannot come up."""
    if files.cert is None:
        return f"no certificate ({CERT_FILE})"
    if files.key is None:
        return (f"no private key for {CERT_FILE}: a CA-signed certificate needs the key made "
                "with HTTPS_CSR_CREATE, which is gone")
    blocks = certificate_blocks(files.cert)
    try:
        leaf = pki.load_cert(blocks[0])
        key = pki.load_key(files.key)
    except (IndexError, pki.PkiError):  # only a hand-edited state file gets here
        return f"{CERT_FILE} or its key in flash does not parse"
    if not pki.public_key_matches(leaf, key):
        return f"the private key does not match {CERT_FILE}"
    chain = "".join(block.decode() + "\n" for block in blocks)
    return TlsIdentity(chain, files.key)


# -- the certificate upload ------------------------------------------------------------------

@dataclass(frozen=True)
class CertificateUpload:
    text: str  # the file as it will sit in flash under certSrv.pem
    certificate: x509.Certificate
    key: str | None  # a private key found in the same file


def read_certificate_upload(data: bytes) -> CertificateUpload:
    """Check an uploaded file the way the firmware does: is it a PEM certificate?

    Trust, dates and chains are not checked ("the firmware does not know the certificate is
    valid or not"); the part's content type and file name are not looked at either.
    """
    if not data.strip():
        raise errors.InternalError(errors.EMPTY_FILE)
    blocks = list(_PEM_BLOCK.finditer(data))
    certs = [m.group(0) for m in blocks if m["label"] == b"CERTIFICATE"]
    keys = [m.group(0) for m in blocks if m["label"] in _KEY_LABELS]
    if not certs:
        raise errors.InternalError(errors.NOT_PEM)
    text = data.decode("latin-1")  # flash keeps bytes; latin-1 round-trips every byte
    try:
        parsed = [pki.load_cert(block) for block in certs]
    except pki.PkiError:
        raise errors.InternalError(errors.BAD_CERTIFICATE) from None
    key_pem: str | None = None
    if keys:
        try:
            key_pem = pki.key_pem(pki.load_key(keys[0]), traditional=True)
        except pki.PkiError:  # also an encrypted key: the device has no passphrase for it
            raise errors.InternalError(errors.BAD_KEY) from None
    return CertificateUpload(text, parsed[0], key_pem)


# -- HTTPS_CSR_CREATE --------------------------------------------------------------------------

@dataclass(frozen=True)
class CsrRequest:
    country: str
    province: str
    locality: str
    organization: str
    division: str
    common_name: str
    key_length: int

    def subject(self) -> x509.Name:
        return pki.name(C=self.country, ST=self.province, L=self.locality,
                        O=self.organization, OU=self.division, CN=self.common_name)


def parse_csr_request(value: str | None, key_lengths: tuple[int, ...]) -> CsrRequest:
    """``Country,Province,Locality,Org,Division,CommonName,KeyLen`` (spec)."""
    fields = (value or "").split(",")
    if len(fields) != 7:
        raise errors.InvalidArgument(
            "expected Country,Province,Locality,Organization,Division,CommonName,KeyLen.")
    country, province, locality, org, division, cn, key_len = (f.strip() for f in fields)
    if any(_NOT_UTF8.search(f) for f in fields):
        raise errors.InvalidArgument("fields must be UTF-8 text.")
    if not re.fullmatch(r"[A-Za-z]{2}", country):
        raise errors.InvalidArgument("Country must be 2 letters.")
    for label, text in (("Province", province), ("Locality", locality)):
        if len(text) > 40:
            raise errors.InvalidArgument(f"{label} must be at most 40 characters.")
    for label, text in (("Organization", org), ("Division", division), ("CommonName", cn)):
        if len(text) > 64:  # the X.509 upper bound for these names
            raise errors.InvalidArgument(f"{label} must be at most 64 characters.")
    if not cn:
        raise errors.InvalidArgument("CommonName is required.")
    if not key_len.isdigit() or int(key_len) not in key_lengths:
        allowed = ", ".join(str(n) for n in key_lengths)
        raise errors.InvalidArgument(f"KeyLen must be one of {allowed}.")
    return CsrRequest(country.upper(), province, locality, org, division, cn, int(key_len))


# -- stage 1 -> stage 3 ------------------------------------------------------------------------

class UploadGrants:
    """Which clients may POST ``HTTPS_CER_SAVE`` without credentials.

    A root ``HTTPS_CER=upload`` (stage 1) grants the client's address one upload within
    ``window`` seconds of the farm clock; the stage-3 POST consumes it, success or not. Kept in
    RAM only: a reboot forgets them, as the device would.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._until: dict[str, float] = {}

    def grant(self, address: str, now: float) -> None:
        self._until[address] = now + self.window

    def take(self, address: str, now: float) -> bool:
        until = self._until.pop(address, None)
        return until is not None and now <= until

    def clear(self) -> None:
        self._until.clear()

    def describe(self, now: float) -> dict[str, float]:
        return {addr: round(until - now, 3) for addr, until in self._until.items() if until >= now}

"""What the resources share: record ids, IoTDA's date and name formats, the id patterns and
request-value checks, paging.

No HTTP here: the models take plain values and raise the typed errors of ``exceptions``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography import x509
from cryptography.x509.oid import NameOID

from ..exceptions import InvalidCertificate, InvalidInput, LimitOutOfRange

# IoTDA ids are 24 hex digits (MongoDB ObjectId style): newer records have larger ids, and
# list pages run from the newest down, ``marker`` being the last id of the previous page.
# What a path may name as an id (the API reference): longer or odder ids are invalid input.
PATH_ID = re.compile(r"[A-Za-z0-9_-]{1,24}")
MARKER_PATTERN = re.compile(r"^[0-9a-fA-F]{24}$")
DEFAULT_MARKER = "ffffffffffffffffffffffff"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"  # yyyyMMdd'T'HHmmss'Z'
LIMIT_RANGE = (1, 50)
OFFSET_RANGE = (0, 500)
DEFAULT_LIMIT = 10

PEM_BLOCK = re.compile(
    r"-----BEGIN CERTIFICATE-----\s*(?P<body>[A-Za-z0-9+/=\s]+?)\s*-----END CERTIFICATE-----")

# Attribute keywords as Java's X500Principal prints them (the platform is a Java service):
# most specific first, ", " between attributes, as in the seed's "CN=..., O=Huawei, C=CN".
_KEYWORDS = {
    NameOID.COMMON_NAME: "CN", NameOID.COUNTRY_NAME: "C", NameOID.LOCALITY_NAME: "L",
    NameOID.STATE_OR_PROVINCE_NAME: "ST", NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU", NameOID.STREET_ADDRESS: "STREET",
    NameOID.DOMAIN_COMPONENT: "DC", NameOID.USER_ID: "UID",
    NameOID.EMAIL_ADDRESS: "EMAILADDRESS", NameOID.SERIAL_NUMBER: "SERIALNUMBER",
}
_SPECIAL = set(',+=<>#;"\\\n')

# The API reference: ids of letters, digits, "_" and "-".
DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
SERVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
APP_ID = re.compile(r"[A-Za-z0-9_-]{1,36}")
# Any printable text; no control characters.
NAME = re.compile(r"[^\x00-\x1f\x7f]+")
INT32_MAX = 2_147_483_647


def new_id(last_id: str | None, now: float) -> str:
    """An ObjectId-like id: seconds in the first 8 digits, and always above the last one."""
    candidate = int(f"{int(now) & 0xFFFFFFFF:08x}" + "0" * 16, 16)
    floor = int(last_id, 16) + 1 if last_id else 0
    return f"{max(candidate, floor):024x}"


class IdSource:
    """The one sequence every resource of a member takes its id from (real ids are unique
    across resource types). It only goes up: loading a document (a restart, a reset, a
    snapshot restored) never takes it below an id it has handed out."""

    def __init__(self) -> None:
        self.last: str | None = None

    def next(self, now: float) -> str:
        self.last = new_id(self.last, now)
        return self.last

    def above(self, *used: str | None) -> None:
        """Never hand out ``used`` (or anything below it) again."""
        for candidate in used:
            if candidate and MARKER_PATTERN.fullmatch(candidate) and (
                    self.last is None or int(candidate, 16) > int(self.last, 16)):
                self.last = candidate.lower()


def iotda_date(value: dt.datetime) -> str:
    value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime(DATE_FORMAT)


def now_text(now: float) -> str:
    return _second_text(int(now))


@functools.lru_cache(maxsize=8)
def _second_text(second: int) -> str:
    # The format has whole seconds: a report a second formats its time once (bench/mqtt.py).
    return iotda_date(dt.datetime.fromtimestamp(second, dt.UTC))


def _value(text: str) -> str:
    if text and (set(text) & _SPECIAL or text[0] == " " or text[-1] == " "):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def distinguished_name(name: x509.Name) -> str:
    """A name as the platform prints owners and issuers: ``CN=a, O=b, C=CN``."""
    parts = []
    for rdn in reversed(name.rdns):
        attrs = []
        for attr in rdn:
            keyword = _KEYWORDS.get(attr.oid, f"OID.{attr.oid.dotted_string}")
            value = attr.value if isinstance(attr.value, str) else attr.value.hex()
            attrs.append(f"{keyword}={_value(value)}")
        parts.append(" + ".join(attrs))
    return ", ".join(parts)


def common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = values[0].value if values else ""
    return value if isinstance(value, str) else value.decode(errors="replace")


def load_certificate(content: str, *, allow_der: bool, max_bytes: int | None = None
                     ) -> tuple[x509.Certificate, int]:
    """The first certificate in ``content`` (PEM; or base64 DER when allowed) and its size."""
    block = PEM_BLOCK.search(content)
    if block is not None:
        encoded = block["body"]
    elif allow_der and "-----" not in content:
        encoded = content
    else:
        raise InvalidCertificate("no PEM certificate block")
    try:
        der = base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidCertificate("certificate is not valid base64") from None
    if max_bytes is not None and len(der) > max_bytes:
        raise InvalidCertificate(f"certificate is {len(der)} bytes, above {max_bytes}")
    try:
        cert = x509.load_der_x509_certificate(der)
        # cryptography parses these lazily: touch them now so that a malformed name or
        # extension is "invalid content" here rather than an exception in a handler.
        _ = (cert.subject, cert.issuer, cert.extensions, cert.not_valid_before_utc,
             cert.not_valid_after_utc, cert.version)
    except (ValueError, x509.InvalidVersion) as exc:
        raise InvalidCertificate(f"not an X.509 certificate: {exc}") from None
    return cert, len(der)


# -- request values ------------------------------------------------------------------------------

def text_field(body: dict[str, Any], field: str, *, required: bool, max_len: int,
               min_len: int = 1, pattern: re.Pattern[str] | None = None) -> str | None:
    value = body.get(field)
    if value is None:
        if required:
            raise InvalidInput(f"{field} is required")
        return None
    if not isinstance(value, str) or not min_len <= len(value) <= max_len:
        raise InvalidInput(f"{field} must be a string of {min_len}..{max_len} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise InvalidInput(f"{field} has characters it may not have")
    return value


def bool_field(body: dict[str, Any], field: str) -> bool | None:
    value = body.get(field)
    if value is not None and not isinstance(value, bool):
        raise InvalidInput(f"{field} must be a boolean")
    return value


def int_field(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{name} must be an integer {low}..{high}")
    return value


def choice_field(body: dict[str, Any], name: str, choices: tuple[str, ...], default: str | None
                 ) -> str | None:
    value = body.get(name)
    if value is None:
        return default
    if value not in choices:
        raise InvalidInput(f"{name} must be one of {choices}")
    return str(value)


def object_field(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = body.get(name)
    if value is not None and not isinstance(value, dict):
        raise InvalidInput(f"{name} must be an object")
    return value


@dataclass(frozen=True)
class PageQuery:
    limit: int = DEFAULT_LIMIT
    marker: str = DEFAULT_MARKER
    offset: int = 0

    @classmethod
    def parse(cls, limit: str | None, marker: str | None, offset: str | None) -> PageQuery:
        page = cls()
        if limit is not None:
            if not re.fullmatch(r"\d{1,4}", limit) or not (
                    LIMIT_RANGE[0] <= int(limit) <= LIMIT_RANGE[1]):
                raise LimitOutOfRange(f"limit={limit!r}")
            page = cls(int(limit), page.marker, page.offset)
        if marker is not None:
            if not MARKER_PATTERN.fullmatch(marker):
                raise InvalidInput(f"marker={marker!r}")
            page = cls(page.limit, marker.lower(), page.offset)
        if offset is not None:
            if not re.fullmatch(r"\d{1,4}", offset) or not (
                    OFFSET_RANGE[0] <= int(offset) <= OFFSET_RANGE[1]):
                raise InvalidInput(f"offset={offset!r}")
            page = cls(page.limit, page.marker, int(offset))
        return page


T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


def lookup(records: Mapping[K, T], key: K, given: str, pattern: re.Pattern[str], name: str,
           missing: Callable[[str], Exception]) -> T:
    """``records[key]`` for the id ``given`` in a path: invalid input when ``given`` is no id
    (``name`` says which), ``missing(given)`` when no record has it."""
    if not pattern.fullmatch(given):
        raise InvalidInput(f"{name} {given!r}")
    record = records.get(key)
    if record is None:
        raise missing(given)
    return record


def paginate(records: Sequence[T], ids: Sequence[str], page: PageQuery
             ) -> tuple[list[T], dict[str, Any]]:
    """Newest first, ids below ``marker``, ``offset`` skipped; ``count`` is the total matched."""
    ordered = sorted(zip(ids, records, strict=True), key=lambda pair: pair[0], reverse=True)
    below = [(i, r) for i, r in ordered if i < page.marker]
    chosen = below[page.offset:page.offset + page.limit]
    info: dict[str, Any] = {"count": len(ordered)}
    if chosen:
        info["marker"] = chosen[-1][0]
    return [r for _, r in chosen], info

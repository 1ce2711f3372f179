"""Huawei Cloud API authentication: AK/SK signatures as huaweicloudsdkcore makes them; tokens;
and ``auth_middleware``, which plays the API gateway (signature or token, project, instance)
before any handler runs.

Mirrors ``huaweicloudsdkcore.signer.signer.Signer`` (SDK-HMAC-SHA256) and
``DerivationAKSKSigner`` (V11-HMAC-SHA256, key from ``signer/hkdf.py``) byte for byte, seen
from the receiving side: the canonical request is rebuilt from what arrived on the wire.
``signature_headers`` is the sending side of the same code, for the farm's own probe
(``probe.py``): it signs what it will send as the check will rebuild it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from aiohttp import web
from multidict import MultiMapping

from .exceptions import Forbidden, PathNotFound, SignatureFailed, TokenInvalid, TokenNotFound
from .wire import SERVICE

SDK_ALGORITHM = "SDK-HMAC-SHA256"
DERIVED_ALGORITHM = "V11-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_HASH = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
CONTENT_HASH_HEADER = "x-sdk-content-sha256"
# The one value the signing guide gives the header: "If you do not want to sign the request
# body, add ... X-Sdk-Content-Sha256:UNSIGNED-PAYLOAD" (what Signer sends for non-JSON bodies).
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
DERIVED_SERVICE = "iotdm"  # what IoTDAClient.new_builder() passes as the derived service name

_SDK_AUTH = re.compile(
    r"^SDK-HMAC-SHA256 Access=(?P<ak>[^,\s]+), SignedHeaders=(?P<headers>[^,\s]+), "
    r"Signature=(?P<sig>[0-9a-f]{64})$")
_DERIVED_AUTH = re.compile(
    r"^V11-HMAC-SHA256 Credential=(?P<ak>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/"
    r"(?P<service>[^/,\s]+), SignedHeaders=(?P<headers>[^,\s]+), Signature=(?P<sig>[0-9a-f]{64})$")
# A SignedHeaders entry as Signer writes one: a header name lower-cased; names with "_" are
# never signed (``_process_signed_headers`` skips them).
_SIGNED_NAME = re.compile(r"[a-z0-9!#$%&'*+.^`|~-]+")


# What the check reads of the request's header lines: aiohttp's CIMultiDictProxy, every line.
Headers = MultiMapping[str]


@dataclass(frozen=True)
class Principal:
    """Who a request was authenticated as, and which project it may touch."""

    project_id: str
    access_key: str | None = None
    method: str = SDK_ALGORITHM  # SDK-HMAC-SHA256, V11-HMAC-SHA256 or X-Auth-Token
    # A signed request's signed header lines (lower-case name -> value as signed): the only
    # header values that count. None for a token, whose request is believed as sent.
    signed: Mapping[str, str] | None = field(default=None, compare=False, repr=False)

    def header(self, name: str, headers: Headers) -> list[str]:
        """The lines of ``name`` that count: for a signature, only the signed one (an unsigned
        line is not the signer's word); for a token, the lines as sent."""
        if self.signed is not None:
            value = self.signed.get(name.lower())
            return [] if value is None else [value]
        return headers.getall(name, [])


# -- the canonical request, exactly as the SDK builds it ------------------------------------------

def url_encode(text: str) -> str:
    return quote(text, safe="~")


def canonical_uri(path: str) -> str:
    """Each segment percent-encoded, then a trailing ``/`` (the SDK always adds one)."""
    encoded = "/".join(url_encode(segment) for segment in unquote(path).split("/"))
    return encoded if encoded.endswith("/") else encoded + "/"


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{url_encode(k)}={url_encode(v)}" for k, v in sorted(pairs))


def query_pairs(raw_query: str) -> list[tuple[str, str]]:
    return parse_qsl(raw_query, keep_blank_values=True)


def payload_hash(body: bytes, signed_content_hash: str | None) -> str:
    """Signer's ``_process_hash_payload`` seen from the receiving side: an empty body is the
    empty hash whatever the header says; a body is hashed, unless the *signed* headers carry
    ``X-Sdk-Content-Sha256``. Its value is then the hash position: ``UNSIGNED-PAYLOAD`` leaves
    the body unsigned (the guide's one documented value), a hex SHA-256 must be this body's."""
    if not body:
        return EMPTY_HASH
    actual = hashlib.sha256(body).hexdigest()
    if signed_content_hash is None:
        return actual
    if signed_content_hash != UNSIGNED_PAYLOAD and signed_content_hash.lower() != actual:
        raise SignatureFailed("X-Sdk-Content-Sha256 is neither UNSIGNED-PAYLOAD nor the "
                              "body's SHA-256")
    return signed_content_hash


def canonical_request(method: str, path: str, query: Iterable[tuple[str, str]],
                      headers: Mapping[str, str], signed_headers: list[str], body: bytes) -> str:
    """``headers`` are the signed lines (lower-case names), values as they arrived."""
    lowered = {k.lower(): v.strip() for k, v in headers.items()}
    canonical_headers = "".join(f"{name}:{lowered.get(name, '')}\n" for name in signed_headers)
    return "\n".join([method.upper(), canonical_uri(path), canonical_query(query),
                      canonical_headers, ";".join(signed_headers),
                      payload_hash(body, lowered.get(CONTENT_HASH_HEADER))])


def signed_header_names(listed: str) -> list[str]:
    """SignedHeaders as Signer writes it: lower-case names, sorted, each once, never
    ``authorization`` (added after signing). Any other list was not made by a signer."""
    names = listed.split(";")
    if (any(not _SIGNED_NAME.fullmatch(n) for n in names) or names != sorted(set(names))
            or "authorization" in names):
        raise SignatureFailed(f"SignedHeaders {listed[:200]!r} is not a signer's list")
    return names


def signed_lines(headers: Headers, names: list[str]) -> dict[str, str]:
    """Each signed header's one line. Missing or repeated is refused: a repeated line would
    let the signature cover one value while the request is read with another."""
    lines = {}
    for name in names:
        values = headers.getall(name, [])
        if len(values) != 1:
            raise SignatureFailed(f"signed header {name!r} appears {len(values)} times")
        lines[name] = values[0]
    return lines


def string_to_sign(canonical: str, sdk_date: str, scope: str | None = None) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    if scope is None:
        return f"{SDK_ALGORITHM}\n{sdk_date}\n{digest}"
    return f"{DERIVED_ALGORITHM}\n{sdk_date}\n{scope}\n{digest}"


def hmac_hex(key: str, message: str) -> str:
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def derived_key(access_key: str, secret_key: str, scope: str) -> str:
    """The SDK's HKDF: extract with the AK as salt, one expand block, hex-encoded."""
    prk = hmac.new(access_key.encode(), secret_key.encode(), hashlib.sha256).digest()
    return hmac.new(prk, scope.encode() + b"\x01", hashlib.sha256).hexdigest()


def sign(secret_key: str, canonical: str, sdk_date: str) -> str:
    return hmac_hex(secret_key, string_to_sign(canonical, sdk_date))


def sign_derived(access_key: str, secret_key: str, canonical: str, sdk_date: str,
                 scope: str) -> str:
    return hmac_hex(derived_key(access_key, secret_key, scope),
                    string_to_sign(canonical, sdk_date, scope))


def signature_headers(access_key: str, secret_key: str, *, method: str, path: str,
                      raw_query: str, headers: Mapping[str, str], body: bytes,
                      now: float) -> tuple[tuple[str, str], ...]:
    """``X-Sdk-Date`` and ``Authorization`` (SDK-HMAC-SHA256) for a request about to be sent:
    every header given (``Host`` among them) whose name has no ``_`` is signed, with
    X-Sdk-Date, as ``Signer`` does; ``path`` and ``raw_query`` exactly as they will be sent."""
    sdk_date = datetime.fromtimestamp(now, UTC).strftime(DATE_FORMAT)
    lines = {k.lower(): v.strip() for k, v in headers.items() if "_" not in k}
    lines["x-sdk-date"] = sdk_date
    names = sorted(lines)
    canonical = canonical_request(method, path, query_pairs(raw_query), lines, names, body)
    return (("X-Sdk-Date", sdk_date),
            ("Authorization", f"{SDK_ALGORITHM} Access={access_key}, "
                              f"SignedHeaders={';'.join(names)}, "
                              f"Signature={sign(secret_key, canonical, sdk_date)}"))


# -- checking a request --------------------------------------------------------------------------

@dataclass(frozen=True)
class KeyPair:
    access_key: str
    secret_key: str
    project_id: str


@dataclass(frozen=True)
class Authenticator:
    """Checks one request against the scenario's AK/SK pairs and tokens."""

    keys: Mapping[str, KeyPair]
    tokens: Mapping[str, str]  # X-Auth-Token -> project id
    region: str
    max_skew: float = 900.0  # the gateway accepts X-Sdk-Date within 15 minutes

    def authenticate(self, *, method: str, path: str, raw_query: str, headers: Headers,
                     body: bytes, nows: tuple[float, ...]) -> Principal:
        """``path`` is the path as sent (still percent-encoded): Signer signs
        ``quote(unquote(path))`` per segment, so decoding it first would decode twice.
        ``X-Sdk-Date`` is fresh when it lies within ``max_skew`` of any of ``nows``."""
        authorizations = headers.getall("Authorization", [])
        if not authorizations:
            tokens = headers.getall("X-Auth-Token", [])
            if not tokens:
                raise TokenNotFound("no Authorization and no X-Auth-Token")
            project = self.tokens.get(tokens[0]) if len(tokens) == 1 else None
            if project is None:
                raise TokenInvalid("unknown (or repeated) X-Auth-Token")
            return Principal(project_id=project, method="X-Auth-Token")
        if len(authorizations) != 1:
            raise SignatureFailed(f"{len(authorizations)} Authorization lines")
        authorization = authorizations[0]

        derived = authorization.startswith(DERIVED_ALGORITHM + " ")
        match = (_DERIVED_AUTH if derived else _SDK_AUTH).match(authorization)
        if match is None:
            raise SignatureFailed(f"malformed Authorization: {authorization[:80]!r}")
        pair = self.keys.get(match["ak"])
        if pair is None:
            raise SignatureFailed(f"unknown access key {match['ak']!r}")
        signed_headers = signed_header_names(match["headers"])
        if "x-sdk-date" not in signed_headers:  # the guide: "X-Sdk-Date must be signed"
            raise SignatureFailed("X-Sdk-Date is not signed")
        lines = signed_lines(headers, signed_headers)
        sdk_date = lines["x-sdk-date"].strip()
        try:
            signed_at = datetime.strptime(sdk_date, DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise SignatureFailed(f"bad X-Sdk-Date {sdk_date!r}") from None
        if all(abs(signed_at.timestamp() - now) > self.max_skew for now in nows):
            raise SignatureFailed(f"X-Sdk-Date {sdk_date} is more than 15 minutes off")
        canonical = canonical_request(method, path, query_pairs(raw_query), lines,
                                      signed_headers, body)
        if derived:
            if (match["date"] != sdk_date[:8] or match["region"] != self.region
                    or match["service"] != DERIVED_SERVICE):
                raise SignatureFailed(f"credential scope does not fit: {authorization[:120]!r}")
            scope = f"{match['date']}/{match['region']}/{match['service']}"
            expected = sign_derived(pair.access_key, pair.secret_key, canonical, sdk_date, scope)
        else:
            expected = sign(pair.secret_key, canonical, sdk_date)
        if not hmac.compare_digest(expected, match["sig"]):
            raise SignatureFailed("signature mismatch")
        return Principal(project_id=pair.project_id, access_key=pair.access_key,
                         method=DERIVED_ALGORITHM if derived else SDK_ALGORITHM,
                         signed={name: value.strip() for name, value in lines.items()})


PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("iotda.principal", Principal)


# -- the gateway ---------------------------------------------------------------------------------

@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    service = request.app[SERVICE]
    if request.match_info.http_exception is not None:
        # No such API: the gateway cannot even tell which credentials it would want.
        raise PathNotFound(f"{request.method} {request.path}")
    body = await request.read()
    principal = service.authenticator.authenticate(
        method=request.method, path=request.rel_url.raw_path,
        raw_query=request.rel_url.raw_query_string, headers=request.headers, body=body,
        nows=service.freshness_readings())
    # X-Project-Id and Instance-Id count only as signed (a token's request: as sent, once).
    header_projects = principal.header("X-Project-Id", request.headers)
    instance_ids = principal.header("Instance-Id", request.headers)
    if len(header_projects) > 1 or len(instance_ids) > 1:
        raise Forbidden("X-Project-Id or Instance-Id repeated")
    project_id = request.match_info.get("project_id")
    if project_id != principal.project_id or any(p != principal.project_id
                                                 for p in header_projects):
        raise Forbidden(f"{principal} may not touch project {project_id!r}")
    instance = instance_ids[0] if instance_ids else None
    instances = service.options.instances
    if instances and (instance not in instances if instance is not None
                      else service.options.require_instance_id):
        raise Forbidden(f"instance {instance!r} is not one of {instances}")
    request[PRINCIPAL] = principal
    return await handler(request)

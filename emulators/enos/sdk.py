"""enos-poseidon's access token, as ``poseidon/poseidon.py`` (enos-poseidon 0.1.x) makes it.

The SDK never calls the token service. ``urlopen`` derives the token itself::

    pin = str(int(key.split("-")[1] + secret.split("-")[1], 16)).zfill(9)[:6]
    access  = hmac_sha256(sk, pin + str(now_ms + 2 h)).hexdigest()     # __token
    refresh = hmac_sha256(sk, pin + str(now_ms + 30 d)).hexdigest()
    token = base64(RSA-OAEP(pubkey, f"{pin}${key}${secret}${access}${refresh}"))

``sk`` is a constant of the SDK and ``pubkey`` Envision's RSA key (PyCryptodome's
``PKCS1_OAEP``: SHA-1, MGF1-SHA-1). Only the private key's holder can read a token, and what
makes it genuine is inside: the app's key *and secret*. So the farm holds a key pair of its
own; a client encrypts to the farm's public key (``poseidon.poseidon.pubkey``, a module
global the SDK reads on every call), and the gateway decrypts and checks the app.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

# enos-poseidon's constants: the HMAC key of ``__token`` and the two lifetimes (ms).
SDK_HMAC_KEY = "knoczslufdasvhbivbewnrvuywachsrawqdpzesccknrhhetgmrcwfqfudywbeon"
ACCESS_LIFETIME_MS = 2 * 60 * 60 * 1000
REFRESH_LIFETIME_MS = 30 * 24 * 60 * 60 * 1000
# PyCryptodome's PKCS1_OAEP.new(key) defaults.
OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def pin(app_key: str, app_secret: str) -> str:
    """``poseidon.__pin``: six digits from the hex after the first '-' of key and secret."""
    return str(int(app_key.split("-")[1] + app_secret.split("-")[1], 16)).zfill(9)[:6]


def _hmac(pin_value: str, at_ms: int) -> str:
    return hmac.new(SDK_HMAC_KEY.encode(), (pin_value + str(at_ms)).encode(),
                    hashlib.sha256).hexdigest()


def public_key_text(key: rsa.RSAPrivateKey) -> str:
    """The public key in the SDK's ``pubkey`` form: base64 of the DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def make_token(app_key: str, app_secret: str, public_key: str, *, now_ms: int | None = None,
               refresh: str | None = None) -> str:
    """A token exactly as ``poseidon.urlopen`` makes one (``refresh`` given: as its retry
    after a 4011 makes one, with the gateway's ``apim_refreshtoken``). For raw-HTTP clients."""
    now_ms = int(round(time.time() * 1000)) if now_ms is None else now_ms
    code = pin(app_key, app_secret)
    access = _hmac(code, now_ms + ACCESS_LIFETIME_MS)
    refresh = refresh or _hmac(code, now_ms + REFRESH_LIFETIME_MS)
    key = serialization.load_der_public_key(base64.b64decode(public_key))
    assert isinstance(key, rsa.RSAPublicKey)
    plain = f"{code}${app_key}${app_secret}${access}${refresh}".encode()
    return base64.b64encode(key.encrypt(plain, OAEP)).decode()


@dataclass(frozen=True)
class SdkToken:
    """What a genuine token says: whose it is, and its two HMAC values."""

    app_key: str
    access: str
    refresh: str


class NotGenuine(ValueError):
    """The token does not open with the farm's key, or does not name an app with its secret."""


def read_token(token: str, key: rsa.RSAPrivateKey, apps: Mapping[str, str]) -> SdkToken:
    """Open ``token`` with the farm's key and check it the SDK's way against ``apps``
    (appKey -> appSecret). The token must be exactly the SDK's text: canonical base64 of one
    RSA block, no other spelling of the same bytes."""
    if not _BASE64.fullmatch(token):
        raise NotGenuine("not base64")
    try:
        block = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        raise NotGenuine("not base64") from None
    if len(block) != key.key_size // 8 or base64.b64encode(block).decode() != token:
        raise NotGenuine("not one RSA block in canonical base64")
    try:
        plain = key.decrypt(block, OAEP).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise NotGenuine("does not open with this farm's key") from None
    parts = plain.split("$")
    if len(parts) < 5:
        raise NotGenuine("not pin$key$secret$access$refresh")
    code, access, refresh = parts[0], parts[-2], parts[-1]
    named = "$".join(parts[1:-2])  # key$secret (a '$' inside either stays unambiguous)
    for app_key, app_secret in apps.items():
        if hmac.compare_digest(named.encode(), f"{app_key}${app_secret}".encode()):
            break
    else:
        raise NotGenuine("names no app of this gateway, or not with its secret")
    if code != pin(app_key, app_secret) or not (_HEX64.fullmatch(access)
                                                and _HEX64.fullmatch(refresh)):
        raise NotGenuine("not derived the SDK's way")
    return SdkToken(app_key, access, refresh)


@contextmanager
def poseidon_trusting(public_key: str) -> Iterator[None]:
    """enos-poseidon encrypting to ``public_key`` (the ready file's ``sdkPublicKey``) for the
    duration: ``with poseidon_trusting(key): poseidon.urlopen(...)``. For good, assign it:
    ``poseidon.poseidon.pubkey = key``. (Importing poseidon switches TLS verification off for
    the whole process, as the SDK does; a client of the SDK has imported it already.)"""
    from poseidon import poseidon  # a client's library, not a dependency of the farm

    saved = poseidon.pubkey
    poseidon.pubkey = public_key
    try:
        yield
    finally:
        poseidon.pubkey = saved

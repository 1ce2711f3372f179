"""enos-poseidon's access token, as ``poseidon/poseidon.py`` (enos-poseidon 0.1.x) makes it.

The SDK never calls the token service. ``urlopen`` derives the token itself::

    pin = str(int(key.split("-")[1] + secret.split("-")[1], 16)).zfill(9)[:6]
    access  = hmac_sha256(sk, pin + str(now_ms + 2 h)).hexdigest()     # __token
    refresh = hmac_sha256(sk, pin + str(now_ms + 30 d)).hexdigest()
    token = base64(RSA-OAEP(pubkey, f"{pin}${key}${secret}${access}${refresh}"))

``sk`` is a constant of the SDK and ``pubkey`` Envision's RSA key (PyCryptodome's
``PKCS1_OAEP``: SHA-1, MGF1-SHA-1). Only the private key's holder can read a token, and what
makes it genuine is inside: the app's key *and secret*.

The SDK as published encrypts to Envision's key, which nobody else can read; so by default the
gateway judges such a token by its form alone (``has_sdk_form``: one ciphertext block of that
key, in canonical base64) and lets it in as a call of the gateway's app. The stricter mode
gives the farm a key pair of its own: a client encrypts to the farm's public key
(``poseidon.poseidon.pubkey``, a module global the SDK reads on every call) and the gateway
decrypts and checks the app (``read_token``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
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
# Envision's public key as enos-poseidon 0.2.0 ships it (``poseidon.poseidon.pubkey``): what every
# unmodified SDK encrypts its token to.
ENVISION_PUBLIC_KEY = (
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAokFjy0wLMKH0/39hxPN6JYRkMDXzvVIGQh55Keo2LIsP/jRU"
    "/yZHT/Vkg34yU9koNjSaacPvooXEoI5eFGuRrsBMrotZ5xfejCrTbGvZqjhnMPBheDmxfflIZzRrF/zoQvF0nIbmGNkx"
    "EfROHtDDkgNuGRdthXrNavCgfM2z3LNF83UT9CGpxJWBeKK3pXfYLsQ4f8uyrQRcy2BhKfJ/PKai1mocXYqr07JfQ0XZ"
    "M4xIzuQ7E4ybNk5IFreDuuhF63wXAi1uonGzqjEYcbC1xT2boNiZORoOQWpAHhSbIRpljmW/uHBvoKZ573PQbbxE62hX"
    "v1Z1iVky0dtAV65dXwIDAQAB")
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


def _modulus(public_key: str) -> int:
    key = serialization.load_der_public_key(base64.b64decode(public_key))
    assert isinstance(key, rsa.RSAPublicKey)
    return key.public_numbers().n


_ENVISION_MODULUS = _modulus(ENVISION_PUBLIC_KEY)
_ENVISION_BLOCK = (_ENVISION_MODULUS.bit_length() + 7) // 8


def _canonical_block(token: str, size: int) -> bytes | None:
    """``token`` as the one ``size``-byte block it spells in canonical base64, or None."""
    if len(token) != 4 * ((size + 2) // 3) or not _BASE64.fullmatch(token):
        return None
    try:
        block = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(block) != size or base64.b64encode(block).decode() != token:
        return None
    return block


def has_sdk_form(token: str) -> bool:
    """Whether ``token`` is what an unmodified SDK sends: an RSA-OAEP ciphertext for
    Envision's key, i.e. exactly one block of that key's size in canonical (padded, standard
    alphabet) base64, whose value is below the key's modulus as every ciphertext's is. Without
    Envision's private key nothing more can be known, and nothing less is the SDK's."""
    block = _canonical_block(token, _ENVISION_BLOCK)
    return block is not None and int.from_bytes(block, "big") < _ENVISION_MODULUS


class NotGenuine(ValueError):
    """The token does not open with the farm's key, or does not name an app with its secret."""


def read_token(token: str, key: rsa.RSAPrivateKey, apps: Mapping[str, str]) -> SdkToken:
    """Open ``token`` with the farm's key and check it the SDK's way against ``apps``
    (appKey -> appSecret). The token must be exactly the SDK's text: canonical base64 of one
    RSA block, no other spelling of the same bytes."""
    block = _canonical_block(token, key.key_size // 8)
    if block is None:
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

"""HTTP Digest (RFC 7616 with MD5, RFC 2617's qop=auth and no-qop forms) and Basic, as the
camera's HTTP snapshot, ONVIF and RTSP servers check them: one verifier for all three.

Nonces are the camera's own: an HMAC of an issue time, so any nonce the camera made in the
last ``NONCE_LIFETIME`` seconds is good and an old one is answered ``stale=true``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

NONCE_LIFETIME = 300.0
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')
# Longest Authorization header looked at: a real one is a few hundred bytes.
MAX_HEADER = 4096


@dataclass(frozen=True)
class Credentials:
    scheme: str  # "Digest" or "Basic"
    user: str


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def parse_params(text: str) -> dict[str, str]:
    """``a="b", c=d`` -> {"a": "b", "c": "d"} (quoted values unescaped)."""
    params: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        match = _PARAM.match(text, pos)
        if match is None or match.end() == pos:
            break
        quoted, bare = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else (bare or "")
        params[match.group(1).lower()] = value
        pos = match.end()
    return params


class DigestAuth:
    """One camera's challenges and checks (its realm, its nonce key)."""

    def __init__(self, realm: str, *, basic: bool = True, digest: bool = True) -> None:
        self.realm = realm
        self.basic = basic
        self.digest = digest
        self._key = os.urandom(16)

    def nonce(self, now: float | None = None) -> str:
        stamp = f"{(now if now is not None else time.time()):.0f}"
        mac = hmac.new(self._key, stamp.encode(), hashlib.sha256).hexdigest()[:16]
        return f"{stamp}{mac}"

    def _nonce_age(self, nonce: str) -> float | None:
        stamp, mac = nonce[:-16], nonce[-16:]
        if not stamp.isdigit():
            return None
        good = hmac.new(self._key, stamp.encode(), hashlib.sha256).hexdigest()[:16]
        if not hmac.compare_digest(good, mac):
            return None
        return time.time() - int(stamp)

    def challenges(self, *, stale: bool = False) -> list[str]:
        """The WWW-Authenticate values of a 401, Digest first (what clients pick first)."""
        found = []
        if self.digest:
            extra = ", stale=true" if stale else ""
            found.append(f'Digest realm="{self.realm}", qop="auth", nonce="{self.nonce()}", '
                         f'algorithm=MD5{extra}')
        if self.basic:
            found.append(f'Basic realm="{self.realm}"')
        return found

    def check(self, method: str, header: str | None,
              password_of: Callable[[str], str | None]) -> Credentials | bool | None:
        """The caller behind ``header`` (an Authorization value): Credentials when the
        password fits, None when absent or wrong, False for a good Digest on a stale nonce
        (the client retries with the new nonce the challenge carries)."""
        if not header or len(header) > MAX_HEADER:
            return None
        scheme, _, rest = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic" and self.basic:
            try:
                user, sep, password = base64.b64decode(rest.strip(), validate=True).decode(
                    "utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return None
            known = password_of(user) if sep else None
            if known is not None and hmac.compare_digest(known.encode(), password.encode()):
                return Credentials("Basic", user)
            return None
        return self._check_digest(scheme, method, rest, password_of)

    def _check_digest(self, scheme: str, method: str, rest: str,
                      password_of: Callable[[str], str | None]) -> Credentials | bool | None:
        if scheme != "digest" or not self.digest:
            return None
        params = parse_params(rest)
        user, nonce, uri, response = (params.get(k) for k in ("username", "nonce", "uri",
                                                              "response"))
        if not (user and nonce and uri and response) or params.get("realm") != self.realm:
            return None
        if params.get("algorithm", "MD5").upper() != "MD5":
            return None
        secret = password_of(user)
        if secret is None:
            return None
        ha1 = _md5(f"{user}:{self.realm}:{secret}")
        ha2 = _md5(f"{method}:{uri}")
        qop = params.get("qop")
        if qop:
            if qop != "auth" or not params.get("nc") or not params.get("cnonce"):
                return None
            expected = _md5(f"{ha1}:{nonce}:{params['nc']}:{params['cnonce']}:auth:{ha2}")
        else:
            expected = _md5(f"{ha1}:{nonce}:{ha2}")
        if not hmac.compare_digest(expected, response.lower()):
            return None
        age = self._nonce_age(nonce)
        if age is None:
            return None
        if age > NONCE_LIFETIME:
            return False
        return Credentials("Digest", user)

"""WS-Security UsernameToken (OASIS UsernameToken Profile 1.0) as an ONVIF camera checks it:
PasswordDigest = Base64(SHA1(nonce + created + password)) or PasswordText, the token's
Created within the camera's skew window, and a nonce used once within that window."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from datetime import UTC, datetime

from .. import soap
from ..facts import VideoFacts, VideoUser

PROFILE = ("http://docs.oasis-open.org/wss/2004/01/"
           "oasis-200401-wss-username-token-profile-1.0")
PASSWORD_DIGEST = f"{PROFILE}#PasswordDigest"
PASSWORD_TEXT = f"{PROFILE}#PasswordText"
# Nonces remembered at most: past this the oldest are forgotten (a flood of fresh tokens
# cannot grow the book without bound).
MAX_NONCES = 4096
# Longest nonce looked at (zeep sends 16 random bytes, 24 in Base64).
MAX_NONCE = 256


class NonceBook:
    """Nonces seen in the last ``window`` seconds: a token whose nonce comes again within
    the window is a replay."""

    def __init__(self) -> None:
        self._seen: dict[bytes, float] = {}

    def replayed(self, nonce: bytes, window: float) -> bool:
        now = time.monotonic()
        if len(self._seen) >= MAX_NONCES:
            for key in [k for k, until in self._seen.items() if until <= now]:
                del self._seen[key]
            while len(self._seen) >= MAX_NONCES:
                del self._seen[next(iter(self._seen))]
        until = self._seen.get(nonce)
        if until is not None and until > now:
            return True
        self._seen[nonce] = now + window
        return False


def parse_created(text: str) -> float:
    """A token's Created (xs:dateTime, UTC when it names no zone) as a Unix time."""
    if len(text) > 64:
        raise ValueError("too long")
    stamp = datetime.fromisoformat(text.strip())
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def username_token(message: soap.Message) -> soap.Element | None:
    """The request's wsse:UsernameToken with a user name in it, if any."""
    security = message.header_child(soap.WSSE, "Security")
    if security is None:
        return None
    token = security.find(f"{{{soap.WSSE}}}UsernameToken")
    if token is None or not (soap.text_of(token, f"{{{soap.WSSE}}}Username") or ""):
        return None
    return token


def check_token(token: soap.Element, facts: VideoFacts, camera_time: float, skew: float,
                nonces: NonceBook) -> VideoUser:
    """The camera user ``token`` proves, or ter:NotAuthorized."""
    name = soap.text_of(token, f"{{{soap.WSSE}}}Username") or ""
    password_el = token.find(f"{{{soap.WSSE}}}Password")
    nonce_text = soap.text_of(token, f"{{{soap.WSSE}}}Nonce")
    created_text = soap.text_of(token, f"{{{soap.WSU}}}Created")
    if password_el is None:
        raise soap.not_authorized("the UsernameToken carries no password")
    kind = password_el.get("Type", PASSWORD_TEXT)
    if created_text is not None:
        try:
            created = parse_created(created_text)
        except ValueError:
            raise soap.not_authorized("the UsernameToken's Created is not a date") from None
        if abs(created - camera_time) > skew:
            raise soap.not_authorized("the UsernameToken's Created is too far from the "
                                      "camera's clock")
    nonce: bytes | None = None
    if nonce_text is not None:
        try:
            if len(nonce_text) > MAX_NONCE:
                raise ValueError("too long")
            nonce = base64.b64decode(nonce_text, validate=True)
        except (binascii.Error, ValueError):
            raise soap.not_authorized("the UsernameToken's Nonce is not Base64") from None
    user = facts.user(name)
    given = password_el.text or ""
    if kind == PASSWORD_DIGEST:
        if nonce is None or created_text is None:
            raise soap.not_authorized("a PasswordDigest needs the token's Nonce and Created")
        ok = user is not None and hmac.compare_digest(given.strip(), base64.b64encode(hashlib.sha1(
            nonce + created_text.encode() + user.password.encode()).digest()).decode())
    elif kind == PASSWORD_TEXT:
        ok = user is not None and hmac.compare_digest(given.encode(), user.password.encode())
    else:
        raise soap.not_authorized("unknown UsernameToken password type")
    if not ok or user is None:
        raise soap.not_authorized()
    if nonce is not None and nonces.replayed(name.encode() + b"\0" + nonce, 2 * skew):
        raise soap.not_authorized("the UsernameToken's Nonce was used before")
    return user

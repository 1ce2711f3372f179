"""The APIM gateway's apps and access tokens: get, refresh, verifying signed calls, and
telling a genuine token of a bare call (issued here, or enos-poseidon's) from a made-up one.
An enos-poseidon token encrypted to Envision's key cannot be read: it is judged by its form
and taken as a call of the app the call's organisation points to (``app_for``).

``encryption`` = sha256hex(appKey + timestamp + appSecret); a signed call's
``apim-signature`` = sha256hex(token + sorted query name+value pairs + raw body + timestamp +
appSecret). Times are epoch seconds from the farm clock, passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from ..exceptions import (
    AppKeyUnknown,
    DuplicatedEncryption,
    EncryptionInvalid,
    InvalidParameter,
    ParameterEmpty,
    RefreshFailed,
    TokenExpired,
    TokenUnknown,
)
from ..sdk import NotGenuine, SdkToken, has_sdk_form, read_token

TOKEN_SERVICE = "apim-token-service"
# How long a used encryption is remembered for the duplicate check (a day covers any skew).
REPLAY_MEMORY = 24 * 3600
# SDK tokens whose first use the gateway remembers (an expired one is refused while it is
# remembered), and tokens read (or refused) kept so a repeated one costs no RSA decryption.
SDK_SEEN_MEMORY = 100_000
SDK_OPENED_CACHE = 1024


def sha256hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def encryption(app_key: str, timestamp: str, app_secret: str) -> str:
    return sha256hex(app_key + timestamp + app_secret)


def signature(token: str, query: Iterable[tuple[str, str]], body: str, timestamp: str,
              app_secret: str) -> str:
    params = "".join(name + value for name, value in sorted(query))
    return sha256hex(token + params + body + timestamp + app_secret)


def _same(wanted: str, given: str) -> bool:
    # Bytes, so that a non-ASCII value is a mismatch rather than a TypeError.
    return hmac.compare_digest(wanted.encode(), given.lower().encode("utf-8", "replace"))


@dataclass(frozen=True)
class App:
    app_key: str
    app_secret: str
    org_id: str | None = None


@dataclass
class AccessToken:
    token: str
    app_key: str
    issued_at: float
    expires_at: float

    def remaining(self, now: float) -> int:
        return max(0, int(self.expires_at - now))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TokenService:
    def __init__(self, apps: Iterable[App], lifetime: int = 7200) -> None:
        self.apps = {a.app_key: a for a in apps}
        self.lifetime = lifetime
        self.tokens: dict[str, AccessToken] = {}
        self.used: dict[str, float] = {}  # encryption -> when it was used
        # The key enos-poseidon's tokens are encrypted to (None: none can be read).
        self.sdk_key: rsa.RSAPrivateKey | None = None
        self._secrets = {a.app_key: a.app_secret for a in self.apps.values()}
        self._sdk_first_seen: OrderedDict[str, float] = OrderedDict()  # access -> farm time
        self._opened: OrderedDict[str, SdkToken | None] = OrderedDict()

    # -- token service ---------------------------------------------------------------------
    def _check(self, body: dict[str, Any], now: float, *extra: str) -> App:
        """The token service's checks, in order: empty, shape, appKey, encryption, replay."""
        for name in ("appKey", "encryption", "timestamp", *extra):
            value = body.get(name)
            if value is None or value == "":
                raise ParameterEmpty(TOKEN_SERVICE)
        timestamp = body["timestamp"]
        if isinstance(timestamp, bool) or not isinstance(timestamp, int | str):
            raise InvalidParameter(TOKEN_SERVICE)
        if isinstance(timestamp, str) and not timestamp.isdigit():
            raise InvalidParameter(TOKEN_SERVICE)
        for name in ("appKey", "encryption", *extra):
            if not isinstance(body[name], str):
                raise InvalidParameter(TOKEN_SERVICE)
        app = self.apps.get(body["appKey"])
        if app is None:
            raise AppKeyUnknown(TOKEN_SERVICE)
        wanted = encryption(app.app_key, str(timestamp), app.app_secret)
        if not _same(wanted, body["encryption"]):
            raise EncryptionInvalid(TOKEN_SERVICE)
        self._forget_old(now)
        if wanted in self.used:
            raise DuplicatedEncryption(TOKEN_SERVICE)
        self.used[wanted] = now
        return app

    def judge_request(self, body: Any) -> str:
        """How a token request's credentials stand, using nothing up (its encryption is not
        remembered): ``none`` without an appKey and encryption, ``right`` for a known app's
        right encryption, else ``wrong``. For a quirk profile's replay."""
        if not isinstance(body, dict) or not body.get("appKey") or not body.get("encryption"):
            return "none"
        key, given, timestamp = body["appKey"], body["encryption"], body.get("timestamp")
        app = self.apps.get(key) if isinstance(key, str) else None
        if (app is None or not isinstance(given, str) or isinstance(timestamp, bool)
                or not isinstance(timestamp, int | str)):
            return "wrong"
        wanted = encryption(app.app_key, str(timestamp), app.app_secret)
        return "right" if _same(wanted, given) else "wrong"

    def _forget_old(self, now: float) -> None:
        for key in [k for k, at in self.used.items() if now - at > REPLAY_MEMORY]:
            del self.used[key]

    def _new(self, app: App, now: float) -> AccessToken:
        token = AccessToken(secrets.token_hex(32), app.app_key, now, now + self.lifetime)
        self.tokens[token.token] = token
        return token

    def get(self, body: dict[str, Any], now: float) -> AccessToken:
        """The app's token: the same one while it is valid, else a new one."""
        app = self._check(body, now)
        for token in self.tokens.values():
            if token.app_key == app.app_key and token.expires_at > now:
                return token
        self._drop_expired(app, now)
        return self._new(app, now)

    def refresh(self, body: dict[str, Any], now: float) -> AccessToken:
        """A new token for the app's current (possibly expired) one, which stops working."""
        app = self._check(body, now, "accessToken")
        old = self.tokens.get(body["accessToken"])
        if old is None or old.app_key != app.app_key:
            raise RefreshFailed(TOKEN_SERVICE)
        del self.tokens[old.token]
        return self._new(app, now)

    def _drop_expired(self, app: App, now: float) -> None:
        for key in [k for k, t in self.tokens.items()
                    if t.app_key == app.app_key and t.expires_at <= now]:
            del self.tokens[key]

    # -- signed business calls -------------------------------------------------------------
    def verify(self, token: str, timestamp: str, given: str, query: Iterable[tuple[str, str]],
               body: str, now: float) -> App:
        if not token or not timestamp or not given:
            raise ParameterEmpty()
        if not timestamp.isdigit():
            raise InvalidParameter()
        record = self.tokens.get(token)
        if record is None:
            raise TokenUnknown()
        app = self.apps.get(record.app_key)
        if app is None:  # the app left the scenario since the token was saved
            raise TokenUnknown()
        if record.expires_at <= now:
            raise TokenExpired(apim_refreshtoken=record.token)
        wanted = signature(token, query, body, timestamp, app.app_secret)
        if not _same(wanted, given):
            raise EncryptionInvalid()
        return app

    # -- bare calls (apim-accesstoken alone, what enos-poseidon sends) -----------------------
    def authorize(self, token: str, now: float, *, sdk_tokens: bool, by_form: bool = False,
                  org_id: str | None = None) -> App:
        """The app a bare call's token is genuinely from: a token this gateway issued,
        unexpired (refresh retires one); or, with ``sdk_tokens``, one enos-poseidon derived
        from an app of this gateway and encrypted to its key; or, with ``by_form`` too, one of
        the form the published SDK sends (encrypted to Envision's key), taken as a call of
        ``app_for(org_id)``. Anything else is 4012."""
        record = self.tokens.get(token)
        if record is not None:
            app = self.apps.get(record.app_key)
            if app is None:  # the app left the scenario since the token was saved
                raise TokenUnknown()
            if record.expires_at <= now:
                raise TokenExpired(apim_refreshtoken=record.token)
            return app
        if not sdk_tokens:
            raise TokenUnknown()
        # The form check costs no RSA: the SDK as shipped is served without a decryption.
        if by_form and self.apps and has_sdk_form(token):
            return self.app_for(org_id)
        if self.sdk_key is None:
            raise TokenUnknown()
        opened = self._open(token)
        # The token's own times are HMACs of the client's clock: the gateway dates a token
        # from its first use on the farm clock, and refuses it once that is ``lifetime`` ago.
        first = self._sdk_first_seen.setdefault(opened.access, now)
        self._sdk_first_seen.move_to_end(opened.access)
        while len(self._sdk_first_seen) > SDK_SEEN_MEMORY:
            self._sdk_first_seen.popitem(last=False)
        if now - first >= self.lifetime:
            raise TokenExpired(apim_refreshtoken=opened.refresh)
        return self.apps[opened.app_key]

    def app_for(self, org_id: str | None) -> App:
        """The app a call of ``org_id`` is taken to come from when its token cannot say: the
        first app (in scenario order) that names that organisation, else the first that names
        none, else the first app."""
        apps = list(self.apps.values())
        return next((a for a in apps if org_id is not None and a.org_id == org_id),
                    next((a for a in apps if a.org_id is None), apps[0]))

    def _open(self, token: str) -> SdkToken:
        """The token read with the SDK key; refusals are remembered too, so repeating a
        made-up token costs no second RSA decryption."""
        if token in self._opened:
            opened = self._opened[token]
        else:
            assert self.sdk_key is not None
            try:
                opened = read_token(token, self.sdk_key, self._secrets)
            except NotGenuine:
                opened = None
            self._opened[token] = opened
            while len(self._opened) > SDK_OPENED_CACHE:
                self._opened.popitem(last=False)
        if opened is None:
            raise TokenUnknown()
        return opened

    # -- state ---------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        return {"tokens": [t.to_dict() for t in self.tokens.values()],
                "used_encryptions": dict(self.used)}

    def load(self, data: dict[str, Any]) -> None:
        self.tokens = {t["token"]: AccessToken(**t) for t in data.get("tokens", [])}
        self.used = {k: float(v) for k, v in data.get("used_encryptions", {}).items()}

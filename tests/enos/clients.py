"""Helpers for the EnOS tests: the enos-poseidon SDK as the client, signed gateway calls by
hand, and CSRs made from keys cached for the session."""

from __future__ import annotations

import hashlib
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from functools import cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from emulators import pki
from emulators.enos import sdk as enos_sdk
from emulators.testing import MemberHandle, RemoteMember

_default_https = ssl._create_default_https_context
from poseidon import poseidon  # noqa: E402 - imported after saving what it overwrites

# enos-poseidon switches off certificate checking for the whole process on import; the
# emulator speaks plain HTTP here, so put the default back for every other test.
ssl._create_default_https_context = _default_https

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "enos"
ORG = "o15589290120871"
OTHER_ORG = "o15589290120999"
APP_KEY = "7b4fa3c2-1d5e-4f60-9a8b-2c3d4e5f6a7b"
APP_SECRET = "e1d2c3b4-a596-4788-9900-aabbccddeeff"
OTHER_KEY = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
OTHER_SECRET = "5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f"
CERTS = "/connect-service/v2.0/certificates"


# -- keys and CSRs (key generation is slow: each kind once per session) ----------------------

@cache
def rsa_key(bits: int = 2048, n: int = 0) -> rsa.RSAPrivateKey:
    return pki.rsa_key(bits)


@cache
def ec_key(curve: str = "secp256r1", n: int = 0) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key({"secp256r1": ec.SECP256R1(), "secp384r1": ec.SECP384R1()}
                                   [curve])


SUBJECT = {"C": "CN", "ST": "Shanghai", "L": "Shanghai", "O": "EnOS", "OU": "EnOS"}


def make_csr(key: Any, cn: str = "device-a", digest: hashes.HashAlgorithm | None = None,
             **fields: str | None) -> str:
    values = {**SUBJECT, "CN": cn, **fields}
    subject = pki.name(**{k: v for k, v in values.items() if v})
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(
        key, digest or hashes.SHA256())
    return pki.csr_pem(csr)


def base_options(roots: dict[str, Any]) -> dict[str, Any]:
    return {
        "orgs": [{"orgId": ORG, "name": "Emulator Org"}, {"orgId": OTHER_ORG}],
        "products": [
            {"orgId": ORG, "productKey": "PBiDir01", "maxValidDay": 3650},
            {"orgId": ORG, "productKey": "PShort01", "maxValidDay": 365},
            {"orgId": ORG, "productKey": "POneWay1", "biDirectionalAuth": False},
            {"orgId": OTHER_ORG, "productKey": "PBiDir01"},
        ],
        "devices": [
            {"orgId": ORG, "assetId": "assetA", "productKey": "PBiDir01", "deviceKey": "devA"},
            {"orgId": ORG, "assetId": "assetB", "productKey": "PBiDir01", "deviceKey": "devB"},
            {"orgId": ORG, "assetId": "assetS", "productKey": "PShort01", "deviceKey": "devS"},
            {"orgId": ORG, "assetId": "assetM", "productKey": "POneWay1", "deviceKey": "devM"},
            {"orgId": OTHER_ORG, "assetId": "assetX", "productKey": "PBiDir01",
             "deviceKey": "devA"},
        ],
        "certificates": [
            {"assetId": "assetB", "key": pki.key_pem(ec_key("secp256r1", 1)),
             "issueAuthority": "ECC", "subject": {"CN": "bound-b"}},
        ],
        "apps": [{"appKey": APP_KEY, "appSecret": APP_SECRET},
                 {"appKey": OTHER_KEY, "appSecret": OTHER_SECRET}],
        "ca": roots,
        # The key enos-poseidon encrypts its tokens to, made once for the session (a farm
        # without it makes its own at first start: tests/enos/test_sdk_tokens.py).
        "sdk_token_key": pki.key_pem(rsa_key(2048, 7)),
    }


# -- the client side -----------------------------------------------------------------------

def sha256hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Enos:
    """A test's view of one EnOS emulator: SDK calls, raw calls, signed calls, the clock."""

    def __init__(self, handle: MemberHandle | RemoteMember) -> None:
        self.handle = handle
        self.url = handle.url
        self._last_token_ms = 0

    # the SDK
    def sdk(self, action: str, data: dict[str, Any] | None = None, *, org: str = ORG,
            key: str = APP_KEY, secret: str = APP_SECRET, no_device: bool = False,
            **device: str) -> Any:
        """One call through enos-poseidon as published (its token encrypted to Envision's
        key); the device is assetA unless named (or no_device)."""
        if not device and not no_device:
            device = {"assetId": "assetA"}
        query = {"action": action, "orgId": org, **device}
        url = f"{self.url}{CERTS}?{urllib.parse.urlencode(query)}"
        return poseidon.urlopen(key, secret, url, data=data)

    @property
    def public_key(self) -> str:
        """The member's own key, for ``sdk_token_check: farm-key`` (the ready file's
        ``sdkPublicKey``)."""
        return self.handle.credentials["sdkPublicKey"]  # type: ignore[no-any-return]

    def sdk_token(self, key: str = APP_KEY, secret: str = APP_SECRET, **kw: Any) -> str:
        """A token as the published enos-poseidon makes it (for Envision's key), for raw
        calls."""
        return enos_sdk.make_token(key, secret, enos_sdk.ENVISION_PUBLIC_KEY, **kw)

    def farm_token(self, key: str = APP_KEY, secret: str = APP_SECRET, **kw: Any) -> str:
        """A token made the SDK's way but encrypted to this member's own key (what the
        stricter ``farm-key`` mode reads)."""
        return enos_sdk.make_token(key, secret, self.public_key, **kw)

    # plain HTTP
    def raw(self, method: str, path: str, body: bytes | str | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw, status, reply_headers = resp.read(), resp.status, resp.headers
        except urllib.error.HTTPError as exc:
            with exc:
                raw, status, reply_headers = exc.read(), exc.code, exc.headers
        try:
            return status, json.loads(raw), reply_headers
        except ValueError:
            return status, raw, reply_headers

    def token_call(self, path: str, body: dict[str, Any] | str) -> dict[str, Any]:
        text = body if isinstance(body, str) else json.dumps(body)
        status, reply, _ = self.raw("POST", f"/apim-token-service/v2.0/token/{path}", text,
                                    {"Content-Type": "application/json"})
        assert status == 200
        return reply  # type: ignore[no-any-return]

    def now_ms(self) -> int:
        if isinstance(self.handle, RemoteMember):
            return int(self.handle.farm.clock.time() * 1000)
        return int(self.handle.call(lambda m: m.clock.time()) * 1000)

    def token_body(self, ts: int | None = None, key: str = APP_KEY,
                   secret: str = APP_SECRET) -> dict[str, Any]:
        if ts is None:
            # Two tokens asked for in one millisecond would carry the same encryption, which
            # the token service refuses as a replay (1001), as a real app meets it too.
            ts = self._last_token_ms = max(self.now_ms(), self._last_token_ms + 1)
        return {"appKey": key, "encryption": sha256hex(key + str(ts) + secret), "timestamp": ts}

    def token(self) -> str:
        reply = self.token_call("get", self.token_body())
        assert reply["status"] == 0, reply
        return reply["data"]["accessToken"]  # type: ignore[no-any-return]

    def signed(self, method: str, query: dict[str, str], body: dict[str, Any] | None = None,
               *, token: str | None = None, secret: str = APP_SECRET,
               signature: str | None = None, timestamp: str | None = None,
               ) -> tuple[int, Any]:
        token = token if token is not None else self.token()
        raw = json.dumps(body) if body is not None else ""
        ts = timestamp or str(self.now_ms())
        params = "".join(k + v for k, v in sorted(query.items()))
        sig = signature or sha256hex(token + params + raw + ts + secret)
        headers = {"apim-accesstoken": token, "apim-timestamp": ts, "apim-signature": sig,
                   "Content-Type": "application/json;charset=utf-8"}
        status, reply, _ = self.raw(method, f"{CERTS}?{urllib.parse.urlencode(query)}",
                                    raw if body is not None else None, headers)
        return status, reply

    def advance(self, seconds: float) -> None:
        if isinstance(self.handle, RemoteMember):
            self.handle.farm.advance_clock(seconds)
        else:
            self.handle.call(lambda m: m.clock.advance(seconds))

    @property
    def ca_pem(self) -> str:
        """The farm CA that issued the emulator's TLS certificates (devices trust it)."""
        if isinstance(self.handle, RemoteMember):
            return str(self.handle.farm.ready["ca"]["pem"])
        return str(self.handle.member.ctx.ca.pem)

    def inject_internal_errors(self, count: int) -> None:
        """The next ``count`` certificate calls fail with 99500 (the control route)."""
        if isinstance(self.handle, RemoteMember):
            self.handle.farm.api("POST", f"/v1/emulators/{self.handle.name}/enos/faults",
                                 {"internal_errors": count})
        else:
            self.handle.call(lambda m: m.inject_internal_errors(count))

    def state(self) -> dict[str, Any]:
        return self.handle.state()


def fresh(farm: Any) -> Enos:
    """The farm's ``enos`` member back at its scenario state (no MQTT sessions), the farm at
    the real time with no fault rules and an empty journal."""
    farm.reset_clock()
    farm.clear_faults()
    farm.clear_journal()
    handle = farm["enos"]
    handle.reset()
    return Enos(handle)

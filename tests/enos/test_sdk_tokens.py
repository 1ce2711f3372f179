"""Bare calls (``apim-accesstoken`` alone, what enos-poseidon sends). By default the SDK works
as it ships: its token, encrypted to Envision's key, is judged by its form (one ciphertext
block of that key in canonical base64) and taken as a call of the gateway's app; anything of
another form is refused. The stricter ``sdk_token_check: farm-key`` lets in only tokens the
token service issued or the SDK's tokens encrypted to this member's own key (``sdkPublicKey``
in the ready file), naming an app with its secret."""

from __future__ import annotations

import base64
import inspect
import json
import os
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from emulators import pki
from emulators.enos import sdk
from emulators.enos.options import EnosOptions
from emulators.testing import LoopThread, RunningFarm

from .clients import (
    APP_KEY,
    APP_SECRET,
    CERTS,
    ORG,
    OTHER_KEY,
    OTHER_ORG,
    OTHER_SECRET,
    Enos,
    base_options,
    make_csr,
    poseidon,
    rsa_key,
)

UNKNOWN = {"status": 1004, "msg": "Invalid parameter.", "business": "apim-gateway",
           "apim_status": 4012}
EMPTY = {"status": 1202, "msg": "The parameter is empty.", "business": "apim-gateway",
         "apim_status": 4012}
# What poseidon.py ships as Envision's key: a token for it is what the unconfigured SDK sends.
ENVISION_KEY = (poseidon.pubkey if isinstance(poseidon.pubkey, str)
                else poseidon.pubkey.decode())
# A block that is one RSA-2048 ciphertext's size but no ciphertext of Envision's key (above
# its modulus).
ABOVE_MODULUS = base64.b64encode(b"\xff" * 256).decode()
# An app the gateway does not know (the SDK's UUID form).
STRANGER_KEY = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
STRANGER_SECRET = "aa11bb22-cc33-4d44-8e55-ff6677889900"


def expired(refresh: str) -> dict[str, Any]:
    return {"status": 1203, "msg": "The access token has expired.",
            "business": "apim-gateway", "apim_status": 4011, "apim_refreshtoken": refresh}


# -- what enos-poseidon does, read from its source ------------------------------------------------

def test_the_emulator_derives_tokens_as_poseidon_py_does() -> None:
    source = inspect.getsource(poseidon)
    # The lines of poseidon/poseidon.py that sdk.py reproduces.
    for line in (
        "return str(int(tmp, 16)).zfill(9)[:6]",
        "hmac.new(sk.encode('UTF-8'), e_data.encode('UTF-8'), hashlib.sha256).hexdigest()",
        "data_encryption = pm + '$' + key + '$' + secret + '$' + accesstoken + '$' + refreshtoken",
        "cipher_rsa = PKCS1_OAEP.new(rsa_key)",
        "req.add_header('apim-accesstoken', accesstoken)",
    ):
        assert line in source, line
    assert "apim-token-service" not in source  # the SDK never asks the token service
    assert (poseidon.sk, poseidon.s_time, poseidon.l_time) == (
        sdk.SDK_HMAC_KEY, sdk.ACCESS_LIFETIME_MS, sdk.REFRESH_LIFETIME_MS)
    assert getattr(poseidon, "__pin")(APP_KEY, APP_SECRET) == sdk.pin(APP_KEY, APP_SECRET)


def test_a_token_made_by_poseidons_own_code_opens_with_the_farm_key() -> None:
    """poseidon's own PIN and HMACs, encrypted as its ``__accesstoken`` encrypts (PyCryptodome's
    ``PKCS1_OAEP`` over ``RSA.importKey`` of the key's DER), to the farm key: the SDK itself
    is not changed to do it."""
    from Crypto.Cipher import PKCS1_OAEP
    from Crypto.PublicKey import RSA

    key = rsa_key(2048, 7)
    code = getattr(poseidon, "__pin")(APP_KEY, APP_SECRET)
    access, refresh = getattr(poseidon, "__token")(code, poseidon.s_time, poseidon.l_time)
    plain = "$".join((code, APP_KEY, APP_SECRET, access, refresh))
    cipher = PKCS1_OAEP.new(RSA.importKey(base64.b64decode(sdk.public_key_text(key))))
    token = base64.b64encode(cipher.encrypt(plain.encode("UTF-8"))).decode()
    apps = {APP_KEY: APP_SECRET, OTHER_KEY: OTHER_SECRET}
    assert sdk.read_token(token, key, apps) == sdk.SdkToken(APP_KEY, access, refresh)
    ours = sdk.read_token(sdk.make_token(APP_KEY, APP_SECRET, sdk.public_key_text(key)), key,
                          apps)
    assert ours.app_key == APP_KEY
    with pytest.raises(sdk.NotGenuine):
        sdk.read_token(token, rsa_key(2048, 8), apps)  # another key cannot read it


def test_the_emulator_knows_the_key_the_published_sdk_encrypts_to() -> None:
    assert sdk.ENVISION_PUBLIC_KEY == ENVISION_KEY
    token = getattr(poseidon, "__accesstoken")(sdk.pin(APP_KEY, APP_SECRET), APP_KEY, APP_SECRET,
                                               "a" * 64, "b" * 64)
    assert sdk.has_sdk_form(token)  # what poseidon's own code makes, unmodified


# -- the default: the SDK as published ---------------------------------------------------------------

FORM_REFUSED: dict[str, Callable[[Enos], str]] = {
    "made-up-word": lambda e: "sdk-token",
    "made-up-hex": lambda e: "f" * 64,
    "a-token-service-signature": lambda e: e.token_body()["encryption"],
    "base64-of-one-block-above-envision-s-modulus": lambda e: ABOVE_MODULUS,
    "base64-one-byte-short": lambda e: base64.b64encode(os.urandom(255)).decode(),
    "base64-one-byte-long": lambda e: base64.b64encode(os.urandom(257)).decode(),
    "base64-of-an-rsa-4096-block": lambda e: base64.b64encode(b"\x01" * 512).decode(),
    "sdk-token-without-padding": lambda e: e.sdk_token().rstrip("="),
    "sdk-token-url-safe-alphabet": lambda e: _url_safe(e),
    "sdk-token-with-an-inner-space": lambda e: (t := e.sdk_token())[:100] + " " + t[100:],
    "sdk-token-twice": lambda e: (t := e.sdk_token()) + t,
    "sdk-token-cut-short": lambda e: e.sdk_token()[:-4],
    "sdk-token-with-non-ascii": lambda e: e.sdk_token()[:-3] + "\u00e9==",
}


@pytest.mark.parametrize("row", list(FORM_REFUSED))
def test_by_default_a_token_not_of_the_sdk_s_form_is_refused(enos: Enos, row: str) -> None:
    before = enos.state()["certificates"]
    assert call(enos, "revoke", FORM_REFUSED[row](enos), certSn=bound_sn(enos)) == UNKNOWN
    assert call(enos, "list", "   ") == EMPTY
    assert enos.state()["certificates"] == before  # nothing revoked


def test_by_default_enos_poseidon_as_published_applies_renews_revokes_and_lists(
        enos: Enos, capsys: Any) -> None:
    """No key given to the SDK, nothing patched: the calls a user makes from the seed."""
    applied = enos.sdk("apply", {"csr": make_csr(rsa_key(), "as-published")})
    assert applied["code"] == 0, applied
    sn = int(applied["data"]["certSN"])
    renewed = enos.sdk("renew", {"certSn": sn})
    assert renewed["code"] == 0, renewed
    revoked = enos.sdk("revoke", {"certSn": sn, "reason": 1})
    assert revoked["code"] == 0, revoked
    listed = {c["certSN"]: c for c in enos.sdk("list")["data"]}
    # Two apps, none tied to an organisation: the call counts as the first app's.
    assert (listed[str(sn)]["certStatus"], listed[str(sn)]["revoker"],
            listed[str(sn)]["revokerReason"]) == (1, APP_KEY, 1)
    assert "the second time request" not in capsys.readouterr().out  # no 4011/4012 retry


def test_a_bare_sdk_call_counts_as_the_app_of_its_organisation(
        start_enos: Callable[..., Enos]) -> None:
    enos = start_enos(apps=[{"appKey": APP_KEY, "appSecret": APP_SECRET, "orgId": OTHER_ORG},
                            {"appKey": OTHER_KEY, "appSecret": OTHER_SECRET, "orgId": ORG}])
    # Any of the gateway's apps may call: the token cannot say which, the organisation does.
    revoked = enos.sdk("revoke", {"certSn": bound_sn(enos)}, assetId="assetB")
    assert revoked["code"] == 0, revoked
    [entry] = [c for c in enos.sdk("list", assetId="assetB")["data"]
               if c["certSN"] == str(bound_sn(enos))]
    assert entry["revoker"] == OTHER_KEY  # the app of org ORG, not the first one


def test_an_app_naming_an_unknown_organisation_is_a_scenario_error(
        roots: dict[str, Any]) -> None:
    from .clients import base_options
    with pytest.raises(ValidationError, match="names unknown org 'o-nowhere'"):
        EnosOptions(**{**base_options(roots),
                       "apps": [{"appKey": APP_KEY, "appSecret": APP_SECRET,
                                 "orgId": "o-nowhere"}]})


def test_switched_off_sdk_tokens_leave_issued_ones(start_enos: Callable[..., Enos]) -> None:
    strict = start_enos(accept_sdk_tokens=False)
    assert call(strict, "list", strict.sdk_token()) == UNKNOWN
    assert call(strict, "list", strict.farm_token()) == UNKNOWN
    assert call(strict, "list", strict.token())["code"] == 0


# -- the stricter mode: only tokens encrypted to the farm's own key ---------------------------------

@pytest.fixture(scope="module")
def farm_key_farm(emulators_loop: LoopThread, roots: dict[str, Any]) -> Iterator[RunningFarm]:
    """An EnOS member in ``sdk_token_check: farm-key`` mode (its SDK key: base_options')."""
    farm = RunningFarm.start({"name": "enos-farm-key", "emulators": [
        {"name": "enos", "kind": "enos", **base_options(roots), "sdk_token_check": "farm-key"}]},
        loop=emulators_loop, control=False)
    yield farm
    farm.stop()


@pytest.fixture
def strict(farm_key_farm: RunningFarm) -> Enos:
    farm_key_farm.reset_clock()
    farm_key_farm["enos"].reset()
    return Enos(farm_key_farm["enos"])


@pytest.fixture(scope="module")
def other_farm(emulators_loop: LoopThread, roots: dict[str, Any]) -> Iterator[RunningFarm]:
    """A second EnOS member with the same apps but its own SDK key and token service."""
    options = {**base_options(roots), "sdk_token_key": pki.key_pem(rsa_key(2048, 8)),
               "sdk_token_check": "farm-key"}
    farm = RunningFarm.start({"name": "enos-other", "emulators": [
        {"name": "enos2", "kind": "enos", **options}]}, loop=emulators_loop, control=False)
    yield farm
    farm.stop()


@pytest.fixture
def other(other_farm: RunningFarm) -> Enos:
    other_farm["enos2"].reset()
    return Enos(other_farm["enos2"])


def _crafted(plain: str) -> Callable[[Enos, Enos], str]:
    """A plaintext of the SDK's shape, but not derived its way, encrypted to the farm's key."""
    def make(enos: Enos, other: Enos) -> str:
        key = rsa_key(2048, 7)  # the key base_options gives the member
        return base64.b64encode(key.public_key().encrypt(plain.encode(), sdk.OAEP)).decode()
    return make


def _used_then_expired(make: Callable[[Enos], str]) -> Callable[[Enos, Enos], str]:
    def build(enos: Enos, other: Enos) -> str:
        token = make(enos)
        assert call(enos, "list", token)["code"] == 0
        enos.advance(7201)
        return token
    return build


def _retired(enos: Enos, other: Enos) -> str:
    token = enos.token()
    fresh = enos.token_call("refresh", {**enos.token_body(), "accessToken": token})
    assert fresh["status"] == 0
    return token


def _url_safe(enos: Enos, farm_key: bool = False) -> str:
    """A genuine token respelled in the URL-safe alphabet (one with a ``+`` or ``/`` in it:
    about 1 in 50,000 tokens has neither)."""
    make = enos.farm_token if farm_key else enos.sdk_token
    token = next(t for t in iter(make, None) if "+" in t or "/" in t)
    return token.replace("+", "-").replace("/", "_")


def _swapcase_base64(text: str) -> str:
    return text[:20] + text[20:40].swapcase() + text[40:]


HEX = "a" * 64
HOSTILE: dict[str, tuple[Callable[[Enos, Enos], str], dict[str, Any] | None]] = {
    # made up
    "made-up-word": (lambda e, o: "sdk-token", UNKNOWN),
    "made-up-hex": (lambda e, o: "f" * 64, UNKNOWN),
    "made-up-rsa-sized-base64": (lambda e, o: base64.b64encode(os.urandom(256)).decode(),
                                 UNKNOWN),
    "made-up-sdk-shaped-with-the-farm-key":
        (_crafted(f"123456${APP_KEY}${APP_SECRET}${HEX}${HEX}"), UNKNOWN),
    "sdk-shaped-but-access-not-an-hmac":
        (_crafted(f"{sdk.pin(APP_KEY, APP_SECRET)}${APP_KEY}${APP_SECRET}$x${HEX}"), UNKNOWN),
    "sdk-token-for-envision-s-key (the SDK unconfigured)":
        (lambda e, o: sdk.make_token(APP_KEY, APP_SECRET, ENVISION_KEY), UNKNOWN),
    # another app
    "sdk-token-of-an-app-this-gateway-does-not-know":
        (lambda e, o: e.farm_token(STRANGER_KEY, STRANGER_SECRET), UNKNOWN),
    "sdk-token-with-another-app-s-secret": (lambda e, o: e.farm_token(APP_KEY, OTHER_SECRET),
                                            UNKNOWN),
    "signature-instead-of-a-token": (lambda e, o: e.token_body()["encryption"], UNKNOWN),
    # another member
    "issued-by-another-member": (lambda e, o: o.token(), UNKNOWN),
    "sdk-token-for-another-member-s-key": (lambda e, o: o.farm_token(), UNKNOWN),
    # no longer valid
    "issued-then-retired-by-a-refresh": (_retired, UNKNOWN),
    "issued-and-expired": (_used_then_expired(lambda e: e.token()), None),
    "sdk-token-first-used-7201-s-ago": (_used_then_expired(lambda e: e.farm_token()), None),
    # whitespace, case, spelling
    "issued-upper-case": (lambda e, o: e.token().upper(), UNKNOWN),
    "issued-with-an-inner-space": (lambda e, o: e.token()[:10] + " " + e.token()[10:], UNKNOWN),
    "issued-with-a-trailing-nbsp": (lambda e, o: e.token() + "\xa0", UNKNOWN),
    "sdk-token-case-changed": (lambda e, o: _swapcase_base64(e.farm_token()), UNKNOWN),
    "sdk-token-with-an-inner-space":
        (lambda e, o: (t := e.farm_token())[:100] + " " + t[100:], UNKNOWN),
    "sdk-token-without-padding": (lambda e, o: e.farm_token().rstrip("="), UNKNOWN),
    "sdk-token-url-safe-alphabet": (lambda e, o: _url_safe(e, farm_key=True), UNKNOWN),
    "sdk-token-twice": (lambda e, o: (t := e.farm_token()) + t, UNKNOWN),
    # empty
    "empty": (lambda e, o: "", EMPTY),
    "only-spaces": (lambda e, o: "   ", EMPTY),
}


def bound_sn(enos: Enos) -> int:
    [cert] = [c for c in enos.state()["certificates"] if c["asset_id"] == "assetB"]
    return int(cert["cert_sn"])


def call(enos: Enos, action: str, token: str, **body: Any) -> Any:
    query = {"action": action, "orgId": ORG, "assetId": "assetA" if action == "apply"
             else "assetB"}
    data = json.dumps(body) if action != "list" else None
    status, reply, _ = enos.raw("GET" if action == "list" else "POST",
                                f"{CERTS}?{urllib.parse.urlencode(query)}", data,
                                {"apim-accesstoken": token,
                                 "Content-Type": "application/json;charset=utf-8"})
    assert status == 200
    return reply


def action_body(enos: Enos, action: str) -> dict[str, Any]:
    if action == "apply":
        return {"csr": make_csr(rsa_key(), "hostile-apply")}
    if action in ("renew", "revoke"):
        return {"certSn": bound_sn(enos)}
    return {}


@pytest.mark.parametrize("action", ["list", "revoke", "apply", "renew"])
@pytest.mark.parametrize("row", list(HOSTILE))
def test_farm_key_mode_refuses_a_bare_call_without_a_genuine_token(strict: Enos, other: Enos,
                                                                   row: str, action: str) -> None:
    enos = strict
    make, refusal = HOSTILE[row]
    before = enos.state()["certificates"]
    token = make(enos, other)
    body = action_body(enos, action)
    reply = call(enos, action, token, **body)
    if refusal is None:  # expired: the SDK's 4011 path, with the refresh hint
        assert reply["status"] == 1203 and reply["apim_status"] == 4011, reply
        assert reply == expired(reply["apim_refreshtoken"])
    else:
        assert reply == refusal
    assert enos.state()["certificates"] == before  # nothing revoked, renewed or issued


GENUINE: dict[str, Callable[[Enos], str]] = {
    "issued-by-the-token-service": lambda e: e.token(),
    "issued-by-another-app-of-this-gateway":
        lambda e: e.token_call("get", e.token_body(key=OTHER_KEY, secret=OTHER_SECRET))
        ["data"]["accessToken"],
    "sdk-derived-by-poseidon-s-code": lambda e: e.farm_token(),
    "sdk-derived-for-another-app-of-this-gateway": lambda e: e.farm_token(OTHER_KEY, OTHER_SECRET),
    "sdk-derived-surrounded-by-spaces (HTTP strips them)": lambda e: f"  {e.farm_token()}  ",
}


@pytest.mark.parametrize("row", list(GENUINE))
def test_farm_key_mode_lets_a_bare_call_with_a_genuine_token_in(strict: Enos, row: str) -> None:
    enos = strict
    token = GENUINE[row](enos)
    assert call(enos, "list", token)["code"] == 0
    revoked = call(enos, "revoke", token, certSn=bound_sn(enos))
    assert revoked["code"] == 0, revoked
    [entry] = [c for c in call(enos, "list", token)["data"]
               if c["certSN"] == str(bound_sn(enos))]
    # The gateway can read a genuine token: the revoker is the app it belongs to.
    wanted = OTHER_KEY if "another-app" in row else APP_KEY
    assert (entry["certStatus"], entry["revoker"]) == (1, wanted)


def test_an_sdk_token_lives_two_hours_from_its_first_use_then_poseidon_s_retry_gets_in(
        strict: Enos) -> None:
    enos = strict
    token = enos.farm_token()
    assert call(enos, "list", token)["code"] == 0
    enos.advance(7190)
    assert call(enos, "list", token)["code"] == 0
    enos.advance(11)
    reply = call(enos, "list", token)
    refresh = reply["apim_refreshtoken"]
    assert reply == expired(refresh)
    # poseidon's answer to 4011: a new access HMAC with the gateway's refresh token.
    retry = enos.farm_token(refresh=refresh)
    assert call(enos, "list", retry)["code"] == 0




# -- enos-poseidon itself, end to end --------------------------------------------------------------

def test_farm_key_mode_end_to_end_for_a_client_that_encrypts_to_the_farm_s_key(
        start_enos: Callable[..., Enos], tmp_path: Path, capsys: Any) -> None:
    """The stricter option: a member with no key in its scenario makes one at first start;
    the ready file gives it; a client that encrypts its token the SDK's way to that key (what
    this mode asks of a user: ``make_token(appKey, appSecret, sdkPublicKey)``, or the SDK's
    own ``pubkey`` set to it in their program) applies, renews, revokes and lists. The SDK as
    published, unchanged, gets 4012, after its own retry."""
    enos = start_enos(state_dir=tmp_path, sdk_token_key=None, sdk_token_check="farm-key")
    public_key = enos.handle.credentials["sdkPublicKey"]
    assert public_key != sdk.public_key_text(rsa_key(2048, 7))
    query = {"orgId": ORG, "assetId": "assetA"}
    unconfigured = poseidon.urlopen(APP_KEY, APP_SECRET, enos.url + CERTS + "?"
                                    + urllib.parse.urlencode({"action": "list", **query}))
    assert "the second time request" in capsys.readouterr().out  # its 4012 retry, refused
    assert json.loads(unconfigured) == UNKNOWN

    def bare(farm: Enos, action: str, **body: Any) -> Any:
        token = sdk.make_token(APP_KEY, APP_SECRET, farm.handle.credentials["sdkPublicKey"])
        status, reply, _ = farm.raw(
            "GET" if action == "list" else "POST",
            f"{CERTS}?{urllib.parse.urlencode({'action': action, **query})}",
            json.dumps(body) if body else None,
            {"apim-accesstoken": token, "Content-Type": "application/json;charset=utf-8"})
        assert status == 200
        return reply

    applied = bare(enos, "apply", csr=make_csr(rsa_key(), "farm-key-e2e"))
    assert applied["code"] == 0, applied
    sn = int(applied["data"]["certSN"])
    assert bare(enos, "renew", certSn=sn)["code"] == 0
    assert bare(enos, "revoke", certSn=sn, reason=1)["code"] == 0
    listed = bare(enos, "list")
    entry = {c["certSN"]: c for c in listed["data"]}[str(sn)]
    assert (entry["certStatus"], entry["revoker"], entry["revokerReason"]) == (1, APP_KEY, 1)
    # The key is the member's: a reset and a restart keep it.
    enos.handle.reset()
    assert enos.handle.credentials["sdkPublicKey"] == public_key
    enos.handle._farm.stop()
    again = start_enos(state_dir=tmp_path, sdk_token_key=None, sdk_token_check="farm-key")
    assert again.handle.credentials["sdkPublicKey"] == public_key
    assert bare(again, "list")["code"] == 0


@pytest.mark.parametrize("key", [
    pytest.param(lambda: "not a key", id="not-pem"),
    pytest.param(lambda: pki.key_pem(pki.ec_key()), id="not-rsa"),
    pytest.param(lambda: pki.key_pem(pki.rsa_key(1024)), id="rsa-1024"),
])
def test_the_scenario_key_must_be_rsa_2048_or_more(key: Callable[[], str]) -> None:
    with pytest.raises(ValidationError, match="sdk_token_key"):
        EnosOptions(sdk_token_key=key())

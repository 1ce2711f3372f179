"""EnOS's probe script: a token from the APIM token service (a read in effect: the same token
comes back while it is valid), a device's certificate list with it as a signed call, the public
root CA downloads, and the refusals and errors an app meets (a wrong appSecret, no body, no
token, a made-up token, an unknown action, no orgId, an unknown device, an unknown path), for
``emulators capture`` and ``emulators drift``. Read-only: apply, renew and revoke are never
sent. ``--user`` is the appKey and ``--password`` the appSecret; the token request's
``encryption`` and each call's ``apim-signature`` are made as they are sent, by the gateway's
own code (``models/tokens.py``)."""

from __future__ import annotations

from emulators.core.quirks.probe import Credentials, Outgoing, Param, Script, Signer, Step

from .models.tokens import encryption, signature
from .urls import CERTIFICATES, TOKEN_SERVICE

JSON = (("Content-Type", "application/json;charset=UTF-8"),)
# The token service's form (spec digest): appKey, encryption, the timestamp in milliseconds.
TOKEN_BODY = ('{"appKey":"<user>","encryption":"{sign.encryption}",'
              '"timestamp":{sign.timestamp}}')
TOKEN = (("apim-accesstoken", "{token.data.accessToken}"),)
DEVICE = (("orgId", "{param.org_id}"), ("assetId", "{param.asset_id}"))


def _milliseconds(now: float) -> str:
    return str(int(now * 1000))


class EnosSigner(Signer):
    """The token request's ``{sign.timestamp}`` and ``{sign.encryption}``; for a call that
    carries a token, ``apim-timestamp`` and ``apim-signature`` over its query and body."""

    def values(self, credentials: Credentials, now: float) -> dict[str, str]:
        timestamp = _milliseconds(now)
        return {"timestamp": timestamp,
                "encryption": encryption(credentials.user, timestamp, credentials.password)}

    def headers(self, request: Outgoing, credentials: Credentials,
                now: float) -> tuple[tuple[str, str], ...]:
        token = request.header("apim-accesstoken")
        if token is None:
            return ()  # the token service: its credentials are in the body
        timestamp = _milliseconds(now)
        return (("apim-timestamp", timestamp),
                ("apim-signature", signature(token, request.query,
                                             request.body.decode("utf-8", "replace"),
                                             timestamp, credentials.password)))


def _list(*query: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (("action", "list"), *query)


SCRIPT = Script(
    kind="enos",
    version=1,
    steps=(
        # The same token comes back while it is valid, its seconds left counting down.
        Step("token", TOKEN_SERVICE + "/get", method="POST", headers=JSON, body=TOKEN_BODY,
             identity=True, volatile=("expire",)),
        Step("list-certificates", CERTIFICATES, _list(*DEVICE), headers=TOKEN, read=True),
        # The roots' downloads are public. Their CRLs are not probed: DER signed by the
        # tenant's CA, whose serials cannot be redacted and whose bytes no emulator root
        # verifies.
        Step("ca-cert-rsa", "/enos/CA/cacert/RSA", read=True, credentials=None),
        Step("ca-cert-ecc", "/enos/CA/cacert/ECC", read=True, credentials=None),
        Step("token-wrong-secret", TOKEN_SERVICE + "/get", method="POST", headers=JSON,
             body=TOKEN_BODY, credentials="wrong", expect_refusal=True),
        Step("token-empty-body", TOKEN_SERVICE + "/get", method="POST", headers=JSON,
             body="{}", credentials="none"),
        Step("list-no-token", CERTIFICATES, _list(*DEVICE), credentials="none"),
        Step("list-made-up-token", CERTIFICATES, _list(*DEVICE),
             headers=(("apim-accesstoken", "probe-made-up-token"),), credentials="wrong"),
        Step("unknown-action", CERTIFICATES, (("action", "probe-no-such-action"), *DEVICE),
             headers=TOKEN),
        Step("list-no-org", CERTIFICATES, _list(("assetId", "{param.asset_id}")),
             headers=TOKEN),
        Step("unknown-device", CERTIFICATES,
             _list(("orgId", "{param.org_id}"), ("assetId", "probe-no-such-device")),
             headers=TOKEN),
        Step("unknown-path", "/connect-service/v2.0/probe-no-such-resource", DEVICE,
             headers=TOKEN),
    ),
    # A cloud has no model or firmware: the gateway's Server line, where it sends one.
    model=None,
    firmware=None,
    model_header="Server",
    # The token service's refusals of the app: 1002 unknown appKey, 1003 encryption, 1202 none.
    refusal=r'"status"\s*:\s*(100[23]|1202)\b',
    default_user="",
    default_password="",
    params=(Param("org_id", "the organisation (orgId) the app belongs to"),
            Param("asset_id", "a device of that organisation whose certificates to list")),
    signer=EnosSigner(),
    user_is_secret=True,
)

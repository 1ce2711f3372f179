"""Hostile input never breaks the envelope: whatever the body or query, the answer is a
documented code, never an HTTP 500 or an internal error."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .clients import CERTS, ORG, Enos

KNOWN = {0, 99400, 11404, 11833}
FIELDS = ["csr", "certSn", "validDay", "issueAuthority", "reason"]

scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
           | st.sampled_from(["RSA", "ECC", "52770", "-1", "", "1e3"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
bodies = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), values, max_size=5)
SLOW = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _call(enos: Enos, method: str, query: dict[str, str], body: bytes | None) -> Any:
    status, reply, _ = enos.raw(method, f"{CERTS}?{urllib.parse.urlencode(query)}", body,
                                {"apim-accesstoken": enos.sdk_token(),
                                 "Content-Type": "application/json"})
    assert status == 200
    assert set(reply) == {"code", "msg", "requestId", "data"}, reply
    assert reply["code"] in KNOWN, reply
    return reply


@SLOW
@given(action=st.sampled_from(["apply", "renew", "revoke", "list", "x", ""]),
       asset=st.sampled_from(["assetA", "assetB", "assetM", "", "\u00e9\u0000"]),
       body=bodies)
def test_any_json_body_gets_a_documented_answer(enos: Enos, action: str, asset: str,
                                                body: dict[str, Any]) -> None:
    method = "GET" if action == "list" else "POST"
    _call(enos, method, {"action": action, "orgId": ORG, "assetId": asset},
          json.dumps(body).encode())


@SLOW
@given(raw=st.binary(max_size=200) | st.just(b"[" * 5000) | st.just(b'{"csr": "' + b"A" * 5000))
def test_any_bytes_get_a_documented_answer(enos: Enos, raw: bytes) -> None:
    _call(enos, "POST", {"action": "apply", "orgId": ORG, "assetId": "assetA"}, raw)


def test_an_oversized_body_is_refused_by_the_gateway(enos: Enos) -> None:
    body = b'{"csr": "' + b"A" * (3 * 1024 * 1024) + b'"}'
    status, reply, _ = enos.raw("POST", f"{CERTS}?action=apply&orgId={ORG}&assetId=assetA",
                                body, {"apim-accesstoken": enos.sdk_token()})
    assert status == 413
    assert reply == {"status": 413, "msg": "Request Entity Too Large",
                     "business": "apim-gateway"}

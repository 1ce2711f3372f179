"""Secrets stay out of what the control plane shows: the journal masks them by what a body or
query means once decoded (not how it is spelled), and no state view holds a private key."""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from typing import Any

import pytest

from emulators.testing import RunningFarm
from tests.robustness.clients import exchange, http_request

SECRET = "7310452986"  # every row hides it (as a string, or as a number); none may show it
PEM = f"-----BEGIN PRIVATE KEY-----\nMIIE{SECRET}abc\n-----END PRIVATE KEY-----\n"
ESCAPED_PEM = "".join(f"\\u{ord(c):04x}" for c in PEM)  # every character a JSON escape
ECHO = {"emulators": [{"name": "echo", "kind": "tests.control_support:Echo"}]}

# (content type, body as sent): a JSON or form body whose secret is spelled in a way the
# old masking, which searched the raw text for literal key names, did not recognise.
BODIES = [
    pytest.param("application/json", '{"private\\u005fkey": "%s", "user": "visible"}',
                 id="json-escaped-name"),
    pytest.param("application/json", '{"pass\\u0077ord":"%s","user":"visible"}',
                 id="json-escaped-name-compact"),
    pytest.param("application/json", '{"PASSWORD": "%s", "user": "visible"}', id="json-upper"),
    pytest.param("application/json", '{"password": "\\u0037310452986", "user": "visible"}',
                 id="json-escaped-value"),
    pytest.param("application/json", '{"pwd": %s, "user": "visible"}', id="json-number-value"),
    pytest.param("application/json", '{"secret": {"inner": "%s", "list": [1]}, "user": "visible"}',
                 id="json-object-value"),
    pytest.param("application/json", '{"token": ["%s", "%s"], "user": "visible"}',
                 id="json-array-value"),
    pytest.param("application/json", '{"users": [{"name": "visible", "password": "%s"}]}',
                 id="json-nested-in-array"),
    pytest.param("application/json", '{"a": {"b": {"c": {"sk": "%s"}}}, "user": "visible"}',
                 id="json-deeply-nested"),
    pytest.param("application/json", '{"password": "hun\\"%s", "user": "visible"}',
                 id="json-escaped-quote-in-value"),
    pytest.param("application/json", '{"cert": "' + ESCAPED_PEM + '", "user": "visible"}',
                 id="json-fully-escaped-pem"),
    pytest.param("application/json", '{"cert": ' + json.dumps(PEM) + ', "user": "visible"}',
                 id="json-pem-value"),
    pytest.param("application/json", '{"user": "visible", "pad": "' + "x" * 500
                 + '", "pass\\u0077ord": "%s", "more": "' + "y" * 5000 + '"}',
                 id="json-cut-short-by-the-excerpt"),
    pytest.param("application/x-www-form-urlencoded", "private%5Fkey=%s&user=visible",
                 id="form-encoded-name"),
    pytest.param("application/x-www-form-urlencoded", "user=visible&p%61ssword=%s",
                 id="form-encoded-letter"),
    pytest.param("application/x-www-form-urlencoded", "user=visible&Pass=%s", id="form-case"),
    pytest.param("application/x-www-form-urlencoded",
                 "user=visible&cert=" + urllib.parse.quote_plus(PEM), id="form-encoded-pem"),
    pytest.param("multipart/form-data; boundary=b",
                 '--b\r\nContent-Disposition: form-data; name="password"\r\n\r\n%s\r\n'
                 '--b\r\nContent-Disposition: form-data; name="user"\r\n\r\nvisible\r\n--b--\r\n',
                 id="multipart-field"),
]
QUERIES = [
    pytest.param("user=visible&pass%77ord=%s", id="query-encoded-name"),
    pytest.param("user=visible&PRIVATE_KEY=%s", id="query-upper"),
    pytest.param("user=visible&x=" + urllib.parse.quote(PEM), id="query-pem-value"),
    pytest.param("user=visible&token=%s&token=%s", id="query-repeated"),
]


def journal_text(farm: RunningFarm) -> str:
    with urllib.request.urlopen(f"{farm.control_url}/journal?member=echo", timeout=10) as reply:
        return reply.read().decode()


@pytest.mark.parametrize(("content_type", "body"), BODIES)
def test_journal_masks_secrets_in_bodies_after_decoding(
        farm_factory: Any, content_type: str, body: str) -> None:
    farm = farm_factory(ECHO)
    sent = body.replace("%s", SECRET)
    reply = exchange(farm["echo"].port, http_request(
        "POST", "/submit", headers={"Content-Type": content_type}, body=sent.encode()))
    assert reply.status == 200 and reply.body == sent.encode()  # the device saw it all
    shown = journal_text(farm)
    [entry] = json.loads(shown)["entries"]
    for where in ("request_excerpt", "reply_excerpt"):
        excerpt = entry[where]
        for meaning in meanings(excerpt):
            assert SECRET not in meaning and "MIIE" not in meaning, (where, meaning)
        assert "visible" in excerpt, (where, excerpt)  # the rest is still there to read
    assert SECRET not in shown


def meanings(text: str) -> list[str]:
    """``text`` and what it says once decoded (as JSON, as %-encoding): a secret hidden behind
    escapes is still a secret shown."""
    found = [text, urllib.parse.unquote_plus(text)]
    try:
        found.append(json.dumps(json.loads(text), ensure_ascii=False))
    except ValueError:
        found.append(re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text))
    return found


@pytest.mark.parametrize("query", QUERIES)
def test_journal_masks_secrets_in_query_values_after_decoding(farm_factory: Any,
                                                              query: str) -> None:
    farm = farm_factory(ECHO)
    reply = exchange(farm["echo"].port, http_request("GET", "/q?" + query.replace("%s", SECRET)))
    assert reply.status == 200
    shown = journal_text(farm)
    [entry] = json.loads(shown)["entries"]
    assert ["user", "visible"] in entry["query"]
    for meaning in meanings(shown):
        assert SECRET not in meaning and "MIIE" not in meaning


def test_no_state_view_shows_a_private_key(farm: RunningFarm) -> None:
    """Every member of the default farm, after the members that make keys have made them (the
    ACTi camera's HTTPS_CSR_CREATE key; the FTPS identity and EnOS device keys exist from the
    start): no /v1/emulators/*/state or /v1/servers/*/state reply holds a private key."""
    acti = farm["acti-camera"]
    with urllib.request.urlopen(acti.url + "/cgi-bin/update?USER=admin&PWD=123456"
                                "&HTTPS_CSR_CREATE=TW,Taipei,Taipei,ACTi,RD,cam.test,2048",
                                timeout=30) as made:
        assert b"CERTIFICATE REQUEST" in made.read()
    # A kind's own view may hold one (EnOS publishes the keys it made for devices); the
    # control plane's never does.
    assert "PRIVATE KEY" in json.dumps(farm["enos"].state())
    seen = []
    for plural, handles in (("emulators", farm.emulators), ("servers", farm.servers)):
        for handle in handles:
            url = f"{farm.control_url}/{plural}/{handle.name}/state"
            with urllib.request.urlopen(url, timeout=10) as reply:
                raw = reply.read()
            assert reply.status == 200
            text = json.dumps(json.loads(raw), ensure_ascii=False)
            assert b"PRIVATE KEY" not in raw and "PRIVATE KEY" not in text, handle.name
            seen.append(handle.name)
    assert set(seen) == {"acti-camera", "instar-camera", "enos", "iotda", "ftp", "sftp"}
    ftp = json.loads(urllib.request.urlopen(f"{farm.control_url}/servers/ftp/state",
                                            timeout=10).read())
    assert ftp["tls"].get("key_pem") in (None, "[private key withheld]")
    assert ftp["tls"]["cert_pem"].startswith("-----BEGIN CERTIFICATE-----")  # the rest shows
    enos = json.loads(urllib.request.urlopen(f"{farm.control_url}/emulators/enos/state",
                                             timeout=10).read())
    assert enos["device_keys"] and set(enos["device_keys"].values()) == {
        "[private key withheld]"}
    assert enos["certificates"][0]["cert"].startswith("-----BEGIN CERTIFICATE-----")

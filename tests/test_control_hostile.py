"""Malformed bodies, headers and queries against every route of the control plane.

The routes come from the farm's own index (``GET /v1``) and whether a route reads a body from
its OpenAPI document, so a route added tomorrow is in these tables the day it is added. Every
answer is the control plane's error form with a 4xx status (or a 2xx where the route ignores
what was malformed), never a 500 or a traceback, in the reply or in the log; and the farm
still answers afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from emulators.control import dashboard
from emulators.testing import RunningFarm
from tests.control_support import assert_error_form, control, fill, routes
from tests.robustness.clients import Reply, exchange

TOKEN = "s3cret-control-token"

# (content type, body bytes): what a route that reads a JSON body must refuse with a 4xx
# (the rows marked "may be ignored" are JSON objects a route that reads no such key may accept).
IGNORABLE = {"lone-surrogate-escapes"}
BODIES = [
    pytest.param("application/json", b"[" * 100_000, id="nested-array-100k-deep"),
    pytest.param("application/json", b'{"a":' * 100_000, id="nested-object-100k-deep"),
    pytest.param("application/json; charset=no-such-charset", b"{}", id="unknown-charset"),
    pytest.param("application/json; charset=rot13", b"{}", id="charset-not-a-text-codec"),
    pytest.param("application/json; charset=utf-16", b'{"seconds": 1}', id="wrong-charset"),
    pytest.param("application/json", b'{"name": "\xff\xfe", "seconds": "\xc0\xae"}',
                 id="invalid-utf-8"),
    pytest.param("application/json", b"\xef\xbb\xbf{}", id="utf-8-bom"),
    pytest.param("application/json", b'{"name": "\\ud800", "members": ["\\udfff"]}',
                 id="lone-surrogate-escapes"),
    pytest.param("application/json", b"[1, 2]", id="array-not-object"),
    pytest.param("application/json", b'"text"', id="string-not-object"),
    pytest.param("application/json", b"null", id="null-not-object"),
    pytest.param("application/json", b"42", id="number-not-object"),
    pytest.param("application/json",
                 b'{"seconds": 1e999, "time": 1e999, "capacity": 1e999, "name": 1e999}',
                 id="huge-float"),
    pytest.param("application/json", b'{"seconds": 1' + b"0" * 5000 + b', "capacity": 1'
                 + b"0" * 5000 + b"}", id="huge-integer"),
    pytest.param("application/json", b'{"seconds": NaN, "time": Infinity, "capacity": -Infinity}',
                 id="nan-and-infinity"),
    pytest.param("application/json",
                 b'{"name": ["x"], "members": "all", "seconds": "soon", "time": true, "at": 5,'
                 b' "capacity": "big", "enabled": "yes", "authorized_keys": "ssh-rsa",'
                 b' "key": 5, "fault": 5}', id="wrong-types"),
    pytest.param("application/json", b'{"name": "x"', id="truncated"),
    pytest.param("application/json", b"\x00\x01\x02 not json", id="binary-garbage"),
    pytest.param("text/plain", b"\xff\xfe\xfd", id="text-not-utf-8"),
]
# Raw header lines (and body) that break the request itself, whatever the route.
HEADERS = [
    pytest.param([b"Content-Length: abc"], b"", id="content-length-letters"),
    pytest.param([b"Content-Length: -1"], b"", id="content-length-negative"),
    pytest.param([b"Content-Length: 1, 2"], b"x", id="content-length-list"),
    pytest.param([b"Content-Length: 99999999999999999999999"], b"", id="content-length-huge"),
    pytest.param([b"Content-Length: 2", b"Transfer-Encoding: chunked"], b"0\r\n\r\n",
                 id="content-length-and-chunked"),
    pytest.param([b"Transfer-Encoding: chunked"], b"zz\r\nxx\r\n0\r\n\r\n", id="bad-chunk-size"),
    pytest.param([b"X-Bad: a\x00b"], b"", id="nul-in-header"),
    pytest.param([b"No colon here"], b"", id="header-without-colon"),
    pytest.param([b"X-Long: " + b"a" * 20_000], b"", id="header-line-too-long"),
]
# Authorization values a farm with control.token set must refuse (401), none crashing it.
AUTHORIZATIONS = [
    pytest.param("Bearer tökén".encode(), id="non-ascii-utf-8"),
    pytest.param(b"Bearer \xff\xfe\xfd", id="undecodable-bytes"),
    pytest.param(f"Bearer {TOKEN}é".encode(), id="token-then-non-ascii"),
    pytest.param(f"Bearer {TOKEN}\x00".encode(), id="token-then-nul"),
    pytest.param(f"bearer {TOKEN}".encode(), id="lower-case-scheme"),
    pytest.param(b"Bearer " + b"x" * 7000, id="very-long"),
    pytest.param(b"Bearer", id="no-token"),
    pytest.param(b"Basic YWRtaW46aW5zdGFy", id="basic"),
]
QUERY = (b"?%ff%fe=%00&limit=abc&status=1e999&since=nan&until=inf&member=%5b&path=%5b%5d"
         b"&after_seq=" + b"9" * 5000)


@pytest.fixture(scope="module")
def hostile_farm(emulators_loop: Any) -> Iterator[RunningFarm]:
    farm = RunningFarm.start("default", loop=emulators_loop)
    try:
        assert control(farm, "POST", "/v1/snapshots", body={"name": "good"}).status == 201
        yield farm
    finally:
        farm.stop()


@pytest.fixture(scope="module")
def token_farm(emulators_loop: Any) -> Iterator[RunningFarm]:
    farm = RunningFarm.start({"name": "token", "control": {"token": TOKEN}, "emulators": [
        {"name": "instar-camera", "kind": "instar-camera"}]}, loop=emulators_loop)
    try:
        yield farm
    finally:
        farm.stop()


def reads_body(farm: RunningFarm) -> set[tuple[str, str]]:
    document = control(farm, "GET", "/v1/openapi.json").json()
    return {(method.upper(), path) for path, ops in document["paths"].items()
            for method, op in ops.items() if "requestBody" in op}


def raw_request(method: str, target: bytes, lines: list[bytes], body: bytes) -> bytes:
    head = [b"%s %s HTTP/1.1" % (method.encode(), target), b"Host: 127.0.0.1",
            b"Connection: close", *lines]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def send(farm: RunningFarm, request: bytes) -> Reply:
    return exchange(farm.farm.control.port, request, timeout=10)


@pytest.fixture
def quiet_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO)
    yield caplog
    loud = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR
            or "Traceback" in r.getMessage()]
    assert not loud, [f"{r.name}: {r.getMessage()}" for r in loud]


def assert_still_answers(farm: RunningFarm) -> None:
    reply = control(farm, "GET", "/v1/farm", headers=_auth(farm))
    assert reply.status == 200 and reply.json()["control"]["url"]


def _auth(farm: RunningFarm) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"} if farm.ready["control"]["token_required"] \
        else {}


@pytest.mark.parametrize(("content_type", "body"), BODIES)
def test_every_route_answers_a_malformed_body_in_the_error_form(
        hostile_farm: RunningFarm, quiet_log: Any, request: pytest.FixtureRequest,
        content_type: str, body: bytes) -> None:
    farm = hostile_farm
    with_body = reads_body(farm)
    served = routes(farm)
    assert len(served) > 30
    for method, route in served:
        target = fill(route).encode()
        reply = send(farm, raw_request(method, target, [
            b"Content-Type: " + content_type.encode(), b"Content-Length: %d" % len(body)], body))
        what = f"{method} {route}"
        assert reply.status < 500, (what, reply.status, reply.body[:300])
        if (method, route) in with_body and request.node.callspec.id not in IGNORABLE:
            assert 400 <= reply.status < 500, (what, reply.status, reply.body[:300])
        if reply.status >= 400:
            assert_error_form(reply, what)
        else:
            assert 200 <= reply.status < 300, (what, reply.status)
    assert_still_answers(farm)


@pytest.mark.parametrize(("lines", "body"), HEADERS)
def test_every_route_answers_a_broken_request_in_the_error_form(
        hostile_farm: RunningFarm, quiet_log: Any, lines: list[bytes], body: bytes) -> None:
    farm = hostile_farm
    for method, route in routes(farm):
        reply = send(farm, raw_request(method, fill(route).encode(), lines, body))
        what = f"{method} {route}"
        assert 400 <= reply.status < 500, (what, reply.status, reply.body[:300])
        assert_error_form(reply, what)
    assert_still_answers(farm)


def test_every_route_answers_a_hostile_query_in_the_error_form_or_ignores_it(
        hostile_farm: RunningFarm, quiet_log: Any) -> None:
    farm = hostile_farm
    for method, route in routes(farm):
        body = b"{}" if method in ("POST", "PUT") else b""
        reply = send(farm, raw_request(method, fill(route).encode() + QUERY, [
            b"Content-Type: application/json", b"Content-Length: %d" % len(body)], body))
        what = f"{method} {route}"
        assert reply.status < 500, (what, reply.status, reply.body[:300])
        if reply.status >= 400:
            assert_error_form(reply, what)
    assert_still_answers(farm)


@pytest.mark.parametrize("authorization", AUTHORIZATIONS)
def test_a_token_farm_refuses_every_hostile_authorization_on_every_route(
        token_farm: RunningFarm, quiet_log: Any, authorization: bytes) -> None:
    farm = token_farm
    for method, route in routes_of_token_farm(farm):
        reply = send(farm, raw_request(method, fill(route).encode(),
                                       [b"Authorization: " + authorization,
                                        b"Content-Length: 0"], b""))
        what = f"{method} {route}"
        # A NUL is no header byte at all: aiohttp's parser refuses the request (400) first.
        if dashboard.is_page(route) and b"\x00" not in authorization:
            # The dashboard's own files are served to anyone: they hold no data, and the
            # page asks for the token before it calls the API.
            assert reply.status == 200, (what, reply.status)
            continue
        expected = 400 if b"\x00" in authorization else 401
        assert reply.status == expected, (what, reply.status, reply.body[:300])
        assert assert_error_form(reply, what)["code"] in ("unauthorized", "bad_request")
    assert_still_answers(farm)


def routes_of_token_farm(farm: RunningFarm) -> list[tuple[str, str]]:
    index = control(farm, "GET", "/v1", headers=_auth(farm))
    assert index.status == 200
    return [tuple(r.split(" ", 1)) for r in index.json()["routes"]]  # type: ignore[misc]


def test_a_handler_bug_is_still_the_error_form(hostile_farm: RunningFarm,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """The last line of defence: an exception no route maps is a 500 in the error form (and
    one logged traceback, since it is a bug), not aiohttp's text page."""
    farm = hostile_farm
    journal = farm.farm.journal

    def broken(**filters: Any) -> Any:
        raise RuntimeError("a bug")

    original = journal.query
    farm.loop.call(lambda: setattr(journal, "query", broken))
    try:
        reply = control(farm, "GET", "/v1/journal")
    finally:
        farm.loop.call(lambda: setattr(journal, "query", original))
    assert reply.status == 500
    assert assert_error_form(reply, "GET /v1/journal")["code"] == "internal_error"
    assert b"a bug" not in reply.body
    assert any("control plane failed" in r.getMessage() for r in caplog.records)

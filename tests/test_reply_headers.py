"""The wire says camera, not aiohttp: every reply of every emulated system carries the header
lines its firmware profile (or its options) says, and no ``Server: Python/... aiohttp/...``.
Replies are read as raw bytes from a socket, so nothing tidies them up; 404s, 401s, 405s,
413s and the 400 of a request that could not be parsed are checked as well as the routed
replies."""

from __future__ import annotations

from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from emulators.scenario import ScenarioInvalid, load
from emulators.testing import MemberHandle
from tests.robustness.clients import read_to_close as raw

IMF_FROZEN = "Sat, 01 Jan 2028 12:00:00 GMT"
FROZEN = parsedate_to_datetime(IMF_FROZEN).timestamp()


def get(target: str, *extra: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def head_of(reply: bytes, eol: bytes = b"\r\n") -> list[bytes]:
    head = reply.split(eol + eol, 1)[0]
    return head.split(eol)


def names(reply: bytes, eol: bytes = b"\r\n") -> list[str]:
    return [line.split(b":", 1)[0].decode().lower() for line in head_of(reply, eol)[1:]]


MALFORMED = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon here\r\n\r\n"


# --- INSTAR: no Date, no Server, on anything the camera's web server says -------------------


def instar_requests(cam: MemberHandle) -> dict[str, bytes]:
    return {
        "200": get("/param.cgi?cmd=getftpactionattr&user=admin&pwd=instar"),
        "401": get("/param.cgi?cmd=getftpattr"),
        "404": get("/index.html"),
        "405": b"DELETE /param.cgi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "413": b"POST /param.cgi HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
        "400": MALFORMED,
    }


def test_instar_replies_carry_no_date_and_no_server(emulator_factory: Callable[..., Any]) -> None:
    cam = emulator_factory("instar-camera")
    replies = {status: raw(cam.port, request) for status, request in instar_requests(cam).items()}
    for status, reply in replies.items():
        assert head_of(reply)[0].split(b" ")[1] == status.encode(), reply
        assert "date" not in names(reply) and "server" not in names(reply), (status, reply)
    # The whole header of a CGI reply, as the camera writes it.
    # (Connection: close answers the request's own.)
    assert head_of(replies["200"]) == [b"HTTP/1.1 200 OK", b"Content-Type: text/plain",
                                       b"Content-Length: 58", b"Connection: close"]
    assert head_of(replies["401"]) == [
        b"HTTP/1.1 401 Unauthorized", b'WWW-Authenticate: Basic realm="INSTAR"',
        b"Content-Type: text/html; charset=utf-8", b"Content-Length: 16", b"Connection: close"]
    assert head_of(replies["404"]) == [b"HTTP/1.1 404 Not Found",
                                       b"Content-Type: text/plain; charset=utf-8",
                                       b"Content-Length: 14", b"Connection: close"]


def test_an_instar_profile_gives_its_server_and_date_on_every_reply(farm_factory) -> None:
    farm = farm_factory({"emulators": [{
        "name": "cam", "kind": "instar-camera",
        "profile": {"reply_headers": {"Server": "lighttpd/1.4.35", "X-Frame-Options": "DENY"},
                    "reply_date": True}}]})
    farm.freeze_clock(FROZEN)  # the camera's clock writes the Date, not the host's
    cam = farm["cam"]
    for status, request in instar_requests(cam).items():
        reply = raw(cam.port, request)
        lines = head_of(reply)
        assert b"Server: lighttpd/1.4.35" in lines, (status, reply)
        assert b"X-Frame-Options: DENY" in lines, (status, reply)
        assert f"Date: {IMF_FROZEN}".encode() in lines, (status, reply)
        assert names(reply).count("server") == 1 and names(reply).count("date") == 1


# --- ACTi: the camera composes its header; profile lines go at its end ------------------------


def test_acti_replies_are_the_seed_bytes_with_no_date_or_server(
        emulator_factory: Callable[..., Any]) -> None:
    cam = emulator_factory("acti-camera")
    reply = raw(cam.port, get("/cgi-bin/update?USER=admin&PWD=123456&HTTPS_CER"))
    # Seed 000, stage 4's form: "HTTP/1.0 200 OK", "Content-type: text/plain", Content-Length.
    assert reply == b"HTTP/1.0 200 OK\r\nContent-type: text/plain\r\nContent-Length: 17\r\n\r\n" \
                    b"HTTPS_CER='none'\n"
    for request in (get("/nope"), get("/cgi-bin/update?USER=admin&PWD=wrong&HTTPS_CER"),
                    MALFORMED):
        reply = raw(cam.port, request)
        assert "date" not in names(reply) and "server" not in names(reply), reply


@pytest.mark.parametrize(("wire", "eol"), [("crlf", b"\r\n"), ("lf", b"\n")])
def test_acti_reply_headers_join_the_composed_header(farm_factory, wire: str, eol: bytes) -> None:
    farm = farm_factory({"emulators": [{
        "name": "cam", "kind": "acti-camera", "wire": wire, "reply_date": True,
        "reply_headers": {"Server": "Boa/0.94.14rc21"}}]})
    farm.freeze_clock(FROZEN)
    cam = farm["cam"]
    reply = raw(cam.port, get("/cgi-bin/update?USER=admin&PWD=123456&HTTPS_CER"))
    assert reply == eol.join([b"HTTP/1.0 200 OK", b"Content-type: text/plain",
                              b"Content-Length: 17", b"Server: Boa/0.94.14rc21",
                              f"Date: {IMF_FROZEN}".encode(), b"", b"HTTPS_CER='none'\n"])
    for request in (get("/nope"), MALFORMED):
        lines = head_of(raw(cam.port, request), eol if request is not MALFORMED else b"\r\n")
        assert b"Server: Boa/0.94.14rc21" in lines and f"Date: {IMF_FROZEN}".encode() in lines


# --- the clouds: a Date on the farm clock, no Server ----------------------------------------


@pytest.mark.parametrize(("kind", "target"), [
    ("enos", "/connect-service/v2.0/certificates?action=list"),
    ("iotda", "/v5/iot/0a1b2c3d4e5f60718293a4b5c6d7e8f9/certificates"),
])
def test_cloud_replies_carry_the_farm_date_and_no_server(farm_factory, kind: str,
                                                         target: str) -> None:
    farm = farm_factory({"emulators": [{"name": kind, "kind": kind}]})
    farm.freeze_clock(FROZEN)
    port = farm[kind].port
    for request in (get(target), get("/nowhere"), MALFORMED):
        reply = raw(port, request)
        assert "server" not in names(reply), reply
        assert f"Date: {IMF_FROZEN}".encode() in head_of(reply), reply


def test_cloud_reply_headers_are_switchable(farm_factory) -> None:
    farm = farm_factory({"emulators": [
        {"name": "iotda", "kind": "iotda", "reply_date": False,
         "reply_headers": {"Server": "api-gateway"}}]})
    reply = raw(farm["iotda"].port, get("/nowhere"))
    assert b"Server: api-gateway" in head_of(reply) and "date" not in names(reply)
    assert "x-request-id" in names(reply)  # the reply's own headers stay


# --- a header line that is not one is refused when the scenario is read ---------------------


@pytest.mark.parametrize(("options", "message"), [
    ({"reply_headers": {"Server": "a\r\nSet-Cookie: x"}}, "value must be printable ASCII"),
    ({"reply_headers": {"Bad Name": "x"}}, "is not an HTTP field name"),
    ({"reply_headers": {"Content-Length": "0"}}, "each reply sets its own"),
    ({"reply_headers": {"Date": "yesterday"}}, "the date switch"),
])
@pytest.mark.parametrize("kind", ["acti-camera", "enos", "iotda", "instar-camera"])
def test_a_bad_reply_header_is_a_scenario_error(kind: str, options: dict[str, Any],
                                                message: str) -> None:
    entry = {"name": "m", "kind": kind}
    entry.update({"profile": options} if kind == "instar-camera" else options)
    with pytest.raises(ScenarioInvalid) as info:
        load({"version": 1, "emulators": [entry]})
    assert message in info.value.report()

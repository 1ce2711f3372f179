"""What a client that breaks AMQP 1.0 gets from the farm's AMQP server, over raw sockets: each
case has a defined answer (a protocol header, a SASL outcome, a close frame with an error
condition, or the socket closed where SASL has no frame to say why), and a good client is
served afterwards."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from proton import symbol, uint
from proton.utils import LinkDetached

from emulators.core.amqp import sasl
from tests.amqp.clients import (
    BEGIN,
    CLOSE,
    FLOW,
    OPEN,
    PASSWORD,
    USER,
    RawClient,
    Served,
    condition_of,
    connected,
    frame,
    parse_frames,
)

Start = Callable[..., Served]


def still_serves(served: Served) -> None:
    """A well-behaved client gets a queued message after the hostile one."""
    served.put("q1", "after the hostile client")
    with connected(served) as connection:
        receiver = connection.create_receiver("q1")
        assert receiver.receive(timeout=5).body == "after the hostile client"
        receiver.accept()


# -- before and during SASL: a header, an outcome, or the socket closed ----------------------

@dataclass(frozen=True)
class Before:
    id: str
    send: bytes
    answer: bytes  # what the server writes before it closes
    reason: str  # in the journal's refused entry


SASL_PREFIX = sasl.SASL_HEADER + sasl.mechanisms_frame()
BEFORE = [
    Before("bare-amqp-header", sasl.AMQP_HEADER, sasl.SASL_HEADER,
           "the AMQP header without SASL"),
    Before("tls-header", b"AMQP\x02\x01\x00\x00", sasl.SASL_HEADER, "the TLS protocol header"),
    Before("newer-version", b"AMQP\x03\x02\x00\x00", sasl.SASL_HEADER,
           "an unsupported AMQP protocol header"),
    Before("http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", sasl.SASL_HEADER,
           "not an AMQP protocol header"),
    Before("garbage-after-sasl-header", sasl.SASL_HEADER + b"\xde\xad\xbe\xef" * 8,
           SASL_PREFIX, "SASL: a frame of type 0xad during SASL"),
    Before("bad-data-offset", sasl.SASL_HEADER + struct.pack(">IBBH", 16, 1, 1, 0)
           + b"\x00" * 8, SASL_PREFIX, "SASL: SASL frame data offset 1"),
    Before("amqp-frame-during-sasl", sasl.SASL_HEADER + frame(OPEN, ["x"]), SASL_PREFIX,
           "SASL: a frame of type 0x00 during SASL"),
    Before("oversized-sasl-frame",
           sasl.SASL_HEADER + struct.pack(">IBBH", 1_000_000, 2, 1, 0), SASL_PREFIX,
           "SASL: a SASL frame of 1000000 bytes"),
    Before("outcome-from-the-client", sasl.SASL_HEADER + sasl.outcome_frame(sasl.Code.OK),
           SASL_PREFIX, "SASL: sasl-outcome where sasl-init was expected"),
    Before("not-a-described-list", sasl.SASL_HEADER + struct.pack(">IBBH", 10, 2, 1, 0)
           + b"\xa1\x00", SASL_PREFIX, "SASL: a SASL frame that is not a described list"),
    Before("unknown-performative", sasl.SASL_HEADER + sasl.frame(0x99, []), SASL_PREFIX,
           "SASL: SASL performative"),
    Before("init-without-mechanism", sasl.SASL_HEADER + sasl.frame(sasl.SASL_INIT, [None]),
           SASL_PREFIX, "SASL: sasl-init without a mechanism"),
]


@pytest.mark.parametrize("case", BEFORE, ids=[c.id for c in BEFORE])
def test_a_broken_start_gets_a_header_or_is_closed(amqp_server: Start, case: Before) -> None:
    served = amqp_server()
    with RawClient(served.port, tls=True) as client:
        client.send(case.send)
        assert client.read_to_close() == case.answer
    refused = served.wait_event("refused")
    assert case.reason in refused["detail"]["reason"]
    still_serves(served)


@dataclass(frozen=True)
class Outcome:
    id: str
    init: bytes
    code: sasl.Code
    reason: str


OUTCOMES = [
    Outcome("anonymous", sasl.init_frame("ANONYMOUS", b""), sasl.Code.AUTH,
            "mechanism ANONYMOUS is not offered"),
    Outcome("external", sasl.init_frame("EXTERNAL", None), sasl.Code.AUTH,
            "mechanism EXTERNAL is not offered"),
    Outcome("plain-without-nul", sasl.init_frame("PLAIN", b"user:password"), sasl.Code.AUTH,
            "authzid NUL authcid NUL passwd"),
    Outcome("plain-not-utf8", sasl.init_frame("PLAIN", b"\x00\xff\xfe\x00pw"), sasl.Code.AUTH,
            "UTF-8"),
    Outcome("plain-empty-user", sasl.init_frame("PLAIN", b"\x00\x00pw"), sasl.Code.AUTH,
            "an empty PLAIN user name"),
]


@pytest.mark.parametrize("case", OUTCOMES, ids=[c.id for c in OUTCOMES])
def test_an_init_that_cannot_authenticate_gets_outcome_auth(amqp_server: Start,
                                                             case: Outcome) -> None:
    served = amqp_server()
    with RawClient(served.port, tls=True) as client:
        client.send(sasl.SASL_HEADER + case.init)
        answer = client.read_to_close()
    frames, rest = parse_frames(answer[len(SASL_PREFIX):])
    assert answer.startswith(SASL_PREFIX) and not rest
    assert [(f.code, f.fields[0]) for f in frames] == [(sasl.SASL_OUTCOME, int(case.code))]
    entry = served.wait_event("sasl")
    assert entry["status"] == int(case.code) and case.reason in entry["detail"]["reason"]
    still_serves(served)


def test_plain_without_an_initial_response_is_challenged_and_served(
        amqp_server: Start) -> None:
    """RFC 4616: a client may send PLAIN's response after an empty challenge."""
    served = amqp_server()
    with RawClient(served.port, tls=True) as client:
        client.send(sasl.SASL_HEADER + sasl.init_frame("PLAIN", None))
        assert client.read(8) == sasl.SASL_HEADER
        mechanisms, challenge = client.frames(2)
        assert list(mechanisms.fields[0]) == [symbol("PLAIN")]
        assert (challenge.code, challenge.fields) == (sasl.SASL_CHALLENGE, [b""])
        client.send(sasl.frame(sasl.SASL_RESPONSE,
                               [b"\x00" + USER.encode() + b"\x00" + PASSWORD.encode()]))
        assert client.frames(1)[0].fields == [0]
        opened = client.open()
        assert opened.fields[0] == "emulators-amqp"


def test_a_stall_mid_sasl_is_closed_at_the_handshake_deadline(amqp_server: Start) -> None:
    served = amqp_server(handshake_timeout=0.3)
    with RawClient(served.port, tls=True) as client:
        client.send(sasl.SASL_HEADER)  # and never a sasl-init
        assert client.read_to_close() == SASL_PREFIX
    refused = served.wait_event("refused")
    assert refused["detail"]["reason"] == ("handshake timeout: no SASL within 0.3 s of "
                                           "connecting")
    still_serves(served)


def test_too_many_connections_are_answered_sys_temp(amqp_server: Start) -> None:
    served = amqp_server(max_connections=1)
    with RawClient(served.port, tls=True) as holder:
        assert holder.sasl_plain() == 0
        with RawClient(served.port, tls=True) as extra:
            assert extra.sasl_plain() == int(sasl.Code.SYS_TEMP)
            assert extra.read_to_close() == b""
    entry = served.wait_event("sasl", lambda e: e["status"] == 4)
    assert entry["detail"]["reason"] == "too many connections (at most 1)"
    served.wait_for(lambda: served.server.acceptor.open_connections == 0, "the holder gone")
    still_serves(served)


# -- after SASL: proton's close frames ---------------------------------------------------------

def authenticated(served: Served) -> RawClient:
    client = RawClient(served.port, tls=True)
    assert client.sasl_plain() == 0
    return client


def closing_condition(client: RawClient) -> tuple[str, str] | None:
    close = client.close_frame()
    return condition_of(close)


@dataclass(frozen=True)
class After:
    id: str
    send: Callable[[], bytes]
    condition: str
    description: str


def begin(channel: int = 0) -> bytes:
    return frame(BEGIN, [None, uint(0), uint(100), uint(100)], channel=channel)


AFTER = [
    After("garbage-after-the-amqp-header", lambda: sasl.AMQP_HEADER + b"\xff" * 64,
          "amqp:connection:framing-error", ""),
    After("oversized-frame", lambda: sasl.AMQP_HEADER + frame(OPEN, ["raw"])
          + struct.pack(">IBBH", 70_000, 2, 0, 0) + b"\x00" * 69_992,
          "amqp:connection:framing-error", ""),
    After("begin-above-channel-max", lambda: sasl.AMQP_HEADER + frame(OPEN, ["raw"])
          + begin(channel=40), "amqp:connection:framing-error",
          "remote channel 40 is above negotiated channel_max 31"),
    After("flow-on-a-channel-never-begun", lambda: sasl.AMQP_HEADER + frame(OPEN, ["raw"])
          + frame(FLOW, [None, uint(100), uint(0), uint(100)], channel=3),
          "amqp:", ""),
    After("a-performative-that-is-no-performative", lambda: sasl.AMQP_HEADER
          + frame(OPEN, ["raw"]) + frame(0x77, []), "amqp:connection:framing-error",
          "a frame that is not an AMQP 1.0 performative"),
]


@pytest.mark.parametrize("case", AFTER, ids=[c.id for c in AFTER])
def test_a_broken_frame_after_sasl_gets_a_close_with_an_error(amqp_server: Start,
                                                                case: After) -> None:
    served = amqp_server()
    with authenticated(served) as client:
        client.send(case.send())
        answer = client.read_to_close()
    assert answer.startswith(sasl.AMQP_HEADER)
    frames, rest = parse_frames(answer[8:])
    closes = [f for f in frames if f.code == CLOSE]
    assert len(closes) == 1 and not rest, frames
    condition = condition_of(closes[0])
    assert condition is not None and condition[0].startswith(case.condition)
    assert case.description in condition[1]
    close = served.wait_event("close")
    assert close["detail"]["by"] == "server" and close["detail"]["condition"] == condition[0]
    still_serves(served)


def test_a_wrong_header_after_sasl_gets_the_amqp_header(amqp_server: Start) -> None:
    served = amqp_server()
    with authenticated(served) as client:
        client.send(sasl.SASL_HEADER)  # SASL again
        assert client.read_to_close() == sasl.AMQP_HEADER
    assert "after SASL" in served.wait_event("refused")["detail"]["reason"]
    still_serves(served)


@pytest.mark.parametrize(("send", "condition", "reason"), [
    (b"", "amqp:resource-limit-exceeded", "no open within 0.3 s of connecting"),
    (begin(), "amqp:connection:framing-error", "a begin before the open"),
], ids=["no-open", "begin-before-open"])
def test_a_client_that_does_not_open_gets_the_servers_open_and_is_closed(
        amqp_server: Start, send: bytes, condition: str, reason: str) -> None:
    """Proton holds a close until the client's open has come: the server's open is sent,
    then the socket closed; the journal keeps the condition."""
    served = amqp_server(handshake_timeout=0.3, attach_deadline=None)
    with authenticated(served) as client:
        client.send(sasl.AMQP_HEADER + send)
        answer = client.read_to_close()
    assert answer.startswith(sasl.AMQP_HEADER)
    frames, rest = parse_frames(answer[8:])
    assert [f.code for f in frames] == [OPEN] and not rest
    close = served.wait_event("close")
    assert close["detail"]["condition"] == condition
    assert close["detail"]["reason"].startswith(reason)
    still_serves(served)


def test_a_silent_client_is_closed_at_the_idle_timeout(amqp_server: Start) -> None:
    served = amqp_server(idle_timeout=0.3, attach_deadline=None)
    with authenticated(served) as client:
        opened = client.open()
        assert opened.fields[4] == 150  # proton announces half its idle time-out (ms)
        name, _ = closing_condition(client) or ("", "")
        assert name == "amqp:resource-limit-exceeded"
    still_serves(served)


def test_a_client_that_announces_an_idle_timeout_gets_empty_frames(amqp_server: Start) -> None:
    served = amqp_server(idle_timeout=0, attach_deadline=None)
    with authenticated(served) as client:
        client.send(sasl.AMQP_HEADER + frame(OPEN, ["raw", "default", uint(65536),
                                                     None, uint(200)]))
        assert client.read(8) == sasl.AMQP_HEADER
        assert client.frames(1)[0].code == OPEN
        heartbeats = client.frames(2)
        assert [f.code for f in heartbeats] == [None, None]


def test_too_many_links_are_refused_one_by_one(amqp_server: Start) -> None:
    served = amqp_server(max_links=1)
    with connected(served) as connection:
        connection.create_receiver("q1", name="first")
        with pytest.raises(LinkDetached) as caught:
            connection.create_receiver("q1", name="second")
        assert caught.value.condition == "amqp:resource-limit-exceeded"


def test_the_journal_and_hooks_failing_do_not_end_the_server(amqp_server: Start) -> None:
    served = amqp_server()

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("journal down")

    served.server.journal = broken
    with RawClient(served.port, tls=True) as client:
        client.send(b"nonsense")
        assert client.read_to_close() == sasl.SASL_HEADER
    served.server.journal = lambda protocol, event, **fields: served.journal.append(
        (protocol, event, fields))
    still_serves(served)



def test_a_client_that_stops_reading_is_given_no_more_and_aborted(amqp_server: Start) -> None:
    served = amqp_server(write_high_water=64 * 1024, write_timeout=0.5)
    served.call(lambda: served.app.queue("big"))
    served.put("big", *[b"x" * 256 * 1024] * 40)  # 10 MB: more than the sockets' buffers hold
    with RawClient(served.port, tls=True, receive_buffer=4096) as client:
        assert client.sasl_plain() == 0
        client.open()
        client.consume("big", credit=1000)
        close = served.wait_event("close")  # and never a read
    assert close["detail"]["reason"].startswith("write timeout: ")
    assert 0 < len(served.events("deliver")) < 40  # held back once the buffer was full
    assert served.queue_state("big") == (40, 0)  # all back, the sent ones counted
    still_serves(served)


def test_an_application_that_fails_to_authenticate_answers_sys(amqp_server: Start,
                                                                caplog: pytest.LogCaptureFixture
                                                                ) -> None:
    served = amqp_server()

    async def broken(username: str, password: str, peer: object) -> None:
        raise RuntimeError("the user store is down")

    served.app.authenticate = broken  # type: ignore[method-assign,assignment]
    with RawClient(served.port, tls=True) as client:
        assert client.sasl_plain() == int(sasl.Code.SYS)
        assert client.read_to_close() == b""
    assert served.wait_event("sasl")["detail"]["reason"] == (
        "authenticate failed (an error of the server's)")
    assert "the AMQP application's authenticate failed" in caplog.text

"""The control plane's slow-client limits are the emulators': an idle connection, or one whose
request head comes a byte at a time, is closed after ``idle_timeout``; a request whose body
comes a byte a second is cut off at ``request_deadline`` by the farm's one deadline sweeper.
Meanwhile everyone else is served.

The limits are short here (class attributes read when the control plane starts) so the module
runs in a few seconds.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from emulators.control.server import ControlPlane
from emulators.core.httpserver import HttpEmulator
from emulators.testing import RunningFarm
from tests.control_support import control
from tests.robustness.clients import closed_after as slow_client_closed_after

IDLE = 1.0
DEADLINE = 2.0
# The limit plus the farm's once-a-second deadline sweep plus noise on a busy machine.
GRACE = 1.5
COUNTER = {"emulators": [{"name": "a", "kind": "tests.kinds:Counter"}]}


@pytest.fixture(scope="module")
def slow_farm(emulators_loop: Any) -> Iterator[RunningFarm]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ControlPlane, "idle_timeout", IDLE, raising=False)
        patch.setattr(ControlPlane, "request_deadline", DEADLINE, raising=False)
        farm = RunningFarm.start(COUNTER, loop=emulators_loop)
        try:
            yield farm
        finally:
            farm.stop()


def closed_after(sock: socket.socket, limit: float, drip: bytes = b"",
                 every: float = 0.25) -> float | None:
    """Send ``drip`` a byte every ``every`` s (or nothing) until the server closes; when it
    closed, in seconds (None: still open after ``limit``)."""
    return slow_client_closed_after(sock, time.monotonic(), limit, drip, every)[0]


def connect(farm: RunningFarm) -> socket.socket:
    return socket.create_connection(("127.0.0.1", farm.farm.control.port), timeout=5)


HEAD = b"GET /v1/clock HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"p" * 40 + b"\r\n\r\n"
SLOW_BODY = (b"POST /v1/clock/advance HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n" + b'{"seconds": 1' + b" " * 186 + b"}")


@pytest.mark.parametrize(("drip", "limit", "every"), [
    pytest.param(b"", IDLE, 0.25, id="silent-connection"),
    pytest.param(HEAD, IDLE, 0.25, id="request-head-a-byte-at-a-time"),
    pytest.param(SLOW_BODY[:SLOW_BODY.index(b"\r\n\r\n") + 4] + b'{"seconds"', DEADLINE, 0.0,
                 id="body-that-stalls"),
])
def test_a_slow_client_is_closed_within_the_limit(slow_farm: RunningFarm, drip: bytes,
                                                  limit: float, every: float) -> None:
    with connect(slow_farm) as sock:
        if every == 0.0:  # the head and the start of the body at once, then silence
            sock.sendall(drip)
            drip = b""
        closed = closed_after(sock, limit + GRACE + 3, drip, every=every or 0.25)
    assert closed is not None and closed <= limit + GRACE, closed


def test_a_body_sent_a_byte_a_second_is_cut_off_at_the_deadline(slow_farm: RunningFarm) -> None:
    head, body = SLOW_BODY.split(b"\r\n\r\n", 1)
    answers: list[float] = []

    def meanwhile() -> None:  # others are served while the slow client holds its request
        time.sleep(0.5)
        started = time.monotonic()
        assert control(slow_farm, "GET", "/v1/clock").status == 200
        answers.append(time.monotonic() - started)

    other = threading.Thread(target=meanwhile)
    with connect(slow_farm) as sock:
        sock.sendall(head + b"\r\n\r\n")
        other.start()
        closed = closed_after(sock, DEADLINE + GRACE + 3, body, every=1.0)
    other.join(10)
    assert closed is not None and DEADLINE - 0.5 <= closed <= DEADLINE + GRACE, closed
    assert answers and answers[0] < 1.0
    # The advance never happened: the request was cut off, not answered late.
    assert abs(control(slow_farm, "GET", "/v1/clock").json()["time"] - time.time()) < 5


def test_an_idle_keep_alive_connection_is_closed_after_its_reply(slow_farm: RunningFarm) -> None:
    with connect(slow_farm) as sock:
        sock.sendall(b"GET /v1/clock HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        closed = closed_after(sock, IDLE + GRACE + 3)
    assert closed is not None and closed <= IDLE + GRACE, closed


def test_many_idle_connections_are_all_closed(slow_farm: RunningFarm) -> None:
    socks = [connect(slow_farm) for _ in range(200)]
    try:
        time.sleep(IDLE + GRACE)
        still_open = 0
        for sock in socks:
            sock.settimeout(0.5)
            try:
                if sock.recv(1) != b"":
                    still_open += 1
            except TimeoutError:
                still_open += 1
            except OSError:
                pass
        assert still_open == 0
        assert control(slow_farm, "GET", "/v1/clock").status == 200
    finally:
        for sock in socks:
            sock.close()


def test_the_control_plane_takes_the_emulators_limits_by_default(
        farm_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for limit in ("idle_timeout", "request_deadline"):  # unset: (this module's farm sets them)
        monkeypatch.setattr(ControlPlane, limit, None, raising=False)
    monkeypatch.setattr(HttpEmulator, "idle_timeout", IDLE)
    farm = farm_factory(COUNTER)
    assert farm.farm.control.limits() == (IDLE, HttpEmulator.request_deadline)
    with connect(farm) as sock:
        closed = closed_after(sock, IDLE + GRACE + 3)
    assert closed is not None and closed <= IDLE + GRACE, closed

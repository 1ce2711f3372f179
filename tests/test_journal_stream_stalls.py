"""Journal streams whose readers stopped reading: they hold no place for ever. A stream whose
client does not take what it was sent within ``control.stream_write_timeout`` is cut (its
place among the 16 freed), and ``seconds=`` ends a stream even while it waits on such a
client. Raw sockets with a small receive buffer that never read, against a farm whose
journal is then filled with large entries."""

from __future__ import annotations

import contextlib
import http.client
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from emulators.control.journal import MAX_STREAMS
from emulators.testing import RunningFarm

PATIENCE = 60.0  # how long the test waits for what must happen (a busy machine is slow)
TARGET = "/?padding=" + "x" * 6000  # the journal keeps the query: 500 entries are megabytes


def scenario(write_timeout: float) -> dict[str, Any]:
    return {"name": "stalls", "control": {"port": 0, "stream_write_timeout": write_timeout},
            "emulators": [{"name": "c", "kind": "tests.kinds:Counter"}]}


def address(farm: RunningFarm) -> tuple[str, int]:
    return "127.0.0.1", farm.farm.control.port


def open_stream(farm: RunningFarm, query: str = "") -> socket.socket:
    """A stream asked for by a client that will never read it (a 4 KiB receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(address(farm))
    sock.sendall(f"GET /v1/journal/stream?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                 .encode())
    return sock


@contextlib.contextmanager
def stalled(farm: RunningFarm, count: int, query: str = "") -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(open_stream(farm, query))
        yield socks
    finally:
        for sock in socks:
            sock.close()


def get(farm: RunningFarm, target: str) -> tuple[int, bytes]:
    """A reader that reads: the status and the whole reply (a stream ends with seconds=)."""
    conn = http.client.HTTPConnection(*address(farm), timeout=PATIENCE)
    try:
        conn.request("GET", target)
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def fill_journal(farm: RunningFarm, entries: int) -> None:
    conn = http.client.HTTPConnection(farm["c"].host, farm["c"].port, timeout=PATIENCE)
    try:
        for _ in range(entries):
            conn.request("GET", TARGET)
            conn.getresponse().read()
    finally:
        conn.close()


def eventually(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + PATIENCE
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_readers_that_stop_reading_are_cut_and_their_places_freed(
        farm_factory: Callable[..., RunningFarm]) -> None:
    farm = farm_factory(scenario(write_timeout=1.0))
    with stalled(farm, MAX_STREAMS):
        # every place is taken (a stream asked for now is refused)...
        assert eventually(lambda: get(farm, "/v1/journal/stream?seconds=0.5")[0] == 503)
        fill_journal(farm, 500)  # ...and each stalled stream now has megabytes to send
        # Cut after the write timeout: a new reader, and the dashboard's reads, are served.
        assert eventually(lambda: get(farm, "/v1/journal/stream?seconds=0.5")[0] == 200)
        assert get(farm, "/v1/journal?limit=100")[0] == 200
        status, body = get(farm, "/v1/journal/stream?max_rate=25&seconds=0.5")
        assert status == 200 and body.startswith(b"retry: 1000")


def test_seconds_ends_streams_whose_readers_stopped(
        farm_factory: Callable[..., RunningFarm]) -> None:
    farm = farm_factory(scenario(write_timeout=3600.0))  # only seconds= can end them
    fill_journal(farm, 500)
    with stalled(farm, MAX_STREAMS, "after_seq=0&seconds=2"):  # megabytes to send at once
        assert eventually(lambda: get(farm, "/v1/journal/stream?seconds=0.5")[0] == 503)
        assert eventually(lambda: get(farm, "/v1/journal/stream?seconds=0.5")[0] == 200)


@pytest.mark.parametrize("value", [0, -1, "soon", 3601])
def test_the_write_timeout_is_checked(farm_factory: Callable[..., RunningFarm],
                                      value: Any) -> None:
    from emulators.scenario import ScenarioInvalid

    with pytest.raises(ScenarioInvalid, match="stream_write_timeout"):
        farm_factory(scenario(write_timeout=value))

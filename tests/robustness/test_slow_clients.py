"""Slow clients: silent and half-open connections, headers sent a byte at a time, bodies that
stall. None of them stops the farm serving everyone else, and each is timed out.

The farm of this module runs with short limits so the suite stays fast: the HTTP members'
``idle_timeout`` (a class attribute read when a member builds its runner, so it is patched
before the farm starts), ``request_deadline`` and the TLS handshake timeout, the ACTi camera's
``upload_timeout``, the
FTP server's ``idle_timeout`` and the SFTP server's ``login_timeout``.
"""

from __future__ import annotations

import asyncio
import ftplib
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import asyncssh
import pytest

from emulators import pki
from emulators.core import tls
from emulators.core.httpserver import HttpEmulator
from emulators.testing import LoopThread, RunningFarm
from tests.robustness.clients import (
    ACTI_AUTH,
    FTP_PASSWORD,
    FTP_USER,
    IOTDA_PROJECT,
    IOTDA_TOKEN,
    SFTP_PASSWORD,
    SFTP_USER,
    basic,
    closed_after,
    exchange,
    http_request,
    scenario,
)

IDLE = 1.0        # the HTTP members' idle timeout in this module
DEADLINE = 2.0    # the HTTP members' request deadline in this module
SERVER_IDLE = 1   # FTP idle timeout / SFTP login timeout
# How long after its limit a slow connection may still be open: the limit plus the farm's
# once-a-second deadline sweep plus scheduling noise on a busy two-core machine.
GRACE = 1.5
HTTP_MEMBERS = ("acti", "instar", "enos", "iotda")

# A request each member answers at once, to show it still serves others.
NORMAL: dict[str, tuple[bytes, int]] = {
    "acti": (http_request("GET", f"/cgi-bin/update?{ACTI_AUTH}&HTTPS_CER"), 200),
    "instar": (http_request("GET", "/param.cgi?cmd=getftpattr",
                            headers={"Authorization": basic("admin", "instar")}), 200),
    "enos": (http_request("GET", "/enos/CA/cacert/RSA"), 200),
    "iotda": (http_request("GET", f"/v5/iot/{IOTDA_PROJECT}/certificates",
                           headers={"X-Auth-Token": IOTDA_TOKEN}), 200),
}
# The head of a request whose body (declared, small) never comes.
STALLED_BODY: dict[str, bytes] = {
    "acti": b"POST /cgi-bin/update?" + ACTI_AUTH.encode() + b"&HTTPS_CER_SAVE HTTP/1.1\r\n"
            b"Host: x\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 5000\r\n\r\n--x\r\n",
    "enos": b"POST /apim-token-service/v2.0/token/get HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"appKey\"",
    "iotda": b"POST /v5/iot/" + IOTDA_PROJECT.encode() + b"/certificates HTTP/1.1\r\nHost: x\r\n"
             b"X-Auth-Token: " + IOTDA_TOKEN.encode() + b"\r\nContent-Type: application/json\r\n"
             b"Content-Length: 5000\r\n\r\n{\"content\"",
}


@pytest.fixture(scope="module")
def slow_farm(emulators_loop: LoopThread) -> Iterator[RunningFarm]:
    # request_deadline is read per request, so the patch holds until the farm stops.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(HttpEmulator, "idle_timeout", IDLE)
        patch.setattr(HttpEmulator, "request_deadline", DEADLINE)
        patch.setattr(tls, "HANDSHAKE_TIMEOUT", IDLE)  # read per connection
        farm = RunningFarm.start(scenario(
            "slow-clients", acti={"upload_timeout": 1}, enos={"https_port": 0},
            ftp={"idle_timeout": SERVER_IDLE}, sftp={"login_timeout": SERVER_IDLE},
        ), loop=emulators_loop)
        try:
            yield farm
        finally:
            farm.stop()


# -- slow client behaviours, each run in its own thread ---------------------------------------

def _slow_http(port: int, mode: str, member: str, limit: float) -> tuple[float | None, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    with sock:
        started = time.monotonic()
        if mode == "silent":
            return closed_after(sock, started, limit)
        if mode == "half-open":
            # Part of a request line, then the client's side shuts: the request never ends.
            sock.sendall(b"GET /cgi-bin/upd")
            sock.shutdown(socket.SHUT_WR)
            return closed_after(sock, started, limit)
        if mode == "drip-headers":
            head, _status = NORMAL[member]
            return closed_after(sock, started, limit, drip=head + b"X-Padding: " + b"a" * 200)
        sock.sendall(STALLED_BODY[member])  # stalled body
        return closed_after(sock, started, limit)


def _in_threads(jobs: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    results: dict[str, Any] = {}

    def run(name: str, job: Callable[[], Any]) -> None:
        try:
            results[name] = job()
        except BaseException as exc:  # noqa: BLE001 - reported by the test, not lost
            results[name] = exc

    threads = [threading.Thread(target=run, args=item, name=f"slow-{item[0]}")
               for item in jobs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


SLOW_MODES = {"silent": IDLE, "half-open": IDLE, "drip-headers": IDLE,
              "stalled-body": DEADLINE}


def test_slow_http_clients_are_timed_out_while_others_are_served(
        slow_farm: RunningFarm) -> None:
    """Five of each kind of slow connection on every HTTP member at once; meanwhile every
    member answers a normal request promptly, and every slow connection is closed within
    its limit."""
    jobs: dict[str, Callable[[], Any]] = {}
    for member in HTTP_MEMBERS:
        port = slow_farm[member].port
        for mode in SLOW_MODES:
            if mode == "stalled-body" and member not in STALLED_BODY:
                continue  # INSTAR takes GET only: it has no body to stall
            for i in range(5):
                jobs[f"{member}/{mode}/{i}"] = (
                    lambda p=port, m=mode, mem=member: _slow_http(p, m, mem, 10.0))
    results: dict[str, Any] = {}
    holder = threading.Thread(target=lambda: results.update(_in_threads(jobs)))
    holder.start()
    time.sleep(0.3)  # every slow connection is open now
    served = {}
    for member in HTTP_MEMBERS:
        request, status = NORMAL[member]
        reply = exchange(slow_farm[member].port, request, timeout=3)
        served[member] = (reply.status, round(reply.elapsed, 2))
        assert reply.status == status
        assert reply.elapsed < 0.5, f"{member} took {reply.elapsed:.2f} s with slow clients on"
    holder.join(30)
    late = {}
    for name, outcome in results.items():
        assert not isinstance(outcome, BaseException), (name, outcome)
        closed_at, said = outcome
        mode = name.split("/")[1]
        limit = SLOW_MODES[mode] + GRACE
        if closed_at is None or closed_at > limit:
            late[name] = closed_at
        if mode == "stalled-body" and name.startswith("acti"):
            # The camera's own limit: upload_timeout, answered in its form.
            assert said.endswith(b"ERROR: internal error. upload timed out.\n"), said
        else:
            assert b" 500 " not in said[:20]
    assert not late, f"slow connections still open past their limit: {late}"


def test_ftp_silent_client_is_timed_out_while_another_uploads(slow_farm: RunningFarm) -> None:
    handle = slow_farm["ftp"]
    silent = socket.create_connection(("127.0.0.1", handle.port), timeout=5)
    with silent:
        started = time.monotonic()
        greeting = silent.recv(4096)
        assert greeting.startswith(b"220 ")
        with ftplib.FTP() as client:
            client.connect("127.0.0.1", handle.port, timeout=5)
            client.login(FTP_USER, FTP_PASSWORD)
            assert client.storbinary("STOR busy.txt", io.BytesIO(b"served")).startswith("226")
        closed_at, said = closed_after(silent, started, 10.0)
    assert closed_at is not None and closed_at < SERVER_IDLE + GRACE + 1, closed_at
    assert said.startswith(b"421 "), said
    assert handle.call(lambda m: [r["path"] for r in m.received_files()]) == ["busy.txt"]


@pytest.mark.parametrize("mode", ["silent", "banner-only"])
def test_sftp_silent_client_is_timed_out_while_another_uploads(
        slow_farm: RunningFarm, mode: str) -> None:
    handle = slow_farm["sftp"]
    handle.reset()
    silent = socket.create_connection(("127.0.0.1", handle.port), timeout=5)
    with silent:
        started = time.monotonic()
        if mode == "banner-only":
            silent.sendall(b"SSH-2.0-SlowClient\r\n")  # then no key exchange, no login

        async def upload() -> None:
            async with asyncssh.connect(
                    "127.0.0.1", handle.port, username=SFTP_USER, password=SFTP_PASSWORD,
                    known_hosts=None, client_keys=None, agent_path=None, connect_timeout=5,
            ) as conn, conn.start_sftp_client() as sftp, sftp.open("busy.txt", "wb") as fh:
                await fh.write(b"served")

        asyncio.run(upload())
        closed_at, _said = closed_after(silent, started, 10.0)
    assert closed_at is not None and closed_at < SERVER_IDLE + GRACE + 1, closed_at
    assert handle.call(lambda m: [r["path"] for r in m.received_files()]) == ["busy.txt"]


@pytest.mark.parametrize("member", sorted(STALLED_BODY))
def test_client_hanging_up_mid_body_is_no_error(slow_farm: RunningFarm, member: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """A client gone before its body arrived leaves no traceback in the log and no 5xx in the
    journal (499: the client closed), and the member serves the next client."""
    handle = slow_farm[member]
    slow_farm.clear_journal()
    with socket.create_connection(("127.0.0.1", handle.port), timeout=5) as sock:
        sock.sendall(STALLED_BODY[member])
        time.sleep(0.2)
    entry = slow_farm.wait_for(timeout=3, member=member, event="request")
    assert entry["status"] == 499
    request, status = NORMAL[member]
    assert exchange(handle.port, request).status == status
    errors = [r for r in caplog.records if r.levelno >= 30]
    assert errors == [], [r.getMessage() for r in errors]


def test_silent_tls_clients_are_timed_out_while_others_are_served(
        slow_farm: RunningFarm) -> None:
    """Connections to an HTTPS listener that never finish the handshake (silent, or half a
    ClientHello) are dropped at the handshake timeout; a real HTTPS client is served meanwhile."""
    host, port = slow_farm["enos"].urls["https"].removeprefix("https://").split(":")

    def stall(hello: bytes) -> tuple[float | None, bytes]:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            started = time.monotonic()
            sock.sendall(hello)
            return closed_after(sock, started, 10.0)

    jobs: dict[str, Callable[[], Any]] = {}
    for i in range(5):
        jobs[f"silent/{i}"] = lambda: stall(b"")
        jobs[f"half-hello/{i}"] = lambda: stall(b"\x16\x03\x01\x02\x00\x01")
    results: dict[str, Any] = {}
    holder = threading.Thread(target=lambda: results.update(_in_threads(jobs)))
    holder.start()
    time.sleep(0.3)
    context = pki.client_context(verify=False)
    with socket.create_connection((host, int(port)), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="enos.test") as conn:
        started = time.monotonic()
        conn.sendall(b"GET /enos/CA/cacert/RSA HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert time.monotonic() - started < 0.5
    holder.join(30)
    for name, outcome in results.items():
        assert not isinstance(outcome, BaseException), (name, outcome)
        closed_at, said = outcome
        assert closed_at is not None and closed_at < IDLE + GRACE, (name, closed_at)
        assert said == b""  # a TLS server that gives up says nothing in HTTP

"""A member's route on a sharded farm's front goes to the shard that runs the member and
nowhere else: the rest of its path is checked as every path parameter is (control/params.py)
and the shard's URL is rebuilt from the checked parts, so no spelling of ".." reaches the
shards' own routes (``/v1/shard/ca`` holds the farm CA's private key, ``/v1/shard/clock``
moves one shard's clock behind the front's back). Sent as raw bytes: a client library would
resolve or re-encode the very paths under test."""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.request
from urllib.parse import urlsplit

import pytest

from emulators.testing import ShardedFarm

CLOCK = json.dumps({"offset": 86_400_000.0, "frozen_at": None}).encode()
# (id, method, raw path, body)
HOSTILE = [
    ("dot-dot", "GET", "/v1/emulators/cam-2/../../shard/ca", None),
    ("dot-dot-servers", "GET", "/v1/servers/ftp/../../shard/ca", None),
    ("dot-dot-journal", "GET", "/v1/emulators/cam-2/../../shard/journal?after=0", None),
    ("pct-2e-lower", "GET", "/v1/emulators/cam-2/%2e%2e/%2e%2e/shard/ca", None),
    ("pct-2E-upper", "GET", "/v1/emulators/cam-2/%2E%2E/%2E%2E/shard/ca", None),
    ("pct-mixed", "GET", "/v1/emulators/cam-2/.%2e/%2e./shard/ca", None),
    ("pct-2f-slash", "GET", "/v1/emulators/cam-2/..%2f..%2fshard%2fca", None),
    ("pct-2F-slash", "GET", "/v1/emulators/cam-2/%2e%2e%2F%2e%2e%2Fshard%2Fca", None),
    ("double-encoded", "GET", "/v1/emulators/cam-2/%252e%252e/%252e%252e/shard/ca", None),
    ("double-encoded-slash", "GET", "/v1/emulators/cam-2/..%252f..%252fshard%252fca", None),
    ("backslash", "GET", "/v1/emulators/cam-2/..\\..\\shard\\ca", None),
    ("pct-5c-backslash", "GET", "/v1/emulators/cam-2/..%5c..%5cshard%5cca", None),
    ("nul", "GET", "/v1/emulators/cam-2/%00/../../shard/ca", None),
    ("nul-suffix", "GET", "/v1/emulators/cam-2/state%00", None),
    ("dot", "GET", "/v1/emulators/cam-2/./state", None),
    ("empty-component", "GET", "/v1/emulators/cam-2//state", None),
    ("overlong-component", "GET", "/v1/emulators/cam-2/" + "a" * 300, None),
    ("overlong-path", "GET", "/v1/emulators/cam-2/" + "../" * 400 + "shard/ca", None),
    ("clock-dot-dot", "PUT", "/v1/emulators/cam-2/../../shard/clock", CLOCK),
    ("clock-pct-2e", "PUT", "/v1/emulators/cam-2/%2e%2e/%2e%2e/shard/clock", CLOCK),
    ("clock-pct-2f", "PUT", "/v1/servers/ftp/..%2f..%2fshard%2fclock", CLOCK),
    ("shard-route", "GET", "/v1/shard/ca", None),
    ("shard-clock", "PUT", "/v1/shard/clock", CLOCK),
    ("shard-journal", "GET", "/v1/shard/journal?after=0", None),
]


def raw(farm: ShardedFarm, method: str, path: str, body: bytes | None, *,
        host: str = "{host}:{port}", headers: str = "Content-Type: application/json\r\n"
        ) -> tuple[int, bytes]:
    where = urlsplit(farm.control_url)
    assert where.hostname is not None and where.port is not None
    head = (f"{method} {path} HTTP/1.1\r\n"
            f"Host: {host.format(host=where.hostname, port=where.port)}\r\n"
            f"Connection: close\r\n{headers}"
            f"Content-Length: {len(body or b'')}\r\n\r\n").encode("latin-1")
    with socket.create_connection((where.hostname, where.port), timeout=60) as sock:
        sock.sendall(head + (body or b""))
        reply = http.client.HTTPResponse(sock, method=method)
        reply.begin()
        try:
            return reply.status, reply.read()
        finally:
            reply.close()


@pytest.mark.parametrize(("method", "path", "body"), [c[1:] for c in HOSTILE],
                         ids=[c[0] for c in HOSTILE])
def test_no_spelling_of_a_path_reaches_the_shards_own_routes(
        farms: tuple[ShardedFarm, ShardedFarm], method: str, path: str,
        body: bytes | None) -> None:
    _, four = farms
    status, answer = raw(four, method, path, body)
    assert b"PRIVATE KEY" not in answer
    assert status in (400, 404), (status, answer[:300])
    assert set(json.loads(answer)["error"]) == {"code", "message"}
    if method == "PUT":  # and no shard's clock moved: each records a camera's request now
        for name in ("cam-1", "cam-2", "cam-3", "cam-4"):  # one on every shard
            before = time.time()
            with urllib.request.urlopen(f"{four[name].url}/param.cgi?cmd=getserverinfo"
                                        "&user=admin&pwd=instar", timeout=60) as reply:
                reply.read()
            [entry] = four.api("GET", f"/v1/journal?member={name}&limit=1")["entries"]
            assert before - 60 <= entry["time"] <= time.time() + 60, (name, entry["time"])


def test_a_member_route_still_reaches_its_shard(farms: tuple[ShardedFarm, ShardedFarm]) -> None:
    _, four = farms
    status, answer = raw(four, "GET", "/v1/emulators/cam-2/state?unused=%2e%2e", None)
    assert status == 200, answer[:300]
    assert "ftp" in json.loads(answer)


@pytest.mark.parametrize(("host", "status"), [
    ("evil.example:{port}", 421), ("farm-control.evil.example:{port}", 421),
    ("farm-control:{port}", 200), ("localhost:{port}", 200), ("{host}:{port}", 200)])
def test_the_front_answers_loopback_and_its_configured_names_only(
        farms: tuple[ShardedFarm, ShardedFarm], host: str, status: int) -> None:
    _, four = farms
    got, answer = raw(four, "GET", "/v1/emulators/cam-2", None, host=host)
    assert got == status, answer[:300]
    if status != 200:
        assert json.loads(answer)["error"]["code"] == "misdirected_request"


def test_the_front_takes_state_changes_as_json_only(
        farms: tuple[ShardedFarm, ShardedFarm]) -> None:
    _, four = farms
    for path in ("/v1/reset", "/v1/emulators/cam-2/reset"):
        for headers in ("Content-Type: text/plain\r\n", ""):
            status, answer = raw(four, "POST", path, b"{}" if headers else None,
                                 headers=headers)
            assert status == 415, answer[:300]
            assert json.loads(answer)["error"]["code"] == "unsupported_media_type"
    # body-less resets said to be no web page's doing reach the shards (the front's own calls
    # to them say so too)
    said = "X-Requested-With: curl\r\n"
    status, answer = raw(four, "POST", "/v1/emulators/cam-2/reset", None, headers=said)
    assert (status, json.loads(answer)) == (200, {"reset": "cam-2"})
    status, answer = raw(four, "POST", "/v1/reset", None, headers=said)
    assert (status, json.loads(answer)) == (200, {"reset": ["cam-1", "cam-2", "cam-3", "cam-4",
                                                            "ftp"]})

"""The front of a sharded farm answers bad input as one process does: the same status and the
same error code in the control plane's form, for every kind of malformed request a client or
an attacker on loopback sends (names that would leave the state directory, bad JSON, unknown
members and routes, a wrong method)."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest

from emulators.testing import ShardedFarm

CASES = [
    ("GET", "/v1/emulators/cam-9", None),
    ("GET", "/v1/emulators/..%2f..%2fetc", None),
    ("GET", "/v1/emulators/cam-2/state/extra", None),
    ("GET", "/v1/servers/ftp/files/ftpuser/..%2f..%2fshadow", None),
    ("GET", "/v1/servers/ftp/files/nobody/x.jpg", None),
    ("POST", "/v1/faults", b"not json"),
    ("POST", "/v1/faults", b'{"fault": "nonsense"}'),
    ("POST", "/v1/faults", b'{"fault": "latency"}'),
    ("DELETE", "/v1/faults/none-such", None),
    ("DELETE", "/v1/faults/..", None),
    ("POST", "/v1/clock/advance", b'{"seconds": -1}'),
    ("POST", "/v1/clock/set", b'{"at": "yesterday"}'),
    ("POST", "/v1/snapshots", b'{"name": "../x"}'),
    ("POST", "/v1/snapshots", b'{"members": "all"}'),
    ("POST", "/v1/snapshots/none-such/restore", b"{}"),
    ("DELETE", "/v1/snapshots/none-such", None),
    ("GET", "/v1/journal?status=abc", None),
    ("GET", "/v1/journal/rates?minutes=0", None),
    ("PUT", "/v1/journal/config", b'{"capacity": 0}'),
    ("GET", "/v1/no-such-route", None),
    ("PATCH", "/v1/emulators", None),
]


def answer(farm: ShardedFarm, method: str, path: str, body: bytes | None) -> tuple[int, str]:
    where = urlsplit(farm.control_url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    try:
        conn.request(method, path, body=body,
                     headers={"Content-Type": "application/json"} if body else {})
        reply = conn.getresponse()
        doc = json.loads(reply.read())
        return reply.status, doc["error"]["code"]
    finally:
        conn.close()


@pytest.mark.parametrize(("method", "path", "body"), CASES,
                         ids=[f"{m} {p}" for m, p, _ in CASES])
def test_bad_input_gets_the_same_error_on_shards(farms: tuple[ShardedFarm, ShardedFarm],
                                                 method: str, path: str,
                                                 body: bytes | None) -> None:
    one, four = farms
    expected = answer(one, method, path, body)
    assert 400 <= expected[0] < 500, expected
    assert answer(four, method, path, body) == expected

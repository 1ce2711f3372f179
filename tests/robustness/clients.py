"""The robustness suite's scenario (one of every member) and its raw-socket HTTP client:
hostile input is sent as bytes, so nothing between the test and the emulator tidies it up."""

from __future__ import annotations

import base64
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from emulators import pki
from emulators.enos import sdk as enos_sdk
from emulators.testing import MemberHandle

# Credentials of the robustness farm (the seed documents' where a seed gives them).
ACTI_AUTH = "USER=admin&PWD=123456"
INSTAR_USER, INSTAR_PASSWORD = "admin", "instar"
ENOS_ORG = "o15589290120871"
ENOS_APP_KEY = "7b4fa3c2-1d5e-4f60-9a8b-2c3d4e5f6a7b"
ENOS_APP_SECRET = "e1d2c3b4-a596-4788-9900-aabbccddeeff"
IOTDA_AK = "IOTDAEMULATORAK00001"
IOTDA_SK = "IotdaEmulatorSecretKey000000000000000001"
IOTDA_PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
IOTDA_TOKEN = "MIIRobustnessToken"
FTP_USER, FTP_PASSWORD = "cam", "s3cret"
SFTP_USER, SFTP_PASSWORD = "ipcamera", "password"
# The EnOS member's own key for farm-key tokens, given so that its start makes none.
ENOS_SDK_KEY_PEM = pki.key_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def enos_sdk_token() -> str:
    """A fresh genuine token, exactly as the published enos-poseidon makes one for the
    robustness app (encrypted to Envision's key)."""
    return enos_sdk.make_token(ENOS_APP_KEY, ENOS_APP_SECRET, enos_sdk.ENVISION_PUBLIC_KEY)

# How long any reply may take: a hostile request is answered at once or it is a hang.
REPLY_TIMEOUT = 5.0


def scenario(name: str, **options: dict[str, Any]) -> dict[str, Any]:
    """Every kind once; the INSTAR camera uploads to the FTP server. ``options`` adds scenario
    keys per member name (``ftp={"idle_timeout": 1}``)."""
    doc = {
        "name": name,
        "servers": [
            {"name": "ftp", "kind": "ftp", "failed_login_delay": 0.0,
             "users": [{"name": FTP_USER, "password": FTP_PASSWORD},
                       {"name": "other", "password": "other-secret"}]},
            {"name": "sftp", "kind": "sftp",
             "users": [{"name": SFTP_USER, "password": SFTP_PASSWORD},
                       {"name": "other", "password": "other-secret"}]},
        ],
        "emulators": [
            {"name": "acti", "kind": "acti-camera"},
            {"name": "instar", "kind": "instar-camera", "upload_server": "ftp",
             "ssh_key_bits": 2048, "connect_timeout": 1, "io_timeout": 1},
            {"name": "enos", "kind": "enos",
             "orgs": [{"orgId": ENOS_ORG}],
             "products": [{"orgId": ENOS_ORG, "productKey": "PBiDir01", "maxValidDay": 3650}],
             "devices": [{"orgId": ENOS_ORG, "assetId": "assetA", "productKey": "PBiDir01",
                          "deviceKey": "devA"}],
             "certificates": [{"assetId": "assetA", "issueAuthority": "RSA"}],
             "apps": [{"appKey": ENOS_APP_KEY, "appSecret": ENOS_APP_SECRET}],
             "sdk_token_key": ENOS_SDK_KEY_PEM},
            {"name": "iotda", "kind": "iotda",
             "credentials": [{"ak": IOTDA_AK, "sk": IOTDA_SK, "project_id": IOTDA_PROJECT}],
             "tokens": [{"token": IOTDA_TOKEN, "project_id": IOTDA_PROJECT}]},
        ],
    }
    for entry in (*doc["servers"], *doc["emulators"]):
        entry.update(options.get(entry["name"], {}))
    return doc


# -- the raw HTTP client ------------------------------------------------------------------------

@dataclass
class Reply:
    status: int
    reason: str
    version: str
    headers: dict[str, str]
    body: bytes
    elapsed: float                    # seconds until the reply was complete
    closed: bool = True               # the server closed the connection after it
    raw: bytes = field(default=b"", repr=False)

    def json(self) -> Any:
        return json.loads(self.body)


def _parse(raw: bytes) -> tuple[int, str, str, dict[str, str], bytes]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:  # ACTi's `wire: lf` is not used here; anything else is a broken reply
        raise AssertionError(f"no complete reply head: {raw[:200]!r}")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, status, reason = (status_line.split(" ", 2) + [""])[:3]
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status), reason, version, headers, body


def exchange(port: int, request: bytes, *, timeout: float = REPLY_TIMEOUT,
             host: str = "127.0.0.1", close_within: float = 2.0) -> Reply:
    """Send ``request`` on a new connection and read one reply (by Content-Length, or to the
    close); fail when it does not come within ``timeout``."""
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        closed = False
        complete_at: float | None = None
        deadline = started + timeout
        while True:
            # Once the reply is complete, wait a little for the close that "Connection:
            # close" asks for; a server that keeps the connection open is reported, not hung.
            until = deadline if complete_at is None else min(deadline, complete_at + close_within)
            sock.settimeout(max(0.01, until - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if complete_at is not None or b"\r\n\r\n" in data:
                    break
                raise AssertionError(f"no reply within {timeout} s; got {data[:200]!r}") from None
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
            if complete_at is None and b"\r\n\r\n" in data:
                _, _, _, headers, body = _parse(data)
                length = headers.get("content-length")
                if length is not None and len(body) >= int(length):
                    complete_at = time.monotonic()
        elapsed = (complete_at or time.monotonic()) - started
    status, reason, version, headers, body = _parse(data)
    return Reply(status, reason, version, headers, body, elapsed, closed, data)


def read_to_close(port: int, request: bytes) -> bytes:
    """One request on its own connection; the reply read to the close."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def http_request(method: str, target: str | bytes, *, headers: dict[str, str] | None = None,
                 body: bytes = b"", content_length: bool = True) -> bytes:
    """A raw HTTP/1.1 request; ``target`` may hold bytes no client library would send."""
    target_bytes = target if isinstance(target, bytes) else target.encode("latin-1")
    lines = [b"%s %s HTTP/1.1" % (method.encode(), target_bytes), b"Host: 127.0.0.1",
             b"Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}".encode("latin-1"))
    if body or (content_length and method in ("POST", "PUT")):
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def member_state(handle: MemberHandle) -> dict[str, Any]:
    """What a refused request must not change: the member's state as the control plane shows
    it, less what moves by itself (the servers' event log records refused logins on purpose)."""
    state = dict(handle.state())
    if handle.role == "server":
        return {"received": state.get("received")}
    return state


def closed_after(sock: socket.socket, started: float, limit: float,
                 drip: bytes = b"", every: float = 0.25) -> tuple[float | None, bytes]:
    """A slow client: drip ``drip`` a byte every ``every`` s (or stay silent) until the server
    closes; returns when it closed, in seconds since ``started`` (None: still open at
    ``limit``), and what it said."""
    said = b""
    sent = 0
    while time.monotonic() - started < limit:
        if sent < len(drip):
            try:
                sock.sendall(drip[sent:sent + 1])
            except OSError:
                return time.monotonic() - started, said
            sent += 1
        sock.settimeout(every)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started, said
        if not chunk:
            return time.monotonic() - started, said
        said += chunk
    return None, said

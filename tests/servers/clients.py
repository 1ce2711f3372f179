"""Real clients' helpers for the upload-server tests (ftplib, ssl, asyncssh)."""

from __future__ import annotations

import asyncio
import ftplib
import io
import json
import shutil
import socket
import ssl
import struct
import time
import urllib.request
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import asyncssh

from emulators.testing import MemberHandle

T = TypeVar("T")

FTP_USER = {"name": "cam", "password": "s3cret"}
SFTP_USER = {"name": "ipcamera", "password": "password"}


def ftp_login(handle: MemberHandle, user: str = "cam", password: str = "s3cret") -> ftplib.FTP:
    client = ftplib.FTP()
    client.connect("127.0.0.1", handle.port, timeout=10)
    try:
        client.login(user, password)
    except BaseException:
        client.close()
        raise
    return client


def ftps_context(ca_pem: str | None) -> ssl.SSLContext:
    """What a verifying client holds: the CA it trusts, hostname checking on."""
    context = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    return context


def store(client: ftplib.FTP, path: str, data: bytes) -> str:
    return client.storbinary(f"STOR {path}", io.BytesIO(data))


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run an asyncssh client session on a loop of its own (the farm has its own loop)."""
    return asyncio.run(coro)


def known_hosts(handle: MemberHandle) -> asyncssh.SSHKnownHosts:
    line = handle.description["host_key"]["line"]
    return asyncssh.import_known_hosts(f"[127.0.0.1]:{handle.port} {line}\n")


def ssh_options(handle: MemberHandle, **kwargs: Any) -> dict[str, Any]:
    """Client options that never touch the tester's own ~/.ssh or agent."""
    kwargs.setdefault("known_hosts", known_hosts(handle))
    kwargs.setdefault("client_keys", None)
    kwargs.setdefault("agent_path", None)
    kwargs.setdefault("username", SFTP_USER["name"])
    kwargs.setdefault("connect_timeout", 10)
    return kwargs


def free_port_range(width: int) -> tuple[int, int]:
    """``width`` consecutive ports that are free right now (for the passive-range tests)."""
    for _ in range(50):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        low = probe.getsockname()[1]
        probe.close()
        if low + width > 65535:
            continue
        socks = []
        try:
            for port in range(low, low + width):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return low, low + width - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range found")


def eventually(check: Callable[[], T], timeout: float = 5.0) -> T:
    """``check()``'s first truthy result: the FTP thread hands events to the farm's loop a
    moment after it has answered the client."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, "condition not reached in time"
            return result
        time.sleep(0.02)


def events_of(handle: MemberHandle, event: str, count: int = 1) -> list[dict[str, Any]]:
    """Wait until ``handle`` has recorded ``count`` events named ``event``; return them all."""
    def found() -> list[dict[str, Any]]:
        hits = [e for e in handle.call(lambda m: m.events()) if e["event"] == event]
        return hits if len(hits) >= count else []
    return eventually(found)


def reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset (SO_LINGER 0), as a client that crashes or aborts does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def control_get(farm: Any, path: str) -> Any:
    """``GET /v1<path>`` on a farm's control plane, decoded from JSON."""
    with urllib.request.urlopen(farm.control_url + path, timeout=10) as reply:
        return json.loads(reply.read())


def require_tools(*tools: str, package: str) -> None:
    """Fail (never skip) a test whose real client is not installed, saying how to get it."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        import pytest

        pytest.fail(f"this test drives {' and '.join(missing)} (a real client): "
                    f"apt-get install {package}, or run .ci/run, which does", pytrace=False)

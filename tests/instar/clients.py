"""Helpers for driving INSTAR cameras the way a user does: curl against /param.cgi."""

from __future__ import annotations

import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

SEED_USER, SEED_PASSWORD = "admin", "instar"
FIXTURE_JPEG = (Path(__file__).resolve().parents[2] / "fixtures" / "instar"
                / "Test-Snapshot.jpeg").read_bytes()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str

    @property
    def lines(self) -> list[str]:
        return self.body.split("\r\n")[:-1]

    @property
    def values(self) -> dict[str, str]:
        out = {}
        for line in self.lines:
            key, _, rest = line.partition("=")
            out[key] = rest.removesuffix(";").strip('"')
        return out

    @property
    def response(self) -> str:
        return self.values.get("response", "")


def curl(url: str, *extra: str, timeout: float = 20) -> Reply:
    """One GET with curl; ``url`` may carry ``user:password@``."""
    proc = subprocess.run(["curl", "-sS", "-i", "--max-time", str(timeout), *extra, url],
                          capture_output=True, timeout=timeout + 5, check=True)
    head, _, body = proc.stdout.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return Reply(int(status_line.split()[1]), headers, body.decode())


def cgi(base_url: str, query: str, *, user: str = SEED_USER, password: str = SEED_PASSWORD,
        how: str = "basic") -> Reply:
    """``/param.cgi?<query>`` logged in by HTTP Basic (``how="basic"``) or user/pwd."""
    host = base_url.removeprefix("http://")
    if how == "basic":
        return curl(f"http://{quote(user, safe='')}:{quote(password, safe='')}@{host}"
                    f"/param.cgi?{query}")
    return curl(f"http://{host}/param.cgi?{query}&user={quote(user, safe='')}"
                f"&pwd={quote(password, safe='')}")


def free_port() -> int:
    """A port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SilentServer:
    """Accepts TCP connections and never says a word: a server that does not answer."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self.sock.settimeout(0.1)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted.append(conn)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()

"""Stand-ins for real cameras in the capture and drift tests: raw socket servers answering
with what the emulators have no option for (another header casing and order, LF-only lines,
another field order, error bodies of their own, a serial, a MAC and a session cookie), and
recording every request they receive. Over TLS too, for the clouds' (cloud_standins.py)."""

from __future__ import annotations

import base64
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

Pairs = list[tuple[str, str | None]]

HOST = "127.0.0.7"  # an address of its own: a profile must not name it
INSTAR_USER, INSTAR_PASSWORD = "admin", "s3cr3t-Pw"
SERIAL = "INSTAR-SN-7730QX"
MAC = "00:1A:2B:3C:4D:5E"
COOKIE = "9f8e7d6c5b4a39281706"
ACTI_USER, ACTI_PASSWORD = "Admin", "acti-Pw-99"
ACTI_SERIAL = "ACTISN0051234"
ACTI_MAC = "00-0F-7C-11-22-33"
ROOT = Path(__file__).resolve().parents[2]


def emulators(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``python -m emulators ARGS`` as a user runs it: a child process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "emulators", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env, check=False)


def parse_query(raw: str) -> Pairs:
    pairs: Pairs = []
    for piece in raw.split("&"):
        if piece:
            name, sep, value = piece.partition("=")
            pairs.append((unquote(name), unquote(value) if sep else None))
    return pairs


@dataclass
class Request:
    method: str
    path: str
    query: Pairs
    headers: list[tuple[str, str]]
    raw_query: str = ""
    body: bytes = b""

    def get(self, name: str) -> str | None:
        return next((v or "" for k, v in self.query if k == name), None)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


@dataclass
class StandIn:
    """A threading TCP server: one request per connection, answered by ``answer``."""

    answer: Callable[[Request], bytes]
    received: list[Request] = field(default_factory=list)
    tls: ssl.SSLContext | None = None  # https: the stand-in's TLS identity

    def __post_init__(self) -> None:
        self.sock = socket.create_server((HOST, 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://{HOST}:{self.port}"
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self._stop:
                conn.close()
                return
            conn.settimeout(30)
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except OSError:  # a client that does not trust the certificate hangs up
                    conn.close()
                    continue
            with conn:
                try:
                    self._one(conn)
                except OSError:
                    pass

    def _one(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        path, _, query = target.partition("?")
        headers = [(k, v.strip()) for k, _, v in (h.partition(":") for h in lines[1:])]
        length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        request = Request(method, path, parse_query(query), headers, query, body)
        self.received.append(request)
        conn.sendall(self.answer(request))

    def close(self) -> None:
        self._stop = True
        # Closing a listening socket does not wake a thread blocked in accept(): a
        # connection does.
        with socket.create_connection((HOST, self.port), timeout=10):
            pass
        self._thread.join(30)
        self.sock.close()


# -- INSTAR ------------------------------------------------------------------------------------
@dataclass
class InstarDevice:
    """The camera behind the stand-in: its settings and how its web server writes replies."""

    password: str = INSTAR_PASSWORD
    server: str = "GoAhead-Webs"
    ftp: dict[str, str] = field(default_factory=lambda: {
        "ft_port": "21", "ft_server": "ftp.example.net", "ft_username": "uploader",
        "ft_mode": "1", "ft_dirname": "./cam", "ft_ssl": "0"})
    snapcount: str = "3"
    timer_reads: int = 0

    def head(self, body: bytes, *, status: str = "200 OK", length: bool = True,
             extra: str = "") -> bytes:
        # LF-only lines, the device's casing and order, a session cookie.
        head = (f"HTTP/1.1 {status}\nServer: {self.server}\ncontent-type: text/plain\n"
                f"Set-Cookie: SESSIONID={COOKIE}; path=/\n{extra}")
        if length:
            head += f"Content-Length: {len(body)}\n"
        return (head + "\n").encode() + body

    def lines(self, cmd: str, pairs: list[tuple[str, str]], code: str = "200") -> bytes:
        text = f'cmd="{cmd}";\n' + "".join(f'{k}="{v}";\n' for k, v in pairs)
        return (text + f'response="{code}";\n').encode()

    def __call__(self, request: Request) -> bytes:
        if request.path != "/param.cgi":
            return self.head(b"<html><body>Page not found</body></html>\n",
                             status="404 Site or Page Not Found")
        user, pwd = request.get("user"), request.get("pwd")
        if user is None:
            auth = request.header("Authorization") or "Basic "
            user, _, pwd = base64.b64decode(auth.split(" ", 1)[1]).decode().partition(":")
        if (user, pwd) != (INSTAR_USER, self.password):
            return self.head(b"401 Unauthorized: Access Denied\n", status="401 Unauthorized",
                             extra='WWW-Authenticate: Basic realm="GoAhead"\n')
        cmd = request.get("cmd")
        if cmd is None:
            return self.head(b'response="208";\n')
        if cmd == "getserverinfo":
            return self.head(self.lines(cmd, [
                ("model", "IN-8015 Full HD"), ("softVersion", "2.6.1.4"),
                ("serialno", SERIAL), ("macaddress", MAC), ("ipaddr", HOST),
                ("httpport", str(self.port))]))
        if cmd == "getftpattr":  # another field order than the emulator's
            order = ("ft_port", "ft_server", "ft_username", "ft_mode", "ft_dirname", "ft_ssl")
            return self.head(self.lines(cmd, [(k, self.ftp[k]) for k in order]))
        if cmd == "setftpattr":
            self.ftp.update({k: v or "" for k, v in request.query if k.startswith("ft_")})
            return self.head(self.lines(cmd, []))
        if cmd == "getftpactionattr":  # read to the close: no Content-Length
            return self.head(self.lines(cmd, [("snapcount", self.snapcount)]), length=False)
        if cmd == "setftpactionattr":
            self.snapcount = request.get("snapcount") or self.snapcount
            return self.head(self.lines(cmd, []))
        if cmd == "getsnapschedftpattr":  # chunked
            body = self.lines(cmd, [("mode", "0"), ("times", "0-1")])
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:10], body[10:]))
            return self.head(chunks + b"0\r\n\r\n", length=False,
                             extra="Transfer-Encoding: chunked\n")
        if cmd == "getsnaptimerftpattr":  # a value that moves on between reads
            self.timer_reads += 1
            return self.head(self.lines(cmd, [("name", f"snap{self.timer_reads}")]))
        if cmd.startswith("get") and cmd in ("getpubkey", "getftpaction"):
            return self.head(self.lines(cmd, [("enable", "0")]))
        return self.head(f"[Error] unknown command: {cmd}\n".encode())

    port: int = 0


def instar_standin(server: str = "GoAhead-Webs") -> tuple[StandIn, InstarDevice]:
    camera = InstarDevice(server=server)
    standin = StandIn(camera)
    camera.port = standin.port
    return standin, camera


# -- ACTi --------------------------------------------------------------------------------------
@dataclass
class ActiDevice:
    password: str = ACTI_PASSWORD
    port: int = 0

    def reply(self, body: str, status: str = "200 OK") -> bytes:
        # HTTP/1.0, "Content-Type" (the emulator writes "Content-type"), a Server line.
        data = body.encode()
        return (f"HTTP/1.0 {status}\r\nServer: Boa/0.94.14rc21\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode() + data

    def __call__(self, request: Request) -> bytes:
        if request.path not in ("/cgi-bin/update", "/cgi-bin/system"):
            return self.reply(f"ERROR: {request.path} not found\n", "404 Not Found")
        if (request.get("USER"), request.get("PWD")) != (ACTI_USER, self.password):
            return self.reply("ERROR: not authorized\n", "401 Unauthorized")
        commands = [k for k, _ in request.query if k not in ("USER", "PWD")]
        if not commands:
            return self.reply("ERROR: missing command\n")
        command = commands[0]
        if command == "SYSTEM_INFO":
            return self.reply(f"Model Name: KCM-5611\nFirmware Version: A1D-500-V6.11.17-AC\n"
                              f"Serial Number: {ACTI_SERIAL}\nMAC Address: {ACTI_MAC}\n"
                              f"IP Address: {HOST}\n")
        if command == "VERSION":
            return self.reply("A1D-500-V6.11.17-AC\n")
        if command == "HTTPS_CER":
            return self.reply("HTTPS_CER='none'\n")
        return self.reply(f"ERROR: unknown command '{command}'\n")


def acti_standin() -> tuple[StandIn, ActiDevice]:
    camera = ActiDevice()
    standin = StandIn(camera)
    camera.port = standin.port
    return standin, camera

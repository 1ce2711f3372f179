"""Clients for the camera tests: raw sockets, curl and openssl, the way users drive a camera,
seed 000 read from its copy in fixtures/acti so that tests quote the seed itself, and the
certificates: a test CA that signs the camera's CSRs, self-signed pairs as a user uploads."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509

from emulators import pki

SEED = Path(__file__).resolve().parents[2] / "fixtures" / "acti" / "seed-000-https-cer.txt"
ADMIN = "USER=admin&PWD=123456"
TIMEOUT = 10


def hostport(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def raw_exchange(url: str, request: bytes, *, source: str | None = None) -> bytes:
    """Send ``request`` on a fresh connection and read until the camera closes it."""
    with socket.create_connection(hostport(url), timeout=TIMEOUT,
                                  source_address=(source, 0) if source else None) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def get(url: str, query: str, *, path: str = "/cgi-bin/update", source: str | None = None,
        version: str = "1.1") -> bytes:
    """A minimal GET on a raw socket; returns the reply's exact bytes."""
    host, port = hostport(url)
    request = (f"GET {path}?{query} HTTP/{version}\r\nHost: {host}:{port}\r\n"
               "Connection: close\r\n\r\n").encode()
    return raw_exchange(url, request, source=source)


def body_of(reply: bytes) -> bytes:
    return reply.split(b"\r\n\r\n", 1)[1]


def multipart_body(content: bytes, *, boundary: str = "----acti-test-boundary",
                   filename: str = "certSrv.pem", field: str = "UPLOAD_FILE",
                   part_type: str = "application/octet-stream") -> tuple[str, bytes]:
    """The form the stage-2 page makes a browser send: (Content-Type, body)."""
    body = (f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {part_type}\r\n\r\n").encode() + content + (
        f"\r\n--{boundary}\r\n"
        'Content-Disposition: form-data; name="URL_FIRMWARE_SUBMIT"\r\n\r\n'
        f"Apply\r\n--{boundary}--\r\n").encode()
    return f"multipart/form-data; boundary={boundary}", body


def post(url: str, query: str, content_type: str, body: bytes, *,
         source: str | None = None) -> bytes:
    host, port = hostport(url)
    head = (f"POST /cgi-bin/update?{query} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    return raw_exchange(url, head + body, source=source)


def upload(url: str, content: bytes, *, source: str | None = None, **form: str) -> bytes:
    """Stage 1 then stage 3 from the same address, as a browser does; returns stage 4."""
    stage2 = get(url, f"{ADMIN}&HTTPS_CER=upload", source=source)
    assert stage2.startswith(b"HTTP/1.0 200 OK\r\nContent-type: text/html"), stage2
    content_type, body = multipart_body(content, **form)
    return post(url, "HTTPS_CER_SAVE", content_type, body, source=source)


def curl(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(["curl", "--silent", "--show-error", "--max-time", str(TIMEOUT),
                             *args], capture_output=True, timeout=TIMEOUT + 5)
    if check:
        assert result.returncode == 0, result.stderr.decode()
    return result


def served_certificate(https_url: str, *extra: str) -> str:
    """The leaf certificate ``openssl s_client`` receives, as PEM."""
    host, port = hostport(https_url)
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"{host}:{port}", "-servername", "camera.test",
         *extra], input=b"", capture_output=True, timeout=TIMEOUT)
    match = re.search(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n",
                      result.stdout, re.DOTALL)
    assert match, (result.stdout + result.stderr).decode(errors="replace")
    return match.group(0).decode()


def https_refused(host: str, port: int) -> bool:
    """True when nothing accepts a TLS handshake on host:port any more."""
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
            ctx = pki.client_context(verify=False)
            with ctx.wrap_socket(sock, server_hostname="camera.test"):
                return False
    except (ConnectionRefusedError, ssl.SSLError, ConnectionResetError):
        return True


@dataclass(frozen=True)
class Seed:
    """Seed 000's four stages, exactly as the document prints them."""

    stage1: list[str]
    stage2: list[str]
    stage3: list[str]
    stage4: list[str]


def load_seed() -> Seed:
    lines = SEED.read_text().split("\n")

    def block(start: str, end: str) -> list[str]:
        i = next(n for n, line in enumerate(lines) if line.startswith(start))
        j = next(n for n, line in enumerate(lines) if n > i and line.startswith(end))
        out = lines[i + 1:j]
        while out and out[0] == "":
            out.pop(0)
        while out and out[-1] == "":
            out.pop()
        return out

    return Seed(block("Stage 1:", "Stage 2"), block("Stage 2", "Stage 3:"),
                block("Stage 3:", "Stage 4:"), block("Stage 4:", "Attribute"))


@dataclass(frozen=True)
class TestCA:
    cert: x509.Certificate
    key: pki.PrivateKey

    @property
    def pem(self) -> str:
        return pki.cert_pem(self.cert)

    def sign_csr(self, csr_pem: str, days: int = 30) -> str:
        csr = pki.load_csr(csr_pem)
        cert = pki.issue(csr.public_key(), csr.subject, self.cert, self.key, days=days,
                         dns_names=("camera.test",), ip_addresses=("127.0.0.1",), server=True)
        return pki.cert_pem(cert)


@dataclass(frozen=True)
class SelfSigned:
    cert_pem: str
    key_pem: str

    @property
    def combined(self) -> bytes:
        """certSrv.pem with its key inside, as a user uploads a self-signed certificate."""
        return (self.cert_pem + self.key_pem).encode()


def make_self_signed(cn: str) -> SelfSigned:
    key = pki.ec_key()
    cert = pki.issue(key.public_key(), pki.name(CN=cn), None, key,
                     dns_names=("camera.test",), ip_addresses=("127.0.0.1",), server=True)
    return SelfSigned(pki.cert_pem(cert), pki.key_pem(key))

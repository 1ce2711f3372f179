"""Helpers for the quirk replay tests: the profiles of docs/QUIRKS.md, read from the document
itself, requests built from a profile's exchanges, and a raw HTTP exchange that keeps every
byte of the reply."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from urllib.parse import quote, urlsplit

import yaml

DOC = Path(__file__).resolve().parents[2] / "docs" / "QUIRKS.md"
TIMEOUT = 20


def doc_profiles() -> dict[str, str]:
    """The complete profiles of docs/QUIRKS.md (its ```yaml blocks), by kind."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    return {yaml.safe_load(block)["kind"]: block for block in blocks}


def quirk_target(exchange: dict, logins: dict[str, str], user: str | None = None) -> str:
    """The request target a client sends for ``exchange`` (a parsed profile's mapping): the
    request placeholders filled for ``user`` (the first of ``logins`` when None); an empty
    value is sent as a bare name."""
    user = user or next(iter(logins))
    fill = {"<user>": user, "<password>": logins[user], "<wrong-password>": "wrong-one"}
    parts = []
    for name, value in exchange["request"].get("query") or []:
        value = fill.get(value, value)
        parts.append(quote(name) if value == "" else f"{quote(name)}={quote(value)}")
    return exchange["request"]["path"] + ("?" + "&".join(parts) if parts else "")


def raw_get(url: str, target: str, *, method: str = "GET", headers: str = "") -> bytes:
    """One request on a fresh connection; the reply's bytes up to the server's close."""
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT) as sock:
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
                     f"{headers}Connection: close\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)

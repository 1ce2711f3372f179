"""Exactly one reply per FTP command line, whatever its length: an over-long line gets one
``500 Command too long.`` and the next command its own reply (raw sockets)."""

from __future__ import annotations

import socket
import time

import pytest

LIMIT = 2048  # the longest command line accepted (pyftpdlib's), CRLF not counted
TOO_LONG = "500 Command too long."
NOOP = "200 I successfully did nothing'."  # pyftpdlib's wording, quote included
ASCII_SIZE = "550 SIZE not allowed in ASCII mode."


class Session:
    """A logged-in control connection read line by line."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        assert self.line().startswith("220")
        self.send(b"USER cam\r\n")
        assert self.line().startswith("331")
        self.send(b"PASS s3cret\r\n")
        assert self.line().startswith("230")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> str:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; had {self.buffer!r}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line.decode()

    def nothing_more(self) -> bool:
        self.sock.settimeout(0.3)
        try:
            extra = self.sock.recv(65536)
        except TimeoutError:
            extra = b""
        finally:
            self.sock.settimeout(10)
        self.buffer += extra
        return self.buffer == b""

    def close(self) -> None:
        self.sock.close()


def _size(length: int) -> bytes:
    """A SIZE command line of exactly ``length`` bytes (CRLF not counted)."""
    return b"SIZE " + b"a" * (length - 5)


# (packets sent, the replies they must get, in order)
LINES = [
    pytest.param([_size(5000) + b"\r\n"], [TOO_LONG], id="long-line-one-packet"),
    pytest.param([_size(5000)[:3000], _size(5000)[3000:] + b"\r\n"], [TOO_LONG],
                 id="long-line-split-across-packets"),
    pytest.param([_size(5000) + b"\r", b"\n"], [TOO_LONG], id="crlf-split-across-packets"),
    pytest.param([_size(5000)] + [b"a" * 1000] * 100 + [b"\r\n"], [TOO_LONG],
                 id="100-kb-in-many-packets"),
    pytest.param([_size(5000) + b"\r\nNOOP\r\n"], [TOO_LONG, NOOP],
                 id="long-line-then-normal-command-same-packet"),
    pytest.param([_size(5000) + b"\r\n", b"NOOP\r\n"], [TOO_LONG, NOOP],
                 id="long-line-then-normal-command"),
    pytest.param([_size(2 * LIMIT) + b"\r\n" + _size(3 * LIMIT) + b"\r\n"],
                 [TOO_LONG, TOO_LONG], id="two-long-lines"),
    pytest.param([_size(LIMIT) + b"\r\n"], [ASCII_SIZE], id="exactly-the-limit"),
    pytest.param([_size(LIMIT - 1) + b"\r\n"], [ASCII_SIZE], id="one-under-the-limit"),
    pytest.param([_size(LIMIT + 1) + b"\r\n"], [TOO_LONG], id="one-over-the-limit"),
    pytest.param([_size(LIMIT)[:LIMIT // 2], _size(LIMIT)[LIMIT // 2:] + b"\r\n"],
                 [ASCII_SIZE], id="exactly-the-limit-split"),
    pytest.param([_size(LIMIT + 1) + b"\r\nQUIT\r\n"], [TOO_LONG, "221 Goodbye."],
                 id="long-line-then-quit"),
    pytest.param([b"NOOP " + b"\x00" * 3000 + b"\r\n"], [TOO_LONG], id="long-nul-line"),
]


@pytest.mark.parametrize(("packets", "replies"), LINES)
def test_one_reply_per_command_line_whatever_its_length(ftp_server, packets, replies):
    server = ftp_server()
    session = Session(server.port)
    try:
        for packet in packets:
            session.send(packet)
            time.sleep(0.005)  # separate segments, as a slow client sends them
        got = [session.line() for _ in replies]
        assert got == replies
        if replies[-1].startswith("221"):
            return
        session.send(b"NOOP\r\n")
        assert session.line() == NOOP  # the next command gets its own reply...
        assert session.nothing_more()  # ...and no reply is left over to shift later ones
    finally:
        session.close()

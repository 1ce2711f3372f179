"""RSA keys made on the second core while ``emulators run`` is still importing.

A first start of the default farm needs a few RSA-2048 keys (the EnOS roots and bound device
certificates, then `keypool`'s small pool). Making one costs about 40 ms of CPU, and
cryptography holds the GIL while it does, so an executor thread would only compete with the
imports. ``emulators run`` therefore forks once, before its heavy imports, a child that makes
the keys and writes them to a pipe; `keypool.take_forked_keys` puts them in the pool. Every key is
handed out once and nothing else crosses the pipe.

Only the command line uses this: a library user (pytest) never forks.
"""

from __future__ import annotations

import os
import signal
import struct
import threading

_LENGTH = struct.Struct(">I")

_reader: int | None = None
_child: int | None = None
_lock = threading.Lock()


def start(count: int) -> None:
    """Fork a child that makes ``count`` RSA-2048 keys. Call before any thread exists."""
    global _reader, _child
    if _reader is not None or count <= 0 or not hasattr(os, "fork"):
        return
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: make the keys, write them, leave without running the parent's exit
        status = 1
        try:
            os.close(read_end)
            _make(write_end, count)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    _reader, _child = read_end, pid


def _make(fd: int, count: int) -> None:
    from . import pki

    for _ in range(count):
        pem = pki.key_pem(pki.rsa_key(2048)).encode()
        data = memoryview(_LENGTH.pack(len(pem)) + pem)
        while data:
            data = data[os.write(fd, data):]


def abandon() -> None:
    """No key of the child is wanted (a sharded farm's coordinator makes none): end it and
    reap it, so it does not stay a zombie for the farm's life. Blocking: call it before the
    event loop runs, or in an executor."""
    global _reader, _child
    with _lock:
        if _reader is not None:
            os.close(_reader)
            _reader = None
        if _child is not None:
            try:
                os.kill(_child, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(_child, 0)
            _child = None


def started() -> bool:
    return _reader is not None


def collect() -> list[bytes]:
    """Every key the child made (PKCS#8 PEM), waiting for it to finish; [] after the first call.
    Blocking: run it in an executor."""
    global _reader, _child
    with _lock:
        if _reader is None:
            return []
        chunks = []
        while chunk := os.read(_reader, 65536):
            chunks.append(chunk)
        os.close(_reader)
        _reader = None
        if _child is not None:
            os.waitpid(_child, 0)
            _child = None
    data, keys, at = b"".join(chunks), [], 0
    while at + _LENGTH.size <= len(data):
        (size,) = _LENGTH.unpack_from(data, at)
        at += _LENGTH.size
        if at + size > len(data):
            break  # a child killed mid-write: keep the whole keys only
        keys.append(data[at:at + size])
        at += size
    return keys

"""The private pyftpdlib names the FTP server relies on (``emulators/servers/pyftpdlib_internals.py``)
are still there and still behave as relied on: this fails when a pyftpdlib release renames or
changes one of them. Also: no module but the internals module uses a private pyftpdlib name."""

from __future__ import annotations

import ast
import contextlib
import errno
import ftplib
import inspect
import io
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators.servers import pyftpdlib_internals as internals
from tests import internals_walk
from tests.internals_walk import PACKAGE

# After the internals module: it loads pyftpdlib with its asyncore warning quieted.
import pyftpdlib  # isort: skip
import pyftpdlib.ioloop  # isort: skip
from pyftpdlib.authorizers import DummyAuthorizer  # isort: skip
from pyftpdlib.handlers import (  # isort: skip
    DTPHandler,
    FTPHandler,
    ThrottledDTPHandler,
    TLS_DTPHandler,
    TLS_FTPHandler,
)
from pyftpdlib.handlers.ftp import data as pyftpdlib_data  # isort: skip
from pyftpdlib.handlers.ftps.ssl import SSLConnectionMixin  # isort: skip
from pyftpdlib.ioloop import AsyncChat, IOLoop  # isort: skip
from pyftpdlib.servers import FTPServer  # isort: skip

INTERNALS = PACKAGE / "servers" / "pyftpdlib_internals.py"
log = logging.getLogger("tests.pyftpdlib_internals")


def params(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def set_in_init(cls: type) -> set[str]:
    """The attributes ``cls``'s ancestry assigns to ``self`` in its ``__init__`` methods."""
    found: set[str] = set()
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is not None and klass.__module__.startswith("pyftpdlib"):
            found |= set(re.findall(r"self\.(\w+)\s*=", inspect.getsource(init)))
    return found


def source(function: Any) -> str:
    return inspect.getsource(function)


# --- each name exists, with the kind and signature the internals module uses ---------------

PINS: list[tuple[str, Callable[[], bool]]] = [
    ("ioloop._ERRNOS_DISCONNECTED, the errnos of a peer gone", lambda:
        {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED} <= internals.ERRNOS_DISCONNECTED
        and internals.ERRNOS_DISCONNECTED == frozenset(pyftpdlib.ioloop._ERRNOS_DISCONNECTED)),
    ("AsyncChat.__init__ sets _closed and _fileno", lambda:
        {"_closed", "_fileno"} <= set_in_init(AsyncChat)),
    ("FTPHandler.__init__ sets _in_buffer, _in_buffer_len, _idler and the transfer queues",
     lambda: {"_in_buffer", "_in_buffer_len", "_idler", "_in_dtp_queue", "_out_dtp_queue"}
        <= set_in_init(FTPHandler)),
    ("FTPHandler._in_dtp_queue is (file, cmd), _out_dtp_queue (data, isproducer, file, cmd)",
     lambda: "self._in_dtp_queue = (fd, cmd)" in source(FTPHandler.ftp_STOR)
        and "self._out_dtp_queue = (data, isproducer, file, cmd)"
        in source(FTPHandler.push_dtp_data)),
    ("FTPHandler._shutdown_connecting_dtp(), _on_dtp_connection(), _on_dtp_close()", lambda:
        all(params(f) == ["self"] for f in (FTPHandler._shutdown_connecting_dtp,
                                            FTPHandler._on_dtp_connection,
                                            FTPHandler._on_dtp_close))),
    ("DTPHandler.__init__ sets _resp, () until the transfer's end; close() sends it", lambda:
        "_resp" in set_in_init(DTPHandler) and "self._resp = ()" in source(DTPHandler.__init__)
        and "self.cmd_channel.respond(self._resp[0], logfun=self._resp[1])"
        in source(DTPHandler.close)),
    ("ThrottledDTPHandler.__init__ sets _throttler and _timenext, on ioloop.timer (monotonic)",
     lambda: {"_throttler", "_timenext"} <= set_in_init(ThrottledDTPHandler)
        and pyftpdlib_data.timer is time.monotonic
        and "self._timenext = now + 1" in source(ThrottledDTPHandler._throttle_bandwidth)
        and isinstance(ThrottledDTPHandler.read_limit, int)),
    ("SSLConnectionMixin.__init__ sets _error, _ssl_want_read, _ssl_want_write", lambda:
        {"_error", "_ssl_want_read", "_ssl_want_write"} <= set_in_init(SSLConnectionMixin)
        and issubclass(TLS_DTPHandler, SSLConnectionMixin)
        and issubclass(TLS_FTPHandler, FTPHandler)),
    ("SSLConnectionMixin._do_ssl_handshake()", lambda:
        params(SSLConnectionMixin._do_ssl_handshake) == ["self"]
        and TLS_DTPHandler._do_ssl_handshake is SSLConnectionMixin._do_ssl_handshake),
    ("FTPServer.__init__ sets ip_map", lambda: "ip_map" in set_in_init(FTPServer)),
]


@pytest.mark.parametrize("check", [check for _, check in PINS], ids=[name for name, _ in PINS])
def test_the_name_is_there(check: Callable[[], bool]) -> None:
    assert check()


def test_a_data_handler_preset_has_what_the_throttle_and_tls_classes_set() -> None:
    class Probe:
        pass

    probe = Probe()
    internals.preset_data_handler(probe)
    preset = set(vars(probe))
    # Every attribute the throttle and TLS classes' close/readable need before their __init__.
    assert preset == {"_throttler", "_error", "_ssl_want_read", "_ssl_want_write"}
    assert preset <= set_in_init(ThrottledDTPHandler) | set_in_init(SSLConnectionMixin)


# --- and behaves as relied on, on a real connection -------------------------------------------

@contextlib.contextmanager
def serving(root: Path, handler: type, **attrs: Any) -> Iterator[tuple[int, FTPServer]]:
    """A pyftpdlib server with ``handler`` (user "u", password "p", home ``root``), its IO
    loop in a thread, listening on a free port of 127.0.0.1."""
    authorizer = DummyAuthorizer()
    authorizer.add_user("u", "p", str(root), perm="elradfmwMT")
    cls = type("Handler", (handler,), {"authorizer": authorizer, **attrs})
    ioloop = IOLoop()
    server = FTPServer(("127.0.0.1", 0), cls, ioloop=ioloop)
    stop = threading.Event()

    def run() -> None:
        try:
            while not stop.is_set():
                ioloop.loop(timeout=0.02, blocking=False)
        finally:
            server.close_all()

    thread = threading.Thread(target=run, name="pyftpdlib-pin", daemon=True)
    thread.start()
    try:
        yield server.address[1], server
    finally:
        stop.set()
        thread.join(10)


class Session:
    """A raw control connection: one command, its replies read line by line."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        assert self.reply().startswith("220")

    def reply(self) -> str:
        return self.file.readline().decode().rstrip("\r\n")

    def send(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def login(self) -> None:
        assert self.send("USER u").startswith("331")
        assert self.send("PASS p").startswith("230")

    def pasv_port(self) -> int:
        reply = self.send("PASV")
        numbers = re.search(r"\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)", reply)
        assert numbers is not None, reply
        return int(numbers[5]) * 256 + int(numbers[6])

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_a_transfer_waiting_for_its_data_connection_is_taken_from_the_queue(
        tmp_path: Path) -> None:
    taken: list[tuple[internals.QueuedTransfer | None, internals.QueuedTransfer | None]] = []
    (tmp_path / "b.txt").write_bytes(b"bee")

    class Handler(FTPHandler):
        def _take(self) -> None:
            queued = internals.take_queued_transfer(self)
            taken.append((queued, internals.take_queued_transfer(self)))
            if queued is not None:
                internals.drop_queued_transfers(self)
                self.respond("426 taken.")
                if queued.file is not None:
                    queued.file.close()

        def ftp_STOR(self, file: str, mode: str = "w") -> Any:
            result = super().ftp_STOR(file, mode)
            self._take()
            return result

        def ftp_RETR(self, file: str) -> Any:
            result = super().ftp_RETR(file)
            self._take()
            return result

    with serving(tmp_path, Handler) as (port, _):
        session = Session(port)
        try:
            session.login()
            for command in ("STOR a.txt", "RETR b.txt"):
                session.pasv_port()  # never connected: the command waits for it
                assert session.send(command).startswith("150")
                assert session.reply() == "426 taken."
        finally:
            session.close()
    (stor, stor_again), (retr, retr_again) = taken
    assert stor is not None and retr is not None and stor_again is retr_again is None
    assert (Path(stor.file.name).name, stor.cmd, stor.receive) == ("a.txt", "STOR", True)
    assert (Path(retr.file.name).name, retr.cmd, retr.receive) == ("b.txt", "RETR", False)


def test_the_hooks_see_the_data_connection_and_set_its_reply(tmp_path: Path) -> None:
    asked: list[bool] = []
    closing: list[tuple[bool, bool]] = []

    class Data(internals.DataChannelHooks, DTPHandler):
        def close(self) -> None:
            if self.receive and not internals.is_closed(self):
                closing.append((internals.transfer_reply_set(self), self.tls_handshaking))
                internals.set_transfer_reply(self, "451 pinned.", log.info)
            super().close()

    class Handler(internals.ControlChannelHooks, FTPHandler):
        def data_connection_usable(self) -> bool:
            asked.append(self.data_channel is not None)
            return True

    with serving(tmp_path, Handler, dtp_handler=Data) as (port, _), \
            ftplib.FTP() as client:
        client.connect("127.0.0.1", port, timeout=10)
        client.login("u", "p")
        with pytest.raises(ftplib.error_temp, match="^451 pinned.$"):
            client.storbinary("STOR up.bin", io.BytesIO(b"x" * 1000))
        assert client.voidcmd("NOOP").startswith("200")  # the session goes on
    assert asked == [True]
    assert closing == [(True, False)]  # the client's close set "226" first; no TLS here


def test_a_refused_transfer_drops_the_connecting_data_channel(tmp_path: Path) -> None:
    class Handler(FTPHandler):
        def ftp_STOR(self, file: str, mode: str = "w") -> Any:
            internals.shutdown_connecting_data(self)
            self.respond("552 refused.")

    with serving(tmp_path, Handler) as (port, _):
        session = Session(port)
        try:
            session.login()
            data_port = session.pasv_port()
            assert session.send("STOR a.txt") == "552 refused."
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", data_port), timeout=10).close()
        finally:
            session.close()


def test_the_command_line_buffer_and_the_idle_timer(tmp_path: Path) -> None:
    lengths: list[int] = []

    class Handler(FTPHandler):
        def collect_incoming_data(self, data: bytes) -> None:
            lengths.append(internals.read_command_data(self, data))
            if data.startswith(b"DROP"):
                internals.drop_command_line(self)

        def found_terminator(self) -> None:
            internals.restart_idle_timer(self)
            super().found_terminator()

    with serving(tmp_path, Handler, timeout=300) as (port, _):
        session = Session(port)
        try:
            assert session.send("NOOP").startswith("200")
            # Dropped: pyftpdlib's found_terminator sees an empty line.
            assert session.send("DROP NOOP").startswith("500")
            assert session.send("NOOP").startswith("200")
        finally:
            session.close()
    assert lengths[0] == len(b"NOOP") and lengths[1] == len(b"DROP NOOP")


def test_a_force_closed_connection_leaves_the_loop_and_its_ip_count(tmp_path: Path) -> None:
    seen: list[Any] = []

    class Handler(FTPHandler):
        def ftp_NOOP(self, line: str) -> None:
            fd = self._fileno_of()
            seen.append(("127.0.0.1" in self.server.ip_map, fd in self.ioloop.socket_map))
            internals.forget_peer_ip(self)
            seen.append(internals.force_close(self))
            seen.append(internals.force_close(self))
            seen.append(("127.0.0.1" in self.server.ip_map, fd in self.ioloop.socket_map,
                         internals.is_closed(self)))

        def _fileno_of(self) -> int:
            return int(self.socket.fileno())

    with serving(tmp_path, Handler) as (port, _):
        session = Session(port)
        try:
            session.sock.sendall(b"NOOP\r\n")
            assert session.file.read() == b""  # closed, without a reply
        finally:
            session.close()
        second = Session(port)  # the server serves on
        try:
            assert second.send("QUIT").startswith("221")
        finally:
            second.close()
    assert seen == [(True, True), False, True, (False, False, True)]


# --- and nothing else touches pyftpdlib's private names ---------------------------------------

def private_names() -> set[str]:
    """The single-underscore names pyftpdlib's handler, server and loop classes define or set,
    and the private names of its modules."""
    from pyftpdlib.authorizers import DummyAuthorizer as Authorizer
    from pyftpdlib.filesystems import AbstractedFS
    from pyftpdlib.handlers.ftp.dispatchers import ActiveDTP, PassiveDTP

    classes = (FTPHandler, TLS_FTPHandler, DTPHandler, TLS_DTPHandler, ThrottledDTPHandler,
               PassiveDTP, ActiveDTP, FTPServer, IOLoop, AsyncChat, AbstractedFS, Authorizer)
    return internals_walk.private_names(classes, "pyftpdlib",
                                        modules=(pyftpdlib.ioloop, pyftpdlib_data))


ALL_PRIVATE = private_names()


FTP_PACKAGE = PACKAGE / "servers" / "ftp"


def private_uses(path: Path) -> list[str]:
    """Where ``path`` (a module of the FTP package, or one that imports pyftpdlib) reaches into
    pyftpdlib: an attribute, method, string (``getattr``) or imported name spelled as one of
    pyftpdlib's private names, and an import of a private pyftpdlib name."""
    found = internals_walk.Uses(path)
    text = path.read_text()
    if FTP_PACKAGE not in path.parents and not re.search(r"^\s*(from|import) pyftpdlib", text,
                                                         re.MULTILINE):
        return found
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Attribute) and node.attr in ALL_PRIVATE:
            found.add(node, f"{ast.unparse(node.value)}.{node.attr}")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in ALL_PRIVATE:
            found.add(node, f"defines {node.name}")
        elif isinstance(node, ast.Constant) and node.value in ALL_PRIVATE:
            found.add(node, f"string {node.value!r}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pyftpdlib"):
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.add(node, f"from {node.module} import {alias.name}")
    return found


def test_the_walk_finds_private_names() -> None:
    # The check below must not pass because the walk saw nothing.
    assert {"_resp", "_in_dtp_queue", "_on_dtp_connection", "_ERRNOS_DISCONNECTED",
            "_closed", "_timenext"} <= ALL_PRIVATE
    internals_walk.assert_found(private_uses(INTERNALS), (
        "dtp._resp", "conn._closed", "defines _on_dtp_connection", "defines _do_ssl_handshake",
        "string '_in_dtp_queue'", "string '_fileno'",
        "from pyftpdlib.ioloop import _ERRNOS_DISCONNECTED"))


def test_no_module_but_the_internals_uses_a_private_pyftpdlib_name() -> None:
    assert pyftpdlib.__ver__  # the names below are those of the installed release
    assert internals_walk.uses_outside(INTERNALS, private_uses) == []

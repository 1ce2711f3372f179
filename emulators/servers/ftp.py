"""The farm's FTP server with explicit TLS (AUTH TLS on the same port), built on pyftpdlib.

pyftpdlib runs its own select/epoll loop, not asyncio: each server gets a private IOLoop in
its own thread. Whatever the FTP side learns (logins, uploads, refusals) is handed to the
farm's loop, which owns all state; an upload's record is saved before "226" is sent.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import os
import re
import socket
import tempfile
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from .. import pki
from ..core.state import TMP_MARKER
from .common import ServerMember, ServerOptions
from .exceptions import (
    FTP_BAD_ARGUMENT,
    FTP_BUSY,
    FTP_DISK_FULL,
    FTP_LINE_TOO_LONG,
    FTP_LOCAL_ERROR,
    FTP_TRANSFER_CUT,
    FTP_UPLOAD_TOO_LARGE,
)

with warnings.catch_warnings():
    # pyftpdlib still imports asyncore/asynchat, deprecated since Python 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    from OpenSSL import SSL
    from pyftpdlib.authorizers import AuthenticationFailed, DummyAuthorizer
    from pyftpdlib.filesystems import AbstractedFS
    from pyftpdlib.handlers import (
        FTPHandler,
        ThrottledDTPHandler,
        TLS_DTPHandler,
        TLS_FTPHandler,
    )
    from pyftpdlib.ioloop import _ERRNOS_DISCONNECTED, AsyncChat, IOLoop
    from pyftpdlib.servers import FTPServer
    from pyftpdlib.utils import is_ssl_sock

log = logging.getLogger("emulators.servers.ftp")
# pyftpdlib configures its own stderr logging on first run unless its logger has a handler;
# a NullHandler keeps it quiet and lets records propagate to whatever the farm configured.
logging.getLogger("pyftpdlib").addHandler(logging.NullHandler())

FULL_PERMS = "elradfmwMT"  # pyftpdlib letters: list, cwd, read, append, delete, mkdir, ...
READ_ONLY_PERMS = "elr"
POLL_SECONDS = 0.1  # how long a stop may wait for the FTP thread to notice
# The longest command line taken (pyftpdlib's limit; CRLF not counted): a longer one gets one
# "500 Command too long." and the rest of it, up to its CRLF, is dropped.
MAX_COMMAND_LINE = 2048
# Exceptions out of the IO loop itself (each handler contains its own) within this window that
# mean the loop is broken: the thread ends and the farm restarts the member.
LOOP_FAILURES = 20
LOOP_FAILURE_WINDOW = 5.0
# "unix.mode=0o644" (Python's oct()) in pyftpdlib's MLSD/MLST facts; RFC 3659 tools read "0644".
_PY_OCTAL_MODE = re.compile(rb"(^|;)unix\.mode=0o([0-7]+)(?=;)", re.IGNORECASE)


class FtpOptions(ServerOptions):
    tls: Literal["none", "explicit"] = "none"
    # farm-ca: issued by the farm CA for 127.0.0.1/localhost (verifiable); self-signed and
    # wrong-name reproduce "server cannot be verified"; supplied: cert_pem/key_pem below.
    certificate: Literal["farm-ca", "self-signed", "wrong-name", "supplied"] = "farm-ca"
    cert_pem: str | None = None
    key_pem: str | None = None
    tls_control_required: bool = False  # refuse USER/PASS before AUTH TLS
    tls_data_required: bool = False  # refuse PASV/PORT before PROT P
    passive_ports: tuple[int, int] | None = None
    # The address PASV replies announce, when clients reach the server through NAT (a
    # container's published ports): the host's address instead of the container's.
    masquerade_address: str | None = None
    banner: str = "FTP server ready."  # no software name or version (hardening)
    failed_login_delay: float = Field(default=1.0, ge=0, le=30)
    idle_timeout: int = Field(default=300, ge=1)
    max_connections: int = Field(default=256, ge=1)

    @field_validator("passive_ports")
    @classmethod
    def _range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 1024 <= value[0] <= value[1] <= 65535:
            raise ValueError("passive_ports is [low, high] with 1024 <= low <= high <= 65535")
        return value

    @model_validator(mode="after")
    def _supplied(self) -> FtpOptions:
        if not self.users:
            raise ValueError("an FTP server needs at least one user")
        for user in self.users:
            if user.password is None:
                raise ValueError(f"FTP user {user.name!r} needs a password")
        if self.certificate == "supplied":
            if not (self.cert_pem and self.key_pem):
                raise ValueError("certificate 'supplied' needs cert_pem and key_pem")
            try:
                cert = pki.load_cert(self.cert_pem)
                key = pki.load_key(self.key_pem)
            except pki.PkiError as exc:
                raise ValueError(str(exc)) from None
            if not pki.public_key_matches(cert, key):
                raise ValueError("cert_pem and key_pem are not a pair")
        elif self.cert_pem or self.key_pem:
            raise ValueError("cert_pem/key_pem are only read with certificate: supplied")
        return self


class _Authorizer(DummyAuthorizer):
    """Users from the scenario; passwords compared in constant time."""

    def validate_authentication(self, username: str, password: str, handler: Any) -> None:
        entry = self.user_table.get(username)
        expected = entry["pwd"] if entry else ""
        if not (hmac.compare_digest(expected.encode(), password.encode()) and entry):
            raise AuthenticationFailed("Authentication failed.")


_TMP_IDS = itertools.count(1)


def _discard(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


class _ReplacingFile:
    """A STOR target, written under a temporary name in the same folder. ``commit()`` (the
    transfer completed) moves it over the target; any other close (a reset, ABOR, a cut, an
    over-limit refusal, the session or the server gone) removes it. So the target only ever
    changes to a complete upload: a previous file stays exactly as it was, and the record that
    lists it stays true. A farm killed mid-transfer leaves the temporary file, swept at the
    next start (``TMP_MARKER``)."""

    def __init__(self, target: str) -> None:
        self.name = target  # what pyftpdlib and the upload record see
        # Through a symlink (one inside the root): replace what it points at, as writing
        # through it did, not the link itself.
        self._dest = os.path.realpath(target)
        head, tail = os.path.split(self._dest)
        self.tmp = os.path.join(head, f".{tail}{TMP_MARKER}ftp-{os.getpid()}-{next(_TMP_IDS)}")
        self._fh = open(self.tmp, "wb")

    def write(self, data: bytes) -> int:
        return self._fh.write(data)

    def tell(self) -> int:
        return self._fh.tell()

    def seek(self, *args: int) -> int:
        return self._fh.seek(*args)

    def flush(self) -> None:
        self._fh.flush()

    def fileno(self) -> int:
        return self._fh.fileno()

    @property
    def closed(self) -> bool:
        return self._fh.closed

    def commit(self) -> None:
        """The transfer completed: the upload takes the target's place (atomically)."""
        self._fh.close()
        try:
            os.replace(self.tmp, self._dest)
        except OSError:
            _discard(self.tmp)
            raise

    def close(self) -> None:
        """Closed without ``commit()``: the upload did not complete and nothing of it is kept."""
        if self._fh.closed:
            return
        self._fh.close()
        _discard(self.tmp)


class _FarmFS(AbstractedFS):
    """pyftpdlib's filesystem, with STOR (mode ``wb``) going through ``_ReplacingFile``;
    APPE and REST keep writing in place, since they extend what is there."""

    def open(self, filename: str, mode: str) -> Any:
        if mode == "wb":
            return _ReplacingFile(filename)
        return super().open(filename, mode)

    def format_mlsx(self, basedir: str, listing: list[str], perms: str, facts: list[str],
                    ignore_err: bool = True) -> Iterator[bytes]:
        # MLSD/MLST: pyftpdlib writes unix.mode with Python's oct() ("0o644"); RFC 3659
        # clients (lftp) parse "0644", and read "0o644" as mode 0 ("----------"). Only the
        # facts are touched, never the name after them.
        for line in super().format_mlsx(basedir, listing, perms, facts, ignore_err):
            facts_part, sep, name = line.partition(b" ")
            yield _PY_OCTAL_MODE.sub(
                lambda m: m.group(1) + b"unix.mode=%04o" % int(m.group(2), 8),
                facts_part) + sep + name


def _socket_error(sock: Any) -> int:
    """The error a socket holds (SO_ERROR: a reset not yet read), 0 for none."""
    try:
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    except Exception:  # noqa: BLE001 - a closed or foreign socket has nothing to say
        return 0


class _Contained:
    """First in both handler classes. pyftpdlib's IO loop calls ``readable``, ``writable``,
    ``handle_close`` (and ``handle_error`` itself) outside any ``try``: one exception there
    used to leave the loop and stop the whole server. Here it is logged with its traceback
    and ends only that connection; the server serves on."""

    _closed: bool

    def readable(self) -> bool:
        try:
            return bool(super().readable())  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - see the class comment
            self._contain("readable")
            return False

    def writable(self) -> bool:
        try:
            return bool(super().writable())  # type: ignore[misc]
        except Exception:  # noqa: BLE001
            self._contain("writable")
            return False

    def handle_close(self) -> None:
        try:
            super().handle_close()  # type: ignore[misc]
        except Exception:  # noqa: BLE001
            self._contain("handle_close")

    def handle_error(self) -> None:
        try:
            super().handle_error()  # type: ignore[misc]
        except Exception:  # noqa: BLE001
            self._contain("handle_error")
            return
        # pyftpdlib's handle_error closes the connection and logs (only) when that close
        # fails, leaving it in the loop half closed, to fail again at every poll.
        if not (self._closed or getattr(self, "_building", False)
                or getattr(self, "_awaiting_record", None) is not None):
            self._contain("handle_error (the connection did not close)")

    def _member_name(self) -> str:
        channel = getattr(self, "cmd_channel", self)
        return getattr(getattr(channel, "member", None), "name", "ftp")

    def _contain(self, where: str) -> None:
        log.error("%s: an FTP connection failed in %s; it is closed, the server serves on",
                  self._member_name(), where, exc_info=True)
        try:
            self.close()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - its own close is broken too: force it
            log.error("%s: closing that connection failed as well", self._member_name(),
                      exc_info=True)
            self._force_close()

    def _force_close(self) -> None:
        """Take the connection out of the loop and close its socket, whatever state it is in;
        then what depends on it is tidied (``_tidy_after_force_close``)."""
        ioloop, fd = getattr(self, "ioloop", None), getattr(self, "_fileno", None)
        if ioloop is not None and fd is not None:
            try:
                ioloop.unregister(fd)
            except Exception:  # noqa: BLE001
                ioloop.socket_map.pop(fd, None)
        try:
            self.socket.close()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001
            pass
        already = self._closed
        self._closed = True
        self.connected = False
        # What the connection's own close would have done for others: the handler classes
        # below this one in the MRO say (_FarmHandler, _FarmDTP).
        tidy = getattr(self, "_tidy_after_force_close", None)
        if not already and tidy is not None:
            try:
                tidy()
            except Exception:  # noqa: BLE001
                log.error("%s: tidying up after a broken connection failed",
                          self._member_name(), exc_info=True)


class _FarmHandler:
    """Mixed into pyftpdlib's control handler: tells the member what happens (FTP thread)."""

    member: ClassVar[FtpServer]
    data_mode: str | None = None
    username: str
    remote_ip: str
    remote_port: int
    socket: Any
    attempted_logins: int
    max_login_attempts: int
    data_channel: Any
    server: Any
    _closed: bool
    _idler: Any
    _in_buffer: list[bytes]
    _in_buffer_len: int
    _in_dtp_queue: Any
    _out_dtp_queue: Any
    # The data connection died before a transfer command used it (a client that connected and
    # reset): the transfer command that comes for it is answered 426 at once, instead of
    # waiting for a connection that will never come. Cleared by the next PASV/PORT.
    data_lost = False
    _discarding = False  # inside an over-long command line, already answered

    def protocol(self) -> Literal["ftp", "ftps"]:
        return "ftps" if is_ssl_sock(self.socket) else "ftp"

    def remote(self) -> str:
        return f"{self.remote_ip}:{self.remote_port}"

    def _emit(self, event: str, **fields: Any) -> None:
        member = self.member
        member.call_from_thread(member.record_event(event, protocol=self.protocol(),
                                                    remote=self.remote(), **fields), wait=False)

    # The data mode is noted so a test can tell a camera's PORT upload from a PASV one; each
    # is a new data connection, so a lost one is forgotten (after pyftpdlib closed the old).
    def ftp_PORT(self, line: str) -> Any:
        self.data_mode = "active"
        result = super().ftp_PORT(line)  # type: ignore[misc]
        self.data_lost = False
        return result

    def ftp_EPRT(self, line: str) -> Any:
        self.data_mode = "active"
        result = super().ftp_EPRT(line)  # type: ignore[misc]
        self.data_lost = False
        return result

    def ftp_PASV(self, line: str) -> Any:
        self.data_mode = "passive"
        result = super().ftp_PASV(line)  # type: ignore[misc]
        self.data_lost = False
        return result

    def ftp_EPSV(self, line: str) -> Any:
        self.data_mode = "passive"
        result = super().ftp_EPSV(line)  # type: ignore[misc]
        self.data_lost = False
        return result

    # -- one reply per command line ---------------------------------------------------------
    # pyftpdlib answered "500 Command too long." when a line passed its limit, then kept
    # collecting the rest of that line and answered it again at its CRLF ('500 Command ""
    # not understood.', or worse, whatever the tail spelled): two replies for one line, and
    # every later reply one behind for the client.
    def collect_incoming_data(self, data: bytes) -> None:
        if self._discarding:
            return
        self._in_buffer.append(data)
        self._in_buffer_len += len(data)
        if self._in_buffer_len > MAX_COMMAND_LINE:
            self._in_buffer = []
            self._in_buffer_len = 0
            self._discarding = True
            self.respond(FTP_LINE_TOO_LONG.line, logfun=log.info)  # type: ignore[attr-defined]

    def found_terminator(self) -> None:
        if self._discarding:  # the end of the over-long line: already answered
            self._discarding = False
            if self._idler is not None and not self._idler.cancelled:
                self._idler.reset()
            return
        super().found_terminator()  # type: ignore[misc]

    def pre_process_command(self, line: str, cmd: str, arg: str) -> Any:
        # A NUL reaches os.* calls as "embedded null byte" and pyftpdlib would drop the
        # session with a logged traceback; a real ftpd answers 501.
        if "\x00" in line:
            self.respond(FTP_BAD_ARGUMENT.line)  # type: ignore[attr-defined]
            return None
        return super().pre_process_command(line, cmd, arg)  # type: ignore[misc]

    def process_command(self, cmd: str, *args: Any, **kwargs: Any) -> None:
        super().process_command(cmd, *args, **kwargs)  # type: ignore[misc]
        if self.data_lost and self.data_channel is None and not self._closed:
            self._fail_lost_transfer()

    def _fail_lost_transfer(self) -> None:
        """A transfer command (its 150 sent) for a data connection that already died."""
        incoming = getattr(self, "_in_dtp_queue", None)
        outgoing = getattr(self, "_out_dtp_queue", None)
        if incoming is None and outgoing is None:
            return
        self.data_lost = False
        self._in_dtp_queue = self._out_dtp_queue = None
        self.respond(FTP_TRANSFER_CUT.line, logfun=log.info)  # type: ignore[attr-defined]
        if incoming is not None:
            file_obj = incoming[0]
            file_obj.close()  # a STOR target: nothing of it is kept
            self.on_incomplete_file_received(file_obj.name)
        elif outgoing is not None and outgoing[2] is not None:
            outgoing[2].close()

    def _on_dtp_connection(self) -> Any:
        channel = self.data_channel
        if channel is None or channel._closed:
            # pyftpdlib's ActiveDTP hands over the data handler even when it died as it was
            # built (it has already answered the transfer waiting for it).
            self.data_channel = None
            return None
        return super()._on_dtp_connection()  # type: ignore[misc]

    def _tidy_after_force_close(self) -> None:
        """After _Contained forced a control connection shut: its data connection and its
        place in the per-IP count go with it."""
        data = self.data_channel
        self.data_channel = None
        if data is not None:
            try:
                data.close()
            except Exception:  # noqa: BLE001
                data._force_close()
        ip_map = getattr(self.server, "ip_map", [])
        if self.remote_ip in ip_map:
            ip_map.remove(self.remote_ip)

    # -- fault rules (docs/FAULTS.md) -------------------------------------------------------
    cut_after: int | None = None
    throttle_bps: int | None = None

    def _fault(self, types: tuple[str, ...], command: str, path: str | None = None) -> Any:
        return self.member.check_fault_from_thread(self.protocol(), types, command=command,
                                                   path=path)

    def handle(self) -> None:
        rule = self._fault(("busy",), "CONNECT")
        if rule is not None:
            self._emit("refused", reason="fault", fault=rule.id)
            text = rule.message or FTP_BUSY.text
            self.respond(f"{FTP_BUSY.code} {text}")  # type: ignore[attr-defined]
            self.close_when_done()  # type: ignore[attr-defined]
            return
        super().handle()  # type: ignore[misc]

    def ftp_PASS(self, line: str) -> Any:
        if self.username and not getattr(self, "authenticated", False):
            rule = self._fault(("refuse_login",), "PASS")
            if rule is not None:
                # The same 530 as a wrong password: a client cannot tell them apart.
                self.handle_auth_failed("", line)  # type: ignore[attr-defined]
                return None
        return super().ftp_PASS(line)  # type: ignore[misc]

    def ftp_STOR(self, file: str, mode: str = "w") -> Any:
        self.cut_after = self.throttle_bps = None
        path = self.member.relative_path(self.username, file)
        rule = self._fault(("disk_full", "cut_transfer", "throttle"), "STOR", path)
        if rule is not None and rule.fault == "disk_full":
            # Refused before any data flows: drop the data connection the client prepared.
            self._shutdown_connecting_dtp()  # type: ignore[attr-defined]
            if self.data_channel is not None:
                self.data_channel.close()
            self.respond(FTP_DISK_FULL.line)  # type: ignore[attr-defined]
            self._emit("refused", user=self.username, reason="fault", fault=rule.id, path=path)
            return None
        if rule is not None and rule.fault == "cut_transfer":
            self.cut_after = rule.after_bytes or 0
        elif rule is not None:
            self.throttle_bps = rule.bytes_per_second
        return super().ftp_STOR(file, mode)  # type: ignore[misc]

    def ftp_AUTH(self, line: str) -> Any:
        rule = self._fault(("tls_expired", "tls_wrong_name"), "AUTH")
        if rule is not None:
            # This session gets the faulty identity (its data channel follows the control one).
            self.ssl_context = self.member.fault_contexts[rule.fault]
        return super().ftp_AUTH(line)  # type: ignore[misc]

    def on_login(self, username: str) -> None:
        self._emit("login", user=username)

    def on_login_failed(self, username: str, password: str) -> None:
        self._emit("login_failed", user=username or None)
        if self.attempted_logins >= self.max_login_attempts:
            self._emit("refused", user=username or None, reason="too_many_login_attempts")

    def handle_max_cons(self) -> None:
        self._emit("refused", reason="too_many_connections")
        super().handle_max_cons()  # type: ignore[misc]

    def handle_max_cons_per_ip(self) -> None:
        self._emit("refused", reason="too_many_connections")
        super().handle_max_cons_per_ip()  # type: ignore[misc]

    refused_upload: tuple[str, bool] | None = None  # (file, written in place) over the limit

    def on_incomplete_file_received(self, file: str) -> None:
        refused = self.refused_upload
        if refused is not None and refused[0] == file:
            self.refused_upload = None
            # Over the size limit: nothing of it is kept, a real server's quota way. A STOR's
            # temporary file is gone already and the previous file untouched; APPE and REST
            # wrote in place, so that file goes.
            if refused[1]:
                _discard(file)
            self._emit("refused", user=self.username, reason="upload_too_large",
                       path=self.member.relative_path(self.username, file))
        else:
            self._emit("upload_incomplete", user=self.username,
                       path=self.member.relative_path(self.username, file))


class _DTPSocket(AsyncChat):
    """The bottom of the data handler's class stack, just above pyftpdlib's ``AsyncChat``:
    reads the socket as asyncore does, but notes when the peer reset the connection.
    asyncore ends a transfer the same way on ECONNRESET as on a clean end of file, so
    pyftpdlib answered an upload cut by a reset "226 Transfer complete." and it was recorded
    as received."""

    connection_reset = False

    def recv(self, buffer_size: int) -> bytes:
        try:
            data: bytes = self.socket.recv(buffer_size)
        except SSL.SysCallError as exc:
            # TLS over a TCP connection that was reset: the TLS layer above ends the transfer.
            if exc.args and exc.args[0] in _ERRNOS_DISCONNECTED:
                self.connection_reset = True
            raise
        except SSL.Error as exc:
            # Only a bare SSL.Error with an empty error queue is an EOF: the peer closed TCP
            # without a TLS close_notify, which OpenSSL 3 reports this way. pyftpdlib handles
            # it as "Unexpected EOF" (the end of the upload, as most FTPS servers take it);
            # this way it is not a traceback. Its subclasses are not: WantReadError (half a
            # record has arrived, also with no args) is pyftpdlib's to retry, ZeroReturnError
            # its close_notify. Taking a want-read for an EOF cut uploads short, answered 226.
            if type(exc) is not SSL.Error or (exc.args and exc.args[0]):
                raise
            raise SSL.SysCallError(-1, "Unexpected EOF") from exc
        except OSError as exc:
            if exc.errno in _ERRNOS_DISCONNECTED:
                self.connection_reset = True
                self.handle_close()
                return b""
            raise
        if not data:
            self.handle_close()
            return b""
        return data


class _FarmDTP:
    """Mixed into pyftpdlib's data channel: a reset is not a complete upload, a complete one
    replaces its target and is recorded before "226", the size limit and the fault rules (FTP
    thread)."""

    cmd_channel: Any
    file_obj: Any
    cmd: str | None
    ac_in_buffer_size: int
    receive: bool
    transfer_finished: bool
    connected: bool
    socket: Any
    connection_reset: bool
    _closed: bool
    _resp: tuple[str, Any]

    read_limit: int
    _timenext: float  # pyftpdlib: when the current second of throttling ends
    _awaiting_record: Any = None  # the loop's future while an upload's record is saved
    _building = False  # inside __init__: a close asked for waits until the handler is whole
    _close_pending = False
    _handshaking = False
    _ending = False  # close() has settled the transfer (a TLS close may take a while)

    def __init__(self, sock: Any, cmd_channel: Any) -> None:
        # pyftpdlib's DTPHandler.__init__ closes the handler itself when the socket is dead on
        # arrival (a client that connected and reset at once), before the throttle and TLS
        # classes' __init__ have run: their close() and readable() then met attributes not yet
        # set (_throttler, _ssl_want_read), the AttributeError rose out of the IO loop's poll,
        # and the server stopped (issue 16). Their attributes get defaults first, and a close
        # asked for while the handler is built waits until it is whole.
        self._throttler = None
        self._error = False
        self._ssl_want_read = self._ssl_want_write = False
        self._building = True
        try:
            super().__init__(sock, cmd_channel)  # type: ignore[call-arg]
        except Exception:  # noqa: BLE001 - a data connection must not take the server down
            log.warning("%s: a data connection failed as it opened",
                        cmd_channel.member.name, exc_info=True)
            self._close_pending = True
        finally:
            self._building = False
        if self._close_pending or not getattr(self, "connected", False):
            self._close_unborn(sock)

    def _close_unborn(self, sock: Any) -> None:
        """The connection died while the handler was built: the transfer waiting for it (if
        any) is answered 426 and recorded incomplete; otherwise the next one will be."""
        channel = self.cmd_channel
        incoming = getattr(channel, "_in_dtp_queue", None)
        outgoing = getattr(channel, "_out_dtp_queue", None)
        if incoming is not None:
            channel._in_dtp_queue = None
            self.file_obj, self.cmd = incoming
            self.receive = True
        elif outgoing is not None:
            channel._out_dtp_queue = None
            self.file_obj, self.cmd = outgoing[2], outgoing[3]
        if self.cmd is not None:
            self._resp = (FTP_TRANSFER_CUT.line, log.info)
        try:
            self.close()
        except Exception:  # noqa: BLE001
            log.error("%s: closing a dead data connection failed", channel.member.name,
                      exc_info=True)
            self._force_close()  # type: ignore[attr-defined]  # _Contained's
        try:
            sock.close()  # pyftpdlib swaps a fresh socket in for a dead one, never closing it
        except OSError:
            pass

    def handle_error(self) -> None:
        if self._building:  # DTPHandler.__init__ reporting the dead socket: close when whole
            self._close_pending = True
            return
        if self.cmd is not None and not self._resp:
            # pyftpdlib's TLS data handler closes on an error without a word to the client
            # (the plain one puts its own 426 here instead).
            self._resp = (FTP_TRANSFER_CUT.line, log.info)
        super().handle_error()  # type: ignore[misc]

    def handle_close(self) -> None:
        # Straight from the IO loop (an error event with no data): a reset not yet read.
        if self.receive and not self.connection_reset and _socket_error(self.socket):
            self.connection_reset = True
        super().handle_close()  # type: ignore[misc]

    def _do_ssl_handshake(self) -> None:
        self._handshaking = True
        try:
            super()._do_ssl_handshake()  # type: ignore[misc]
        finally:
            self._handshaking = False

    def handle_failed_ssl_handshake(self) -> None:
        self._handshaking = False  # pyftpdlib answers this one itself (522)
        super().handle_failed_ssl_handshake()  # type: ignore[misc]

    def recv(self, buffer_size: int) -> bytes:
        channel = self.cmd_channel
        if channel.throttle_bps and self.receive and self.read_limit != channel.throttle_bps:
            # A throttle fault: pyftpdlib's own throttling, switched on for this transfer.
            # Its first second starts now: left at 0 it would let a whole second's worth (and
            # more, as reads fall) through at full speed, so a small upload was not slowed.
            self.read_limit = channel.throttle_bps
            self._timenext = time.monotonic() + 1
            buffer_size = self.ac_in_buffer_size = max(1, min(buffer_size,
                                                              channel.throttle_bps))
        chunk: bytes = super().recv(buffer_size)  # type: ignore[misc]
        file_obj = self.file_obj
        if (chunk and self.receive and channel.cut_after is not None and file_obj is not None
                and not file_obj.closed and file_obj.tell() + len(chunk) > channel.cut_after):
            # A cut_transfer fault: the data connection drops after the first bytes.
            file_obj.write(chunk[: max(0, channel.cut_after - file_obj.tell())])
            self._resp = (FTP_TRANSFER_CUT.line, log.info)
            self.close()
            return b""
        if (chunk and self.receive and file_obj is not None and not file_obj.closed
                and file_obj.tell() + len(chunk) > channel.member.options.max_upload_bytes):
            channel.refused_upload = (file_obj.name, not isinstance(file_obj, _ReplacingFile))
            self._resp = (FTP_UPLOAD_TOO_LARGE.line, log.info)
            self.close()
            return b""
        return chunk

    def _settle(self) -> None:
        """What the transfer's end means, before pyftpdlib answers and closes it."""
        if self.receive and self.connection_reset:
            # Reset, not closed: the client gave up on the upload, whatever had arrived.
            self.transfer_finished = False
            self._resp = (FTP_TRANSFER_CUT.line, log.info)
        elif self._handshaking and self.cmd is not None and not self._resp:
            # Gone during the TLS handshake: pyftpdlib closed without a word to the client.
            self._resp = (FTP_TRANSFER_CUT.line, log.info)
        if self.cmd is None and not self.receive:
            self.cmd_channel.data_lost = True  # no transfer used it: tell the one that comes

    def close(self) -> None:
        if self._building:
            self._close_pending = True
            return
        if self._awaiting_record is not None:
            if not self.cmd_channel.member._stopping.is_set():
                return  # _close_after_record closes once the upload's record is on disk
            self._awaiting_record = None  # shutting down: the ioloop will not call back
        if self._closed:
            return
        if self._ending:  # a TLS close waiting for its shutdown: already settled
            super().close()  # type: ignore[misc]
            return
        self._ending = True
        self._settle()
        file_obj = self.file_obj
        if self.receive and self.transfer_finished and file_obj is not None:
            channel = self.cmd_channel
            member: FtpServer = channel.member
            try:
                if isinstance(file_obj, _ReplacingFile):
                    file_obj.commit()
                else:
                    file_obj.close()
                rel, size, digest = member.inspect_upload(channel.username, file_obj.name)
            except OSError as exc:
                log.warning("%s: cannot keep the upload %s: %s", member.name, file_obj.name,
                            exc)
                self.transfer_finished = False
                self._resp = (FTP_LOCAL_ERROR.line, log.info)
            else:
                # The record is saved on the farm loop and "226" goes out once it is on disk;
                # meanwhile this FTP thread goes on serving every other session (blocking it
                # here made 500 concurrent uploaders queue behind each other's saves).
                future = member.submit_from_thread(member.record_upload(
                    user=channel.username, path=rel, size=size, sha256=digest,
                    protocol=channel.protocol(), remote=channel.remote(),
                    mode=channel.data_mode))
                if future is not None:
                    self._awaiting_record = future
                    # Nothing more to read: out of the loop until the record is saved (polled
                    # meanwhile, a TLS connection read its EOF again and raised).
                    self.del_channel()  # type: ignore[attr-defined]
                    self._close_after_record()
                    return
        super().close()  # type: ignore[misc]

    def _close_after_record(self) -> None:
        future = self._awaiting_record
        member: FtpServer = self.cmd_channel.member
        if future is not None and not future.done() and not member._stopping.is_set():
            self.ioloop.call_later(0.002, self._close_after_record)  # type: ignore[attr-defined]
            return
        self._awaiting_record = None
        if future is not None and future.done() and future.exception() is not None:
            log.error("%s: recording an upload failed", member.name,
                      exc_info=future.exception())
        if not self._closed:
            self.add_channel()  # type: ignore[attr-defined]  # a TLS close needs the loop
        super().close()  # type: ignore[misc]

    def _tidy_after_force_close(self) -> None:
        """After _Contained forced a data connection shut: the file is closed (a STOR's is
        discarded), the transfer answered 426 and recorded incomplete."""
        file_obj, channel = self.file_obj, self.cmd_channel
        if file_obj is not None and not file_obj.closed:
            file_obj.close()
        if self.cmd is not None and not channel._closed:
            channel.respond(FTP_TRANSFER_CUT.line, logfun=log.info)
            if self.receive and file_obj is not None:
                channel.on_incomplete_file_received(file_obj.name)
        if channel.data_channel is self:
            channel._on_dtp_close()


class FtpServer(ServerMember):
    """FTP (and explicit FTPS) upload target: ``ftplib``, curl and cameras log in here."""

    kind = "ftp"
    title = "FTP / explicit FTPS server (pyftpdlib)"
    Options = FtpOptions
    options: FtpOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tls: dict[str, str] | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.fault_contexts: dict[str, Any] = {}

    def upload_protocol(self) -> Literal["ftp", "ftps"]:
        return "ftps" if self.options.tls == "explicit" else "ftp"

    # -- state -------------------------------------------------------------------------------
    # The TLS identity is kept across reset and restart, like a real server's certificate:
    # a client that pinned it keeps working.
    def initial_state(self) -> dict[str, Any]:
        return {**super().initial_state(), "tls": self._tls}

    def load_state(self, data: dict[str, Any]) -> None:
        super().load_state(data)
        self._tls = data.get("tls") or self._tls

    def dump_state(self) -> dict[str, Any]:
        return {**super().dump_state(), "tls": self._tls}

    def state(self) -> dict[str, Any]:
        doc = super().state()
        if doc.get("tls"):
            # The private key stays in the flash (a restart needs it), never in the view.
            doc["tls"] = {k: v for k, v in doc["tls"].items() if k != "key_pem"}
        return doc

    # -- TLS ---------------------------------------------------------------------------------
    def _hosts(self) -> tuple[str, ...]:
        """The addresses a client may use to reach this server (certificates name them)."""
        if self.host in ("127.0.0.1", "0.0.0.0", "::"):
            return ("127.0.0.1",)
        return (self.host, "127.0.0.1")

    def _make_identity(self) -> dict[str, str]:
        opts = self.options
        hosts = self._hosts()
        if opts.certificate == "supplied":
            assert opts.cert_pem is not None
            assert opts.key_pem is not None
            cert, key = opts.cert_pem, opts.key_pem
        elif opts.certificate == "farm-ca":
            cert, key = self.ctx.ca.issue_server(hosts[0], dns_names=("localhost",),
                                                 ip_addresses=hosts)
        elif opts.certificate == "wrong-name":
            cert, key = self.ctx.ca.issue_server("wrong-name.invalid",
                                                 dns_names=("wrong-name.invalid",),
                                                 ip_addresses=())
        else:
            private = pki.ec_key()
            subject = pki.name(CN=hosts[0], O="emulators self-signed")
            cert = pki.cert_pem(pki.issue(private.public_key(), subject, None, private,
                                          days=825, dns_names=("localhost",),
                                          ip_addresses=hosts, server=True))
            key = pki.key_pem(private)
        return {"certificate": opts.certificate, "cert_pem": cert, "key_pem": key}

    def _fault_identities(self) -> dict[str, dict[str, str]]:
        """The certificates the tls_* fault rules switch a session to (the farm CA's)."""
        return {fault: {"cert_pem": chain, "key_pem": key}
                for fault, (chain, key) in self.ctx.ca.fault_identities(self._hosts()).items()}

    def _ssl_context(self, identity: dict[str, str]) -> Any:
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_options(SSL.OP_NO_COMPRESSION)
        # pyOpenSSL loads files; a private temporary folder holds the PEM for the moment.
        with tempfile.TemporaryDirectory(prefix="emulators-ftps-") as tmp:
            cert_path = os.path.join(tmp, "cert.pem")
            key_path = os.path.join(tmp, "key.pem")
            for path, text in ((cert_path, identity["cert_pem"]), (key_path, identity["key_pem"])):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(text)
            context.use_certificate_chain_file(cert_path)
            context.use_privatekey_file(key_path)
        context.check_privatekey()
        return context

    # -- lifecycle ---------------------------------------------------------------------------
    def _handler_class(self) -> type:
        opts = self.options
        authorizer = _Authorizer()
        for user in opts.users:
            assert user.password is not None
            authorizer.add_user(user.name, user.password, str(self.user_root(user.name)),
                                perm=READ_ONLY_PERMS if user.read_only else FULL_PERMS,
                                msg_login="Login successful.", msg_quit="Goodbye.")
        tls = opts.tls == "explicit"
        # ThrottledDTPHandler throttles nothing until a throttle fault sets its read_limit.
        bases = (TLS_DTPHandler, ThrottledDTPHandler) if tls else (ThrottledDTPHandler,)
        dtp = type("FarmDTPHandler", (_Contained, _FarmDTP, *bases, _DTPSocket), {})
        attrs: dict[str, Any] = {
            "member": self,
            "authorizer": authorizer,
            "dtp_handler": dtp,
            "abstracted_fs": _FarmFS,
            "banner": opts.banner,
            "max_login_attempts": opts.max_login_attempts,
            "auth_failed_timeout": opts.failed_login_delay,
            "timeout": opts.idle_timeout,
            "permit_foreign_addresses": False,  # no FXP / FTP bounce (RFC 2577)
            "permit_privileged_ports": False,
            "passive_ports": (list(range(opts.passive_ports[0], opts.passive_ports[1] + 1))
                              if opts.passive_ports else None),
            "use_sendfile": False,
            "masquerade_address": opts.masquerade_address,
        }
        if tls:
            assert self._tls is not None
            attrs.update(ssl_context=self._ssl_context(self._tls),
                         tls_control_required=opts.tls_control_required,
                         tls_data_required=opts.tls_data_required)
        base = TLS_FTPHandler if tls else FTPHandler
        return type("FarmFTPHandler", (_Contained, _FarmHandler, base), attrs)

    async def start(self) -> None:
        self.restore_saved()
        opts = self.options
        if opts.tls == "explicit" and (self._tls is None
                                       or self._tls.get("certificate") != opts.certificate
                                       or (opts.certificate == "supplied"
                                           and self._tls.get("cert_pem") != opts.cert_pem)):
            # EC keys are quick, but the CA's first use may write its own files: off the loop.
            self._tls = await asyncio.get_running_loop().run_in_executor(None, self._make_identity)
        if opts.tls == "explicit":
            identities = await asyncio.get_running_loop().run_in_executor(
                None, self._fault_identities)
            self.fault_contexts = {fault: self._ssl_context(identity)
                                   for fault, identity in identities.items()}
        self.prepare_roots()
        self._loop = asyncio.get_running_loop()
        handler = self._handler_class()
        ioloop = IOLoop()
        try:
            server = FTPServer((self.host, self.port), handler, ioloop=ioloop, backlog=128)
        except BaseException:
            ioloop.close()
            raise
        server.max_cons = opts.max_connections
        server.max_cons_per_ip = opts.max_connections_per_ip
        self._server = server
        self.port = server.address[1]
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, name=f"ftp-{self.name}",
                                        daemon=True)
        self._thread.start()
        await self.save()

    def _serve(self) -> None:
        server = self._server
        ioloop = server.ioloop
        timeout = POLL_SECONDS
        failures: deque[float] = deque()
        died: str | None = None
        try:
            while not self._stopping.is_set():
                try:
                    # One poll, then the scheduler; sleep no longer than its next timer (a
                    # delayed "530") nor than a stop may wait.
                    soonest = ioloop.loop(timeout=timeout, blocking=False)
                except Exception as exc:  # noqa: BLE001 - one failure must not stop the server
                    # The handlers contain their own failures; this is for the rest. The loop
                    # serves on, unless it fails again and again: then it is broken.
                    now = time.monotonic()
                    failures.append(now)
                    while failures[0] < now - LOOP_FAILURE_WINDOW:
                        failures.popleft()
                    log.error("%s: the FTP server loop raised %r; serving on", self.name, exc,
                              exc_info=len(failures) == 1)
                    if len(failures) >= LOOP_FAILURES:
                        died = (f"the FTP server loop failed {len(failures)} times in "
                                f"{LOOP_FAILURE_WINDOW:g} s: {exc!r}")
                        break
                    timeout = POLL_SECONDS
                    continue
                timeout = POLL_SECONDS if soonest is None else max(0.0, min(POLL_SECONDS,
                                                                             soonest))
        except BaseException as exc:  # noqa: BLE001 - the thread ends: the farm must hear why
            died = f"the FTP server loop died: {exc!r}"
            log.error("%s: %s", self.name, died, exc_info=True)
        finally:
            try:
                server.close_all()  # closes every connection, the listener and the poller
            except Exception:  # noqa: BLE001
                log.error("%s: closing the FTP server failed", self.name, exc_info=True)
            if died is not None and not self._stopping.is_set():
                self._report_from_thread(died)

    def _report_from_thread(self, reason: str) -> None:
        """The FTP thread is gone: tell the farm (on its loop), which restarts the member."""
        loop = self._loop
        if loop is None or loop.is_closed():
            log.error("%s: %s (no farm loop to report to)", self.name, reason)
            return
        try:
            loop.call_soon_threadsafe(self.report_failure, reason)
        except RuntimeError:  # the loop closed in between
            log.error("%s: %s (the farm loop has closed)", self.name, reason)

    async def stop(self) -> None:
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, 10)
        self._server = None
        await self.save_waiting_events()
        await self.ctx.store.flush(self.name)

    # -- description -------------------------------------------------------------------------
    def urls(self) -> dict[str, str]:
        base = f"ftp://{self.host}:{self.port}"
        urls = {"ftp": base}
        if self.options.tls == "explicit":
            # Explicit TLS: the same ftp:// port, upgraded with AUTH TLS (curl --ssl-reqd).
            urls["ftps"] = base
        return urls

    def extra_description(self) -> dict[str, Any]:
        opts = self.options
        doc: dict[str, Any] = {"passive_ports": list(opts.passive_ports)
                               if opts.passive_ports else None}
        if opts.tls == "explicit" and self._tls is not None:
            doc["tls"] = {
                "mode": "explicit",
                "certificate": opts.certificate,
                "cert_pem": self._tls["cert_pem"],
                # Trust the farm CA (the ready file's top-level "ca") to verify farm-ca.
                "ca_pem": (self.ctx.ca.pem if opts.certificate in ("farm-ca", "wrong-name")
                           else None),
                "ca_file": (str(self.ctx.store.directory / "farm-ca.pem")
                            if self.ctx.store.directory is not None
                            and opts.certificate in ("farm-ca", "wrong-name") else None),
            }
        else:
            doc["tls"] = None
        return doc

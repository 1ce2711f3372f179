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
import tempfile
import threading
import time
import warnings
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from .. import pki
from ..core.state import TMP_MARKER
from .common import ServerMember, ServerOptions
from .exceptions import (
    FTP_BAD_ARGUMENT,
    FTP_BUSY,
    FTP_DISK_FULL,
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
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import FTPServer
    from pyftpdlib.utils import is_ssl_sock

log = logging.getLogger("emulators.servers.ftp")
# pyftpdlib configures its own stderr logging on first run unless its logger has a handler;
# a NullHandler keeps it quiet and lets records propagate to whatever the farm configured.
logging.getLogger("pyftpdlib").addHandler(logging.NullHandler())

FULL_PERMS = "elradfmwMT"  # pyftpdlib letters: list, cwd, read, append, delete, mkdir, ...
READ_ONLY_PERMS = "elr"
POLL_SECONDS = 0.1  # how long a stop may wait for the FTP thread to notice


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


class _ReplacingFile:
    """A STOR target written under a temporary name in the same folder and moved over the
    target when the transfer ends (complete or not), so a farm killed mid-transfer leaves the
    previous file whole, never a truncated one that an earlier record points at; the
    temporary file is swept at the next start (``TMP_MARKER``)."""

    def __init__(self, target: str) -> None:
        self.name = target  # what pyftpdlib and the upload record see
        # Through a symlink (one inside the root): replace what it points at, as writing
        # through it did, not the link itself.
        self._dest = os.path.realpath(target)
        head, tail = os.path.split(self._dest)
        self._tmp = os.path.join(head, f".{tail}{TMP_MARKER}ftp-{os.getpid()}-{next(_TMP_IDS)}")
        self._fh = open(self._tmp, "wb")

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

    def close(self) -> None:
        if self._fh.closed:
            return
        self._fh.close()
        os.replace(self._tmp, self._dest)


class _FarmFS(AbstractedFS):
    """pyftpdlib's filesystem, with STOR (mode ``wb``) going through ``_ReplacingFile``;
    APPE and REST keep writing in place, since they extend what is there."""

    def open(self, filename: str, mode: str) -> Any:
        if mode == "wb":
            return _ReplacingFile(filename)
        return super().open(filename, mode)


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

    def protocol(self) -> Literal["ftp", "ftps"]:
        return "ftps" if is_ssl_sock(self.socket) else "ftp"

    def remote(self) -> str:
        return f"{self.remote_ip}:{self.remote_port}"

    def _emit(self, event: str, **fields: Any) -> None:
        member = self.member
        member.call_from_thread(member.record_event(event, protocol=self.protocol(),
                                                    remote=self.remote(), **fields), wait=False)

    # The data mode is noted so a test can tell a camera's PORT upload from a PASV one.
    def ftp_PORT(self, line: str) -> Any:
        self.data_mode = "active"
        return super().ftp_PORT(line)  # type: ignore[misc]

    def ftp_EPRT(self, line: str) -> Any:
        self.data_mode = "active"
        return super().ftp_EPRT(line)  # type: ignore[misc]

    def ftp_PASV(self, line: str) -> Any:
        self.data_mode = "passive"
        return super().ftp_PASV(line)  # type: ignore[misc]

    def ftp_EPSV(self, line: str) -> Any:
        self.data_mode = "passive"
        return super().ftp_EPSV(line)  # type: ignore[misc]

    def pre_process_command(self, line: str, cmd: str, arg: str) -> Any:
        # A NUL reaches os.* calls as "embedded null byte" and pyftpdlib would drop the
        # session with a logged traceback; a real ftpd answers 501.
        if "\x00" in line:
            self.respond(FTP_BAD_ARGUMENT.line)  # type: ignore[attr-defined]
            return None
        return super().pre_process_command(line, cmd, arg)  # type: ignore[misc]

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

    def on_incomplete_file_received(self, file: str) -> None:
        if getattr(self, "refused_upload", None) == file:
            # Over the size limit: the partial file is not kept, a real server's quota way.
            try:
                os.remove(file)
            except OSError:
                pass
            self._emit("refused", user=self.username, reason="upload_too_large",
                       path=self.member.relative_path(self.username, file))
        else:
            self._emit("upload_incomplete", user=self.username,
                       path=self.member.relative_path(self.username, file))


class _FarmDTP:
    """Mixed into pyftpdlib's data channel: size limit, and the upload record (FTP thread)."""

    cmd_channel: Any
    file_obj: Any
    ac_in_buffer_size: int
    receive: bool
    transfer_finished: bool
    _closed: bool
    _resp: tuple[str, Any]

    read_limit: int
    _timenext: float  # pyftpdlib: when the current second of throttling ends
    _awaiting_record: Any = None  # the loop's future while an upload's record is saved

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
            # A cut_transfer fault: keep what came before the cut, then drop the connection.
            file_obj.write(chunk[: max(0, channel.cut_after - file_obj.tell())])
            self._resp = (FTP_TRANSFER_CUT.line, log.info)
            self.close()  # type: ignore[attr-defined]
            return b""
        if (chunk and self.receive and file_obj is not None and not file_obj.closed
                and file_obj.tell() + len(chunk) > self.cmd_channel.member.opts.max_upload_bytes):
            self.cmd_channel.refused_upload = file_obj.name
            self._resp = (FTP_UPLOAD_TOO_LARGE.line, log.info)
            self.close()  # type: ignore[attr-defined]
            return b""
        return chunk

    def close(self) -> None:
        if self._awaiting_record is not None:
            if not self.cmd_channel.member._stopping.is_set():
                return  # _close_after_record closes once the upload's record is on disk
            self._awaiting_record = None  # shutting down: the ioloop will not call back
        file_obj = self.file_obj
        if (not self._closed and self.receive and self.transfer_finished
                and file_obj is not None):
            file_obj.close()
            channel = self.cmd_channel
            member: FtpServer = channel.member
            try:
                rel, size, digest = member.inspect_upload(channel.username, file_obj.name)
            except OSError:
                log.exception("%s: cannot read back %s", member.name, file_obj.name)
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
        super().close()  # type: ignore[misc]


class FtpServer(ServerMember):
    """FTP (and explicit FTPS) upload target: ``ftplib``, curl and cameras log in here."""

    kind = "ftp"
    title = "FTP / explicit FTPS server (pyftpdlib)"
    Options = FtpOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tls: dict[str, str] | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.fault_contexts: dict[str, Any] = {}

    @property
    def ftp_opts(self) -> FtpOptions:
        assert isinstance(self.options, FtpOptions)
        return self.options

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

    # -- TLS ---------------------------------------------------------------------------------
    def _hosts(self) -> tuple[str, ...]:
        """The addresses a client may use to reach this server (certificates name them)."""
        if self.host in ("127.0.0.1", "0.0.0.0", "::"):
            return ("127.0.0.1",)
        return (self.host, "127.0.0.1")

    def _make_identity(self) -> dict[str, str]:
        opts = self.ftp_opts
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
        opts = self.ftp_opts
        authorizer = _Authorizer()
        for user in opts.users:
            assert user.password is not None
            authorizer.add_user(user.name, user.password, str(self.user_root(user.name)),
                                perm=READ_ONLY_PERMS if user.read_only else FULL_PERMS,
                                msg_login="Login successful.", msg_quit="Goodbye.")
        tls = opts.tls == "explicit"
        # ThrottledDTPHandler throttles nothing until a throttle fault sets its read_limit.
        bases = (TLS_DTPHandler, ThrottledDTPHandler) if tls else (ThrottledDTPHandler,)
        dtp = type("FarmDTPHandler", (_FarmDTP, *bases), {})
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
        return type("FarmFTPHandler", (_FarmHandler, base), attrs)

    async def start(self) -> None:
        self.restore_saved()
        opts = self.ftp_opts
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
        try:
            while not self._stopping.is_set():
                # One poll, then the scheduler; sleep no longer than its next timer (a
                # delayed "530") nor than a stop may wait.
                soonest = ioloop.loop(timeout=timeout, blocking=False)
                timeout = POLL_SECONDS if soonest is None else max(0.0, min(POLL_SECONDS,
                                                                             soonest))
        except Exception:  # noqa: BLE001 - a crash must still free the sockets below
            log.exception("%s: FTP server loop crashed", self.name)
        finally:
            server.close_all()  # closes every connection, the listener and the poller

    async def stop(self) -> None:
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, 10)
        self._server = None
        await self.save_waiting_events()
        await self.ctx.store.flush()

    # -- description -------------------------------------------------------------------------
    def urls(self) -> dict[str, str]:
        base = f"ftp://{self.host}:{self.port}"
        urls = {"ftp": base}
        if self.ftp_opts.tls == "explicit":
            # Explicit TLS: the same ftp:// port, upgraded with AUTH TLS (curl --ssl-reqd).
            urls["ftps"] = base
        return urls

    def extra_description(self) -> dict[str, Any]:
        opts = self.ftp_opts
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

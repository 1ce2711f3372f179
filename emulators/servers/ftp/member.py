"""``FtpServer``: the farm member that runs a pyftpdlib server in its own thread, with its TLS
identity kept across restarts."""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
from collections import deque
from typing import Any, Literal

from OpenSSL import SSL
from pyftpdlib.handlers import FTPHandler, ThrottledDTPHandler, TLS_DTPHandler, TLS_FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer

from ... import pki
from ..common import ServerMember
from .connections import Contained, log
from .control import FarmHandler
from .data import DTPSocket, FarmDTP
from .files import FULL_PERMS, READ_ONLY_PERMS, Authorizer, FarmFS
from .options import FtpOptions

POLL_SECONDS = 0.1  # how long a stop may wait for the FTP thread to notice
# Exceptions out of the IO loop itself (each handler contains its own) within this window that
# mean the loop is broken: the thread ends and the farm restarts the member.
LOOP_FAILURES = 20
LOOP_FAILURE_WINDOW = 5.0


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
        authorizer = Authorizer()
        for user in opts.users:
            assert user.password is not None
            authorizer.add_user(user.name, user.password, str(self.user_root(user.name)),
                                perm=READ_ONLY_PERMS if user.read_only else FULL_PERMS,
                                msg_login="Login successful.", msg_quit="Goodbye.")
        tls = opts.tls == "explicit"
        # ThrottledDTPHandler throttles nothing until a throttle fault sets its read_limit.
        bases = (TLS_DTPHandler, ThrottledDTPHandler) if tls else (ThrottledDTPHandler,)
        dtp = type("FarmDTPHandler", (Contained, FarmDTP, *bases, DTPSocket), {})
        attrs: dict[str, Any] = {
            "member": self,
            "authorizer": authorizer,
            "dtp_handler": dtp,
            "abstracted_fs": FarmFS,
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
        return type("FarmFTPHandler", (Contained, FarmHandler, base), attrs)

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

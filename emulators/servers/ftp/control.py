"""The FTP control connection: pyftpdlib's handler with the farm's events, one reply per
command line, 426 for a transfer whose data connection died first, and the fault rules
(FTP thread)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pyftpdlib.utils import is_ssl_sock

from ..exceptions import (
    FTP_BAD_ARGUMENT,
    FTP_BUSY,
    FTP_DISK_FULL,
    FTP_LINE_TOO_LONG,
    FTP_TRANSFER_CUT,
)
from ..pyftpdlib_internals import (
    ControlChannelHooks,
    drop_command_line,
    drop_queued_transfers,
    forget_peer_ip,
    is_closed,
    read_command_data,
    restart_idle_timer,
    shutdown_connecting_data,
    take_queued_transfer,
)
from .connections import log
from .files import discard

if TYPE_CHECKING:
    from .member import FtpServer

# The longest command line taken (pyftpdlib's limit; CRLF not counted): a longer one gets one
# "500 Command too long." and the rest of it, up to its CRLF, is dropped.
MAX_COMMAND_LINE = 2048


class FarmHandler(ControlChannelHooks):
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
        result = super().ftp_PORT(line)
        self.data_lost = False
        return result

    def ftp_EPRT(self, line: str) -> Any:
        self.data_mode = "active"
        result = super().ftp_EPRT(line)
        self.data_lost = False
        return result

    def ftp_PASV(self, line: str) -> Any:
        self.data_mode = "passive"
        result = super().ftp_PASV(line)
        self.data_lost = False
        return result

    def ftp_EPSV(self, line: str) -> Any:
        self.data_mode = "passive"
        result = super().ftp_EPSV(line)
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
        if read_command_data(self, data) > MAX_COMMAND_LINE:
            drop_command_line(self)
            self._discarding = True
            self.respond(FTP_LINE_TOO_LONG.line, logfun=log.info)

    def found_terminator(self) -> None:
        if self._discarding:  # the end of the over-long line: already answered
            self._discarding = False
            restart_idle_timer(self)
            return
        super().found_terminator()

    def pre_process_command(self, line: str, cmd: str, arg: str) -> Any:
        # A NUL reaches os.* calls as "embedded null byte" and pyftpdlib would drop the
        # session with a logged traceback; a real ftpd answers 501.
        if "\x00" in line:
            self.respond(FTP_BAD_ARGUMENT.line)
            return None
        return super().pre_process_command(line, cmd, arg)

    def process_command(self, cmd: str, *args: Any, **kwargs: Any) -> None:
        super().process_command(cmd, *args, **kwargs)
        if self.data_lost and self.data_channel is None and not is_closed(self):
            self._fail_lost_transfer()

    def _fail_lost_transfer(self) -> None:
        """A transfer command (its 150 sent) for a data connection that already died."""
        queued = take_queued_transfer(self)
        if queued is None:
            return
        self.data_lost = False
        drop_queued_transfers(self)
        self.respond(FTP_TRANSFER_CUT.line, logfun=log.info)
        if queued.receive:
            queued.file.close()  # a STOR target: nothing of it is kept
            self.on_incomplete_file_received(queued.file.name)
        elif queued.file is not None:
            queued.file.close()

    def data_connection_usable(self) -> bool:
        channel = self.data_channel
        if channel is None or is_closed(channel):
            # pyftpdlib's ActiveDTP hands over the data handler even when it died as it was
            # built (it has already answered the transfer waiting for it).
            self.data_channel = None
            return False
        return True

    def _tidy_after_force_close(self) -> None:
        """After Contained forced a control connection shut: its data connection and its
        place in the per-IP count go with it."""
        data = self.data_channel
        self.data_channel = None
        if data is not None:
            try:
                data.close()
            except Exception:  # noqa: BLE001
                data._force_close()
        forget_peer_ip(self)

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
            self.respond(f"{FTP_BUSY.code} {text}")
            self.close_when_done()
            return
        super().handle()

    def ftp_PASS(self, line: str) -> Any:
        if self.username and not getattr(self, "authenticated", False):
            rule = self._fault(("refuse_login",), "PASS")
            if rule is not None:
                # The same 530 as a wrong password: a client cannot tell them apart.
                self.handle_auth_failed("", line)
                return None
        return super().ftp_PASS(line)

    def ftp_STOR(self, file: str, mode: str = "w") -> Any:
        self.cut_after = self.throttle_bps = None
        path = self.member.relative_path(self.username, file)
        rule = self._fault(("disk_full", "cut_transfer", "throttle"), "STOR", path)
        if rule is not None and rule.fault == "disk_full":
            # Refused before any data flows: drop the data connection the client prepared.
            shutdown_connecting_data(self)
            if self.data_channel is not None:
                self.data_channel.close()
            self.respond(FTP_DISK_FULL.line)
            self._emit("refused", user=self.username, reason="fault", fault=rule.id, path=path)
            return None
        if rule is not None and rule.fault == "cut_transfer":
            self.cut_after = rule.after_bytes or 0
        elif rule is not None:
            self.throttle_bps = rule.bytes_per_second
        return super().ftp_STOR(file, mode)

    def ftp_AUTH(self, line: str) -> Any:
        rule = self._fault(("tls_expired", "tls_wrong_name"), "AUTH")
        if rule is not None:
            # This session gets the faulty identity (its data channel follows the control one).
            self.ssl_context = self.member.fault_contexts[rule.fault]
        return super().ftp_AUTH(line)

    def on_login(self, username: str) -> None:
        self._emit("login", user=username)

    def on_login_failed(self, username: str, password: str) -> None:
        self._emit("login_failed", user=username or None)
        if self.attempted_logins >= self.max_login_attempts:
            self._emit("refused", user=username or None, reason="too_many_login_attempts")

    def handle_max_cons(self) -> None:
        self._emit("refused", reason="too_many_connections")
        super().handle_max_cons()

    def handle_max_cons_per_ip(self) -> None:
        self._emit("refused", reason="too_many_connections")
        super().handle_max_cons_per_ip()

    refused_upload: tuple[str, bool] | None = None  # (file, written in place) over the limit

    def on_incomplete_file_received(self, file: str) -> None:
        refused = self.refused_upload
        if refused is not None and refused[0] == file:
            self.refused_upload = None
            # Over the size limit: nothing of it is kept, a real server's quota way. A STOR's
            # temporary file is gone already and the previous file untouched; APPE and REST
            # wrote in place, so that file goes.
            if refused[1]:
                discard(file)
            self._emit("refused", user=self.username, reason="upload_too_large",
                       path=self.member.relative_path(self.username, file))
        else:
            self._emit("upload_incomplete", user=self.username,
                       path=self.member.relative_path(self.username, file))

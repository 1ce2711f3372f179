"""The FTP data connection: a reset is not a complete upload, a complete one replaces its
target and is recorded before "226", the size limit and the throttle and cut faults
(FTP thread)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from OpenSSL import SSL
from pyftpdlib.ioloop import AsyncChat

from ..exceptions import FTP_LOCAL_ERROR, FTP_TRANSFER_CUT, FTP_UPLOAD_TOO_LARGE
from ..pyftpdlib_internals import (
    ERRNOS_DISCONNECTED,
    DataChannelHooks,
    data_channel_closed,
    is_closed,
    preset_data_handler,
    set_transfer_reply,
    start_throttle,
    take_queued_transfer,
    transfer_reply_set,
)
from .connections import log, socket_error
from .files import ReplacingFile

if TYPE_CHECKING:
    from .member import FtpServer


class DTPSocket(AsyncChat):
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
            if exc.args and exc.args[0] in ERRNOS_DISCONNECTED:
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
            if exc.errno in ERRNOS_DISCONNECTED:
                self.connection_reset = True
                self.handle_close()
                return b""
            raise
        if not data:
            self.handle_close()
            return b""
        return data


class FarmDTP(DataChannelHooks):
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
    read_limit: int
    _awaiting_record: Any = None  # the loop's future while an upload's record is saved
    _building = False  # inside __init__: a close asked for waits until the handler is whole
    _close_pending = False
    _ending = False  # close() has settled the transfer (a TLS close may take a while)

    def __init__(self, sock: Any, cmd_channel: Any) -> None:
        # pyftpdlib's DTPHandler.__init__ closes the handler itself when the socket is dead on
        # arrival (a client that connected and reset at once), before the throttle and TLS
        # classes' __init__ have run: their close() and readable() would meet attributes not
        # yet set, and the AttributeError, out of the IO loop's poll, would stop the whole
        # server for one client's reset. Their attributes get defaults first, and a close
        # asked for while the handler is built waits until it is whole.
        preset_data_handler(self)
        self._building = True
        try:
            super().__init__(sock, cmd_channel)
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
        queued = take_queued_transfer(channel)
        if queued is not None:
            self.file_obj, self.cmd = queued.file, queued.cmd
            if queued.receive:
                self.receive = True
        if self.cmd is not None:
            set_transfer_reply(self, FTP_TRANSFER_CUT.line, log.info)
        try:
            self.close()
        except Exception:  # noqa: BLE001
            log.error("%s: closing a dead data connection failed", channel.member.name,
                      exc_info=True)
            self._force_close()  # Contained's
        try:
            sock.close()  # pyftpdlib swaps a fresh socket in for a dead one, never closing it
        except OSError:
            pass

    def handle_error(self) -> None:
        if self._building:  # DTPHandler.__init__ reporting the dead socket: close when whole
            self._close_pending = True
            return
        if self.cmd is not None and not transfer_reply_set(self):
            # pyftpdlib's TLS data handler closes on an error without a word to the client
            # (the plain one puts its own 426 here instead).
            set_transfer_reply(self, FTP_TRANSFER_CUT.line, log.info)
        super().handle_error()

    def handle_close(self) -> None:
        # Straight from the IO loop (an error event with no data): a reset not yet read.
        if self.receive and not self.connection_reset and socket_error(self.socket):
            self.connection_reset = True
        super().handle_close()

    def handle_failed_ssl_handshake(self) -> None:
        self.tls_handshaking = False  # pyftpdlib answers this one itself (522)
        super().handle_failed_ssl_handshake()

    def recv(self, buffer_size: int) -> bytes:
        channel = self.cmd_channel
        if channel.throttle_bps and self.receive and self.read_limit != channel.throttle_bps:
            # A throttle fault: pyftpdlib's own throttling, switched on for this transfer.
            # Its first second starts now: left at 0 it would let a whole second's worth (and
            # more, as reads fall) through at full speed, so a small upload was not slowed.
            start_throttle(self, channel.throttle_bps)
            buffer_size = self.ac_in_buffer_size = max(1, min(buffer_size,
                                                              channel.throttle_bps))
        chunk: bytes = super().recv(buffer_size)
        file_obj = self.file_obj
        if (chunk and self.receive and channel.cut_after is not None and file_obj is not None
                and not file_obj.closed and file_obj.tell() + len(chunk) > channel.cut_after):
            # A cut_transfer fault: the data connection drops after the first bytes.
            file_obj.write(chunk[: max(0, channel.cut_after - file_obj.tell())])
            set_transfer_reply(self, FTP_TRANSFER_CUT.line, log.info)
            self.close()
            return b""
        if (chunk and self.receive and file_obj is not None and not file_obj.closed
                and file_obj.tell() + len(chunk) > channel.member.options.max_upload_bytes):
            channel.refused_upload = (file_obj.name, not isinstance(file_obj, ReplacingFile))
            set_transfer_reply(self, FTP_UPLOAD_TOO_LARGE.line, log.info)
            self.close()
            return b""
        return chunk

    def _settle(self) -> None:
        """What the transfer's end means, before pyftpdlib answers and closes it."""
        if self.receive and self.connection_reset:
            # Reset, not closed: the client gave up on the upload, whatever had arrived.
            self.transfer_finished = False
            set_transfer_reply(self, FTP_TRANSFER_CUT.line, log.info)
        elif self.tls_handshaking and self.cmd is not None and not transfer_reply_set(self):
            # Gone during the TLS handshake: pyftpdlib closed without a word to the client.
            set_transfer_reply(self, FTP_TRANSFER_CUT.line, log.info)
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
        if is_closed(self):
            return
        if self._ending:  # a TLS close waiting for its shutdown: already settled
            super().close()
            return
        self._ending = True
        self._settle()
        file_obj = self.file_obj
        if self.receive and self.transfer_finished and file_obj is not None:
            channel = self.cmd_channel
            member: FtpServer = channel.member
            try:
                if isinstance(file_obj, ReplacingFile):
                    file_obj.commit()
                else:
                    file_obj.close()
                rel, size, digest = member.inspect_upload(channel.username, file_obj.name)
            except OSError as exc:
                log.warning("%s: cannot keep the upload %s: %s", member.name, file_obj.name,
                            exc)
                self.transfer_finished = False
                set_transfer_reply(self, FTP_LOCAL_ERROR.line, log.info)
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
                    self.del_channel()
                    self._close_after_record()
                    return
        super().close()

    def _close_after_record(self) -> None:
        future = self._awaiting_record
        member: FtpServer = self.cmd_channel.member
        if future is not None and not future.done() and not member._stopping.is_set():
            self.ioloop.call_later(0.002, self._close_after_record)
            return
        self._awaiting_record = None
        if future is not None and future.done() and future.exception() is not None:
            log.error("%s: recording an upload failed", member.name,
                      exc_info=future.exception())
        if not is_closed(self):
            self.add_channel()  # a TLS close needs the loop
        super().close()

    def _tidy_after_force_close(self) -> None:
        """After Contained forced a data connection shut: the file is closed (a STOR's is
        discarded), the transfer answered 426 and recorded incomplete."""
        file_obj, channel = self.file_obj, self.cmd_channel
        if file_obj is not None and not file_obj.closed:
            file_obj.close()
        if self.cmd is not None and not is_closed(channel):
            channel.respond(FTP_TRANSFER_CUT.line, logfun=log.info)
            if self.receive and file_obj is not None:
                channel.on_incomplete_file_received(file_obj.name)
        if channel.data_channel is self:
            data_channel_closed(channel)

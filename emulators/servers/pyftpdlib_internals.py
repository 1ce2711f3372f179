"""Every private or undocumented pyftpdlib name the FTP server relies on, and nothing else: the
rest of ``servers/ftp/`` uses pyftpdlib's public API (its documented class attributes,
``ftp_*`` commands, ``on_*`` callbacks, ``respond``) and what this module offers. A name is
here because pyftpdlib has no public way to do what the farm's faithfulness needs; none is a
speed shortcut. pyftpdlib may change any of them in any release:
tests/test_pyftpdlib_internals.py pins each one (it exists, with the kind and signature used
here, and behaves as relied on where that is cheap to check), and pyproject.toml caps
pyftpdlib below its next major release.

What each is for:

- ``pyftpdlib.ioloop._ERRNOS_DISCONNECTED``: the errnos pyftpdlib takes for "the peer is
  gone". The data socket reads with it to tell a reset (an upload the client gave up, 426)
  from a clean end of file (226), which asyncore's reading does not distinguish.
- ``AsyncChat._closed`` (``pyftpdlib.ioloop.AsyncChat``, the base of both handlers) and
  ``_fileno``: whether a connection has closed, and its place in the IO loop's socket map.
  A connection whose own ``close`` failed is taken out of the loop by hand, so one broken
  session cannot stop the server (``force_close``).
- ``FTPHandler._in_buffer``, ``_in_buffer_len``, ``_idler``: the command line being read and
  the idle timer. An over-long command line gets one "500" and its tail is dropped up to its
  CRLF; pyftpdlib answered the tail again, so every later reply ran one behind.
- ``FTPHandler._in_dtp_queue`` (``(file, cmd)``) and ``_out_dtp_queue`` (``(data,
  isproducer, file, cmd)``): a transfer command waiting for its data connection. When that
  connection died before it could be used, the waiting command is answered 426 and recorded
  incomplete instead of hanging until the idle timeout.
- ``FTPHandler._shutdown_connecting_dtp()``: drops the data connection a client is preparing,
  when a fault rule refuses the STOR before any data flows.
- ``FTPHandler._on_dtp_connection()`` (overridden) and ``_on_dtp_close()`` (called): the
  control connection's hooks for a data connection arriving and going. pyftpdlib's ActiveDTP
  hands over a data handler that died as it was built; it must not be used.
- ``DTPHandler._resp``: the reply the data handler's close sends on the control connection
  (``(line, logfun)``). The farm sets it to say what a transfer's end means: 426 for a reset,
  a cut or a vanished TLS handshake, 552 over the size limit, 451 when keeping the file failed.
- ``ThrottledDTPHandler._timenext``: when the current second of throttling ends. A throttle
  fault switches pyftpdlib's own throttling on mid-transfer; its first second starts then.
- ``ThrottledDTPHandler._throttler`` and ``SSLConnectionMixin._error``, ``_ssl_want_read``,
  ``_ssl_want_write``: set in their classes' ``__init__``, which ``DTPHandler.__init__`` may
  never reach: it closes a socket that is dead on arrival before they run, and their
  ``close``/``readable`` then met missing attributes and stopped the IO loop. They get their
  defaults first (``preset_data_handler``).
- ``SSLConnectionMixin._do_ssl_handshake()`` (overridden): a data connection gone during its TLS
  handshake is answered 426 (pyftpdlib closed it without a word to the client).
- ``FTPServer.ip_map`` (public spelling, undocumented): the per-IP connection count. A
  connection closed by hand gives its place back.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, NamedTuple

with warnings.catch_warnings():
    # pyftpdlib still imports asyncore/asynchat, deprecated since Python 3.11. Every FTP
    # module imports pyftpdlib after this one (the ftp package's __init__ imports it first).
    warnings.simplefilter("ignore", DeprecationWarning)
    import pyftpdlib.handlers  # noqa: F401 - loaded here, under the filter above
    from pyftpdlib.ioloop import _ERRNOS_DISCONNECTED

__all__ = [
    "ERRNOS_DISCONNECTED", "ControlChannelHooks", "DataChannelHooks", "HandlerMixin",
    "QueuedTransfer", "drop_command_line", "drop_queued_transfers", "force_close",
    "forget_peer_ip", "is_closed", "preset_data_handler", "read_command_data",
    "restart_idle_timer", "shutdown_connecting_data", "start_throttle", "take_queued_transfer",
    "data_channel_closed", "set_transfer_reply", "transfer_reply_set",
]

ERRNOS_DISCONNECTED: frozenset[int] = frozenset(_ERRNOS_DISCONNECTED)

# pyftpdlib ships no type information, so its classes are Any to mypy. A mixin that joins a
# pyftpdlib handler derives from this (``object`` at run time): its calls into the handler
# (``super()``, ``self.respond``) are then taken as the handler's, without an ignore each.
HandlerMixin: Any = object


# -- any connection ------------------------------------------------------------------------
def is_closed(conn: Any) -> bool:
    """Whether a pyftpdlib connection (control or data handler) has closed."""
    return bool(conn._closed)


def force_close(conn: Any) -> bool:
    """Take ``conn`` out of its IO loop and close its socket, whatever state it is in (its own
    ``close`` failed). Returns whether it had already counted itself closed."""
    ioloop, fd = getattr(conn, "ioloop", None), getattr(conn, "_fileno", None)
    if ioloop is not None and fd is not None:
        try:
            ioloop.unregister(fd)
        except Exception:  # noqa: BLE001 - a broken registration: drop it from the map
            ioloop.socket_map.pop(fd, None)
    try:
        conn.socket.close()
    except Exception:  # noqa: BLE001
        pass
    already = bool(conn._closed)
    conn._closed = True
    conn.connected = False
    return already


# -- the control connection ----------------------------------------------------------------
def read_command_data(handler: Any, data: bytes) -> int:
    """Add ``data`` to the command line being read; returns the line's length so far."""
    handler._in_buffer.append(data)
    handler._in_buffer_len += len(data)
    return int(handler._in_buffer_len)


def drop_command_line(handler: Any) -> None:
    """Forget the command line read so far."""
    handler._in_buffer = []
    handler._in_buffer_len = 0


def restart_idle_timer(handler: Any) -> None:
    """The client spoke: its idle timeout starts again (as pyftpdlib does at each line)."""
    idler = handler._idler
    if idler is not None and not idler.cancelled:
        idler.reset()


class QueuedTransfer(NamedTuple):
    """A transfer command waiting for its data connection."""

    file: Any  # the open file (a STOR target, a RETR source), None for a listing
    cmd: str
    receive: bool  # an upload


def take_queued_transfer(handler: Any) -> QueuedTransfer | None:
    """The transfer waiting for ``handler``'s data connection (an upload first), taken out of
    pyftpdlib's queue; None when none waits."""
    incoming = getattr(handler, "_in_dtp_queue", None)
    if incoming is not None:
        handler._in_dtp_queue = None
        return QueuedTransfer(incoming[0], incoming[1], True)
    outgoing = getattr(handler, "_out_dtp_queue", None)
    if outgoing is not None:
        handler._out_dtp_queue = None
        return QueuedTransfer(outgoing[2], outgoing[3], False)
    return None


def drop_queued_transfers(handler: Any) -> None:
    """No transfer waits for a data connection any more."""
    handler._in_dtp_queue = handler._out_dtp_queue = None


def shutdown_connecting_data(handler: Any) -> None:
    """Drop the data connection being prepared (a PASV listener, a PORT connect)."""
    handler._shutdown_connecting_dtp()


def data_channel_closed(handler: Any) -> None:
    """Tell the control connection its data connection is gone (what the data handler's own
    close does): it forgets it and restarts its idle timer."""
    handler._on_dtp_close()


def forget_peer_ip(handler: Any) -> None:
    """Give the connection's place in the server's per-IP count back."""
    ip_map = getattr(handler.server, "ip_map", [])
    if handler.remote_ip in ip_map:
        ip_map.remove(handler.remote_ip)


class ControlChannelHooks(HandlerMixin):
    """Mixed in above pyftpdlib's ``FTPHandler``: ``data_connection_usable`` is asked before
    a data connection that has just arrived is handed the transfer waiting for it."""

    def data_connection_usable(self) -> bool:
        """Hook: False to leave the new data connection unused (it has answered already)."""
        return True

    def _on_dtp_connection(self) -> Any:
        if not self.data_connection_usable():
            return None
        return super()._on_dtp_connection()


# -- the data connection -------------------------------------------------------------------
def preset_data_handler(dtp: Any) -> None:
    """Give the throttle and TLS classes' attributes their defaults before
    ``DTPHandler.__init__`` runs (it may close the handler before their ``__init__`` does)."""
    dtp._throttler = None
    dtp._error = False
    dtp._ssl_want_read = dtp._ssl_want_write = False


def set_transfer_reply(dtp: Any, line: str, logfun: Any) -> None:
    """What the data handler's close answers on the control connection, logged by ``logfun``."""
    dtp._resp = (line, logfun)


def transfer_reply_set(dtp: Any) -> bool:
    """Whether the data handler's close already has a reply to send."""
    return bool(dtp._resp)


def start_throttle(dtp: Any, bytes_per_second: int) -> None:
    """Throttle reads to ``bytes_per_second`` from now: pyftpdlib's first throttled second
    starts now (left at 0, a whole second's worth and more went through at full speed)."""
    dtp.read_limit = bytes_per_second
    dtp._timenext = time.monotonic() + 1  # pyftpdlib's throttle clock (ioloop.timer)


class DataChannelHooks(HandlerMixin):
    """Mixed in above pyftpdlib's data handler: ``tls_handshaking`` is True while the data
    connection's TLS handshake runs."""

    tls_handshaking = False

    def _do_ssl_handshake(self) -> None:
        self.tls_handshaking = True
        try:
            super()._do_ssl_handshake()
        finally:
            self.tls_handshaking = False

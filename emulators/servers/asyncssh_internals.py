"""Every private or undocumented asyncssh name the SFTP server relies on, and nothing else: the
rest of ``servers/sftp.py`` uses asyncssh's public API and what this module offers. Both are
process-wide adjustments made when this module is imported (only the farm's servers run in
the process). asyncssh may change them in any release: tests/test_asyncssh_internals.py pins
each one, and pyproject.toml caps asyncssh below its next major release.

What each is for:

- ``asyncssh.sftp.SFTPServerHandler`` (not exported by ``asyncssh``) and its class attribute
  ``_extensions`` (the ``(name, data)`` pairs of the SFTP VERSION reply): the ``vendor-id``
  extension, which names AsyncSSH and its version, is taken out (a hardened server tells
  clients nothing of its software).
- ``SFTPServerHandler._packet_handlers`` (packet type -> coroutine, a class table) and
  ``asyncssh.sftp.FXP_CLOSE``: asyncssh calls ``SFTPServer.close()`` both for a client's close
  request and, when a session ends, for every file the client left open. Only the first
  completes an upload; wrapping the close request's handler tells them apart
  (``client_close_running``). Without the table, the server falls back on the channel's state
  (``CLIENT_CLOSES_KNOWN`` is False).
"""

from __future__ import annotations

import contextvars
from typing import Any

import asyncssh

__all__ = ["CLIENT_CLOSES_KNOWN", "client_close_running", "hide_vendor_id",
           "mark_client_closes"]


def hide_vendor_id() -> None:
    """asyncssh's SFTP VERSION reply carries a ``vendor-id`` extension naming "AsyncSSH" and
    its version; a hardened server tells clients nothing of its software. The extension list
    is a class attribute, so this applies process-wide: only the farm's servers run here."""
    handler = getattr(asyncssh.sftp, "SFTPServerHandler", None)
    extensions = getattr(handler, "_extensions", None)
    if handler is not None and isinstance(extensions, list):
        handler._extensions = [(name, data) for name, data in extensions
                               if name != b"vendor-id"]


hide_vendor_id()

# True while asyncssh runs a client's close request. asyncssh calls SFTPServer.close() for
# that, and also, when a session ends, for every file the client left open (an abandoned
# upload, even after a clean EOF from the client); only the first completes an upload.
_CLIENT_CLOSE: contextvars.ContextVar[bool] = contextvars.ContextVar("sftp_client_close",
                                                                      default=False)


def mark_client_closes() -> bool:
    """Wrap asyncssh's close-request handler (a class table, so process-wide, like the
    vendor-id above) to set the flag ``client_close_running`` reads; False when this
    asyncssh has no such table."""
    handler = getattr(asyncssh.sftp, "SFTPServerHandler", None)
    table = getattr(handler, "_packet_handlers", None)
    fxp_close = getattr(asyncssh.sftp, "FXP_CLOSE", None)
    original = table.get(fxp_close) if isinstance(table, dict) else None
    if original is None:
        return False
    if getattr(original, "marks_client_close", False):
        return True

    async def process_close(self: Any, packet: Any) -> Any:
        token = _CLIENT_CLOSE.set(True)
        try:
            return await original(self, packet)
        finally:
            _CLIENT_CLOSE.reset(token)

    process_close.marks_client_close = True  # type: ignore[attr-defined]
    assert table is not None
    table[fxp_close] = process_close
    return True


CLIENT_CLOSES_KNOWN = mark_client_closes()


def client_close_running() -> bool:
    """Whether the code running is asyncssh's handling of a client's close request."""
    return _CLIENT_CLOSE.get()

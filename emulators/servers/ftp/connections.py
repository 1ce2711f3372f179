"""What both FTP connections (control and data) share: a failure inside one of them ends that
connection, logged, and the server serves on."""

from __future__ import annotations

import logging
import socket
from typing import Any

from ..pyftpdlib_internals import HandlerMixin, force_close, is_closed

log = logging.getLogger("emulators.servers.ftp")
# pyftpdlib configures its own stderr logging on first run unless its logger has a handler;
# a NullHandler keeps it quiet and lets records propagate to whatever the farm configured.
logging.getLogger("pyftpdlib").addHandler(logging.NullHandler())


def socket_error(sock: Any) -> int:
    """The error a socket holds (SO_ERROR: a reset not yet read), 0 for none."""
    try:
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    except Exception:  # noqa: BLE001 - a closed or foreign socket has nothing to say
        return 0


class Contained(HandlerMixin):
    """First in both handler classes. pyftpdlib's IO loop calls ``readable``, ``writable``,
    ``handle_close`` (and ``handle_error`` itself) outside any ``try``: one exception there
    used to leave the loop and stop the whole server. Here it is logged with its traceback
    and ends only that connection; the server serves on."""

    def readable(self) -> bool:
        try:
            return bool(super().readable())
        except Exception:  # noqa: BLE001 - see the class comment
            self._contain("readable")
            return False

    def writable(self) -> bool:
        try:
            return bool(super().writable())
        except Exception:  # noqa: BLE001
            self._contain("writable")
            return False

    def handle_close(self) -> None:
        try:
            super().handle_close()
        except Exception:  # noqa: BLE001
            self._contain("handle_close")

    def handle_error(self) -> None:
        try:
            super().handle_error()
        except Exception:  # noqa: BLE001
            self._contain("handle_error")
            return
        # pyftpdlib's handle_error closes the connection and logs (only) when that close
        # fails, leaving it in the loop half closed, to fail again at every poll.
        if not (is_closed(self) or getattr(self, "_building", False)
                or getattr(self, "_awaiting_record", None) is not None):
            self._contain("handle_error (the connection did not close)")

    def _member_name(self) -> str:
        channel = getattr(self, "cmd_channel", self)
        return getattr(getattr(channel, "member", None), "name", "ftp")

    def _contain(self, where: str) -> None:
        log.error("%s: an FTP connection failed in %s; it is closed, the server serves on",
                  self._member_name(), where, exc_info=True)
        try:
            self.close()
        except Exception:  # noqa: BLE001 - its own close is broken too: force it
            log.error("%s: closing that connection failed as well", self._member_name(),
                      exc_info=True)
            self._force_close()

    def _force_close(self) -> None:
        """Take the connection out of the loop and close its socket, whatever state it is in;
        then what depends on it is tidied (``_tidy_after_force_close``)."""
        already = force_close(self)
        # What the connection's own close would have done for others: the handler classes
        # below this one in the MRO say (FarmHandler, FarmDTP).
        tidy = getattr(self, "_tidy_after_force_close", None)
        if not already and tidy is not None:
            try:
                tidy()
            except Exception:  # noqa: BLE001
                log.error("%s: tidying up after a broken connection failed",
                          self._member_name(), exc_info=True)

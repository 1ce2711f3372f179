"""The refusals our upload servers add to what pyftpdlib and asyncssh already answer.

Every reply text the farm's own code sends lives here, once: the FTP reply lines (code and
exact text, as a real ftpd words them) and the SFTP status/disconnect reasons. The servers
raise or send these; nothing else formats a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncssh


class AuthorizedKeyError(ValueError):
    """A line that is not an OpenSSH authorized_keys entry."""


@dataclass(frozen=True)
class FtpReply:
    """One FTP reply line: the code a client branches on and the text a person reads."""

    code: int
    text: str

    @property
    def line(self) -> str:
        return f"{self.code} {self.text}"


# RFC 959 4.2: 552 is "Requested file action aborted. Exceeded storage allocation".
FTP_UPLOAD_TOO_LARGE = FtpReply(552, "Requested file action aborted. Exceeded storage allocation.")
# RFC 959's text for 501; sent for a NUL in a command line (a path no file system takes).
FTP_BAD_ARGUMENT = FtpReply(501, "Syntax error in parameters or arguments.")
# What the fault rules make a client see (docs/FAULTS.md).
FTP_BUSY = FtpReply(421, "Service not available, closing control connection.")  # RFC 959
FTP_DISK_FULL = FtpReply(552, "Requested file action aborted. Exceeded storage allocation.")
FTP_TRANSFER_CUT = FtpReply(426, "Connection closed; transfer aborted.")  # RFC 959
# Also what an upload whose data connection was reset (or lost before the transfer began)
# gets: RFC 959's 426, never "226 Transfer complete.".
# pyftpdlib's text for a command line over its 2,048-byte limit; sent once per such line.
FTP_LINE_TOO_LONG = FtpReply(500, "Command too long.")
# RFC 959 451: the upload arrived but could not be moved into place (a folder in the way).
FTP_LOCAL_ERROR = FtpReply(451, "Requested action aborted: local error in processing.")


# SFTP status reasons (asyncssh sends them as the FXP_STATUS message text).
SFTP_OUTSIDE_ROOT = "Permission denied: path is outside the user's root"
SFTP_LINKS_REFUSED = "Permission denied: links are not allowed on this server"
SFTP_READ_ONLY = "Permission denied: read-only account"
SFTP_BAD_NAME = "Invalid filename"
SFTP_UPLOAD_TOO_LARGE = "Upload size limit exceeded"
SFTP_DISK_FULL = "No space left on device"  # strerror(ENOSPC), what sshd's sftp-server sends

# SSH disconnect reasons; the texts are OpenSSH's, since that is what devices meet in the field.
SSH_TOO_MANY_AUTH_FAILURES = "Too many authentication failures"
SSH_TOO_MANY_CONNECTIONS = "Too many connections from your address"


class SftpRefusal:
    """Factories for the typed asyncssh errors above (one place maps reason to wire code)."""

    @staticmethod
    def outside_root() -> asyncssh.SFTPError:
        return asyncssh.SFTPPermissionDenied(SFTP_OUTSIDE_ROOT)

    @staticmethod
    def links_refused() -> asyncssh.SFTPError:
        return asyncssh.SFTPPermissionDenied(SFTP_LINKS_REFUSED)

    @staticmethod
    def bad_name() -> asyncssh.SFTPError:
        # FX_INVALID_FILENAME for v4+ clients; asyncssh sends FX_FAILURE to v3 clients.
        return asyncssh.SFTPInvalidFilename(SFTP_BAD_NAME)

    @staticmethod
    def read_only() -> asyncssh.SFTPError:
        return asyncssh.SFTPPermissionDenied(SFTP_READ_ONLY)

    @staticmethod
    def disk_full() -> asyncssh.SFTPError:
        # FX_NO_SPACE_ON_FILESYSTEM for v5+ clients, FX_FAILURE for v3 (docs/FAULTS.md).
        return asyncssh.SFTPNoSpaceOnFilesystem(SFTP_DISK_FULL)

    @staticmethod
    def upload_too_large() -> asyncssh.SFTPError:
        # FX_QUOTA_EXCEEDED for SFTP v5+ clients; asyncssh sends FX_FAILURE to v3 clients.
        return asyncssh.SFTPQuotaExceeded(SFTP_UPLOAD_TOO_LARGE)

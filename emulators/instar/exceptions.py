"""The INSTAR WQHD error table: every ``response="<code>";`` the camera answers, as a typed
exception (``ALL_ERRORS``), and the failed login. ``wire.error_reply`` is the one place they
become replies; ``param.cgi``'s handler calls it itself.
"""

from __future__ import annotations

from typing import ClassVar


class InstarError(Exception):
    """A command that fails: answered as the command's ``cmd`` line plus its response code."""

    code: ClassVar[int] = 207
    name: ClassVar[str] = "UNKNOWN"

    def __init__(self, detail: str = "", *, cmd: str | None = None) -> None:
        super().__init__(detail or self.name)
        self.detail = detail
        self.cmd = cmd


# The codes of INSTAR's CGI documentation, in its order. Only some are ever raised by the
# FTP commands emulated here; the rest exist so the table is the vendor's whole table.
class UnknownParam(InstarError):
    code, name = 201, "UNKNOWN_PARAM"


class InvalidValue(InstarError):
    code, name = 202, "INVALID_VALUE"


class NotImplementedCmd(InstarError):
    code, name = 203, "NOT_IMPLEMENTED"


class UnknownCommand(InstarError):
    code, name = 204, "UNKNOWN_COMMAND"


class ReadConfigError(InstarError):
    code, name = 205, "READ_CONFIG_ERROR"


class WriteConfigError(InstarError):
    code, name = 206, "WRITE_CONFIG_ERROR"


class UnknownError(InstarError):
    code, name = 207, "UNKNOWN"


class MissingParam(InstarError):
    code, name = 208, "MISSING_PARAM"


class NoPermission(InstarError):
    code, name = 211, "NO_PERMISSION"


class Busy(InstarError):
    code, name = 213, "BUSY"


class InternalError(InstarError):
    code, name = 214, "INTERNAL_ERROR"


class Unauthorized(Exception):
    """Wrong or missing credentials: answered per the profile's ``auth_failure`` switch."""


ALL_ERRORS: tuple[type[InstarError], ...] = (
    UnknownParam, InvalidValue, NotImplementedCmd, UnknownCommand, ReadConfigError,
    WriteConfigError, UnknownError, MissingParam, NoPermission, Busy, InternalError,
)

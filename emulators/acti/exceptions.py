"""The camera's error table: every error the CGIs can answer, with its HTTP status and exact
body. ``wire.error_reply`` is the one place that turns them into bytes (``wire``'s error
middleware and the member's ``vendor_error`` call it).

ACTi answers command errors with status 200 and an ``ERROR: ...`` line (spec, "five reply
forms"); only the refusal (400 Unauthorized) and a general error (401 Not Found) change the
status line, with the spec's swapped-looking codes reproduced as published.
"""

from __future__ import annotations

from http import HTTPStatus

_KNOWN = {s.value for s in HTTPStatus}


class ActiError(Exception):
    """An error the device reports on the wire."""

    status = 200
    reason = "OK"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message  # the body's one line, without the newline
        if status is not None and status != self.status:  # an injected fault's own status
            self.status = status
            self.reason = HTTPStatus(status).phrase if status in _KNOWN else "Error"

    @property
    def body(self) -> str:
        return self.message + "\n"


class NotAuthorized(ActiError):
    """Wrong password, unknown or non-root account, or a stage-3 POST with no stage 1.

    The body is not published; scenarios may override status, reason and body
    (option ``refusal``), so ``wire.error_reply`` takes them from the camera's options.
    """

    status = 400
    reason = "Unauthorized"  # sic: the spec's status table pairs 400 with "Unauthorized"
    text = "ERROR: not authorized"  # the default body; option ``refusal.body`` overrides it

    def __init__(self, why: str = "") -> None:
        super().__init__(self.text)
        self.why = why  # for the log only; never on the wire


class GeneralError(ActiError):
    """A URL no CGI answers (the spec's "general error": 401 Not Found, sic)."""

    status = 401
    reason = "Not Found"

    def __init__(self, path: str) -> None:
        super().__init__(f"ERROR: {path} not found")


class CommandNotFound(ActiError):
    """A command the firmware does not know (seed: ``ERROR: HTTPS_CER not found``)."""

    def __init__(self, command: str) -> None:
        super().__init__(f"ERROR: {command} not found")
        self.command = command


class RefusedValue(ActiError):
    """A write with a value the command does not take: echoes the current value (form 4)."""

    def __init__(self, command: str, current: str) -> None:
        super().__init__(f"ERROR: {command}='{current}'")


class NoCommand(ActiError):
    def __init__(self) -> None:
        super().__init__("ERROR: no command")


class OneCommandOnly(ActiError):
    """The update CGI takes exactly one command per URL (spec)."""

    def __init__(self) -> None:
        super().__init__("ERROR: only one command per update URL")


class InvalidArgument(ActiError):
    """A write whose argument is malformed (HTTPS_CSR_CREATE's seven fields)."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"ERROR: invalid argument. {detail}")


class InjectedError(ActiError):
    """A ``vendor_error`` fault from the control plane, in the device's ERROR form."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(f"ERROR: {message}", status=status)


class InternalError(ActiError):
    """An upload that failed (seed: ``ERROR: internal error. error message.``)."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"ERROR: internal error. {detail}")


# The firmware's table; InjectedError is the control plane's fault, in the same form.
ALL_ERRORS: tuple[type[ActiError], ...] = (
    NotAuthorized, GeneralError, CommandNotFound, RefusedValue, NoCommand, OneCommandOnly,
    InvalidArgument, InternalError,
)


# The upload failures, one exact message each (tests quote them).
EMPTY_FILE = "empty certificate file."
NOT_PEM = "not a PEM certificate."
BAD_CERTIFICATE = "certificate does not parse."
BAD_KEY = "private key does not parse."
TOO_LARGE = "file too large."
NOT_MULTIPART = "not a multipart/form-data request."
BAD_MULTIPART = "multipart body does not parse."
NO_FILE = "no UPLOAD_FILE in the form."
TIMED_OUT = "upload timed out."
UNEXPECTED = "unexpected failure."

"""The ACTi camera's scenario keys: firmware, accounts, HTTPS port and files, the upload window
and limits, the refusal's form and the wire's line ending; checked here before anything
starts (firmware string, unique names, the initial certificate and key)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .. import pki
from ..core.member import KindOptions
from ..core.quirks.format import Profile as QuirkProfile
from ..core.quirks.replay import QuirkFile
from ..core.replyheaders import WebServerOptions
from ..core.video.options import VideoOptions
from . import exceptions as errors
from .models import read_certificate_upload
from .parsing import BODY_TIMEOUT
from .profiles import DEFAULT_FIRMWARE, Firmware


class UserOption(KindOptions):
    user: str = Field(min_length=1)
    password: str
    root: bool = False


class RefusalOption(KindOptions):
    """The reply to bad credentials. The spec gives the status (400 Unauthorized, sic) but
    not the body; a scenario may match whatever a client under test expects."""

    # Defaults from the error table's row, so the refusal is written in one place.
    status: int = Field(default=errors.NotAuthorized.status, ge=200, le=599)
    reason: str = Field(default=errors.NotAuthorized.reason, pattern=r"^[\x20-\x7e]*$")
    body: str = Field(default=errors.NotAuthorized.text, pattern=r"^[\x09\x0a\x20-\x7e]*$")


class ActiOptions(WebServerOptions):
    # The firmware string decides the platform (A1D-220 A, A1D-310 T, A1D-311 K) and whether
    # HTTPS_CER exists (seed 000's applicability table).
    firmware: str = DEFAULT_FIRMWARE
    # Seed 000's credentials. Only root accounts may use the update CGI.
    users: tuple[UserOption, ...] = (UserOption(user="admin", password="123456", root=True),)
    # The seed writes USER=Admin in one place and USER=admin in another: names match
    # case-insensitively unless this is set. Passwords always match exactly.
    user_names_case_sensitive: bool = False
    # Where HTTPS listens once a certificate and its key are present (0: a free port, kept
    # for the member's lifetime so that a new certificate does not move it).
    https_port: int = Field(default=0, ge=0, le=65535)
    # Header line endings: "crlf" as seed 000 shows, "lf" for the spec's "\n\n".
    wire: Literal["crlf", "lf"] = "crlf"
    # Stage 1 (HTTPS_CER=upload) authorises one stage-3 POST from the same address within
    # this many seconds of the farm clock.
    upload_window: float = Field(default=300.0, gt=0)
    # Largest certificate file accepted; bigger uploads get "ERROR: internal error. ...".
    max_upload_bytes: int = Field(default=64 * 1024, ge=1, le=4 * 1024 * 1024)
    # Wall-clock seconds a client may take to send a request body; a stalled upload then
    # gets "ERROR: internal error. upload timed out." and the connection is closed.
    upload_timeout: float = Field(default=BODY_TIMEOUT, gt=0, le=600)
    refusal: RefusalOption = RefusalOption()
    # Seed 000's stage 1 sends HTTPS=upload; False answers it "ERROR: HTTPS not found".
    tolerate_https_typo: bool = True
    # certSrv.pem at scenario start (may include the key of a self-signed certificate), and a
    # separate key (as if made by HTTPS_CSR_CREATE). Factory default removes both.
    https_certificate: str | None = None
    https_key: str | None = None
    # The model GetDeviceInformation reports.
    model: str = Field(default="E32", min_length=1, max_length=64)
    # RTSP (7070 on ACTi's cameras; 0 a free port, null no RTSP). ONVIF shares the HTTP port.
    rtsp_port: int | None = Field(default=0, ge=0, le=65535)
    # Whether the camera claims ONVIF Profile T in its scopes (Profile S it always claims).
    onvif_profile_t: bool = False
    # Discovery, the camera's clock, ONVIF security and field quirks (core/video/options.py).
    video: VideoOptions = VideoOptions()
    # reply_date / reply_headers (WebServerOptions): seed 000's replies carry neither a Date
    # nor a Server line, so by default the camera writes none.
    # A quirk profile of a real camera (a file; docs/QUIRKS.md): its recorded replies replace
    # the camera's own for the requests it recorded.
    quirks: Annotated[QuirkProfile | None, QuirkFile("acti-camera")] = None

    @field_validator("firmware")
    @classmethod
    def _firmware(cls, value: str) -> str:
        Firmware.parse(value)
        return value

    @field_validator("users")
    @classmethod
    def _users(cls, value: tuple[UserOption, ...]) -> tuple[UserOption, ...]:
        names = [u.user.casefold() for u in value]
        if len(set(names)) != len(names):
            raise ValueError("user names must be unique (compared case-insensitively)")
        return value

    @field_validator("https_certificate")
    @classmethod
    def _certificate(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                read_certificate_upload(value.encode("latin-1"))
            except Exception as exc:  # an ActiError: show its message, not the wire form
                raise ValueError(f"https_certificate: {exc}") from None
        return value

    @field_validator("https_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None:
            pki.load_key(value)
        return value

    @model_validator(mode="after")
    def _https_firmware(self) -> ActiOptions:
        if (self.https_certificate or self.https_key) and not Firmware.parse(self.firmware).https:
            raise ValueError(f"firmware {self.firmware} has no HTTPS_CER: it cannot start "
                             "with https_certificate or https_key")
        return self

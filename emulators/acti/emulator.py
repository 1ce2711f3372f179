"""The ACTi-style camera as a farm member: scenario options, saved state, and the HTTPS
listener that follows the certificate and key in flash."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import tempfile
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .. import pki
from ..core.httpserver import HttpEmulator
from ..core.replyheaders import WebServerOptions
from . import exceptions as errors
from .models import (
    Account,
    Accounts,
    HttpsFiles,
    TlsIdentity,
    UploadGrants,
    read_certificate_upload,
    tls_identity,
)
from .parsing import BODY_TIMEOUT, parse_query
from .profiles import DEFAULT_FIRMWARE, Firmware
from .responses import CameraCgi
from .urls import add_routes
from .wire import WireResponse, error_middleware, error_reply

log = logging.getLogger("emulators.acti")


class UserOption(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    user: str = Field(min_length=1)
    password: str
    root: bool = False


class RefusalOption(BaseModel):
    """The reply to bad credentials. The spec gives the status (400 Unauthorized, sic) but
    not the body; a scenario may match whatever a client under test expects."""

    model_config = ConfigDict(extra="forbid", frozen=True)
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
    # reply_date / reply_headers (WebServerOptions): seed 000's replies carry neither a Date
    # nor a Server line, so by default the camera writes none.

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


def tls_context(identity: TlsIdentity) -> ssl.SSLContext:
    """A server context that takes any key the device was given.

    ``pki.server_context`` refuses what OpenSSL's security level 2 calls weak (1024-bit RSA,
    SHA-1 signatures); the firmware "does not know the certificate is valid or not" and serves
    it all, so security level 0 here and the client decides what it trusts.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with tempfile.TemporaryDirectory(prefix="emulators-acti-tls-") as tmp:
        paths = []
        for filename, text in (("cert.pem", identity.chain_pem), ("key.pem", identity.key_pem)):
            path = os.path.join(tmp, filename)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            paths.append(path)
        ctx.load_cert_chain(paths[0], paths[1])
    return ctx


class ActiCamera(HttpEmulator):
    kind = "acti-camera"
    title = "ACTi-style IP camera (update CGI, HTTPS_CER, HTTPS_CSR_CREATE, HTTPS)"
    Options = ActiOptions
    options: ActiOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.firmware = Firmware.parse(self.options.firmware)
        self.accounts = Accounts(
            [Account(u.user, u.password, u.root) for u in self.options.users],
            case_sensitive_names=self.options.user_names_case_sensitive)
        self.grants = UploadGrants(self.options.upload_window)
        self.https_files = HttpsFiles()
        # Why HTTPS is (not) up, for the control plane; the port sticks once chosen.
        self.https_reason: str | None = "not started"
        self._https_port = self.options.https_port
        self._serving: TlsIdentity | None = None
        self._https_lock = asyncio.Lock()

    # -- state ---------------------------------------------------------------------------------
    def initial_state(self) -> dict[str, Any]:
        files = HttpsFiles()
        if self.options.https_certificate is not None:
            upload = read_certificate_upload(self.options.https_certificate.encode("latin-1"))
            files = files.with_upload(upload)
        if self.options.https_key is not None and files.key is None:
            files = HttpsFiles(files.cert, self.options.https_key, "csr", files.csr)
        return {"https_files": files.to_dict()}

    def load_state(self, data: dict[str, Any]) -> None:
        self.https_files = HttpsFiles.from_dict(data.get("https_files"))
        self.grants.clear()

    def dump_state(self) -> dict[str, Any]:
        return {"https_files": self.https_files.to_dict()}

    def state(self) -> dict[str, Any]:
        doc = self.dump_state()
        doc["firmware"] = self.firmware.describe()
        doc["files"] = self.https_files.describe()
        doc["https"] = self.https_status()
        doc["upload_grants"] = self.grants.describe(self.clock.time())
        return doc

    def https_status(self) -> dict[str, Any]:
        bound = self.bound.get("https")
        return {"active": bound is not None, "reason": self.https_reason,
                "port": bound[1] if bound else None}

    # -- lifecycle -----------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = self.new_app(middlewares=[error_middleware(self)])
        add_routes(app, CameraCgi(self))
        return app

    async def after_start(self) -> None:
        await self.apply_https()

    async def state_changed(self) -> None:
        await self.apply_https()

    def command_of(self, request: web.Request) -> str | None:
        """The ACTi command a URL carries (for the farm's fault rules)."""
        commands = parse_query(request.rel_url.raw_query_string).commands
        return commands[0][0] if commands else None

    def dress_reply(self, response: web.StreamResponse) -> None:
        if isinstance(response, WireResponse):  # the camera writes its header itself
            response.add_lines(self._reply_headers, self.options.wire, self.clock.time())
        else:
            super().dress_reply(response)

    def vendor_error(self, request: web.Request, message: str,
                     status: int | None = None) -> web.StreamResponse:
        """An injected or unmapped failure in the camera's own form: ``ERROR: <message>``."""
        return error_reply(errors.InjectedError(message, status), self)

    def credentials(self) -> dict[str, Any]:
        root = next((u for u in self.options.users if u.root), self.options.users[0])
        return {"user": root.user, "password": root.password}

    def extra_description(self) -> dict[str, Any]:
        return {"firmware": self.firmware.describe(), "https": self.https_status()}

    # -- what the CGIs change ------------------------------------------------------------------
    async def set_https_files(self, files: HttpsFiles) -> None:
        """Write the HTTPS files to flash, then make the listener follow them."""
        self.https_files = files
        await self.save()
        await self.apply_https()

    async def factory_default(self) -> None:
        # Seed: the certificate goes and the device is reachable by HTTP only.
        self.grants.clear()
        await self.set_https_files(HttpsFiles())

    async def config_reset(self) -> None:
        # Seed: CONFIG_RESET keeps network settings, the HTTPS certificate included. No other
        # configuration is emulated, so only the RAM-held upload grants go.
        self.grants.clear()
        await self.save()

    async def apply_https(self) -> None:
        """Listen on HTTPS with exactly the certificate and key in flash, or not at all."""
        async with self._https_lock:
            identity: TlsIdentity | str
            if not self.firmware.https:
                identity = f"firmware {self.firmware.text} has no HTTPS"
            else:
                identity = tls_identity(self.https_files)
            if isinstance(identity, TlsIdentity) and identity == self._serving:
                return
            if self.runner is None:  # not running (state replaced while stopped)
                self.https_reason = identity if isinstance(identity, str) else "not started"
                return
            await self.unlisten("https")
            self._serving = None
            if not isinstance(identity, TlsIdentity):
                self.https_reason = identity
                return
            try:
                context = tls_context(identity)
            except ssl.SSLError as exc:
                self.https_reason = f"TLS refused the certificate and key: {exc}"
                return
            try:
                _, port = await self.listen("https", self.host, self._https_port, context)
            except OSError as exc:
                self.https_reason = f"cannot listen on {self.host}:{self._https_port}: {exc}"
                return
            self._https_port = port
            self._serving = identity
            self.https_reason = None
            log.info("%s: HTTPS on %s:%d", self.name, self.host, port)

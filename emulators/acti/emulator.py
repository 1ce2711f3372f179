"""The ACTi-style camera as a farm member: saved state, and the HTTPS listener that follows
the certificate and key in flash. Its scenario keys: options.py."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import tempfile
from typing import Any

from aiohttp import web

from ..core.httpserver import HttpEmulator
from ..core.video import control as video_control
from ..core.video.onvif.device import mac_address
from ..core.video.wing import VideoWing
from . import exceptions as errors
from . import video
from .models import (
    Account,
    Accounts,
    HttpsFiles,
    TlsIdentity,
    UploadGrants,
    read_certificate_upload,
    tls_identity,
)
from .options import ActiOptions
from .parsing import parse_query
from .profiles import Firmware
from .responses import CameraCgi
from .urls import add_routes
from .wire import WireResponse, error_middleware, error_reply

log = logging.getLogger("emulators.acti")


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
    probe_script = "emulators.acti.probe:SCRIPT"
    options: ActiOptions
    control_routes = (video_control.routes,)
    control_openapi = video_control.OPENAPI

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
        # ONVIF on the HTTP port (the application's own routes), RTSP on its own.
        self.video = VideoWing(self, video.facts(self.name, self.options, self.firmware),
                               self.options.video, rtsp_port=self.options.rtsp_port,
                               onvif_port=None, http_url=self._http_url, power=self._power)

    # -- state ---------------------------------------------------------------------------------
    def initial_state(self) -> dict[str, Any]:
        files = HttpsFiles()
        if self.options.https_certificate is not None:
            upload = read_certificate_upload(self.options.https_certificate.encode("latin-1"))
            files = files.with_upload(upload)
        if self.options.https_key is not None and files.key is None:
            files = HttpsFiles(files.cert, self.options.https_key, "csr", files.csr)
        return {"https_files": files.to_dict(), "video": self.video.initial_state()}

    def certificates(self) -> list[dict[str, Any]]:
        cert = self.https_files.cert
        return [{"role": "HTTPS server (certSrv.pem)", "pem": cert}] if cert else []

    def load_state(self, data: dict[str, Any]) -> None:
        self.https_files = HttpsFiles.from_dict(data.get("https_files"))
        self.grants.clear()
        self.video.load_state(data.get("video"))

    def dump_state(self) -> dict[str, Any]:
        return {"https_files": self.https_files.to_dict(), "video": self.video.dump_state()}

    def state(self) -> dict[str, Any]:
        doc = self.dump_state()
        doc["firmware"] = self.firmware.describe()
        doc["files"] = self.https_files.describe()
        doc["https"] = self.https_status()
        doc["upload_grants"] = self.grants.describe(self.clock.time())
        doc["video"] = self.video.describe(now=False)
        return doc

    def https_status(self) -> dict[str, Any]:
        bound = self.bound.get("https")
        return {"active": bound is not None, "reason": self.https_reason,
                "port": bound[1] if bound else None}

    # -- lifecycle -----------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = self.new_app(middlewares=[error_middleware(self)])
        self.video.add_routes(app)  # before the CGI's catch-all route
        add_routes(app, CameraCgi(self))
        return app

    async def after_start(self) -> None:
        await self.apply_https()
        await self.video.start()

    async def before_stop(self) -> None:
        await self.video.stop()

    async def _power(self, on: bool) -> None:
        """A reboot: the web servers go down with the rest of the camera, and come back."""
        if on:
            await self.listen("http", self.host, self.port)
            await self.apply_https()
        else:
            async with self._https_lock:
                await self.unlisten("https")
                self._serving = None
                self.https_reason = "rebooting"
            await self.unlisten("http")

    async def video_motion(self, active: bool) -> None:
        self.video.motion(active)

    def _http_url(self) -> str:
        bound = self.bound.get("http")
        return f"http://{bound[0]}:{bound[1]}" if bound else f"http://{self.host}:{self.port}"

    def urls(self) -> dict[str, str]:
        return {**super().urls(), **self.video.urls()}

    async def state_changed(self) -> None:
        await self.apply_https()

    def command_of(self, request: web.Request) -> str | None:
        """The ACTi command a URL carries (for the farm's fault rules); on an ONVIF path,
        the SOAP operation."""
        if self.video.owns(request):
            return self.video.command_of(request)
        commands = parse_query(request.rel_url.raw_query_string).commands
        return commands[0][0] if commands else None

    def dress_reply(self, response: web.StreamResponse) -> None:
        if isinstance(response, WireResponse):  # the camera writes its header itself
            response.add_lines(self._reply_headers, self.options.wire, self.clock.time())
        else:
            super().dress_reply(response)

    def vendor_error(self, request: web.Request, message: str,
                     status: int | None = None) -> web.StreamResponse:
        """An injected or unmapped failure in the camera's own form: ``ERROR: <message>``
        (a SOAP fault on an ONVIF path)."""
        if self.video.owns(request):
            return self.video.vendor_error(request, message, status)
        return error_reply(errors.InjectedError(message, status), self)

    def credentials(self) -> dict[str, Any]:
        root = next((u for u in self.options.users if u.root), self.options.users[0])
        return {"user": root.user, "password": root.password}

    def extra_description(self) -> dict[str, Any]:
        return {"firmware": self.firmware.describe(), "https": self.https_status()}

    def quirk_logins(self) -> dict[str, str]:
        return {u.user: u.password for u in self.options.users}

    def quirk_values(self) -> dict[str, str]:
        return {"serial": self.video.facts.identity.serial, "mac": mac_address(self.name)}

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

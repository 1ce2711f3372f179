"""The camera's CGIs: read the Type 1 URL, check the account, call the model, shape the reply.

``update`` carries the HTTPS commands of seed 000 and the spec; ``system`` carries the
factory default and CONFIG_RESET. Errors are raised from ``exceptions`` and rendered by
``wire.error_middleware``; nothing here writes an error string.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from cryptography import x509

from .. import pki
from . import exceptions as errors
from . import wire
from .models import HttpsFiles, parse_csr_request, read_certificate_upload
from .parsing import FORM_OVERHEAD, form_file, parse_query, read_body

if TYPE_CHECKING:
    from .emulator import ActiCamera

Command = Callable[[web.Request, "str | None"], Awaitable[web.StreamResponse]]

# Commands only firmware with HTTPS knows, and the name its "not found" error gives: the seed
# lists "ERROR: HTTPS_CER not found" as a possible answer to the stage-3 POST too.
HTTPS_COMMANDS = {"HTTPS_CER": "HTTPS_CER", "HTTPS_CER_SAVE": "HTTPS_CER",
                  "HTTPS_CSR_CREATE": "HTTPS_CSR_CREATE"}
UPLOAD_FIELD = "UPLOAD_FILE"  # the stage-2 form's file input


class CameraCgi:
    def __init__(self, camera: ActiCamera) -> None:
        self.camera = camera
        self.tables: dict[str, dict[str, Command]] = {
            "update": {
                "HTTPS_CER": self.https_cer,
                "HTTPS_CER_SAVE": self.https_cer_save,
                "HTTPS_CSR_CREATE": self.https_csr_create,
                "FACTORY_DEFAULT": self.factory_default,
                "CONFIG_RESET": self.config_reset,
            },
            "system": {
                "FACTORY_DEFAULT": self.factory_default,
                "CONFIG_RESET": self.config_reset,
            },
        }

    @property
    def wire(self) -> wire.Wire:
        return self.camera.options.wire

    # -- dispatch ------------------------------------------------------------------------------
    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        cgi = path.removeprefix("/cgi-bin/") if path.startswith("/cgi-bin/") else None
        table = self.tables.get(cgi or "")
        if table is None:  # includes /cgi-bin/cmd/update: update takes Type 1 URLs only
            raise errors.GeneralError(path)
        query = parse_query(request.rel_url.raw_query_string)
        commands = [self._alias(name, value) for name, value in query.commands]

        if (cgi == "update" and len(commands) == 1 and commands[0][0] == "HTTPS_CER_SAVE"
                and query.user is None and query.password is None):
            # Stage 3: the form's relative action carries no credentials; stage 1 vouches.
            self._require_known("HTTPS_CER_SAVE")
            if not self.camera.grants.take(request.remote or "", self.camera.clock.time()):
                raise errors.NotAuthorized("HTTPS_CER_SAVE without an authorised stage 1")
            return await self.https_cer_save(request, commands[0][1])

        self.camera.accounts.root(query.user, query.password)
        if not commands:
            raise errors.NoCommand()
        if len(commands) > 1:
            raise errors.OneCommandOnly()
        name, value = commands[0]
        handler = table.get(name)
        if handler is None:
            raise errors.CommandNotFound(name)
        self._require_known(name)
        return await handler(request, value)

    async def encoder(self, request: web.Request) -> web.StreamResponse:
        """``/cgi-bin/encoder?SNAPSHOT`` (stream 1) or ``SNAPSHOT=N<w>x<h>,<quality>``: a
        JPEG, for any account (USER/PWD in the URL) or HTTP Digest/Basic. The encoder's other
        commands are not emulated: the general error, as for an unknown CGI."""
        query = parse_query(request.rel_url.raw_query_string)
        value = next((v for name, v in query.commands if name == "SNAPSHOT"), "missing")
        if value == "missing":
            raise errors.GeneralError(request.path)
        facts = self.camera.video.facts
        size = value.partition(",")[0].removeprefix("N") if value else None
        profile = next((p for p in facts.profiles
                        if size is None or f"{p.width}x{p.height}" == size), None)
        if profile is None:
            raise errors.GeneralError(f"SNAPSHOT={value}")

        def query_login(_: web.Request) -> bool:
            if query.user is None:
                return False
            return self.camera.accounts.find(query.user, query.password) is not None

        return await self.camera.video.snapshot(request, profile, query_login)

    def _alias(self, name: str, value: str | None) -> tuple[str, str | None]:
        # Seed 000's own stage-1 trace sends HTTPS=upload (a typo for HTTPS_CER=upload) and
        # shows the form coming back; tolerated unless the scenario says otherwise.
        if name == "HTTPS" and value == "upload" and self.camera.options.tolerate_https_typo:
            return "HTTPS_CER", value
        return name, value

    def _require_known(self, name: str) -> None:
        if name in HTTPS_COMMANDS and not self.camera.firmware.https:
            raise errors.CommandNotFound(HTTPS_COMMANDS[name])

    # -- HTTPS_CER (seed 000) -------------------------------------------------------------------
    async def https_cer(self, request: web.Request, value: str | None) -> web.StreamResponse:
        files = self.camera.https_files
        if value is None:
            return wire.read_value("HTTPS_CER", files.cer_value, self.wire)
        if value == "upload":
            self.camera.grants.grant(request.remote or "", self.camera.clock.time())
            return wire.upload_form(self.wire)
        if value == "remove":
            # All HTTPS files go, and "OK" also when there were none (seed).
            await self.camera.set_https_files(HttpsFiles())
            return wire.ok(self.wire)
        raise errors.RefusedValue("HTTPS_CER", files.cer_value)

    async def https_cer_save(self, request: web.Request, value: str | None) -> web.StreamResponse:
        limit = self.camera.options.max_upload_bytes
        body = await read_body(request, limit + FORM_OVERHEAD,
                               self.camera.options.upload_timeout)
        data = form_file(request.headers.get("Content-Type", ""), body, UPLOAD_FIELD, limit)
        upload = read_certificate_upload(data)
        await self.camera.set_https_files(self.camera.https_files.with_upload(upload))
        return wire.ok(self.wire)

    # -- HTTPS_CSR_CREATE (spec) ----------------------------------------------------------------
    async def https_csr_create(self, request: web.Request,
                               value: str | None) -> web.StreamResponse:
        files = self.camera.https_files
        if value is None:  # a bare read gives the CSR made last (see README)
            if files.csr is None:
                return wire.read_value("HTTPS_CSR_CREATE", "none", self.wire)
            return wire.text(files.csr, self.wire)
        req = parse_csr_request(value, self.camera.firmware.platform.csr_key_lengths)
        # Seconds of CPU for a 4096-bit key, and ~6 ms more to sign the CSR: all off the loop.
        key_text, csr_text = await asyncio.get_running_loop().run_in_executor(
            None, _new_key_and_csr, req.key_length, req.subject())
        # A new key means the old certificate can no longer be served: both go (spec).
        await self.camera.set_https_files(HttpsFiles(
            cert=None, key=key_text, key_source="csr", csr=csr_text))
        return wire.text(csr_text, self.wire)

    # -- factory default / CONFIG_RESET ---------------------------------------------------------
    async def factory_default(self, request: web.Request,
                              value: str | None) -> web.StreamResponse:
        await self.camera.factory_default()
        return wire.ok(self.wire)

    async def config_reset(self, request: web.Request, value: str | None) -> web.StreamResponse:
        await self.camera.config_reset()
        return wire.ok(self.wire)


def _new_key_and_csr(bits: int, subject: x509.Name) -> tuple[str, str]:
    """A new RSA key (traditional PEM, as the camera stores it) and a CSR signed with it."""
    key = pki.rsa_key(bits)
    return pki.key_pem(key, traditional=True), pki.csr_pem(pki.make_csr(key, subject))

"""ONVIF's HTTP face: the service paths, the dispatch of a SOAP operation to its handler,
authentication (WS-UsernameToken and HTTP Digest) and faults.

Every request on an ``/onvif/`` path is answered in SOAP: a fault for anything the camera
cannot serve (another method than POST, an unknown path, a document that is not a SOAP 1.2
envelope, an operation of another service), never aiohttp's HTML.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web
from multidict import CIMultiDict

from .. import soap
from ..digest import Credentials
from . import device, events, imaging, media, media2, security
from .call import ALLOWED, Call, Operation, Reply

if TYPE_CHECKING:
    from ..facts import VideoUser
    from ..wing import VideoWing

log = logging.getLogger("emulators.video.onvif")

NS = soap.NAMESPACES
SUBSCRIPTION_PREFIX = "/onvif/events/subscription/"
# Longest SOAP action looked at in a Content-Type or SOAPAction header.
MAX_ACTION = 512


class _TooLarge(Exception):
    pass


def _soap11_version_mismatch() -> web.Response:
    """SOAP 1.2 Part 1, appendix A: a SOAP 1.2 node that does not speak SOAP 1.1 answers a
    SOAP 1.1 message with a SOAP 1.1 VersionMismatch fault carrying an Upgrade header that
    names the envelope it does support."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<s:Envelope xmlns:s="{soap.SOAP11}" xmlns:env="{soap.SOAP12}">'
        '<s:Header><env:Upgrade><env:SupportedEnvelope qname="env:Envelope"/></env:Upgrade>'
        "</s:Header><s:Body><s:Fault><faultcode>s:VersionMismatch</faultcode>"
        "<faultstring>Version Mismatch: this device speaks SOAP 1.2 only</faultstring>"
        "</s:Fault></s:Body></s:Envelope>")
    return web.Response(status=500, body=body.encode(), content_type="text/xml",
                        charset="utf-8")


class OnvifService:
    MAX_BODY = soap.MAX_DOCUMENT

    def __init__(self, wing: VideoWing) -> None:
        self.wing = wing
        self.nonces = security.NonceBook()
        # path -> (service name, its operations, the namespaces its operations live in)
        self.services: dict[str, tuple[str, dict[str, Operation], frozenset[str]]] = {
            "/onvif/device_service": ("device", device.OPERATIONS, frozenset({NS["tds"]})),
            "/onvif/media": ("media", media.OPERATIONS, frozenset({NS["trt"]})),
            "/onvif/media2": ("media2", media2.OPERATIONS, frozenset({NS["tr2"]})),
            "/onvif/events": ("events", getattr(events, "OPERATIONS", {}),
                              frozenset({NS["tev"], NS["wsnt"]})),
        }
        if wing.facts.imaging:
            self.services["/onvif/imaging"] = ("imaging", imaging.OPERATIONS,
                                               frozenset({NS["timg"]}))
        self.subscription = ("subscription", getattr(events, "SUBSCRIPTION_OPERATIONS", {}),
                             frozenset({NS["tev"], NS["wsnt"]}))

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/onvif/{tail:.*}", self.handle)

    # -- what the farm's fault rules see ------------------------------------------------------
    def operation_of(self, request: web.Request) -> str | None:
        """The operation a request names in its SOAP 1.2 Content-Type ``action`` parameter
        (or SOAP 1.1's SOAPAction header): the local name after the action URI's last '/'."""
        action = ""
        content_type = request.headers.get("Content-Type", "")
        if len(content_type) <= MAX_ACTION:
            for part in content_type.split(";")[1:]:
                key, _, value = part.partition("=")
                if key.strip().lower() == "action":
                    action = value.strip().strip('"')
        if not action:
            action = request.headers.get("SOAPAction", "").strip().strip('"')
        if not action or len(action) > MAX_ACTION:
            return None
        return action.rstrip("/").rpartition("/")[2] or None

    def receiver_fault(self, message: str, status: int | None = None) -> web.Response:
        error = soap.SoapError("env:Receiver", "ter:Action", message, status=status)
        return web.Response(status=error.status, body=soap.fault_envelope(error),
                            content_type="application/soap+xml", charset="utf-8")

    # -- the one handler of every /onvif/ path ------------------------------------------------
    async def handle(self, request: web.Request) -> web.Response:
        path = request.path
        target: str | None = None
        found = self.services.get(path)
        if found is None and path.startswith(SUBSCRIPTION_PREFIX):
            target = path[len(SUBSCRIPTION_PREFIX):]
            if target and "/" not in target:
                found = self.subscription
        if found is None:
            return self._fault(soap.SoapError(
                "env:Sender", "wsa:DestinationUnreachable",
                f"No route can be determined to reach {path}", status=404))
        if request.method != "POST":
            return self._fault(soap.SoapError(
                "env:Sender", "ter:ActionNotSupported",
                f"{request.method} is not supported: ONVIF services take SOAP 1.2 over "
                "HTTP POST", status=405), headers={"Allow": "POST"})
        service, operations, namespaces = found
        try:
            data = await self._read(request)
        except _TooLarge:
            return self._fault(soap.SoapError(
                "env:Sender", "ter:WellFormed",
                f"the request is larger than {self.MAX_BODY} bytes", status=413))
        try:
            message = soap.parse(data)
        except soap.SoapError as error:
            self._record(request, "malformed", service, None, error.status, error)
            return self._fault(error)
        if message.envelope_ns == soap.SOAP11:
            self._record(request, message.operation, service, None, 500, None)
            return _soap11_version_mismatch()
        return await self._dispatch(request, message, service, operations, namespaces, target)

    async def _read(self, request: web.Request) -> bytes:
        """The body, refused past MAX_BODY without reading further (a declared length is
        refused unread)."""
        if request.content_length is not None and request.content_length > self.MAX_BODY:
            raise _TooLarge
        data = bytearray()
        while chunk := await request.content.read(64 * 1024):
            data += chunk
            if len(data) > self.MAX_BODY:
                raise _TooLarge
        return bytes(data)

    async def _dispatch(self, request: web.Request, message: soap.Message, service: str,
                        operations: dict[str, Operation], namespaces: frozenset[str],
                        target: str | None) -> web.Response:
        name = message.operation
        user: VideoUser | None = None
        try:
            operation = operations.get(name)
            if operation is None or message.namespace not in namespaces:
                raise soap.action_not_supported(
                    f"{name} is not an operation of the {service} service")
            user = self._authenticate(request, message, operation)
            if user is None and operation.access != "pre_auth":
                # No credentials of any kind: HTTP's own challenge, with the SOAP fault as
                # its body (zeep reads the fault whatever the status).
                error = soap.not_authorized()
                self._record(request, name, service, None, 401, error)
                return self._fault(error, status=401, headers=self._challenge())
            if user is not None and operation.access not in ALLOWED[user.level]:
                raise soap.not_authorized(f"{user.level} users may not call {name}")
            if name in self.wing.options.quirks.not_supported:
                raise soap.action_not_supported()
            call = Call(self.wing, request, message, user, service, target)
            reply = await operation.handler(call)
        except _Challenge as challenge:
            refused = soap.not_authorized()
            self._record(request, name, service, None, 401, refused)
            return self._fault(refused, status=401,
                               headers=self._challenge(stale=challenge.stale))
        except soap.SoapError as fault:
            self._record(request, name, service, user, fault.status, fault)
            return self._fault(fault)
        except Exception:  # noqa: BLE001 - a handler's bug is a receiver fault, not a 500 page
            log.exception("%s: ONVIF %s failed", self.wing.name, name)
            failed = soap.SoapError("env:Receiver", "ter:Action", "internal error")
            self._record(request, name, service, user, failed.status, failed)
            return self._fault(failed)
        if isinstance(reply, Reply):
            body, header = reply.body, reply.header
        else:
            body, header = reply, ""
        self._record(request, name, service, user, 200, None)
        return web.Response(status=200, body=soap.envelope(body, header),
                            content_type="application/soap+xml", charset="utf-8")

    def _authenticate(self, request: web.Request, message: soap.Message,
                      operation: Operation) -> VideoUser | None:
        """The caller, by WS-UsernameToken first, else HTTP Digest/Basic; None when the
        request carries neither. Credentials that fail on a pre-auth operation are ignored
        (ONVIF Core: pre-auth operations need none)."""
        wing = self.wing
        pre_auth = operation.access == "pre_auth"
        token = security.username_token(message)
        if token is not None:
            try:
                return security.check_token(token, wing.facts, wing.camera_time(),
                                            wing.options.token_skew, self.nonces)
            except soap.SoapError:
                if pre_auth:
                    return None
                raise
        header = request.headers.get("Authorization")
        if not header:
            return None
        found = wing.auth.check(request.method, header, self._password_of)
        if not isinstance(found, Credentials):
            if pre_auth:
                return None
            raise _Challenge(stale=found is False)
        return wing.facts.user(found.user)

    def _password_of(self, name: str) -> str | None:
        user = self.wing.facts.user(name)
        return user.password if user is not None else None

    def _challenge(self, *, stale: bool = False) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        for value in self.wing.auth.challenges(stale=stale):
            headers.add("WWW-Authenticate", value)
        return headers

    @staticmethod
    def _fault(error: soap.SoapError, *, status: int | None = None,
               headers: CIMultiDict[str] | dict[str, str] | None = None) -> web.Response:
        return web.Response(status=status or error.status, body=soap.fault_envelope(error),
                            content_type="application/soap+xml", charset="utf-8",
                            headers=headers)

    def _record(self, request: web.Request, operation: str, service: str,
                user: VideoUser | None, status: int, error: soap.SoapError | None) -> None:
        detail: dict[str, str] = {"service": service}
        if error is not None:
            detail["fault"] = error.subcode
            detail["reason"] = error.reason
        self.wing.record("onvif", operation, client=request.remote,
                         user=user.name if user is not None else None, path=request.path,
                         status=status, detail=detail)


class _Challenge(Exception):
    """HTTP credentials that failed: answered 401 with a fresh challenge."""

    def __init__(self, *, stale: bool) -> None:
        super().__init__("challenge")
        self.stale = stale

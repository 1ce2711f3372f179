"""ONVIF's HTTP face: the service paths, the dispatch of a SOAP operation to its handler,
authentication (WS-UsernameToken and HTTP Digest) and faults. (Skeleton: filled in by the
ONVIF services.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .. import soap

if TYPE_CHECKING:
    from ..wing import VideoWing


class OnvifService:
    MAX_BODY = soap.MAX_DOCUMENT

    def __init__(self, wing: VideoWing) -> None:
        self.wing = wing

    def add_routes(self, app: web.Application) -> None:
        pass

    def operation_of(self, request: web.Request) -> str | None:
        return None

    def receiver_fault(self, message: str, status: int | None = None) -> web.Response:
        error = soap.SoapError("env:Receiver", "ter:Action", message, status=status)
        return web.Response(status=error.status, body=soap.fault_envelope(error),
                            content_type="application/soap+xml", charset="utf-8")

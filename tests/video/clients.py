"""Helpers the video tests share. ONVIF: the real client (onvif-zeep-async) against a farm's
camera, raw SOAP requests (WS-UsernameToken or HTTP Digest) for what the client cannot say,
and the reading of SOAP faults."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import aiohttp
import onvif
from lxml import etree
from onvif import ONVIFCamera

from emulators.testing import RunningFarm

T = TypeVar("T")

ONVIF_WSDL = str(Path(onvif.__file__).parent / "wsdl")
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
UT_PROFILE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
ONVIF_NS = {"tds": "http://www.onvif.org/ver10/device/wsdl",
            "trt": "http://www.onvif.org/ver10/media/wsdl",
            "tr2": "http://www.onvif.org/ver20/media/wsdl",
            "timg": "http://www.onvif.org/ver20/imaging/wsdl",
            "tt": "http://www.onvif.org/ver10/schema", "env": SOAP12}
# Each kind's administrator as its defaults make it.
ONVIF_ADMINS = {"instar-camera": ("admin", "instar"), "acti-camera": ("admin", "123456")}


def onvif_farm(tmp_path: Path, kind: str, **member: Any) -> RunningFarm:
    """A farm of one camera ``cam`` of ``kind`` (``member``: its further scenario keys)."""
    return RunningFarm.start({"version": 1, "name": "t", "emulators": [
        {"name": "cam", "kind": kind, "port": 0, **member}]}, tmp_path)


def onvif_url(farm: RunningFarm, index: int = 0) -> str:
    return str(farm.ready["emulators"][index]["urls"]["onvif"])


def onvif_run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a client coroutine on a loop of its own (the farm runs on another thread)."""
    return asyncio.run(coro)


def onvif_camera(url: str, user: str | None, password: str | None, **options: Any,
                 ) -> ONVIFCamera:
    """onvif-zeep-async's camera object for the device service at ``url``, with the WSDLs the
    package ships."""
    parsed = urlparse(url)
    options.setdefault("no_cache", True)
    return ONVIFCamera(parsed.hostname, parsed.port, user, password, ONVIF_WSDL, **options)


def onvif_token(user: str, password: str, *, digest: bool = True, created: str | None = None,
                nonce: bytes | None = None, raw_nonce: str | None = None) -> str:
    """A wsse:Security header with a UsernameToken (PasswordDigest or PasswordText)."""
    created = created if created is not None else dt.datetime.now(dt.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    nonce = nonce if nonce is not None else os.urandom(16)
    if digest:
        value = base64.b64encode(hashlib.sha1(nonce + created.encode()
                                              + password.encode()).digest()).decode()
        kind = "PasswordDigest"
    else:
        value, kind = password, "PasswordText"
    nonce_text = raw_nonce if raw_nonce is not None else base64.b64encode(nonce).decode()
    return (f'<wsse:Security xmlns:wsse="{WSSE}" xmlns:wsu="{WSU}"><wsse:UsernameToken>'
            f"<wsse:Username>{user}</wsse:Username>"
            f'<wsse:Password Type="{UT_PROFILE}#{kind}">{value}</wsse:Password>'
            f"<wsse:Nonce>{nonce_text}</wsse:Nonce><wsu:Created>{created}</wsu:Created>"
            f"</wsse:UsernameToken></wsse:Security>")


def onvif_envelope(body: str, header: str = "") -> bytes:
    """A SOAP 1.2 request around ``body`` (which may use the tds/trt/tr2/timg/tt prefixes)."""
    spaces = "".join(f' xmlns:{p}="{u}"' for p, u in ONVIF_NS.items())
    head = f"<env:Header>{header}</env:Header>" if header else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?><env:Envelope{spaces}>{head}'
            f"<env:Body>{body}</env:Body></env:Envelope>").encode()


async def onvif_post(url: str, data: bytes, *, action: str | None = None,
                     digest: tuple[str, str] | None = None,
                     headers: dict[str, str] | None = None,
                     method: str = "POST") -> tuple[int, dict[str, str], str]:
    """One raw request: (status, headers, body text). ``digest``: HTTP Digest credentials
    (aiohttp's own Digest middleware answers the challenge)."""
    content_type = "application/soap+xml; charset=utf-8"
    if action:
        content_type += f'; action="{action}"'
    sent = {"Content-Type": content_type, **(headers or {})}
    middlewares = (aiohttp.DigestAuthMiddleware(*digest),) if digest else ()
    async with aiohttp.ClientSession(middlewares=middlewares) as session, session.request(
            method, url, data=data, headers=sent) as response:
        text = await response.text(errors="replace")
        return response.status, dict(response.headers), text


def onvif_call(url: str, body: str, *, header: str = "", action: str | None = None,
               digest: tuple[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    return onvif_run(onvif_post(url, onvif_envelope(body, header), action=action,
                                digest=digest))


def onvif_service_url(device_url: str, service: str) -> str:
    return device_url.replace("/onvif/device_service", f"/onvif/{service}")


def onvif_fault(text: str) -> tuple[str, str, str | None, str]:
    """(code, subcode, subsubcode or None, reason) of a SOAP 1.2 fault reply."""
    root = etree.fromstring(text.encode())
    fault = root.find(f"{{{SOAP12}}}Body/{{{SOAP12}}}Fault")
    assert fault is not None, text
    values = [v.text or "" for v in fault.iter(f"{{{SOAP12}}}Value")]
    reason = fault.findtext(f"{{{SOAP12}}}Reason/{{{SOAP12}}}Text") or ""
    return values[0], values[1], values[2] if len(values) > 2 else None, reason


def onvif_body(text: str) -> Any:
    """The first element inside a SOAP 1.2 reply's Body."""
    root = etree.fromstring(text.encode())
    body = root.find(f"{{{SOAP12}}}Body")
    assert body is not None and len(body), text
    return body[0]

"""The Connection Service on the wire: read ``/connect-service/v2.0/certificates`` requests,
call the certificate model, shape the replies; and the public CA downloads (root, CRL)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .exceptions import InvalidArgument
from .gateway import CALLER
from .models.ca import AUTHORITIES, Authority
from .models.certificates import CertRecord
from .models.faults import Target
from .models.registry import Device, Registry
from .wire import MEMBER, envelope

_ABSENT = object()


# -- reading the request -------------------------------------------------------------------

async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise InvalidArgument("requestBody", "invalid") from None
    if not isinstance(body, dict):
        raise InvalidArgument("requestBody", "invalid")
    return body


def _int(body: dict[str, Any], name: str) -> int | None | object:
    """An integer field as Jackson reads one: a number or a numeric string; None when null."""
    value = body.get(name, _ABSENT)
    if value is _ABSENT or value is None:
        return value
    if isinstance(value, bool):
        raise InvalidArgument(name, "invalid")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return None
        try:
            return int(text, 10)
        except ValueError:
            pass
    raise InvalidArgument(name, "invalid")


def _valid_day(body: dict[str, Any]) -> int | None:
    value = _int(body, "validDay")
    if value is _ABSENT or value is None:
        return None
    assert isinstance(value, int)
    if value <= 0:
        raise InvalidArgument("validDay", "invalid")
    return value


def _authority(body: dict[str, Any]) -> Authority | None:
    value = body.get("issueAuthority")
    if value is None or value == "":
        return None
    if value not in AUTHORITIES:
        raise InvalidArgument("issueAuthority", "invalid")
    return value


def _csr(body: dict[str, Any]) -> str | None:
    value = body.get("csr")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidArgument("csr", "invalid")
    return value


class Call:
    """One certificate call, its query read: the device it names and the farm's now."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.member = request.app[MEMBER]
        query = request.query
        org_id = query.get("orgId", "").strip()
        if not org_id:
            raise InvalidArgument("orgId")
        self.org_id = org_id
        self.asset_id = query.get("assetId", "").strip() or None
        self.product_key = query.get("productKey", "").strip() or None
        self.device_key = query.get("deviceKey", "").strip() or None
        Registry.check_identifier(self.asset_id, self.product_key, self.device_key)
        self.now = self.member.clock.now()

    async def device(self, action: Target) -> Device:
        # Injected faults strike once the call is well formed, as a backend failure would.
        await self.member.check_faults(action)
        return self.member.registry.find(self.org_id, self.asset_id, self.product_key,
                                         self.device_key)


# -- the actions ----------------------------------------------------------------------------

def _issued(call: Call, record: CertRecord) -> dict[str, Any]:
    member = call.member
    root = member.roots[record.issue_authority]
    # The seed's reply: caCert without a final newline, cert with one, certSN a string.
    return {
        "certChainURL": member.chain_url(record.issue_authority),
        "caCert": root.pem.rstrip("\n"),
        "cert": record.cert,
        "certSN": str(record.cert_sn),
        "issueAuthority": record.issue_authority,
    }


async def apply(call: Call) -> web.Response:
    body = await _json_body(call.request)
    csr = _csr(body)
    if csr is None:
        raise InvalidArgument("csr")
    valid_day, authority = _valid_day(body), _authority(body) or "RSA"
    device = await call.device("apply")
    member = call.member
    record = await member.certs.apply(device, csr, valid_day, authority, call.now)
    await member.save()
    return envelope(_issued(call, record))


async def renew(call: Call) -> web.Response:
    body = await _json_body(call.request)
    cert_sn = _int(body, "certSn")
    if cert_sn is _ABSENT:
        raise InvalidArgument("certSn")
    csr, valid_day, authority = _csr(body), _valid_day(body), _authority(body)
    device = await call.device("renew")
    member = call.member
    record = await member.certs.renew(device, cert_sn, csr, valid_day,  # type: ignore[arg-type]
                                      authority, call.now)
    old = member.book.get(record.renewed_from) if record.renewed_from is not None else None
    if old is not None and old.revoked:  # renew_old_certificate: revoke
        member.access.revoked(old.cert_sn)
    await member.save()
    return envelope(_issued(call, record))


async def revoke(call: Call) -> web.Response:
    body = await _json_body(call.request)
    cert_sn = _int(body, "certSn")
    if cert_sn is _ABSENT or cert_sn is None:
        raise InvalidArgument("certSn")
    reason = _int(body, "reason")
    if reason is _ABSENT or reason is None:
        reason = 0
    device = await call.device("revoke")
    member = call.member
    await member.certs.revoke(device, cert_sn, reason, call.now,  # type: ignore[arg-type]
                              call.request.get(CALLER))
    member.access.revoked(int(cert_sn))  # type: ignore[call-overload]  # a live MQTT session it let in ends
    await member.save()
    return envelope(None)


def _listed(call: Call, record: CertRecord) -> dict[str, Any]:
    return {
        "certSN": str(record.cert_sn),
        "cert": record.cert,
        "certStatus": record.status(call.now),
        "issuer": record.issuer,
        "subject": record.subject,
        "signDate": record.sign_date,
        "effetiveDate": record.not_before,  # sic: EnOS's spelling
        "expireDate": record.not_after,
        "revoker": record.revoker,
        "revokerReason": record.revoke_reason,
        "isEnosCert": True,
        "issueAuthority": record.issue_authority,
    }


async def listing(call: Call) -> web.Response:
    device = await call.device("list")
    return envelope([_listed(call, r) for r in call.member.certs.listing(device)])


ACTIONS: dict[tuple[str, str], Callable[[Call], Awaitable[web.Response]]] = {
    ("POST", "apply"): apply,
    ("POST", "renew"): renew,
    ("POST", "revoke"): revoke,
    ("GET", "list"): listing,
}


async def certificates(request: web.Request) -> web.Response:
    action = request.query.get("action", "").strip()
    if not action:
        raise InvalidArgument("action")
    handler = ACTIONS.get((request.method, action))
    if handler is None:
        raise InvalidArgument("action", "invalid")
    return await handler(Call(request))


# -- the CA downloads -------------------------------------------------------------------------

def _root_authority(request: web.Request) -> Authority:
    authority = request.match_info["authority"]
    if authority not in AUTHORITIES:
        raise web.HTTPNotFound()
    return authority


async def ca_cert(request: web.Request) -> web.Response:
    member = request.app[MEMBER]
    pem = member.roots[_root_authority(request)].pem
    return web.Response(text=pem, content_type="application/x-pem-file")


async def ca_crl(request: web.Request) -> web.Response:
    member = request.app[MEMBER]
    authority = _root_authority(request)
    der = member.roots[authority].crl(member.certs.revoked_by(authority), member.clock.now())
    return web.Response(body=der, content_type="application/pkix-crl")

"""``GET /v1/certificates``: every certificate the farm's members hold (``Member.certificates``),
with subject, issuer, serial and validity judged on the farm clock: ``expired``, ``soon``
(within ``SOON_DAYS``), ``valid`` or ``not_yet_valid``. ``?member=`` narrows it (a shell
pattern). The dashboard's certificate view reads it; PEM downloads are its ``pem``."""

from __future__ import annotations

import datetime as dt
import fnmatch
from typing import Any

from aiohttp import web
from cryptography import x509

from .. import pki
from ..core.control_routes import FARM

routes = web.RouteTableDef()
SOON_DAYS = 30


def judged(entry: dict[str, Any], now: float) -> dict[str, Any]:
    doc = dict(entry)
    try:
        cert = pki.load_cert(entry["pem"])
    except (ValueError, TypeError):
        doc["validity"] = "unreadable"
        return doc
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    if moment < start:
        validity = "not_yet_valid"
    elif moment > end:
        validity = "expired"
    elif end - moment <= dt.timedelta(days=SOON_DAYS):
        validity = "soon"
    else:
        validity = "valid"
    doc.update(subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(),
               serial=format(cert.serial_number, "x"), not_before=start.isoformat(),
               not_after=end.isoformat(), validity=validity,
               ca=_is_ca(cert))
    return doc


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


@routes.get("/v1/certificates", allow_head=False)
async def list_certificates(request: web.Request) -> web.Response:
    farm = request.app[FARM]
    pattern = request.query.get("member")
    now = farm.clock.time()
    found = []
    for member in farm.members.values():
        if pattern and not fnmatch.fnmatchcase(member.name, pattern):
            continue
        for entry in member.certificates():
            found.append({"member": member.name, "kind": member.kind, **judged(entry, now)})
    return web.json_response({"certificates": found, "farm_time": now})

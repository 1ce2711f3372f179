"""Certificates the member issues itself for scenario devices that ask for one
(``auth_info.issue_certificate``), so that a certificate device is ready to connect without a
user first making a CA, uploading it and proving it (seed 003's flow).

One device CA per project (its record uploaded and verified, as the flow would leave it) and,
for each such device, a client certificate of that CA with ``CN=<device_id>``; the device's
fingerprint is the certificate's SHA-256. They are made once, at the member's first start,
and kept in its state: a reset or a restored snapshot gives the same ones back, so a device's
key files stay good. EC P-256 keys: made in microseconds, no executor needed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography.hazmat.primitives import hashes

from ... import pki

# Ten years: long enough that no test's clock jump expires them by accident; a test that
# wants an expired certificate makes its own.
VALID_DAYS = 3650


def ca_subject(project_id: str) -> Any:
    return pki.name(CN=f"IoTDA Emulator Device CA {project_id[:24]}", O="Emulator Farm", C="CN")


def issue_missing(issued: dict[str, Any], wanted: list[tuple[str, str]], now: float) -> bool:
    """Add to ``issued`` (``{"cas": {project: {cert, key}}, "devices": {device_id: {project_id,
    cert, key}}}``) what ``wanted`` ((project_id, device_id) pairs) lacks; True if anything
    was made."""
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    cas, devices = issued.setdefault("cas", {}), issued.setdefault("devices", {})
    made = False
    for project_id, device_id in wanted:
        if device_id in devices:
            continue
        if project_id not in cas:
            key = pki.ec_key()
            cert = pki.make_ca(ca_subject(project_id), key, days=VALID_DAYS, now=moment)
            cas[project_id] = {"cert": pki.cert_pem(cert), "key": pki.key_pem(key)}
        ca_cert = pki.load_cert(cas[project_id]["cert"])
        ca_key = pki.load_key(cas[project_id]["key"], trusted=True)
        key = pki.ec_key()
        cert = pki.issue(key.public_key(), pki.name(CN=device_id), ca_cert, ca_key,
                         days=VALID_DAYS, now=moment, client=True)
        devices[device_id] = {"project_id": project_id, "cert": pki.cert_pem(cert),
                              "key": pki.key_pem(key)}
        made = True
    return made


def fingerprint(cert_pem: str) -> str:
    """The SHA-256 fingerprint IoTDA records for a certificate device (hex, lower case)."""
    return pki.load_cert(cert_pem).fingerprint(hashes.SHA256()).hex()

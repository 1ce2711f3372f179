"""Helpers for the IoTDA tests: the accounts and options, raw HTTP with curl, real X.509."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from huaweicloudsdkiotda.v5 import IoTDAClient

from emulators import pki

AK = "IOTDAEMULATORAK00001"
SK = "IotdaEmulatorSecretKey000000000000000001"
PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
OTHER_AK = "OTHERACCOUNTAK000002"
OTHER_SK = "OtherAccountSecretKey0000000000000000002"
OTHER_PROJECT = "ffeeddccbbaa99887766554433221100"
TOKEN = "MIIEmulatorTokenForTests"
INSTANCE = "9c1a5f2e-7b3d-4e6f-8a9b-0c1d2e3f4a5b"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "iotda"


def fixture_json(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


OPTIONS: dict[str, Any] = {
    "credentials": [
        {"ak": AK, "sk": SK, "project_id": PROJECT},
        {"ak": OTHER_AK, "sk": OTHER_SK, "project_id": OTHER_PROJECT},
    ],
    "tokens": [{"token": TOKEN, "project_id": PROJECT}],
    "instances": [INSTANCE],
}


ClientFactory = Callable[..., IoTDAClient]


# -- raw HTTP --------------------------------------------------------------------------------------

def curl(url: str, *args: str) -> tuple[int, dict[str, str], Any]:
    """curl with the test token; returns status, headers (lower-case names) and JSON body."""
    done = subprocess.run(
        ["curl", "-sS", "-D", "-", "-H", f"X-Auth-Token: {TOKEN}", *args, url],
        capture_output=True, text=True, timeout=20, check=True)
    # text mode turns the header block's CRLFs into plain newlines
    head, _, body = done.stdout.partition("\n\n")
    status_line, *lines = head.split("\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, json.loads(body) if body else None


# -- certificates ---------------------------------------------------------------------------------

class CA:
    """A CA made in-process (the openssl-CLI flow lives in test_device_cas.py)."""

    def __init__(self, cn: str = "Device Root CA", *, key: pki.PrivateKey | None = None) -> None:
        self.key = key or pki.ec_key()
        self.cert = pki.make_ca(pki.name(CN=cn, O="Emulator Farm", C="CN"), self.key)
        self.pem = pki.cert_pem(self.cert)

    def sign(self, cn: str, *, key: pki.PrivateKey | None = None) -> x509.Certificate:
        subject_key = key or pki.ec_key()
        return pki.issue(subject_key.public_key(), pki.name(CN=cn), self.cert, self.key, days=30)


def server_identity(cn: str = "iotda-app.example.com", *, days: float = 365
                    ) -> tuple[x509.Certificate, pki.PrivateKey]:
    key = pki.ec_key()
    issuer = CA("Huawei Cloud Core Network Product CA")
    start = dt.datetime(2025, 12, 12, 12, 12, 12, tzinfo=dt.UTC)
    cert = pki.issue(key.public_key(), pki.name(CN=cn, O="Huawei", C="CN"), issuer.cert,
                     issuer.key, not_before=start, days=days, server=True,
                     dns_names=[cn])
    return cert, key

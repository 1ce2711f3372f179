"""Fixtures for the IoTDA tests: one emulator, the official SDK pointed at it, real X.509."""

from __future__ import annotations

import datetime as dt
import gc
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.region.region import Region
from huaweicloudsdkiotda.v5 import IoTDAClient

from emulators import pki
from emulators.testing import MemberHandle
from tests.sdk_clients import close_iotda

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


@pytest.fixture(autouse=True)
def _collect_sdk_error_connections() -> Iterator[None]:
    """The SDK raises from a requests hook before the body is read, so the connection of an
    error reply stays checked out until the exception's traceback cycle is collected."""
    yield
    gc.collect()


@pytest.fixture
def iotda(emulator_factory: Callable[..., MemberHandle]) -> MemberHandle:
    return emulator_factory("iotda", **OPTIONS)


ClientFactory = Callable[..., IoTDAClient]


@pytest.fixture
def make_client(iotda: MemberHandle) -> Iterator[ClientFactory]:
    """Build SDK clients the way IoTDA's docs do; every one is closed after the test."""
    made: list[IoTDAClient] = []

    def make(ak: str = AK, sk: str = SK, project_id: str = PROJECT, *,
             derived: bool = False, region: str = "cn-north-4",
             endpoint: str | None = None) -> IoTDAClient:
        endpoint = endpoint or iotda.url
        credentials = BasicCredentials(ak, sk, project_id)
        builder = IoTDAClient.new_builder().with_credentials(credentials)
        if derived:
            # The standard/enterprise-edition recipe: derived AK/SK on an instance domain.
            credentials.with_derived_predicate(BasicCredentials.get_default_derived_predicate())
            builder = builder.with_region(Region(region, endpoint))
        else:
            builder = builder.with_endpoints([endpoint])
        client = builder.build()
        made.append(client)
        return client

    yield make
    for client in made:
        close_iotda(client)


@pytest.fixture
def client(make_client: ClientFactory) -> IoTDAClient:
    return make_client()


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

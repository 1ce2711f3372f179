"""Fixtures for the IoTDA tests: one emulator, the official SDK pointed at it, real X.509."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.region.region import Region
from huaweicloudsdkiotda.v5 import IoTDAClient

from emulators.testing import MemberHandle, RemoteMember
from tests.iotda.clients import (
    AK,
    DEVICE,
    OPTIONS,
    PROJECT,
    SECRET,
    SK,
    ClientFactory,
    SdkDevice,
    mqtt_port,
)
from tests.sdk_clients import close_iotda


@pytest.fixture(autouse=True)
def _collect_sdk_error_connections() -> Iterator[None]:
    """The SDK raises from a requests hook before the body is read, so the connection of an
    error reply stays checked out until the exception's traceback cycle is collected."""
    yield
    gc.collect()


@pytest.fixture
def iotda(emulator_factory: Callable[..., MemberHandle]) -> MemberHandle:
    return emulator_factory("iotda", **OPTIONS)


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


# -- MQTT: a test module that drives devices defines its own ``iotda`` (MQTT_OPTIONS) ------------

@pytest.fixture
def ca_file(iotda: MemberHandle | RemoteMember, tmp_path: Path) -> Path:
    """The CA file a device is given: the farm CA that issued the member's server certificate
    (the platform hands devices its root.pem the same way)."""
    path = tmp_path / "root.pem"
    if isinstance(iotda, RemoteMember):  # a farm run from outside: its ready document says
        path.write_text(iotda.farm.ready["ca"]["pem"])
    else:
        path.write_text(iotda.member.ctx.ca.pem)
    return path


@pytest.fixture
def devices(iotda: MemberHandle, ca_file: Path) -> Iterator[Callable[..., SdkDevice]]:
    """Make SDK-configured devices for the member (TLS by default); all closed afterwards."""
    made: list[SdkDevice] = []

    def make(device_id: str = DEVICE, *, tls: bool = True, **kwargs: Any) -> SdkDevice:
        kwargs.setdefault("secret", SECRET if "cert_file" not in kwargs else None)
        device = SdkDevice(device_id, iotda.host, mqtt_port(iotda, "mqtts" if tls else "mqtt"),
                           ca_file=ca_file, tls=tls, **kwargs)
        made.append(device)
        return device

    yield make
    for device in made:
        device.close()

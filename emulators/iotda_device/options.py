"""The ``iotda-device`` scenario keys: which IoTDA member it connects to, as which device, and
what it reports."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..core.member import KindOptions


class IotdaDeviceOptions(KindOptions):
    # The IoTDA member (its scenario name) the device connects to.
    cloud: str = Field(min_length=1)
    # The product the device belongs to: a product of the cloud's project.
    product_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,36}$")
    # The node id (device id: {product_id}_{node_id}); the member's name when not given, so
    # that every member of a fleet is its own device.
    node_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    secret: str = Field(pattern=r"^[A-Za-z0-9_-]{8,32}$")
    # True: the farm registers the device on the cloud (as AddDevice with this secret would)
    # whenever it is missing before a connection attempt, e.g. after the cloud's reset.
    auto_register: bool = True
    # 8883 with TLS (the farm CA's certificate, no host name check, as the vendor SDK) or
    # the plain port (the device is registered with secure_access false then).
    tls: bool = True
    # "_1_" client ids (the platform checks the hour) or "_0_".
    check_timestamp: bool = True
    # The device's own clock against the farm clock, seconds (a skewed device for demos).
    clock_offset: float = 0.0
    keep_alive: int = Field(default=120, ge=1, le=65535)  # the SDK's default
    # A properties report of ``properties`` under ``service_id`` on connect and every
    # ``report_seconds`` (real seconds).
    report_seconds: float = Field(default=60.0, ge=0.5)
    service_id: str = Field(default="default", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    properties: dict[str, Any] = Field(default_factory=dict)
    # The SDK's reconnect back-off: from 1 s, doubling, at most 30 s (min/max_backoff).
    min_backoff: float = Field(default=1.0, gt=0)
    max_backoff: float = Field(default=30.0, gt=0)

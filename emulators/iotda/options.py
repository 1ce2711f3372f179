"""The ``iotda`` scenario keys: the account (AK/SK pairs, tokens, project ids, instances,
region) and the platform's limits.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..core.member import KindOptions
from ..core.quirks.format import Profile as QuirkProfile
from ..core.quirks.replay import QuirkFile
from ..core.replyheaders import WebServerOptions


class AkSk(KindOptions):
    """One permanent access key of the account, bound to the project it works in."""

    ak: str = Field(min_length=1)
    sk: str = Field(min_length=1)
    project_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")


class AuthToken(KindOptions):
    """An IAM token (``X-Auth-Token``) the gateway accepts, and the project it is scoped to."""

    token: str = Field(min_length=1)
    project_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")


class ScenarioProduct(KindOptions):
    """A product the member starts with (``products:``): AddProduct's body, id required."""

    product_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,36}$")
    name: str = Field(min_length=1, max_length=64)
    device_type: str = Field(default="Device", min_length=1, max_length=32)
    protocol_type: str = "MQTT"
    data_format: Literal["json", "binary"] = "json"
    service_capabilities: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"service_id": "default", "service_type": "default"}],
        min_length=1)
    # The project the product belongs to; the first credential's when not given.
    project_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+$")


class ScenarioAuthInfo(KindOptions):
    auth_type: Literal["SECRET", "CERTIFICATES"] = "SECRET"
    secret: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{8,32}$")
    fingerprint: str | None = Field(
        default=None, pattern=r"^([0-9A-Fa-f]{40}|[0-9A-Fa-f]{64})?$")
    secure_access: bool = True
    timeout: int = Field(default=0, ge=0, le=2_147_483_647)
    # Not AddDevice's: the member issues this CERTIFICATES device a client certificate of a
    # device CA of its project (uploaded and verified for it), and records its fingerprint; the
    # control plane hands out the certificate and its key (models/issued.py).
    issue_certificate: bool = False

    @model_validator(mode="after")
    def _issue_for_certificates(self) -> ScenarioAuthInfo:
        if self.issue_certificate and self.auth_type != "CERTIFICATES":
            raise ValueError("issue_certificate is for auth_type CERTIFICATES")
        if self.issue_certificate and self.fingerprint:
            raise ValueError("issue_certificate sets the fingerprint: give none")
        return self


class ScenarioDevice(KindOptions):
    """A device the member starts with (``devices:``): AddDevice's body."""

    node_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    product_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,36}$")
    device_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,128}$")
    device_name: str | None = Field(default=None, min_length=1, max_length=256)
    description: str | None = None
    auth_info: ScenarioAuthInfo = Field(default_factory=ScenarioAuthInfo)
    frozen: bool = False
    project_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+$")


Connack = Field(default=5, ge=1, le=5)


class MqttConnack(KindOptions):
    """The CONNACK return code of each way a device's CONNECT is refused. No source names
    them (the spec digest): 5 "not authorised" unless the credentials themselves are wrong,
    which answer 4 "bad user name or password" (the vendor SDK then stops retrying), and a
    client id that is not the SDK's form, 2 "identifier rejected" (what MQTT has for it)."""

    keep_alive: int = Connack  # keep-alive outside 30..1200 s
    bad_client_id: int = Field(default=2, ge=1, le=5)
    unknown_device: int = Field(default=4, ge=1, le=5)
    bad_password: int = Field(default=4, ge=1, le=5)
    clock_skew: int = Connack  # "_1_" client id whose hour is not the farm clock's
    frozen: int = Connack
    insecure: int = Connack  # a secure_access device on the plain listener
    no_certificate: int = Connack  # a CERTIFICATES device without a client certificate
    unknown_ca: int = Connack  # its certificate chains to a CA of another project
    unverified_ca: int = Connack
    expired_certificate: int = Connack  # the device's or its CA's, on the farm clock
    fingerprint: int = Connack  # not the device's registered fingerprint


class ForwardingOptions(KindOptions):
    """Data forwarding (rules, HTTP push, AMQP queues): the push mechanism's numbers as the
    user guide gives them, and the bounds the guide leaves to the emulator."""

    # "No response within 15 seconds or a non-200 code: the push failed, the message is
    # discarded"; "10 consecutive failures put the URL's host on a blocklist"; "every 3
    # minutes" the platform tries it again.
    http_timeout: float = Field(default=15.0, gt=0, le=600)
    blocklist_after: int = Field(default=10, ge=1)
    blocklist_retry: float = Field(default=180.0, gt=0)  # seconds of the farm clock
    # A blocklisted host's backlog: "the last 24 hours or 1 GB" (the backlog policy's
    # defaults, 86399 s and 1073741823 bytes); the oldest goes first.
    backlog_seconds: float = Field(default=86399.0, ge=0)
    backlog_bytes: int = Field(default=1_073_741_823, ge=0)
    # Chosen: pushes that may wait for one host that is slow but not blocklisted; beyond,
    # one is dropped and journalled (the flow control of a real instance drops too).
    http_queue_limit: int = Field(default=10_000, ge=1)
    # Chosen: pushes in flight to one host at once (the guide's default flow control is 800
    # pushes a second; one at a time would not reach it against a target 2 ms away).
    http_concurrency: int = Field(default=8, ge=1, le=256)
    # A PEM file of CAs an https:// push target may chain to, besides the system's store
    # (relative to the scenario file). An action's cert_id names a device CA too.
    ca_file: str | None = None
    # Chosen quotas (no source gives them for routing rules).
    rule_quota: int = Field(default=100, ge=0)
    actions_per_rule: int = Field(default=10, ge=0)

    @field_validator("ca_file")
    @classmethod
    def _readable_ca(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        base = (info.context or {}).get("scenario_dir")
        if not path.is_absolute():
            path = Path(base or Path.cwd()) / path
        try:
            ssl.create_default_context().load_verify_locations(cafile=str(path))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"{path}: not a readable PEM file of CA certificates ({exc})"
                             ) from None
        return str(path)


class AmqpLimits(KindOptions):
    """The AMQPS listener's numbers (``amqp.py`` gives the documented ones)."""

    # "The receiver link must be set up within 15 seconds ... otherwise the platform closes
    # the connection."
    attach_deadline: float = Field(default=15.0, gt=0, le=3600)
    # The idle time-out the server announces (s; 0: none). The guide's connection string asks
    # for amqp.idleTimeout=8000 (ms) on the client side; 60 s is chosen for the server's.
    idle_timeout: float = Field(default=60.0, ge=0, le=3600)
    # Chosen: messages a queue holds (waiting and unsettled) while no receiver takes them;
    # past it the oldest is dropped and journalled (the guide's bound is "24 hours, 1 GB").
    queue_limit: int = Field(default=10_000, ge=1, le=10_000_000)


DEFAULT_KEY = AkSk(ak="IOTDAEMULATORAK00001", sk="IotdaEmulatorSecretKey000000000000000001",
                   project_id="0a1b2c3d4e5f60718293a4b5c6d7e8f9")


class IotdaOptions(WebServerOptions):
    # Every reply carries a Date, as an HTTP/1.1 origin server with a clock must (RFC 9110
    # 6.6.1) and the cloud's gateway does; the farm clock's time. No Server line by default:
    # no source shows the gateway's.
    reply_date: bool = True
    credentials: list[AkSk] = Field(default_factory=lambda: [DEFAULT_KEY], min_length=1)
    tokens: list[AuthToken] = Field(default_factory=list)
    # The region in V11-HMAC-SHA256 credential scopes (``<date>/<region>/iotdm``).
    region: str = "cn-north-4"
    # When set, an ``Instance-Id`` header must name one of these.
    instances: list[str] = Field(default_factory=list)
    # With instances set: refuse requests that carry no ``Instance-Id`` at all.
    require_instance_id: bool = False
    # Seed 004: "The server certificate quota is 2"; seed 003 / API reference: 100 CAs.
    server_certificate_quota: int = Field(default=2, ge=0)
    # Whose name ``certificate_owner`` shows: the subject (what "owner" means), or the issuer
    # (what seed 004's example reply shows: owner and issuer identical, CN "iotda").
    server_certificate_owner: Literal["subject", "issuer"] = "subject"
    device_ca_quota: int = Field(default=100, ge=0)
    # Seed 003: "The verification code is valid for seven days."
    verify_code_days: float = Field(default=7.0, gt=0)
    # The resource space a CA uploaded without ``app_id`` belongs to.
    default_app_id: str = Field(default="default", pattern=r"^[A-Za-z0-9_-]{1,36}$")
    # Updating a CA (provisioning, OCSP) makes it unverified again.
    update_resets_verification: bool = True
    # How far X-Sdk-Date may be from the farm clock, in seconds.
    max_clock_skew: float = Field(default=900.0, gt=0)
    # Which clocks a client's own timestamp (X-Sdk-Date, a "_1_" client id's hour) may fit:
    # "wall-or-farm" (default) the farm clock or the host's wall clock, since the vendor SDKs
    # stamp with the host's clock and a test that moves the farm clock would otherwise lock
    # them out; "farm" only the farm clock (stricter: a moved clock refuses the SDK).
    freshness_clocks: Literal["wall-or-farm", "farm"] = "wall-or-farm"
    # The products and devices of the initial state (what a reset returns to).
    products: list[ScenarioProduct] = Field(default_factory=list)
    devices: list[ScenarioDevice] = Field(default_factory=list)
    # Device access (MQTT 3.1.1): the plain and the TLS listener on the member's address
    # (0: a free port; null: none). The vendor device SDK turns TLS on only for port 8883.
    mqtt_port: int | None = Field(default=1883, ge=0, le=65535)
    mqtts_port: int | None = Field(default=8883, ge=0, le=65535)
    # How far (seconds) a "_1_" client id's hour may be outside the farm clock's hour. No
    # source gives the platform's tolerance; an hour either side is chosen.
    mqtt_clock_tolerance: float = Field(default=3600.0, ge=0)
    mqtt_connack: MqttConnack = Field(default_factory=MqttConnack)
    # Spec: "100 subscriptions per connection"; a 101st is answered 0x80 (failure).
    mqtt_max_subscriptions: int = Field(default=100, ge=1)
    # Reported properties a device shadow keeps that the product model does not define
    # (the platform stores what complies with the model; the emulator keeps others too, up to
    # this many per device, and journals what it drops beyond). 0: only modelled ones.
    shadow_unmodelled_properties: int = Field(default=1000, ge=0, le=1_000_000)
    # How long CreateCommand, UpdateProperties and ListProperties wait for the device's
    # response before IOTDA.014111 (chosen: no public source gives the platform's).
    command_timeout: float = Field(default=20.0, gt=0, le=600)
    # The broker's bounds on what a client costs (core/mqtt/broker.py; no source gives the
    # platform's): how long a TLS handshake may take (and, as long again, wait for one of
    # ``mqtt_max_handshakes`` slots), and how long a write to a device that stopped reading
    # may wait before its session is closed.
    mqtt_handshake_timeout: float = Field(default=15.0, gt=0, le=600)
    mqtt_max_handshakes: int = Field(default=128, ge=1)
    mqtt_write_timeout: float = Field(default=30.0, gt=0, le=600)
    # A quirk profile of a real tenant (a file; docs/QUIRKS.md): its recorded replies replace
    # the member's own for the probe's requests, after the member's own handler ran.
    quirks: Annotated[QuirkProfile | None, QuirkFile("iotda")] = None
    forwarding: ForwardingOptions = Field(default_factory=ForwardingOptions)
    # The application side's AMQP 1.0 over TLS (data forwarding's AMQP_FORWARDING queues):
    # Huawei's port 5671 (0: a free port; null: none).
    amqps_port: int | None = Field(default=5671, ge=0, le=65535)
    amqp: AmqpLimits = Field(default_factory=AmqpLimits)

    @model_validator(mode="after")
    def _devices_name_products(self) -> IotdaOptions:
        """Every scenario device names a scenario product of its project; ids are unique."""
        default = self.credentials[0].project_id
        products = [(p.project_id or default, p.product_id) for p in self.products]
        if len(set(products)) != len(products):
            raise ValueError("products: a product_id is listed twice")
        devices = set()
        for device in self.devices:
            project = device.project_id or default
            if (project, device.product_id) not in products:
                raise ValueError(f"devices: node {device.node_id!r} names product "
                                 f"{device.product_id!r}, which products: does not list")
            key = (project, device.device_id or f"{device.product_id}_{device.node_id}")
            if key in devices:
                raise ValueError(f"devices: device {key[1]!r} is listed twice")
            devices.add(key)
        return self

"""The ``enos`` scenario keys: the registry, the bound certificates, the apps, the CA and the
behaviour switches. Cross references are checked here so ``emulators validate`` reports them.

Record fields use EnOS's own names (orgId, productKey...); the emulator's switches are
snake_case.
"""

from __future__ import annotations

import string
from typing import Annotated, Literal

from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import Field, field_validator, model_validator

from .. import pki
from ..core.member import KindOptions
from ..core.quirks.format import Profile as QuirkProfile
from ..core.quirks.replay import QuirkFile
from ..core.replyheaders import WebServerOptions
from .exceptions import ConnectError
from .models.ca import check_root
from .models.certificates import check_csr

_HEX = set(string.hexdigits)


class OrgOptions(KindOptions):
    orgId: str = Field(min_length=1)
    name: str = ""


class ProductOptions(KindOptions):
    orgId: str = Field(min_length=1)
    productKey: str = Field(min_length=1)
    name: str = ""
    # Whether devices of this product may hold certificates (apply and renew need it).
    biDirectionalAuth: bool = True
    # The product's maximum certificate validity in days; a larger validDay fails.
    maxValidDay: int = Field(default=3650, ge=1, le=36500)
    # The product secret devices use for dynamic activation (MQTT securemode 3).
    productSecret: str | None = Field(default=None, min_length=1, max_length=64)


class DeviceOptions(KindOptions):
    orgId: str = Field(min_length=1)
    assetId: str = Field(min_length=1)
    productKey: str = Field(min_length=1)
    deviceKey: str = Field(min_length=1)
    name: str = ""
    # The device secret for MQTT login (securemode 2); without one the device must activate
    # dynamically with its product's secret (securemode 3) first.
    deviceSecret: str | None = Field(default=None, min_length=1, max_length=64)


class BoundCertificateOptions(KindOptions):
    """A certificate bound to a device from the start, issued by the emulator's CA at first start:
    from ``csr``, or for ``key`` (a PEM private key), or for a key the emulator makes (and
    shows in the member's state) when neither is given."""

    assetId: str = Field(min_length=1)
    csr: str | None = None
    key: str | None = None
    issueAuthority: Literal["RSA", "ECC"] = "RSA"
    validDay: int | None = Field(default=None, ge=1)
    # Subject for ``key`` or a made key; default C=CN, ST/L=Shanghai, O/OU=EnOS, CN=deviceKey.
    subject: dict[str, str] | None = None

    @model_validator(mode="after")
    def _material(self) -> BoundCertificateOptions:
        if self.csr and self.key:
            raise ValueError("give csr or key, not both")
        if self.csr:
            try:
                check_csr(self.csr, self.issueAuthority)
            except ConnectError as exc:
                raise ValueError(f"csr: {exc.message}") from None
        if self.key:
            try:
                key = pki.load_key(self.key)
            except pki.PkiError as exc:
                raise ValueError(f"key: {exc}") from None
            from .models.ca import authority_of_key

            if authority_of_key(key) != self.issueAuthority:
                raise ValueError(f"key: not a key for issueAuthority {self.issueAuthority}")
        if self.subject:
            unknown = set(self.subject) - set(pki.NAME_FIELDS)
            if unknown:
                raise ValueError(f"subject: unknown fields {sorted(unknown)}")
            try:
                pki.name(**self.subject)
            except ValueError as exc:
                raise ValueError(f"subject: {exc}") from None
        return self


class AppOptions(KindOptions):
    """An application's credentials at the API gateway."""

    appKey: str
    appSecret: str
    # The organisation the app belongs to: a bare call carrying the SDK's unreadable token is
    # taken as a call of an app of the call's organisation (its orgId).
    orgId: str | None = None

    @field_validator("appKey", "appSecret")
    @classmethod
    def _sdk_form(cls, value: str) -> str:
        # enos-poseidon derives a PIN from the hex after the first '-' of both: real EnOS
        # keys are UUIDs, and anything else crashes the SDK before it sends a byte.
        parts = value.split("-")
        if len(parts) < 2 or not parts[1] or not set(parts[1]) <= _HEX:
            raise ValueError("must look like '<x>-<hex>...' (a UUID), as enos-poseidon needs")
        return value


class RootOptions(KindOptions):
    cert: str
    key: str


class CaOptions(KindOptions):
    """Roots supplied by the scenario; a missing one is made at first start."""

    rsa: RootOptions | None = None
    ecc: RootOptions | None = None
    # Validity of roots the emulator makes (the seed's root: ten years).
    validDays: int = Field(default=3650, ge=1, le=36500)

    @model_validator(mode="after")
    def _roots(self) -> CaOptions:
        for authority, root in (("RSA", self.rsa), ("ECC", self.ecc)):
            if root is not None:
                problem = check_root(authority, root.cert, root.key)  # type: ignore[arg-type]
                if problem:
                    raise ValueError(f"{authority.lower()}: {problem}")
        return self


class FaultOptions(KindOptions):
    """Failures for clients' retry paths: the first ``next_calls`` calls fail, then each fails
    with ``probability``. ``service`` picks the failure: the 99500 of the certificate, product
    or IoT Hub service; "ca", the certificate service's own error for the action (Call ca
    error / Renew / Revoke / Query cert is failed); "gateway", 1005 from the token service."""

    next_calls: int = Field(default=0, ge=0)
    probability: float = Field(default=0.0, ge=0.0, le=1.0)
    service: Literal["certificate", "product", "iothub", "ca", "gateway"] = "certificate"
    seed: int | None = None


class EnosConnack(KindOptions):
    """The CONNACK code of each refusal: no source gives EnOS's; 4 ("bad user name or
    password") where the credentials are wrong, 5 ("not authorised") otherwise."""

    bad_client_id: int = Field(default=2, ge=1, le=5)
    unknown_device: int = Field(default=4, ge=1, le=5)
    bad_signature: int = Field(default=4, ge=1, le=5)
    not_activated: int = Field(default=5, ge=1, le=5)  # securemode 2 without a device secret
    already_activated: int = Field(default=5, ge=1, le=5)  # securemode 3 for an active one
    no_product_secret: int = Field(default=5, ge=1, le=5)
    insecure: int = Field(default=5, ge=1, le=5)  # a bi-directional product on 11883
    no_certificate: int = Field(default=5, ge=1, le=5)
    certificate: int = Field(default=5, ge=1, le=5)  # not this device's, revoked or expired
    # The client id string of another device's live session: MQTT's "Identifier rejected"
    # (3.1.1, 3.2.2.3) rather than a take-over, since EnOS knows a device by its login.
    client_id_in_use: int = Field(default=2, ge=1, le=5)


class EnosOptions(WebServerOptions):
    # Every reply carries a Date, as an HTTP/1.1 origin server with a clock must (RFC 9110
    # 6.6.1) and the cloud's gateway does; the farm clock's time. No Server line by default:
    # no source shows the gateway's.
    reply_date: bool = True
    orgs: list[OrgOptions] = []
    products: list[ProductOptions] = []
    devices: list[DeviceOptions] = []
    certificates: list[BoundCertificateOptions] = []
    apps: list[AppOptions] = []
    ca: CaOptions = CaOptions()
    faults: FaultOptions = FaultOptions()
    # Access token lifetime at the gateway, seconds (the spec's "expire": 7200).
    token_expire: int = Field(default=7200, ge=1)
    # Business calls must pass the gateway (a signed call, or an SDK token); false = open.
    require_auth: bool = True
    # Accept enos-poseidon's own tokens on bare calls (false: only tokens the token service
    # issued).
    accept_sdk_tokens: bool = True
    # How such a token is judged. "form": the SDK as published encrypts it to Envision's key,
    # which nobody else can read, so a token of that form (one ciphertext block of Envision's
    # key in canonical base64) is let in as a call of the gateway's app; a token encrypted to
    # this member's key is opened and checked as in "farm-key". "farm-key" (stricter): only a
    # token encrypted to this member's key (``sdkPublicKey`` in the ready file, set as
    # ``poseidon.poseidon.pubkey``) and naming an app above with its secret.
    sdk_token_check: Literal["form", "farm-key"] = "form"
    # That key (PEM, RSA of at least 2048 bits); default: one made at first start and kept
    # with the CA (a reset or a restart keeps it).
    sdk_token_key: str | None = None
    # HTTP status of a gateway refusal on a business call (200 lets the SDK read apim_status).
    gateway_error_status: int = Field(default=200, ge=200, le=599)
    # Also serve HTTPS (certificate from the farm's local CA) on this port; 0 = a free port.
    https_port: int | None = Field(default=None, ge=0, le=65535)
    # Where certChainURL and the certificates' CRL URL point; default the emulator itself
    # (its HTTPS address when it has one).
    public_url: str | None = None
    # The first certSN a farm hands out (the seed's sample renews 52770 into 52771).
    cert_sn_start: int = Field(default=52770, ge=1)
    # Device access (MQTT 3.1.1): 11883 plain with secret login, 18883 TLS (a client
    # certificate required for bi-directional products); 0 a free port, null none.
    mqtt_port: int | None = Field(default=11883, ge=0, le=65535)
    mqtts_port: int | None = Field(default=18883, ge=0, le=65535)
    mqtt_connack: EnosConnack = Field(default_factory=lambda: EnosConnack())
    # Envision documents MQTT 3.1.1 only, on both ports: a 3.1 CONNECT (``MQIsdp``, level 3)
    # is answered CONNACK 1, unacceptable protocol version [MQTT-3.1.2-2], as MQTT 5 is.
    # true: 3.1 is served as 3.1.1 (whose packets are the same bytes for all EnOS uses).
    mqtt_accept_31: bool = False
    # Subscriptions one MQTT session may hold; a SUBSCRIBE beyond it is granted 0x80 for each
    # filter over. No EnOS source gives a number; the SDK holds one reply topic per request
    # kind per device it publishes for, so a gateway's grows with its sub-devices.
    mqtt_max_subscriptions: int = Field(default=1000, ge=1, le=1_000_000)
    # A request's ``_reply`` reaches a session only through a subscription matching it (what
    # MQTT does; enos-mqtt-sdk-python subscribes to each reply topic before its request).
    # false: every reply is sent to the requesting session, subscribed or not.
    replies_need_subscription: bool = True
    # How long a service invocation or measure point set waits for the device's reply.
    command_timeout: float = Field(default=10.0, gt=0, le=600)
    # Renew leaves the old certificate valid ("keep") or revokes it as superseded.
    renew_old_certificate: Literal["keep", "revoke"] = "keep"
    # validDay left out while the product allows less than 730 days: use the product's
    # maximum ("cap"), fail as for a validDay above it ("fail"), or issue 730 days ("keep").
    default_valid_day_over_max: Literal["cap", "fail", "keep"] = "cap"
    # A quirk profile of a real tenant (a file; docs/QUIRKS.md): its recorded replies replace
    # the member's own for the probe's requests, after the member's own handler ran.
    quirks: Annotated[QuirkProfile | None, QuirkFile("enos")] = None

    @field_validator("sdk_token_key")
    @classmethod
    def _rsa_key(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            key = pki.load_key(value)
        except pki.PkiError as exc:
            raise ValueError(str(exc)) from None
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
            raise ValueError("must be an RSA private key of at least 2048 bits "
                             "(enos-poseidon encrypts to RSA with OAEP)")
        return value

    @model_validator(mode="after")
    def _references(self) -> EnosOptions:
        orgs = {o.orgId for o in self.orgs}
        if len(orgs) != len(self.orgs):
            raise ValueError("orgs: duplicate orgId")
        products = set()
        for p in self.products:
            if p.orgId not in orgs:
                raise ValueError(f"products: {p.productKey!r} names unknown org {p.orgId!r}")
            if (p.orgId, p.productKey) in products:
                raise ValueError(f"products: duplicate productKey {p.productKey!r}")
            products.add((p.orgId, p.productKey))
        assets, keys = set(), set()
        for d in self.devices:
            if (d.orgId, d.productKey) not in products:
                raise ValueError(f"devices: {d.assetId!r} names unknown product "
                                 f"{d.productKey!r} of org {d.orgId!r}")
            if d.assetId in assets:
                raise ValueError(f"devices: duplicate assetId {d.assetId!r}")
            if (d.orgId, d.productKey, d.deviceKey) in keys:
                raise ValueError(f"devices: duplicate deviceKey {d.deviceKey!r}")
            assets.add(d.assetId)
            keys.add((d.orgId, d.productKey, d.deviceKey))
        max_days = {d.assetId: p.maxValidDay for d in self.devices for p in self.products
                    if (p.orgId, p.productKey) == (d.orgId, d.productKey)}
        for c in self.certificates:
            if c.assetId not in assets:
                raise ValueError(f"certificates: unknown device {c.assetId!r}")
            if c.validDay is not None and c.validDay > max_days[c.assetId]:
                raise ValueError(f"certificates: validDay {c.validDay} of {c.assetId!r} is "
                                 f"above its product's maxValidDay {max_days[c.assetId]}")
        app_keys = [a.appKey for a in self.apps]
        if len(set(app_keys)) != len(app_keys):
            raise ValueError("apps: duplicate appKey")
        for a in self.apps:
            if a.orgId is not None and a.orgId not in orgs:
                raise ValueError(f"apps: {a.appKey!r} names unknown org {a.orgId!r}")
        return self

"""Products and devices (IoTDA's device management): registration, freezing, secrets and
fingerprints, the device shadow (desired and reported), messages down and up.

A device is ``INACTIVE`` until it first connects over MQTT (``access.py``), then ``ONLINE``
while a session is open and ``OFFLINE`` after; ``FROZEN`` overrides all three.
No HTTP and no MQTT here: the models take plain values and raise the typed errors of
``exceptions``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import itertools
import json
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ...core.state import EncodedRecords
from ..exceptions import (
    DeviceExists,
    DeviceNotFound,
    DeviceOffline,
    InvalidInput,
    ProductExists,
    ProductNotFound,
)
from .common import IdSource, PageQuery, bool_field, iotda_date, paginate, text_field

# The API reference: ids and node ids of letters, digits, "_" and "-".
PRODUCT_ID = re.compile(r"[A-Za-z0-9_-]{1,36}")
DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
NODE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
SECRET = re.compile(r"[A-Za-z0-9_-]{8,32}")
FINGERPRINT = re.compile(r"[0-9A-Fa-f]{40}|[0-9A-Fa-f]{64}")
SERVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
APP_ID = re.compile(r"[A-Za-z0-9_-]{1,36}")
# Any printable text; no control characters.
NAME = re.compile(r"[^\x00-\x1f\x7f]+")
PROTOCOLS = ("MQTT", "CoAP", "HTTP", "HTTPS", "Modbus", "ONVIF", "OPC-UA", "OPC-DA", "Other",
             "TCP", "UDP")
DATA_FORMATS = ("json", "binary")
AUTH_TYPES = ("SECRET", "CERTIFICATES")
SECRET_TYPES = ("PRIMARY", "SECONDARY")
MAX_TIMEOUT = 2_147_483_647
MESSAGES_KEPT = 20  # spec: ListDeviceMessages keeps the last 20 per device
# Chosen: a message is cached for an offline device at most a day ("最长缓存时间24小时"), the
# whole day when the request gives no ttl.
DEFAULT_TTL_MINUTES = 1440
MAX_SHADOW_SERVICES = 64  # chosen bound on one shadow update
# Chosen: reported properties outside the product model one shadow keeps (the option
# shadow_unmodelled_properties); a device reporting new names without end grew its shadow
# by 370 MB in 40 s.
UNMODELLED_KEPT = 1000


def now_text(now: float) -> str:
    return _second_text(int(now))


@functools.lru_cache(maxsize=8)
def _second_text(second: int) -> str:
    # The format has whole seconds: a report a second formats its time once (bench/mqtt.py).
    return iotda_date(datetime.fromtimestamp(second, UTC))


def new_secret() -> str:
    return secrets.token_hex(16)


def _unmodelled(device: Device, model: dict[str, frozenset[str]]) -> int:
    """How many reported properties of ``device``'s shadow its product model does not name."""
    return sum(1 for sid, entry in device.shadow.items()
               for name in entry.get("reported") or () if name not in model.get(sid, ()))


def _int_field(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{name} must be an integer {low}..{high}")
    return value


def _choice(body: dict[str, Any], name: str, choices: tuple[str, ...], default: str | None
            ) -> str | None:
    value = body.get(name)
    if value is None:
        return default
    if value not in choices:
        raise InvalidInput(f"{name} must be one of {choices}")
    return str(value)


def _object(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = body.get(name)
    if value is not None and not isinstance(value, dict):
        raise InvalidInput(f"{name} must be an object")
    return value


# -- products ------------------------------------------------------------------------------------

@dataclass
class Product:
    product_id: str
    project_id: str
    app_id: str
    name: str
    device_type: str
    protocol_type: str
    data_format: str
    service_capabilities: list[dict[str, Any]]
    manufacturer_name: str | None
    industry: str | None
    description: str | None
    create_time: str

    def detail(self) -> dict[str, Any]:
        return {"app_id": self.app_id, "app_name": self.app_id, "product_id": self.product_id,
                "name": self.name, "device_type": self.device_type,
                "protocol_type": self.protocol_type, "data_format": self.data_format,
                "manufacturer_name": self.manufacturer_name, "industry": self.industry,
                "description": self.description,
                "service_capabilities": self.service_capabilities,
                "create_time": self.create_time}

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def check_capabilities(value: Any) -> list[dict[str, Any]]:
    """Stored as given; each entry must at least be an object with a ``service_id``."""
    if not isinstance(value, list) or not value:
        raise InvalidInput("service_capabilities must be a non-empty list")
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("service_id"), str) or (
                not SERVICE_ID.fullmatch(entry["service_id"])):
            raise InvalidInput("each service capability needs a service_id")
    return value


# -- devices ---------------------------------------------------------------------------------------

@dataclass
class Device:
    seq: str  # the platform's record id: list order and page markers
    device_id: str
    project_id: str
    app_id: str
    node_id: str
    product_id: str
    device_name: str
    description: str | None
    auth_type: str
    secret: str | None
    secondary_secret: str | None
    fingerprint: str | None
    secondary_fingerprint: str | None
    secure_access: bool
    timeout: int
    extension_info: dict[str, Any] | None
    frozen: bool
    create_time: str
    connection_status_update_time: str | None = None
    active_time: str | None = None
    # service_id -> {"desired": {...}, "desired_time": str, "version": int}
    # (and, once it reported, "reported", "reported_time")
    shadow: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    # Messages the device sent on sys/messages/up, the last MESSAGES_KEPT.
    received: list[dict[str, Any]] = field(default_factory=list)
    # Whether an MQTT session is open now: never saved (after a restart no session is).
    online: bool = False
    # Its place in DeviceStore.encoded: never saved.
    key: int = 0

    @property
    def status(self) -> str:
        if self.frozen:
            return "FROZEN"
        if self.online:
            return "ONLINE"
        return "OFFLINE" if self.active_time else "INACTIVE"

    def auth_info(self) -> dict[str, Any]:
        return {"auth_type": self.auth_type, "secret": self.secret,
                "secondary_secret": self.secondary_secret, "fingerprint": self.fingerprint,
                "secondary_fingerprint": self.secondary_fingerprint,
                "secure_access": self.secure_access, "timeout": self.timeout}

    def summary(self, product_name: str | None) -> dict[str, Any]:
        """QueryDeviceSimplify: what ListDevices shows of a device."""
        return {"app_id": self.app_id, "app_name": self.app_id, "device_id": self.device_id,
                "node_id": self.node_id, "gateway_id": self.device_id,
                "device_name": self.device_name, "node_type": "GATEWAY",
                "description": self.description, "fw_version": None, "sw_version": None,
                "device_sdk_version": None, "product_id": self.product_id,
                "product_name": product_name, "status": self.status, "tags": []}

    def detail(self, product_name: str | None) -> dict[str, Any]:
        """AddDeviceResponse / ShowDeviceResponse / UpdateDeviceResponse."""
        doc = self.summary(product_name)
        doc.update({"auth_info": self.auth_info(), "create_time": self.create_time,
                    "connection_status_update_time": self.connection_status_update_time,
                    "active_time": self.active_time, "modules": [],
                    "extension_info": self.extension_info})
        return doc

    def fingerprint_matches(self, fingerprint: str) -> bool:
        """Fingerprints compare case-insensitively, against the primary and the secondary."""
        given = fingerprint.lower()
        return any(f is not None and f.lower() == given
                   for f in (self.fingerprint, self.secondary_fingerprint))

    def shadow_entries(self, service_id: str | None = None) -> list[dict[str, Any]]:
        return [
            {"service_id": sid,
             "desired": {"properties": entry["desired"] or None,
                         "event_time": entry["desired_time"]},
             "reported": {"properties": entry.get("reported") or None,
                          "event_time": entry.get("reported_time")},
             "version": entry["version"]}
            for sid, entry in self.shadow.items() if service_id in (None, sid)]

    def shadow_doc(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "shadow": self.shadow_entries()}

    def shadow_delta(self) -> list[dict[str, Any]]:
        """The desired properties the reported ones do not match, by service: what the
        platform delivers when the device comes online or reports."""
        delta = []
        for service_id, entry in self.shadow.items():
            reported = entry.get("reported") or {}
            differ = {k: v for k, v in entry["desired"].items()
                      if k not in reported or reported[k] != v}
            if differ:
                delta.append({"service_id": service_id, "properties": differ})
        return delta

    def to_dict(self) -> dict[str, Any]:
        doc = dict(vars(self))
        del doc["online"], doc["key"]
        return doc


class DeviceStore:
    """The products and devices of every project (with each device's shadow and messages)."""

    def __init__(self, *, default_app_id: str, ids: IdSource) -> None:
        self.default_app_id = default_app_id
        self.ids = ids
        self.products: dict[tuple[str, str], Product] = {}
        self.devices: dict[tuple[str, str], Device] = {}
        # device id -> device, over every project: how an MQTT CONNECT finds its device.
        self.by_id: dict[str, Device] = {}
        # The devices as the state file holds them, each encoded again only after it changed
        # (``touch``): with 10,000 devices one save re-encoded 5.3 MB, 55 ms of the loop's
        # time, for every report (bench/mqtt.py; bench/README.md).
        self.encoded = EncodedRecords()
        self._keys = itertools.count(1)

    def touch(self, device: Device) -> None:
        """``device`` changed: encoded again at the next save. Every method here that changes
        a device calls it; tests/iotda/test_state_encoding.py holds them to it."""
        self.encoded.put(device.key, device)

    # -- state ---------------------------------------------------------------------------------
    def load(self, products: list[dict[str, Any]], devices: list[dict[str, Any]]) -> None:
        self.products = {}
        for doc in products:
            product = Product(**doc)
            self.products[(product.project_id, product.product_id)] = product
        self.devices = {}
        self.by_id = {}
        self.encoded.clear()
        for doc in devices:
            device = Device(**{k: v for k, v in doc.items() if k not in ("online", "key")})
            device.key = next(self._keys)
            self.devices[(device.project_id, device.device_id)] = device
            self.by_id.setdefault(device.device_id, device)
            self.touch(device)
        self.ids.above(*(p.product_id for p in self.products.values()),
                       *(d.seq for d in self.devices.values()))

    def dump(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return ([p.to_dict() for p in self.products.values()],
                [d.to_dict() for d in self.devices.values()])

    # -- products ------------------------------------------------------------------------------
    def add_product(self, project_id: str, body: dict[str, Any], now: float) -> Product:
        product_id = text_field(body, "product_id", required=False, max_len=36,
                                pattern=PRODUCT_ID)
        name = text_field(body, "name", required=True, max_len=64, pattern=NAME)
        device_type = text_field(body, "device_type", required=True, max_len=32, pattern=NAME)
        protocol_type = _choice(body, "protocol_type", PROTOCOLS, None)
        if protocol_type is None:
            raise InvalidInput("protocol_type is required")
        data_format = _choice(body, "data_format", DATA_FORMATS, "json")
        capabilities = check_capabilities(body.get("service_capabilities"))
        manufacturer = text_field(body, "manufacturer_name", required=False, max_len=32,
                                  pattern=NAME)
        industry = text_field(body, "industry", required=False, max_len=64, pattern=NAME)
        description = text_field(body, "description", required=False, max_len=256, min_len=0)
        app_id = text_field(body, "app_id", required=False, max_len=36, pattern=APP_ID)
        if product_id is not None and (project_id, product_id) in self.products:
            raise ProductExists(product_id)
        assert name is not None
        assert device_type is not None
        assert data_format is not None
        product = Product(
            product_id=product_id or self.ids.next(now), project_id=project_id,
            app_id=app_id or self.default_app_id, name=name, device_type=device_type,
            protocol_type=protocol_type, data_format=data_format,
            service_capabilities=capabilities, manufacturer_name=manufacturer,
            industry=industry, description=description, create_time=now_text(now))
        self.products[(project_id, product.product_id)] = product
        return product

    def product(self, project_id: str, product_id: str) -> Product:
        if not PRODUCT_ID.fullmatch(product_id):
            raise InvalidInput(f"product_id {product_id!r}")
        product = self.products.get((project_id, product_id))
        if product is None:
            raise ProductNotFound(product_id)
        return product

    def _product_name(self, device: Device) -> str | None:
        product = self.products.get((device.project_id, device.product_id))
        return product.name if product else None

    # -- devices -------------------------------------------------------------------------------
    def add_device(self, project_id: str, body: dict[str, Any], now: float) -> Device:
        node_id = text_field(body, "node_id", required=True, max_len=64, pattern=NODE_ID)
        product_id = text_field(body, "product_id", required=True, max_len=36,
                                pattern=PRODUCT_ID)
        device_id = text_field(body, "device_id", required=False, max_len=128,
                               pattern=DEVICE_ID)
        device_name = text_field(body, "device_name", required=False, max_len=256,
                                 pattern=NAME)
        description = text_field(body, "description", required=False, max_len=2048, min_len=0)
        app_id = text_field(body, "app_id", required=False, max_len=36, pattern=APP_ID)
        extension_info = _object(body, "extension_info")
        if body.get("gateway_id") is not None:
            # Sub-devices of a gateway need a gateway's session: not emulated yet.
            raise InvalidInput("gateway_id (sub-devices) is not supported")
        if body.get("shadow") is not None:
            raise InvalidInput("an initial shadow is not supported")
        auth = _object(body, "auth_info") or {}
        auth_type = _choice(auth, "auth_type", AUTH_TYPES, "SECRET")
        secret = text_field(auth, "secret", required=False, max_len=32, min_len=8,
                            pattern=SECRET)
        fingerprint = text_field(auth, "fingerprint", required=False, max_len=64, min_len=0)
        if fingerprint == "":
            fingerprint = None  # empty: recorded on the first connection
        if fingerprint is not None and not FINGERPRINT.fullmatch(fingerprint):
            raise InvalidInput("fingerprint must be 40 or 64 hex digits")
        secure_access = bool_field(auth, "secure_access")
        timeout = _int_field(auth, "timeout", 0, MAX_TIMEOUT)
        if auth_type == "SECRET":
            if fingerprint is not None:
                raise InvalidInput("fingerprint with auth_type SECRET")
            secret = secret or new_secret()
        elif secret is not None:
            raise InvalidInput("secret with auth_type CERTIFICATES")
        assert node_id is not None
        assert product_id is not None
        assert auth_type is not None
        product = self.product(project_id, product_id)
        device_id = device_id or f"{product.product_id}_{node_id}"
        if len(device_id) > 128:
            raise InvalidInput("device_id longer than 128 characters")
        if (project_id, device_id) in self.devices:
            raise DeviceExists(device_id)
        if any(d.project_id == project_id and d.product_id == product_id
               and d.node_id == node_id for d in self.devices.values()):
            raise DeviceExists(f"node_id {node_id} of product {product_id}")
        device = Device(
            seq=self.ids.next(now), device_id=device_id, project_id=project_id,
            app_id=app_id or product.app_id, node_id=node_id, product_id=product.product_id,
            device_name=device_name or node_id, description=description, auth_type=auth_type,
            secret=secret, secondary_secret=None, fingerprint=fingerprint,
            secondary_fingerprint=None,
            secure_access=True if secure_access is None else secure_access,
            timeout=timeout or 0, extension_info=extension_info, frozen=False,
            create_time=now_text(now))
        device.key = next(self._keys)
        self.devices[(project_id, device_id)] = device
        self.by_id.setdefault(device_id, device)
        self.touch(device)
        return device

    def find(self, device_id: str) -> Device | None:
        """The device ``device_id`` of whichever project has it (the first registered)."""
        return self.by_id.get(device_id)

    def device(self, project_id: str, device_id: str) -> Device:
        if not DEVICE_ID.fullmatch(device_id):
            raise InvalidInput(f"device_id {device_id!r}")
        device = self.devices.get((project_id, device_id))
        if device is None:
            raise DeviceNotFound(device_id)
        return device

    def detail(self, device: Device) -> dict[str, Any]:
        return device.detail(self._product_name(device))

    def list_devices(self, project_id: str, query: dict[str, str], page: PageQuery
                     ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        filters = {}
        for name, pattern in (("product_id", PRODUCT_ID), ("node_id", NODE_ID),
                              ("device_name", NAME), ("gateway_id", DEVICE_ID),
                              ("app_id", APP_ID)):
            value = query.get(name)
            if value is not None:
                if not pattern.fullmatch(value) or len(value) > 256:
                    raise InvalidInput(f"{name}={value!r}")
                filters[name] = value
        chosen = [d for d in self.devices.values() if d.project_id == project_id and all(
            (d.device_id if name == "gateway_id" else getattr(d, name)) == value
            for name, value in filters.items())]
        records, info = paginate(chosen, [d.seq for d in chosen], page)
        return [d.summary(self._product_name(d)) for d in records], info

    def update_device(self, project_id: str, device_id: str, body: dict[str, Any]) -> Device:
        device = self.device(project_id, device_id)
        name = text_field(body, "device_name", required=False, max_len=256, pattern=NAME)
        description = text_field(body, "description", required=False, max_len=2048, min_len=0)
        extension_info = _object(body, "extension_info")
        auth = _object(body, "auth_info") or {}
        secure_access = bool_field(auth, "secure_access")
        timeout = _int_field(auth, "timeout", 0, MAX_TIMEOUT)
        if name is not None:
            device.device_name = name
        if description is not None:
            device.description = description
        if extension_info is not None:
            device.extension_info = extension_info
        if secure_access is not None:
            device.secure_access = secure_access
        if timeout is not None:
            device.timeout = timeout
        self.touch(device)
        return device

    def delete_device(self, project_id: str, device_id: str) -> None:
        device = self.device(project_id, device_id)
        del self.devices[(project_id, device.device_id)]
        self.encoded.drop(device.key)
        if self.by_id.get(device.device_id) is device:
            del self.by_id[device.device_id]
            other = next((d for d in self.devices.values() if d.device_id == device_id), None)
            if other is not None:
                self.by_id[device_id] = other

    def set_frozen(self, project_id: str, device_id: str, frozen: bool) -> Device:
        device = self.device(project_id, device_id)
        device.frozen = frozen
        self.touch(device)
        return device

    def reset_secret(self, project_id: str, device_id: str, body: dict[str, Any]
                     ) -> dict[str, Any]:
        device = self.device(project_id, device_id)
        secret = text_field(body, "secret", required=False, max_len=32, min_len=8,
                            pattern=SECRET)
        bool_field(body, "force_disconnect")  # no session to disconnect yet
        secret_type = _choice(body, "secret_type", SECRET_TYPES, "PRIMARY")
        if device.auth_type != "SECRET":
            raise InvalidInput("a CERTIFICATES device has no secret")
        secret = secret or new_secret()
        if secret_type == "SECONDARY":
            device.secondary_secret = secret
        else:
            device.secret = secret
        self.touch(device)
        return {"device_id": device.device_id, "secret": secret, "secret_type": secret_type}

    def reset_fingerprint(self, project_id: str, device_id: str, body: dict[str, Any]
                          ) -> dict[str, Any]:
        device = self.device(project_id, device_id)
        fingerprint = text_field(body, "fingerprint", required=False, max_len=64, min_len=0)
        if fingerprint is not None and fingerprint != "" and not FINGERPRINT.fullmatch(
                fingerprint):
            raise InvalidInput("fingerprint must be 40 or 64 hex digits")
        bool_field(body, "force_disconnect")
        fingerprint_type = _choice(body, "fingerprint_type", SECRET_TYPES, "PRIMARY")
        if device.auth_type != "CERTIFICATES":
            raise InvalidInput("a SECRET device has no fingerprint")
        value = fingerprint or None  # none or empty: recorded on the next connection
        if fingerprint_type == "SECONDARY":
            device.secondary_fingerprint = value
        else:
            device.fingerprint = value
        self.touch(device)
        return {"device_id": device.device_id, "fingerprint": value,
                "fingerprint_type": fingerprint_type}

    # -- shadow --------------------------------------------------------------------------------
    def update_desired(self, project_id: str, device_id: str, body: dict[str, Any],
                       now: float) -> Device:
        device = self.device(project_id, device_id)
        entries = body.get("shadow")
        if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_SHADOW_SERVICES:
            raise InvalidInput(f"shadow must be a list of 1..{MAX_SHADOW_SERVICES} services")
        checked: list[tuple[str, dict[str, Any], int | None]] = []
        for entry in entries:
            if not isinstance(entry, dict):
                raise InvalidInput("each shadow entry must be an object")
            service_id = text_field(entry, "service_id", required=True, max_len=64,
                                    pattern=SERVICE_ID)
            desired = _object(entry, "desired")
            if desired is None:
                raise InvalidInput("desired is required")
            version = _int_field(entry, "version", 0, MAX_TIMEOUT)
            assert service_id is not None
            current = device.shadow.get(service_id, {}).get("version", 0)
            if version is not None and version != current:
                raise InvalidInput(f"version {version} is not the shadow's {current}")
            checked.append((service_id, desired, version))
        for service_id, desired, _ in checked:  # all checked first: all or nothing
            entry = device.shadow.setdefault(
                service_id, {"desired": {}, "desired_time": None, "version": 0})
            for key, value in desired.items():
                if value is None:
                    entry["desired"].pop(key, None)  # null removes a desired property
                else:
                    entry["desired"][key] = value
            entry["desired_time"] = now_text(now)
            entry["version"] += 1
        self.touch(device)
        return device

    def report(self, device: Device, services: Any, now: float,
               unmodelled_max: int = UNMODELLED_KEPT) -> tuple[int, list[str]]:
        """A properties report (``{"services": [{"service_id", "properties", "event_time"}]}``)
        into the reported side of the shadow: the number of services taken, and the
        properties dropped (``service_id/name``). Entries that are not a service with
        properties are skipped.

        The platform "stores the data that complies with the product model definition": a
        property the product's model names is always kept. One it does not name (or a model
        with no property list) is kept too, the emulator's leniency, but at most
        ``unmodelled_max`` of them per device shadow; a new one beyond that is dropped."""
        if not isinstance(services, list):
            return 0, []
        taken = 0
        dropped: list[str] = []
        model: dict[str, frozenset[str]] | None = None
        unmodelled = -1  # counted when first needed
        for service in services[:MAX_SHADOW_SERVICES]:
            if not isinstance(service, dict):
                continue
            service_id = service.get("service_id")
            properties = service.get("properties")
            if not isinstance(service_id, str) or not SERVICE_ID.fullmatch(service_id) or (
                    not isinstance(properties, dict)):
                continue
            entry = device.shadow.setdefault(
                service_id, {"desired": {}, "desired_time": None, "version": 0})
            reported = entry.setdefault("reported", {})
            for name, value in properties.items():
                if name in reported:
                    reported[name] = value
                    continue
                if model is None:
                    model = self._model(device)
                if name in model.get(service_id, ()):
                    reported[name] = value
                    continue
                if unmodelled < 0:
                    unmodelled = _unmodelled(device, model)
                if unmodelled < unmodelled_max:
                    reported[name] = value
                    unmodelled += 1
                else:
                    dropped.append(f"{service_id}/{name}")
            event_time = service.get("event_time")
            entry["reported_time"] = (event_time if isinstance(event_time, str)
                                      and len(event_time) <= 32 else now_text(now))
            taken += 1
        if taken:
            self.touch(device)
        return taken, dropped

    def _model(self, device: Device) -> dict[str, frozenset[str]]:
        """The property names the device's product model defines, by service id."""
        product = self.products.get((device.project_id, device.product_id))
        model: dict[str, frozenset[str]] = {}
        for capability in product.service_capabilities if product is not None else ():
            service_id = capability.get("service_id") if isinstance(capability, dict) else None
            if not isinstance(service_id, str):
                continue
            properties = capability.get("properties")
            model[service_id] = frozenset(
                p["property_name"] for p in properties if isinstance(p, dict)
                and isinstance(p.get("property_name"), str)
            ) if isinstance(properties, list) else frozenset()
        return model

    def went_online(self, device: Device, now: float, record_fingerprint: str | None) -> None:
        device.online = True
        stamp = now_text(now)
        device.connection_status_update_time = stamp
        if device.active_time is None:
            device.active_time = stamp
        if record_fingerprint is not None and device.fingerprint is None:
            device.fingerprint = record_fingerprint  # recorded on first use
        self.touch(device)

    def went_offline(self, device: Device, now: float) -> None:
        device.online = False
        device.connection_status_update_time = now_text(now)
        self.touch(device)

    def keep_received(self, device: Device, record: dict[str, Any]) -> None:
        device.received.append(record)
        del device.received[:-MESSAGES_KEPT]
        self.touch(device)

    # -- messages and commands -----------------------------------------------------------------
    def create_message(self, project_id: str, device_id: str, body: dict[str, Any],
                       now: float) -> dict[str, Any]:
        device = self.device(project_id, device_id)
        message_id = text_field(body, "message_id", required=False, max_len=100,
                                pattern=DEVICE_ID)
        name = text_field(body, "name", required=False, max_len=128, pattern=NAME)
        message = body.get("message")
        if message is None or isinstance(message, bool) or not isinstance(
                message, (str, dict, list, int, float)):
            raise InvalidInput("message is required")
        encoding = _choice(body, "encoding", ("none", "base64"), "none")
        payload_format = _choice(body, "payload_format", ("standard", "raw"), "standard")
        topic = text_field(body, "topic", required=False, max_len=128, pattern=NAME)
        topic_full_name = text_field(body, "topic_full_name", required=False, max_len=128,
                                     pattern=NAME)
        properties = _object(body, "properties")
        ttl = _int_field(body, "ttl", 0, 1440)
        if message_id is not None and any(m["message_id"] == message_id
                                          for m in device.messages):
            raise InvalidInput(f"message_id {message_id} is already used")
        record = {
            "message_id": message_id or str(uuid.uuid4()), "name": name, "message": message,
            "encoding": encoding, "payload_format": payload_format,
            "topic": topic_full_name or topic, "properties": properties, "ttl": ttl,
            "status": "PENDING", "error_info": None, "created_time": now_text(now),
            "finished_time": None,
            # Not shown by ListDeviceMessages: where and until when it is delivered.
            "mqtt_topic": (topic_full_name if topic_full_name is not None
                           else f"$oc/devices/{device.device_id}/user/{topic}"
                           if topic is not None
                           else f"$oc/devices/{device.device_id}/sys/messages/down"),
            "expires": now + 60 * (DEFAULT_TTL_MINUTES if ttl is None else ttl)}
        device.messages.append(record)
        del device.messages[:-MESSAGES_KEPT]
        self.touch(device)
        return record

    @staticmethod
    def message_payload(device: Device, record: dict[str, Any]) -> bytes:
        """What the device receives: the SDK's ``DeviceMessage`` (``object_device_id``,
        ``id``, ``name``, ``content``) in the standard format, the message itself when raw."""
        message = record["message"]
        if record["payload_format"] == "raw":
            if isinstance(message, str):
                if record["encoding"] == "base64":
                    try:
                        return base64.b64decode(message, validate=True)
                    except (binascii.Error, ValueError):
                        return message.encode()
                return message.encode()
            return json.dumps(message, ensure_ascii=False).encode()
        return json.dumps({"object_device_id": device.device_id, "id": record["message_id"],
                           "name": record["name"], "content": message},
                          ensure_ascii=False).encode()

    def message_done(self, device: Device, record: dict[str, Any], status: str, now: float,
                     error: tuple[str, str] | None = None) -> None:
        self.touch(device)
        record["status"] = status
        record["finished_time"] = now_text(now)
        if error is not None:
            record["error_info"] = {"error_code": error[0], "error_msg": error[1]}

    def due_messages(self, device: Device, now: float) -> list[dict[str, Any]]:
        """The PENDING messages to deliver now that the device is online; those whose ttl ran
        out on the farm clock become TIMEOUT."""
        due = []
        for record in device.messages:
            if record["status"] != "PENDING":
                continue
            if record.get("expires", now) < now:
                self.message_done(device, record, "TIMEOUT", now)
            else:
                due.append(record)
        return due

    def list_messages(self, project_id: str, device_id: str) -> dict[str, Any]:
        device = self.device(project_id, device_id)
        keys = ("message_id", "name", "message", "encoding", "payload_format", "topic",
                "properties", "status", "error_info", "created_time", "finished_time")
        return {"device_id": device.device_id,
                "messages": [{k: m[k] for k in keys} for m in device.messages]}

    def create_command(self, project_id: str, device_id: str, body: dict[str, Any]
                       ) -> tuple[Device, dict[str, Any]]:
        """The device and the command as the SDK's ``Command`` carries it (``service_id``,
        ``command_name``, ``paras``; ``object_device_id`` is added when sent)."""
        device = self.device(project_id, device_id)
        service_id = text_field(body, "service_id", required=False, max_len=64,
                                pattern=SERVICE_ID)
        command_name = text_field(body, "command_name", required=False, max_len=128,
                                  pattern=NAME)
        if not isinstance(body.get("paras"), dict):
            raise InvalidInput("paras must be an object")
        if not device.online:
            raise DeviceOffline(device_id)
        return device, {"service_id": service_id, "command_name": command_name,
                        "paras": body["paras"]}

    def properties_set(self, project_id: str, device_id: str, body: dict[str, Any]
                       ) -> tuple[Device, list[dict[str, Any]]]:
        """UpdateProperties: ``{"services": [{"service_id", "properties"}]}``, checked."""
        device = self.device(project_id, device_id)
        services = body.get("services")
        if not isinstance(services, list) or not 1 <= len(services) <= MAX_SHADOW_SERVICES:
            raise InvalidInput(f"services must be a list of 1..{MAX_SHADOW_SERVICES}")
        checked = []
        for service in services:
            if not isinstance(service, dict):
                raise InvalidInput("each service must be an object")
            service_id = text_field(service, "service_id", required=True, max_len=64,
                                    pattern=SERVICE_ID)
            properties = _object(service, "properties")
            if properties is None:
                raise InvalidInput("properties is required")
            checked.append({"service_id": service_id, "properties": properties})
        if not device.online:
            raise DeviceOffline(device_id)
        return device, checked

    def properties_get(self, project_id: str, device_id: str, service_id: str | None
                       ) -> Device:
        device = self.device(project_id, device_id)
        if service_id is not None and not SERVICE_ID.fullmatch(service_id):
            raise InvalidInput(f"service_id {service_id!r}")
        if not device.online:
            raise DeviceOffline(device_id)
        return device

"""Devices (IoTDA's device registry): registration, freezing, secrets and fingerprints,
online and offline. Each device also carries its shadow (``shadow.py``) and its messages
(``messages.py``), saved with it.

A device is ``INACTIVE`` until it first connects over MQTT (``access.py``), then ``ONLINE``
while a session is open and ``OFFLINE`` after; ``FROZEN`` overrides all three.
No HTTP and no MQTT here: the models take plain values and raise the typed errors of
``exceptions``.
"""

from __future__ import annotations

import itertools
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from ...core.state import EncodedRecords
from ..exceptions import DeviceExists, DeviceNotFound, InvalidInput
from . import shadow as shadow_model
from .common import (
    APP_ID,
    DEVICE_ID,
    INT32_MAX,
    NAME,
    IdSource,
    PageQuery,
    bool_field,
    choice_field,
    int_field,
    lookup,
    now_text,
    object_field,
    paginate,
    text_field,
)
from .products import PRODUCT_ID, Products

# The API reference: node ids and secrets of letters, digits, "_" and "-".
NODE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
SECRET = re.compile(r"[A-Za-z0-9_-]{8,32}")
FINGERPRINT = re.compile(r"[0-9A-Fa-f]{40}|[0-9A-Fa-f]{64}")
AUTH_TYPES = ("SECRET", "CERTIFICATES")
SECRET_TYPES = ("PRIMARY", "SECONDARY")


def new_secret() -> str:
    return secrets.token_hex(16)


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
    # The device shadow (shadow.py): service_id -> {"desired": {...}, "desired_time": str,
    # "version": int} (and, once it reported, "reported", "reported_time").
    shadow: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Messages down to the device (messages.py), the last MESSAGES_KEPT.
    messages: list[dict[str, Any]] = field(default_factory=list)
    # Messages the device sent on sys/messages/up, the last MESSAGES_KEPT.
    received: list[dict[str, Any]] = field(default_factory=list)
    # Whether an MQTT session is open now: never saved (after a restart no session is).
    online: bool = False
    # Its place in Registry.encoded: never saved.
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
        return shadow_model.entries(self.shadow, service_id)

    def shadow_doc(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "shadow": self.shadow_entries()}

    def shadow_delta(self) -> list[dict[str, Any]]:
        """What the platform delivers when the device comes online or reports."""
        return shadow_model.delta(self.shadow)

    def to_dict(self) -> dict[str, Any]:
        doc = dict(vars(self))
        del doc["online"], doc["key"]
        return doc


class Registry:
    """The devices of every project, by (project id, device id)."""

    def __init__(self, products: Products, ids: IdSource) -> None:
        self.products = products
        self.ids = ids
        self.devices: dict[tuple[str, str], Device] = {}
        # device id -> device, over every project: how an MQTT CONNECT finds its device.
        self.by_id: dict[str, Device] = {}
        # The devices as the state file holds them, each encoded again only after it changed
        # (``touch``): with 10,000 devices one save re-encoded 5.3 MB, 55 ms of the loop's
        # time, for every report (bench/mqtt.py; bench/README.md).
        self.encoded = EncodedRecords()
        self._keys = itertools.count(1)

    def touch(self, device: Device) -> None:
        """``device`` changed: encoded again at the next save. Every method of the device
        store that changes a device calls it; tests/iotda/test_state_encoding.py holds them
        to it."""
        self.encoded.put(device.key, device)

    def load(self, devices: list[dict[str, Any]]) -> None:
        self.devices = {}
        self.by_id = {}
        self.encoded.clear()
        for doc in devices:
            device = Device(**{k: v for k, v in doc.items() if k not in ("online", "key")})
            device.key = next(self._keys)
            self.devices[(device.project_id, device.device_id)] = device
            self.by_id.setdefault(device.device_id, device)
            self.touch(device)
        self.ids.above(*(d.seq for d in self.devices.values()))

    def dump(self) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self.devices.values()]

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
        extension_info = object_field(body, "extension_info")
        if body.get("gateway_id") is not None:
            # Sub-devices of a gateway need a gateway's session: not emulated yet.
            raise InvalidInput("gateway_id (sub-devices) is not supported")
        if body.get("shadow") is not None:
            raise InvalidInput("an initial shadow is not supported")
        auth = object_field(body, "auth_info") or {}
        auth_type = choice_field(auth, "auth_type", AUTH_TYPES, "SECRET")
        secret = text_field(auth, "secret", required=False, max_len=32, min_len=8,
                            pattern=SECRET)
        fingerprint = text_field(auth, "fingerprint", required=False, max_len=64, min_len=0)
        if fingerprint == "":
            fingerprint = None  # empty: recorded on the first connection
        if fingerprint is not None and not FINGERPRINT.fullmatch(fingerprint):
            raise InvalidInput("fingerprint must be 40 or 64 hex digits")
        secure_access = bool_field(auth, "secure_access")
        timeout = int_field(auth, "timeout", 0, INT32_MAX)
        if auth_type == "SECRET":
            if fingerprint is not None:
                raise InvalidInput("fingerprint with auth_type SECRET")
            secret = secret or new_secret()
        elif secret is not None:
            raise InvalidInput("secret with auth_type CERTIFICATES")
        assert node_id is not None
        assert product_id is not None
        assert auth_type is not None
        product = self.products.product(project_id, product_id)
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
        return lookup(self.devices, (project_id, device_id), device_id, DEVICE_ID, "device_id",
                      DeviceNotFound)

    def detail(self, device: Device) -> dict[str, Any]:
        return device.detail(self.products.name_of(device.project_id, device.product_id))

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
        return [d.summary(self.products.name_of(d.project_id, d.product_id)) for d in records], info

    def update_device(self, project_id: str, device_id: str, body: dict[str, Any]) -> Device:
        device = self.device(project_id, device_id)
        name = text_field(body, "device_name", required=False, max_len=256, pattern=NAME)
        description = text_field(body, "description", required=False, max_len=2048, min_len=0)
        extension_info = object_field(body, "extension_info")
        auth = object_field(body, "auth_info") or {}
        secure_access = bool_field(auth, "secure_access")
        timeout = int_field(auth, "timeout", 0, INT32_MAX)
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
        secret_type = choice_field(body, "secret_type", SECRET_TYPES, "PRIMARY")
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
        fingerprint_type = choice_field(body, "fingerprint_type", SECRET_TYPES, "PRIMARY")
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


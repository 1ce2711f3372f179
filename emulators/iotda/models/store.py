"""The device store: products, devices, their shadows and messages as one thing the handlers,
the MQTT access layer and the state file hold. Each resource lives in its own module; this
composes them and names each public method where it is kept."""

from __future__ import annotations

from typing import Any

from ...core.state import EncodedRecords
from .common import IdSource
from .devices import Device, Registry
from .messages import Messages
from .products import Product, Products
from .shadow import Shadows


class DeviceStore:
    """The products and devices of every project (with each device's shadow and messages)."""

    def __init__(self, *, default_app_id: str, ids: IdSource) -> None:
        self.default_app_id = default_app_id
        self.ids = ids
        self.catalogue = Products(default_app_id=default_app_id, ids=ids)
        self.registry = Registry(self.catalogue, ids)
        self.shadows = Shadows(self.registry, self.catalogue)
        self.mail = Messages(self.registry)

        self.add_product = self.catalogue.add_product
        self.product = self.catalogue.product

        self.touch = self.registry.touch
        self.add_device = self.registry.add_device
        self.find = self.registry.find
        self.device = self.registry.device
        self.detail = self.registry.detail
        self.list_devices = self.registry.list_devices
        self.update_device = self.registry.update_device
        self.delete_device = self.registry.delete_device
        self.set_frozen = self.registry.set_frozen
        self.reset_secret = self.registry.reset_secret
        self.reset_fingerprint = self.registry.reset_fingerprint
        self.went_online = self.registry.went_online
        self.went_offline = self.registry.went_offline

        self.update_desired = self.shadows.update_desired
        self.report = self.shadows.report

        self.keep_received = self.mail.keep_received
        self.create_message = self.mail.create_message
        self.message_payload = self.mail.message_payload
        self.message_done = self.mail.message_done
        self.due_messages = self.mail.due_messages
        self.list_messages = self.mail.list_messages
        self.create_command = self.mail.create_command
        self.properties_set = self.mail.properties_set
        self.properties_get = self.mail.properties_get

    @property
    def products(self) -> dict[tuple[str, str], Product]:
        return self.catalogue.records

    @property
    def devices(self) -> dict[tuple[str, str], Device]:
        return self.registry.devices

    @property
    def by_id(self) -> dict[str, Device]:
        """Device id -> device, over every project: how an MQTT CONNECT finds its device."""
        return self.registry.by_id

    @property
    def encoded(self) -> EncodedRecords:
        """The devices as the state file holds them (``Registry.encoded``)."""
        return self.registry.encoded

    def load(self, products: list[dict[str, Any]], devices: list[dict[str, Any]]) -> None:
        self.catalogue.load(products)
        self.registry.load(devices)

    def dump(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return self.catalogue.dump(), self.registry.dump()

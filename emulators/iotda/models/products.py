"""Products (IoTDA's product models): what a device is an instance of, and the service
capabilities whose property names bound what its shadow keeps (``shadow.py``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..exceptions import InvalidInput, ProductExists, ProductNotFound
from .common import APP_ID, NAME, SERVICE_ID, IdSource, choice_field, lookup, now_text, text_field

# The API reference: ids of letters, digits, "_" and "-".
PRODUCT_ID = re.compile(r"[A-Za-z0-9_-]{1,36}")
PROTOCOLS = ("MQTT", "CoAP", "HTTP", "HTTPS", "Modbus", "ONVIF", "OPC-UA", "OPC-DA", "Other",
             "TCP", "UDP")
DATA_FORMATS = ("json", "binary")


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

    def model(self) -> dict[str, frozenset[str]]:
        """The property names the product model defines, by service id."""
        model: dict[str, frozenset[str]] = {}
        for capability in self.service_capabilities:
            service_id = capability.get("service_id") if isinstance(capability, dict) else None
            if not isinstance(service_id, str):
                continue
            properties = capability.get("properties")
            model[service_id] = frozenset(
                p["property_name"] for p in properties if isinstance(p, dict)
                and isinstance(p.get("property_name"), str)
            ) if isinstance(properties, list) else frozenset()
        return model


def check_capabilities(value: Any) -> list[dict[str, Any]]:
    """Stored as given; each entry must at least be an object with a ``service_id``."""
    if not isinstance(value, list) or not value:
        raise InvalidInput("service_capabilities must be a non-empty list")
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("service_id"), str) or (
                not SERVICE_ID.fullmatch(entry["service_id"])):
            raise InvalidInput("each service capability needs a service_id")
    return value


class Products:
    """The products of every project, by (project id, product id)."""

    def __init__(self, *, default_app_id: str, ids: IdSource) -> None:
        self.default_app_id = default_app_id
        self.ids = ids
        self.records: dict[tuple[str, str], Product] = {}

    def load(self, products: list[dict[str, Any]]) -> None:
        self.records = {}
        for doc in products:
            product = Product(**doc)
            self.records[(product.project_id, product.product_id)] = product
        self.ids.above(*(p.product_id for p in self.records.values()))

    def dump(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self.records.values()]

    def add_product(self, project_id: str, body: dict[str, Any], now: float) -> Product:
        product_id = text_field(body, "product_id", required=False, max_len=36,
                                pattern=PRODUCT_ID)
        name = text_field(body, "name", required=True, max_len=64, pattern=NAME)
        device_type = text_field(body, "device_type", required=True, max_len=32, pattern=NAME)
        protocol_type = choice_field(body, "protocol_type", PROTOCOLS, None)
        if protocol_type is None:
            raise InvalidInput("protocol_type is required")
        data_format = choice_field(body, "data_format", DATA_FORMATS, "json")
        capabilities = check_capabilities(body.get("service_capabilities"))
        manufacturer = text_field(body, "manufacturer_name", required=False, max_len=32,
                                  pattern=NAME)
        industry = text_field(body, "industry", required=False, max_len=64, pattern=NAME)
        description = text_field(body, "description", required=False, max_len=256, min_len=0)
        app_id = text_field(body, "app_id", required=False, max_len=36, pattern=APP_ID)
        if product_id is not None and (project_id, product_id) in self.records:
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
        self.records[(project_id, product.product_id)] = product
        return product

    def product(self, project_id: str, product_id: str) -> Product:
        return lookup(self.records, (project_id, product_id), product_id, PRODUCT_ID,
                      "product_id", ProductNotFound)

    def name_of(self, project_id: str, product_id: str) -> str | None:
        """The name of a device's product; None once the product is gone."""
        product = self.records.get((project_id, product_id))
        return product.name if product else None

    def model_of(self, project_id: str, product_id: str) -> dict[str, frozenset[str]]:
        """The property names a device's product model defines, by service id; none when the
        product is gone."""
        product = self.records.get((project_id, product_id))
        return product.model() if product is not None else {}

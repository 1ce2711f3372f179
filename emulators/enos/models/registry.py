"""Organisations, products and devices as the scenario defines them (EnOS's device registry)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..exceptions import DeviceNotFound, InvalidDeviceIdentifier, ProductNotBidirectional


@dataclass(frozen=True)
class Org:
    org_id: str
    name: str = ""


@dataclass(frozen=True)
class Product:
    org_id: str
    product_key: str
    name: str = ""
    bi_directional_auth: bool = True
    max_valid_day: int = 3650
    product_secret: str | None = None  # dynamic activation (MQTT securemode 3)


@dataclass(frozen=True)
class Device:
    org_id: str
    asset_id: str
    product_key: str
    device_key: str
    name: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class Registry:
    """Looks devices up the way the Connection Service does: by assetId, or productKey+deviceKey."""

    def __init__(self, orgs: list[Org], products: list[Product], devices: list[Device]) -> None:
        self.orgs = {o.org_id: o for o in orgs}
        self.products = {(p.org_id, p.product_key): p for p in products}
        self.devices = list(devices)
        self._by_asset = {(d.org_id, d.asset_id): d for d in devices}
        self._by_keys = {(d.org_id, d.product_key, d.device_key): d for d in devices}

    @staticmethod
    def check_identifier(asset_id: str | None, product_key: str | None,
                         device_key: str | None) -> None:
        if not asset_id and not (product_key and device_key):
            raise InvalidDeviceIdentifier()

    def find(self, org_id: str, asset_id: str | None = None, product_key: str | None = None,
             device_key: str | None = None) -> Device:
        self.check_identifier(asset_id, product_key, device_key)
        # An unknown organisation holds no devices: the service answers as for any missing one.
        if asset_id:
            device = self._by_asset.get((org_id, asset_id))
        else:
            device = self._by_keys.get((org_id, product_key or "", device_key or ""))
        if device is None:
            raise DeviceNotFound()
        return device

    def product_of(self, device: Device) -> Product:
        return self.products[(device.org_id, device.product_key)]

    def require_bidirectional(self, device: Device) -> Product:
        product = self.product_of(device)
        if not product.bi_directional_auth:
            raise ProductNotBidirectional()
        return product

    def device_by_asset(self, asset_id: str) -> Device | None:
        for device in self.devices:
            if device.asset_id == asset_id:
                return device
        return None

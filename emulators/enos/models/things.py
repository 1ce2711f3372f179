"""What devices do once connected over MQTT: online or not, their last measure points, events,
attributes and firmware, the secrets dynamic activation handed out, a gateway's logged-in
sub-devices. Saved with the member's state (``things`` in its document). No I/O here."""

from __future__ import annotations

import hashlib
from typing import Any

from .registry import Device, Registry

EVENTS_KEPT = 20
ATTRIBUTES_MAX = 1000


def _key(device: Device) -> str:
    return f"{device.product_key}/{device.device_key}"


class Things:
    def __init__(self, registry: Registry, secrets: dict[str, str]) -> None:
        self.registry = registry
        self.scenario_secrets = secrets  # identity -> the scenario's deviceSecret
        # productKey/deviceKey -> device. An MQTT login names no organisation: where two
        # organisations hold the same keys, the first listed is the one that logs in.
        self._by_keys: dict[str, Device] = {}
        for device in registry.devices:
            self._by_keys.setdefault(_key(device), device)
        self.records: dict[str, dict[str, Any]] = {}
        self.online: set[str] = set()
        self.gateways: dict[str, set[str]] = {}  # gateway identity -> sub-device identities

    # -- state ---------------------------------------------------------------------------------
    def load(self, data: dict[str, Any]) -> None:
        self.records = {k: dict(v) for k, v in data.items()}
        self.online.clear()
        self.gateways.clear()

    def dump(self) -> dict[str, Any]:
        return self.records

    def view(self) -> dict[str, Any]:
        """The control plane's view: each record with ``online``."""
        return {k: {**v, "online": k in self.online} for k, v in self.records.items()}

    def _record(self, device: Device) -> dict[str, Any]:
        return self.records.setdefault(_key(device), {
            "assetId": device.asset_id, "measurepoints": {}, "events": [], "attributes": {}})

    # -- lookups -------------------------------------------------------------------------------
    def device(self, product_key: str, device_key: str) -> Device | None:
        return self._by_keys.get(f"{product_key}/{device_key}")

    def by_identity(self, identity: str) -> Device | None:
        return self._by_keys.get(identity)

    def secret(self, device: Device) -> str | None:
        """The device secret: the scenario's, or the one dynamic activation handed out."""
        key = _key(device)
        return self.scenario_secrets.get(key) or self.records.get(key, {}).get("deviceSecret")

    def sub_devices(self, identity: str) -> set[str]:
        return self.gateways.get(identity, set())

    # -- changes -------------------------------------------------------------------------------
    def activate(self, device: Device, secret: str) -> None:
        self._record(device)["deviceSecret"] = secret

    def went_online(self, device: Device, now: float) -> None:
        self.online.add(_key(device))
        self._record(device)["lastOnline"] = int(now * 1000)

    def went_offline(self, device: Device, now: float) -> None:
        self.online.discard(_key(device))
        self.gateways.pop(_key(device), None)
        self._record(device)["lastOffline"] = int(now * 1000)

    def measure_points(self, device: Device, params: Any, now: float) -> None:
        """``{"measurepoints": {id: value}, "time": ms}``: the last value of each point."""
        if not isinstance(params, dict) or not isinstance(params.get("measurepoints"), dict):
            return
        stamp = params.get("time")
        when = stamp if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) else (
            int(now * 1000))
        points = self._record(device)["measurepoints"]
        for name, value in list(params["measurepoints"].items())[:ATTRIBUTES_MAX]:
            points[str(name)] = {"value": value, "time": when}

    def event(self, device: Device, event_id: str, params: Any, now: float) -> None:
        events = self._record(device)["events"]
        events.append({"event": event_id, "params": params, "received": int(now * 1000)})
        del events[:-EVENTS_KEPT]

    def update_attributes(self, device: Device, params: Any) -> None:
        attributes = params.get("attributes") if isinstance(params, dict) else None
        if isinstance(attributes, dict):
            record = self._record(device)["attributes"]
            record.update(list(attributes.items())[:ATTRIBUTES_MAX])

    def query_attributes(self, device: Device, params: Any) -> dict[str, Any]:
        """``{"attributes": [names]}`` (empty: all) -> the values held."""
        held = self._record(device)["attributes"]
        names = params.get("attributes") if isinstance(params, dict) else None
        if not names:
            return dict(held)
        return {n: held[n] for n in names if isinstance(n, str) and n in held}

    def delete_attributes(self, device: Device, params: Any) -> None:
        names = params.get("attributes") if isinstance(params, dict) else None
        held = self._record(device)["attributes"]
        for name in names if isinstance(names, list) else ():
            if isinstance(name, str):
                held.pop(name, None)

    def firmware(self, device: Device, params: Any) -> None:
        if isinstance(params, dict) and isinstance(params.get("version"), str):
            self._record(device)["firmware"] = params["version"]

    def sub_login(self, gateway: str, params: Any) -> tuple[Any, int]:
        """A gateway logs a sub-device in: ``params`` as the SDK's SubDeviceLoginRequest sends
        them (``productKey``, ``deviceKey``, ``clientId``, ``timestamp``, ``signMethod``,
        ``sign``; a batch sends ``subDevices``: a list of those). The sign is checked as the
        login password is."""
        batch = isinstance(params, dict) and "subDevices" in params
        items = params["subDevices"] if batch else [params]
        shared = {k: v for k, v in params.items() if k != "subDevices"} if batch else {}
        done, failed = [], []
        for entry in items if isinstance(items, list) else ():
            # A batch carries clientId and timestamp once, for every sub-device's sign.
            item = {**shared, **entry} if isinstance(entry, dict) else entry
            device = (self.device(str(item.get("productKey")), str(item.get("deviceKey")))
                      if isinstance(item, dict) else None)
            secret = self.secret(device) if device is not None else None
            if device is None or secret is None or not isinstance(item, dict) or (
                    str(item.get("sign", "")).lower() != _sub_sign(item, secret)):
                failed.append(item)
                continue
            self.gateways.setdefault(gateway, set()).add(_key(device))
            done.append({"assetId": device.asset_id, "productKey": device.product_key,
                         "deviceKey": device.device_key})
        if batch:
            return {"loginedSubDevices": done, "failedSubDevices": failed}, 200
        if done:
            return done[0], 200
        return {"message": "sub-device login failed: unknown device or bad sign"}, 1000

    def sub_logout(self, gateway: str, params: Any) -> Any:
        if isinstance(params, dict):
            key = f"{params.get('productKey')}/{params.get('deviceKey')}"
            self.gateways.get(gateway, set()).discard(key)
            device = self._by_keys.get(key)
            if device is not None:
                return {"assetId": device.asset_id, "productKey": device.product_key,
                        "deviceKey": device.device_key}
        return {}


def _sub_sign(item: dict[str, Any], secret: str) -> str:
    content = "".join(f"{k}{item[k]}" for k in sorted(("clientId", "deviceKey", "productKey",
                                                      "timestamp")) if k in item)
    return hashlib.sha256((content + secret).encode("utf-8")).hexdigest()

"""The device shadow: by service, the desired properties (set over HTTP), the reported ones
(from the device's properties reports over MQTT), and the delta between them that the platform
delivers to the device.

A device's shadow is ``service_id -> {"desired": {...}, "desired_time": str, "version": int}``
(and, once it reported, ``"reported"`` and ``"reported_time"``), kept in ``Device.shadow``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..exceptions import InvalidInput
from .common import INT32_MAX, SERVICE_ID, int_field, now_text, object_field, text_field

if TYPE_CHECKING:
    from .devices import Device, Registry
    from .products import Products

MAX_SHADOW_SERVICES = 64  # chosen bound on one shadow update
# Chosen: reported properties outside the product model one shadow keeps (the option
# shadow_unmodelled_properties); a device reporting new names without end grew its shadow
# by 370 MB in 40 s.
UNMODELLED_KEPT = 1000


def entries(shadow: dict[str, dict[str, Any]], service_id: str | None = None
            ) -> list[dict[str, Any]]:
    """The shadow as ShowDeviceShadow and the device's shadow get reply carry it."""
    return [
        {"service_id": sid,
         "desired": {"properties": entry["desired"] or None,
                     "event_time": entry["desired_time"]},
         "reported": {"properties": entry.get("reported") or None,
                      "event_time": entry.get("reported_time")},
         "version": entry["version"]}
        for sid, entry in shadow.items() if service_id in (None, sid)]


def delta(shadow: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The desired properties the reported ones do not match, by service: what the platform
    delivers when the device comes online or reports."""
    found = []
    for service_id, entry in shadow.items():
        reported = entry.get("reported") or {}
        differ = {k: v for k, v in entry["desired"].items()
                  if k not in reported or reported[k] != v}
        if differ:
            found.append({"service_id": service_id, "properties": differ})
    return found


def unmodelled(shadow: dict[str, dict[str, Any]], model: dict[str, frozenset[str]]) -> int:
    """How many reported properties of ``shadow`` the product model does not name."""
    return sum(1 for sid, entry in shadow.items()
               for name in entry.get("reported") or () if name not in model.get(sid, ()))


@dataclass(frozen=True)
class ServicesForm:
    """Where a request lists services, each with one object of properties."""

    listed: str  # the body's field holding the list
    value: str  # each entry's field holding the properties
    entry: str  # how an entry is named in a detail
    unit: str = ""  # what the list counts, in a detail


DESIRED = ServicesForm("shadow", "desired", "each shadow entry", " services")
PROPERTIES = ServicesForm("services", "properties", "each service")


def check_services(body: dict[str, Any], form: ServicesForm,
                   versions: dict[str, dict[str, Any]] | None = None
                   ) -> list[tuple[str, dict[str, Any]]]:
    """The one check of a services list (a desired shadow update, a properties set): 1 to
    ``MAX_SHADOW_SERVICES`` objects, each with a ``service_id`` and its properties object.
    With ``versions`` (a shadow), an entry's optional ``version`` must be its service's."""
    services = body.get(form.listed)
    if not isinstance(services, list) or not 1 <= len(services) <= MAX_SHADOW_SERVICES:
        raise InvalidInput(
            f"{form.listed} must be a list of 1..{MAX_SHADOW_SERVICES}{form.unit}")
    checked: list[tuple[str, dict[str, Any]]] = []
    for service in services:
        if not isinstance(service, dict):
            raise InvalidInput(f"{form.entry} must be an object")
        service_id = text_field(service, "service_id", required=True, max_len=64,
                                pattern=SERVICE_ID)
        properties = object_field(service, form.value)
        if properties is None:
            raise InvalidInput(f"{form.value} is required")
        assert service_id is not None
        if versions is not None:
            version = int_field(service, "version", 0, INT32_MAX)
            current = versions.get(service_id, {}).get("version", 0)
            if version is not None and version != current:
                raise InvalidInput(f"version {version} is not the shadow's {current}")
        checked.append((service_id, properties))
    return checked


def _service(device: Device, service_id: str) -> dict[str, Any]:
    return device.shadow.setdefault(
        service_id, {"desired": {}, "desired_time": None, "version": 0})


class Shadows:
    """Writes to the devices' shadows: the desired side from the API, the reported side from
    the devices."""

    def __init__(self, registry: Registry, products: Products) -> None:
        self.registry = registry
        self.products = products

    def update_desired(self, project_id: str, device_id: str, body: dict[str, Any],
                       now: float) -> Device:
        device = self.registry.device(project_id, device_id)
        checked = check_services(body, DESIRED, device.shadow)
        for service_id, desired in checked:  # all checked first: all or nothing
            entry = _service(device, service_id)
            for key, value in desired.items():
                if value is None:
                    entry["desired"].pop(key, None)  # null removes a desired property
                else:
                    entry["desired"][key] = value
            entry["desired_time"] = now_text(now)
            entry["version"] += 1
        self.registry.touch(device)
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
        kept = -1  # the unmodelled properties, counted when first needed
        for service in services[:MAX_SHADOW_SERVICES]:
            if not isinstance(service, dict):
                continue
            service_id = service.get("service_id")
            properties = service.get("properties")
            if not isinstance(service_id, str) or not SERVICE_ID.fullmatch(service_id) or (
                    not isinstance(properties, dict)):
                continue
            entry = _service(device, service_id)
            reported = entry.setdefault("reported", {})
            for name, value in properties.items():
                if name in reported:
                    reported[name] = value
                    continue
                if model is None:
                    model = self.products.model_of(device.project_id, device.product_id)
                if name in model.get(service_id, ()):
                    reported[name] = value
                    continue
                if kept < 0:
                    kept = unmodelled(device.shadow, model)
                if kept < unmodelled_max:
                    reported[name] = value
                    kept += 1
                else:
                    dropped.append(f"{service_id}/{name}")
            event_time = service.get("event_time")
            entry["reported_time"] = (event_time if isinstance(event_time, str)
                                      and len(event_time) <= 32 else now_text(now))
            taken += 1
        if taken:
            self.registry.touch(device)
        return taken, dropped

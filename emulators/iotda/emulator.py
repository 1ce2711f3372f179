"""The Huawei Cloud IoTDA member: v5 server certificates, device CA certificates, products and
devices (device management), and device access over MQTT (``access.py``).

Scenario options (``options.py``) are the account (AK/SK pairs, tokens, project ids,
instances, region), the platform's limits and the initial products and devices; state is both
certificate stores, the products and the devices, saved after every change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from aiohttp import web

from ..core.httpserver import HttpEmulator
from ..core.state import encode_document, encode_state
from . import control
from .access import IotdaAccess
from .amqp import IotdaAmqp
from .auth import Authenticator, KeyPair, auth_middleware
from .exceptions import (
    ALL_ERRORS,
    BadRequestFormat,
    DeviceOffline,
    InternalError,
    IotdaError,
    TokenNotFound,
)
from .forwarding import Forwarding
from .models import DeviceCA, DeviceCAs, DeviceStore, ServerCertificates
from .models import issued as issued_certificates
from .models.access import LOGIN_HOUR, password_for
from .models.common import IdSource
from .models.routing import Routing
from .options import IotdaOptions
from .urls import ROUTES
from .wire import error_middleware, error_reply


class IotdaService(HttpEmulator):
    """Huawei Cloud IoTDA (v5 API) as the official Python SDK sees it."""

    kind = "iotda"
    title = "Huawei Cloud IoTDA"
    Options = IotdaOptions
    control_routes = control.routes
    control_openapi = control.OPENAPI
    probe_script = "emulators.iotda.probe:SCRIPT"
    client_max_size = 2 * 1024 * 1024
    # A body declared over 2 MiB: IOTDA.000008 at once, the body unread (request.read() would
    # wait for all of it), the connection closed as soon as the client stops sending.
    refuses_large_bodies = True

    options: IotdaOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.authenticator = Authenticator(
            keys={k.ak: KeyPair(k.ak, k.sk, k.project_id) for k in self.options.credentials},
            tokens={t.token: t.project_id for t in self.options.tokens},
            region=self.options.region, max_skew=self.options.max_clock_skew)
        # One id sequence for every resource of this member; it outlives resets and
        # restored snapshots (it only goes up) and is saved with the state for restarts.
        self.ids = IdSource()
        self.server_certificates = ServerCertificates(
            self.options.server_certificate_quota, self.options.server_certificate_owner,
            self.ids)
        self.device_cas = DeviceCAs(
            quota=self.options.device_ca_quota, code_ttl_days=self.options.verify_code_days,
            default_app_id=self.options.default_app_id,
            update_resets_verification=self.options.update_resets_verification, ids=self.ids)
        self.devices = DeviceStore(default_app_id=self.options.default_app_id, ids=self.ids)
        self.access = IotdaAccess(self)
        forwarding = self.options.forwarding
        self.routing = Routing(self.ids, self.options.default_app_id,
                               rule_quota=forwarding.rule_quota,
                               actions_per_rule=forwarding.actions_per_rule)
        self.forwarding = Forwarding(self)
        self.amqp = IotdaAmqp(self)
        self.devices.mail.status_changed = self.forwarding.message_status
        # The certificates issued for scenario devices (models/issued.py): made once, kept in
        # the state, reused by every reset.
        self.issued: dict[str, Any] = {}
        self._issued_new = False

    def freshness_readings(self) -> tuple[float, ...]:
        """The instants a client's own timestamp is judged against (``freshness_clocks``)."""
        if self.options.freshness_clocks == "farm":
            return (self.clock.time(),)
        return self.clock.readings()

    # -- state ---------------------------------------------------------------------------------
    def initial_state(self) -> dict[str, Any]:
        products, devices, cas = self.scenario_devices()
        doc: dict[str, Any] = {"last_id": None, "server_certificates": {"records": []},
                               "device_cas": {"records": cas}, "products": products,
                               "devices": devices, "routing": {}}
        if self.issued:
            doc["issued"] = self.issued
        return doc

    def _device_id(self, device: Any) -> str:
        return device.device_id or f"{device.product_id}_{device.node_id}"

    def scenario_devices(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                        list[dict[str, Any]]]:
        """The scenario's ``products:`` and ``devices:``, added as AddProduct and AddDevice
        would (a bad entry stops the member with the error it would answer); and the device
        CAs of the certificates issued for devices that ask for one, uploaded and verified."""
        store = DeviceStore(default_app_id=self.options.default_app_id, ids=self.ids)
        now = self.clock.time()
        default_project = self.options.credentials[0].project_id
        wanted = [(d.project_id or default_project, self._device_id(d))
                  for d in self.options.devices if d.auth_info.issue_certificate]
        if issued_certificates.issue_missing(self.issued, wanted, now):
            self._issued_new = True
        cas = DeviceCAs(quota=self.options.device_ca_quota, code_ttl_days=1,
                        default_app_id=self.options.default_app_id,
                        update_resets_verification=False, ids=self.ids)
        for project_id in dict.fromkeys(project for project, _ in wanted):
            ca = cas.add(project_id, {"content": self.issued["cas"][project_id]["cert"]}, now)
            cas.records[ca.certificate_id] = replace(ca, status=True)
        for product in self.options.products:
            body = product.model_dump(exclude={"project_id"})
            store.add_product(product.project_id or default_project, body, now)
        for device in self.options.devices:
            body = device.model_dump(exclude={"project_id", "frozen"}, exclude_none=True)
            body["auth_info"] = device.auth_info.model_dump(exclude_none=True,
                                                             exclude={"issue_certificate"})
            if device.auth_info.issue_certificate:
                body["auth_info"]["fingerprint"] = issued_certificates.fingerprint(
                    self.issued["devices"][self._device_id(device)]["cert"])
            project_id = device.project_id or default_project
            record = store.add_device(project_id, body, now)
            record.frozen = device.frozen
        return (*store.dump(), cas.dump()["records"])

    def load_state(self, data: dict[str, Any]) -> None:
        self.issued = data.get("issued") or self.issued
        self.ids.above(data.get("last_id"))
        self.server_certificates.load(data.get("server_certificates", {}))
        self.device_cas.load(data.get("device_cas", {}))
        self.devices.load(data.get("products", []), data.get("devices", []))
        self.routing.load(data.get("routing", {}))

    def dump_state(self) -> dict[str, Any]:
        products, devices = self.devices.dump()
        doc = {"last_id": self.ids.last, "server_certificates": self.server_certificates.dump(),
               "device_cas": self.device_cas.dump(), "products": products,
               "devices": devices, "routing": self.routing.dump()}
        if self.issued:
            doc["issued"] = self.issued
        return doc

    def encoded_state(self) -> bytes:
        """``encode_state(self.dump_state())``, with the devices that did not change since the
        last save copied rather than encoded again (``DeviceStore.encoded``)."""
        parts: dict[str, Sequence[bytes | bytearray]] = {
            "last_id": [encode_state(self.ids.last)],
            "server_certificates": [encode_state(self.server_certificates.dump())],
            "device_cas": [encode_state(self.device_cas.dump())],
            "products": [encode_state([p.to_dict() for p in self.devices.products.values()])],
            "devices": self.devices.encoded.parts(),
            "routing": [encode_state(self.routing.dump())]}
        if self.issued:
            parts["issued"] = [encode_state(self.issued)]
        return encode_document(parts)

    async def write_state(self) -> None:
        await self.ctx.store.save_encoded(self.name, self.encoded_state())

    def state(self) -> dict[str, Any]:
        """The saved state, plus when each CA's verification code stops working."""
        doc = self.dump_state()
        for record in doc["device_cas"]["records"]:
            record["verify_code_expires"] = (record["verify_code_created"]
                                             + self.device_cas.code_ttl)
        return doc

    # -- HTTP ----------------------------------------------------------------------------------
    def vendor_error(self, request: web.Request, message: str,
                     status: int | None = None) -> web.StreamResponse:
        """An injected vendor error (or a failure nothing mapped) in IoTDA's own form: a
        message naming a code of the error table (``IOTDA.014307``) answers that row, any other
        ``IOTDA.000001``; with ``X-Request-Id`` as every IoTDA reply."""
        error_class = next((c for c in ALL_ERRORS if c.code == message.strip()), InternalError)
        response = error_reply(error_class())
        if status:
            response.set_status(status)
        return response

    def body_too_large(self, request: web.Request) -> web.StreamResponse:
        """A body declared over ``client_max_size``: ``IOTDA.000008``, as for any body IoTDA
        cannot take, with ``X-Request-Id`` as every IoTDA reply."""
        return error_reply(BadRequestFormat(f"declared body of {request.content_length} bytes"))

    # -- device access (MQTT) ------------------------------------------------------------------
    async def after_start(self) -> None:
        if self._issued_new:  # a restart must find the same device certificates and keys
            self._issued_new = False
            await self.save()
        await self.access.start()
        await self.amqp.start()

    def issued_for(self, device_id: str) -> dict[str, str] | None:
        """The certificate, key and CA the member issued for a scenario device, or None."""
        record = self.issued.get("devices", {}).get(device_id)
        if record is None:
            return None
        return {"device_id": device_id, "cert": record["cert"], "key": record["key"],
                "ca_cert": self.issued["cas"][record["project_id"]]["cert"]}

    async def before_stop(self) -> None:
        await self.access.stop()
        await self.forwarding.stop()
        await self.amqp.stop()

    async def state_changed(self) -> None:
        """A reset or a restored snapshot: every session ends (its device may be gone or
        changed); devices connect again."""
        self.access.close_all("the member's state was replaced")
        self.forwarding.reset()
        self.amqp.reset()

    def disconnect(self, device_id: str, reason: str) -> None:
        session = self.access.session_of(device_id)
        if session is not None:
            self.access.close(session, reason)

    async def desired_changed(self, device: Any) -> None:
        session = self.access.session_of(device.device_id)
        if session is not None:
            await self.access.push_delta(session, device)

    async def message_created(self, device: Any, record: dict[str, Any]) -> None:
        """A CreateMessage: delivered now to an online device; with ttl 0 to an offline one,
        failed at once (IOTDA.014016, as ListDeviceMessages' error_info documents)."""
        session = self.access.session_of(device.device_id)
        if session is not None:
            await self.access.deliver(session, device, record)
        elif record.get("ttl") == 0:
            self.devices.message_done(device, record, "FAILED", self.clock.time(), (
                DeviceOffline.code, DeviceOffline.message))

    def urls(self) -> dict[str, str]:
        return {**super().urls(), **self.access.urls(), **self.amqp.urls()}

    def extra_description(self) -> dict[str, Any]:
        return {"mqtt_sessions": len(self.access.by_identity),
                "forwarding": self.forwarding.describe(), "amqp_queues": self.amqp.describe()}

    # -- quirk profiles (core/quirks/replay.py) ----------------------------------------------
    def quirk_logins(self) -> dict[str, str]:
        return {k.ak: k.sk for k in self.options.credentials}

    async def quirk_credentials(self, request: web.Request) -> str | None:
        """The gateway's own check: a signature (or token) it accepts, one it refuses, none."""
        try:
            body = await request.read()
        except web.HTTPException:
            return None  # a body it will not read: the member's own reply says so
        try:
            self.authenticator.authenticate(
                method=request.method, path=request.rel_url.raw_path,
                raw_query=request.rel_url.raw_query_string, headers=request.headers,
                body=body, nows=self.freshness_readings())
        except TokenNotFound:
            return "none"
        except IotdaError:
            return "wrong"
        return "right"

    def build_app(self) -> web.Application:
        app = self.new_app(middlewares=[error_middleware, auth_middleware])
        app.router.add_routes(ROUTES)
        return app

    # -- what the farm's own devices ask (iotda_device) ---------------------------------------
    async def register_device(self, *, device_id: str, node_id: str, product_id: str,
                              device_name: str, secret: str, secure_access: bool) -> bool:
        """AddDevice in the first project with a secret, unless a device ``device_id`` exists
        in any project; True when it was added. A body AddDevice refuses raises its error."""
        if self.devices.find(device_id) is not None:
            return False
        self.devices.add_device(self.options.credentials[0].project_id, {
            "node_id": node_id, "product_id": product_id, "device_id": device_id,
            "device_name": device_name,
            "auth_info": {"auth_type": "SECRET", "secret": secret,
                          "secure_access": secure_access}}, self.clock.time())
        await self.save()
        return True

    def mqtt_address(self, tls: bool) -> tuple[str, int]:
        """Where a device connects, over MQTTS or plain MQTT: a listener bound to every
        address is reached on loopback. LookupError when the member has no such listener."""
        label = "mqtts" if tls else "mqtt"
        listener = self.access.listeners.get(label)
        if listener is None:
            raise LookupError(f"{self.name} has no {label} listener")
        host = listener.host if listener.host not in ("0.0.0.0", "::") else "127.0.0.1"
        return host, listener.port

    @staticmethod
    def device_password(secret: str, timestamp: str) -> str:
        """The MQTT password a device derives from its secret for the hour ``YYYYMMDDHH``."""
        return password_for(secret, timestamp)

    # -- control plane -------------------------------------------------------------------------
    async def new_verify_code(self, cert_id: str, project_id: str | None = None) -> DeviceCA:
        """The console's "Generate Verification Code" button: the old code stops working."""
        record = self.device_cas.renew_code(project_id, cert_id, self.clock.time())
        await self.save()
        return record

    def certificates(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for server in self.server_certificates.records.values():
            out.append({"role": f"server certificate {server.server_certificate_id}",
                        "pem": server.certificate_pem})
        for ca in self.device_cas.records.values():
            out.append({"role": f"device CA {ca.certificate_id}", "pem": ca.content,
                        "verified": ca.status,
                        "verify_code_expires": ca.verify_code_created
                        + self.device_cas.code_ttl})
        return out

    def credentials(self) -> dict[str, Any]:
        first = self.options.credentials[0]
        return {
            "ak": first.ak, "sk": first.sk, "project_id": first.project_id,
            "region": self.options.region,
            "keys": [k.model_dump() for k in self.options.credentials],
            "tokens": [t.model_dump() for t in self.options.tokens],
            "instances": list(self.options.instances),
            "devices": self.device_logins(),
        }

    def device_logins(self) -> list[dict[str, Any]]:
        """The scenario's secret devices, and its certificate devices the member issued a
        certificate for, with an MQTT login ready to paste: a ``_0_`` client id (the platform
        does not compare its hour with the clock) with a fixed hour, and the password for that
        hour, or where the control plane hands out the certificate and its key."""
        default = self.options.credentials[0].project_id
        out = []
        for device in self.options.devices:
            info = device.auth_info
            device_id = self._device_id(device)
            if info.auth_type == "SECRET" and info.secret:
                login: dict[str, Any] = {"password": password_for(info.secret, LOGIN_HOUR)}
            elif info.issue_certificate:
                login = {"keys": f"/v1/emulators/{self.name}/iotda/devices/{device_id}/keys"}
            else:
                continue
            out.append({
                "device_id": device_id, "node_id": device.node_id,
                "product_id": device.product_id, "project_id": device.project_id or default,
                "auth_type": info.auth_type, "secure_access": info.secure_access,
                "client_id": f"{device_id}_0_0_{LOGIN_HOUR}", "username": device_id, **login})
        return out

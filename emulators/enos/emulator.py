"""The ``enos`` member: EnOS's Connection Service certificates behind its APIM gateway.

At first start it makes (or takes from the scenario) its RSA and ECC roots and issues the
scenario's bound certificates; that "genesis" is kept in the state, so a reset returns to it
and a restart keeps it.
"""

from __future__ import annotations

import copy
import random
import ssl
import weakref
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from .. import keypool, pki
from ..core.httpserver import HttpEmulator
from ..core.state import StateStore, encode_document, encode_state
from . import control, gateway, urls
from .access import EnosAccess
from .models.access import ready_login
from .models.ca import AUTHORITIES, Authority, RootCA, make_root
from .models.certificates import (
    DEFAULT_VALID_DAY,
    CertificateBook,
    CertificateService,
    CertRecord,
    CertRequest,
    Rules,
)
from .models.faults import Faults, Target
from .models.registry import Device, Org, Product, Registry
from .models.things import Things
from .models.tokens import App, TokenService
from .options import BoundCertificateOptions, EnosOptions
from .sdk import public_key_text
from .wire import error_middleware, render_vendor_error, too_large

DEFAULT_SUBJECT = {"C": "CN", "ST": "Shanghai", "L": "Shanghai", "O": "EnOS", "OU": "EnOS"}


class SerialCounter:
    """certSN values unique across the farm: one counter per state store, saved beside the
    members' documents, never reset with a member."""

    NAME = "_enos-cert-sn"
    _by_store: weakref.WeakKeyDictionary[StateStore, SerialCounter] = (
        weakref.WeakKeyDictionary())

    def __init__(self, store: StateStore, start: int) -> None:
        self.store = store
        saved = store.load(self.NAME)
        self.next = max(start, int(saved["next"])) if saved else start

    @classmethod
    def of(cls, store: StateStore, start: int) -> SerialCounter:
        counter = cls._by_store.get(store)
        if counter is None:
            counter = cls._by_store[store] = cls(store, start)
        return counter

    def allocate(self) -> int:
        value = self.next
        self.next += 1
        return value

    def above(self, used: int) -> None:
        self.next = max(self.next, used + 1)

    async def save(self) -> None:
        await self.store.save(self.NAME, {"next": self.next})


class EnosService(HttpEmulator):
    kind = "enos"
    title = "Envision EnOS Connection Service"
    Options = EnosOptions
    control_routes = control.routes
    probe_script = "emulators.enos.probe:SCRIPT"
    control_openapi = control.OPENAPI
    # A body declared over client_max_size: the gateway's 413 at once, the body unread.
    refuses_large_bodies = True

    options: EnosOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        opts = self.options
        self.registry = Registry(
            [Org(o.orgId, o.name) for o in opts.orgs],
            [Product(p.orgId, p.productKey, p.name, p.biDirectionalAuth, p.maxValidDay,
                     p.productSecret) for p in opts.products],
            [Device(d.orgId, d.assetId, d.productKey, d.deviceKey, d.name)
             for d in opts.devices])
        self.tokens = TokenService([App(a.appKey, a.appSecret, a.orgId) for a in opts.apps],
                                   opts.token_expire)
        self.faults = Faults(probability=opts.faults.probability, service=opts.faults.service,
                             rng=random.Random(opts.faults.seed))
        self.serials = SerialCounter.of(self.ctx.store, opts.cert_sn_start)
        self.roots: dict[Authority, RootCA] = {}
        self.book = CertificateBook()
        self.certs = CertificateService(
            self.registry, self.roots, self.book, self.serials.allocate, self.crl_url,
            Rules(opts.default_valid_day_over_max, opts.renew_old_certificate))
        self._genesis: dict[str, Any] | None = None
        self._genesis_encoded: bytes | None = None
        self._sdk_pem: str | None = None
        self.loaded = False
        self.things = Things(self.registry, {f"{d.productKey}/{d.deviceKey}": d.deviceSecret
                                             for d in opts.devices if d.deviceSecret})
        self.access = EnosAccess(self)

    # -- lifecycle -----------------------------------------------------------------------
    def restore_saved(self) -> None:
        saved = self.ctx.store.load(self.name)
        if saved is not None and "genesis" in saved:
            self.load_state(saved)
            self.loaded = True
        # Else this is the first start: the bound certificates carry this member's URL, so
        # after_start makes the genesis once the listener knows its port.

    async def after_start(self) -> None:
        try:
            if self.options.https_port is not None:
                await self.listen("https", self.host, self.options.https_port, self._tls())
            if not self.loaded:
                self._genesis = self._issue_genesis(await self._make_keys())
                self.load_state(copy.deepcopy(self.initial_state()))
                self.loaded = True
            await self._sdk_key()
            await self.save()
            await self.access.start()
        except BaseException:
            await self.access.stop()
            # The farm stops only members that started: close the listeners ourselves.
            if self.runner is not None:
                await self.runner.cleanup()
                self.runner = None
            self.sites.clear()
            self.bound.clear()
            raise

    async def before_stop(self) -> None:
        await self.access.stop()

    async def state_changed(self) -> None:
        """A reset or restored snapshot ends every MQTT session; devices connect again."""
        self.access.close_all("the member's state was replaced")

    def urls(self) -> dict[str, str]:
        return {**super().urls(), **self.access.urls()}

    async def _sdk_key(self) -> None:
        """The key enos-poseidon's tokens are encrypted to: the scenario's, else the genesis's
        (made once, in an executor; a state saved before there was one gets one now)."""
        assert self._genesis is not None
        if self.options.sdk_token_key is None and "sdk_token_key" not in self._genesis:
            self._genesis["sdk_token_key"] = pki.key_pem(await keypool.arsa_key())
            self._genesis_encoded = None
        self._load_sdk_key()

    def _load_sdk_key(self) -> None:
        pem = self.options.sdk_token_key or (self._genesis or {}).get("sdk_token_key")
        if pem == self._sdk_pem:  # a reset: the same key, already loaded
            return
        key = pki.load_key(pem, trusted=True) if pem else None
        self.tokens.sdk_key = key if isinstance(key, rsa.RSAPrivateKey) else None
        self._sdk_pem = pem

    def _tls(self) -> ssl.SSLContext:
        """HTTPS with a certificate from the farm's local CA (the ready file publishes it)."""
        addresses = tuple(dict.fromkeys(("127.0.0.1", self.host)))
        chain, key = self.ctx.ca.issue_server("enos-apigw", dns_names=("localhost",),
                                              ip_addresses=addresses)
        return pki.server_context(chain, key)

    async def _make_keys(self) -> dict[str, Any]:
        """The CPU-heavy part of the first start, in an executor: roots and device keys."""
        now = self.clock.now()
        roots: dict[str, dict[str, str]] = {}
        for authority in AUTHORITIES:
            supplied = self.options.ca.rsa if authority == "RSA" else self.options.ca.ecc
            if supplied is not None:
                roots[authority] = {"cert": supplied.cert, "key": supplied.key}
                continue
            key: pki.PrivateKey = (await keypool.arsa_key() if authority == "RSA"
                                   else await keypool.aec_key())
            cert = make_root(authority, key, now, self.options.ca.validDays)
            roots[authority] = {"cert": pki.cert_pem(cert), "key": pki.key_pem(key)}
        device_keys: list[str | None] = []
        for spec in self.options.certificates:
            if spec.csr:
                device_keys.append(None)
            elif spec.key:
                device_keys.append(spec.key)
            else:
                made = await (keypool.arsa_key() if spec.issueAuthority == "RSA"
                              else keypool.aec_key())
                device_keys.append(pki.key_pem(made))
        return {"roots": roots, "device_keys": device_keys}

    def _issue_genesis(self, keys: dict[str, Any]) -> dict[str, Any]:
        now = self.clock.now()
        roots = {a: RootCA.from_dict(a, keys["roots"][a]) for a in AUTHORITIES}
        service = CertificateService(self.registry, roots, CertificateBook(),
                                     self.serials.allocate, self.crl_url, self.certs.rules)
        issued: list[dict[str, Any]] = []
        made_keys: dict[str, str] = {}
        for spec, key_pem in zip(self.options.certificates, keys["device_keys"], strict=True):
            record = self._issue_bound(service, spec, key_pem, now)
            issued.append(record.to_dict())
            if key_pem is not None and not spec.key:
                made_keys[str(record.cert_sn)] = key_pem
        return {"ca": keys["roots"], "certificates": issued, "device_keys": made_keys}

    def _issue_bound(self, service: CertificateService, spec: BoundCertificateOptions,
                     key_pem: str | None, now: Any) -> CertRecord:
        device = self.registry.device_by_asset(spec.assetId)
        assert device is not None  # the options checked the reference
        authority: Authority = spec.issueAuthority
        if spec.csr:
            csr = pki.load_csr(spec.csr)
            request = CertRequest.of(csr.public_key(), csr.subject)
        else:
            assert key_pem is not None
            fields = {**DEFAULT_SUBJECT, "CN": device.device_key, **(spec.subject or {})}
            request = CertRequest.of(pki.load_key(key_pem, trusted=True).public_key(),
                                     pki.name(**fields))
        product = self.registry.product_of(device)
        valid_day = spec.validDay or min(DEFAULT_VALID_DAY, product.max_valid_day)
        start, end = service.validity(product, valid_day, service.roots[authority], now)
        return service._issue(device, request, authority, start, end, now)

    # -- state ---------------------------------------------------------------------------
    def initial_state(self) -> dict[str, Any]:
        assert self._genesis is not None
        return {
            "genesis": self._genesis,
            "certificates": copy.deepcopy(self._genesis["certificates"]),
            "tokens": [],
            "used_encryptions": {},
            "faults": {"remaining": self.options.faults.next_calls},
            "things": {},
        }

    def load_state(self, data: dict[str, Any]) -> None:
        self._genesis = data["genesis"]
        self._genesis_encoded = None
        self.roots.clear()
        self.roots.update({a: RootCA.from_dict(a, data["genesis"]["ca"][a])
                           for a in AUTHORITIES})
        self.book.clear()
        for item in data.get("certificates", []):
            record = CertRecord.from_dict(item)
            self.book.add(record)
            self.serials.above(record.cert_sn)
        self.tokens.load(data)
        self._load_sdk_key()
        self.faults.remaining = int(data.get("faults", {}).get("remaining", 0))
        self.things.load(data.get("things", {}))

    def dump_state(self) -> dict[str, Any]:
        assert self._genesis is not None
        return {"genesis": self._genesis, "certificates": self.book.to_list(),
                **self._small_state()}

    def _small_state(self) -> dict[str, Any]:
        return {**self.tokens.dump(), "faults": {"remaining": self.faults.remaining},
                "things": self.things.dump()}

    def encoded_state(self) -> bytes:
        """``encode_state(self.dump_state())`` from kept encodings of the genesis and of the
        book: a save copies them once (one join) rather than encoding every certificate."""
        assert self._genesis is not None
        if self._genesis_encoded is None:
            self._genesis_encoded = encode_state(self._genesis)
        return encode_document({
            "genesis": [self._genesis_encoded],
            "certificates": self.book.encoded.parts(),
            **{key: [encode_state(value)] for key, value in self._small_state().items()}})

    def state(self) -> dict[str, Any]:
        """The control plane's view: no root private keys, but the keys made for devices."""
        assert self._genesis is not None
        return {
            "ca": {a: r.pem for a, r in self.roots.items()},
            "orgs": [o.org_id for o in self.registry.orgs.values()],
            "devices": [d.to_dict() for d in self.registry.devices],
            "certificates": self.book.to_list(),
            "device_keys": self._genesis.get("device_keys", {}),
            "tokens": len(self.tokens.tokens),
            "faults": self.faults.dump(),
            "things": self.things.view(),
            "mqtt_sessions": self.access.sessions(),
        }

    def device_keys(self, asset_id: str) -> list[dict[str, str]]:
        """The keys this member made at its first start for ``asset_id``'s bound
        certificates, each with its certificate: what the device needs to log in on 18883.
        The state view holds them too, but the control plane withholds every private key
        there; this is the one place it hands out (``GET .../enos/devices/{asset_id}/keys``)."""
        assert self._genesis is not None
        made: dict[str, str] = self._genesis.get("device_keys", {})
        out = []
        for sn, key in made.items():
            record = self.book.get(int(sn))
            if record is not None and record.asset_id == asset_id:
                out.append({"certSN": sn, "issueAuthority": record.issue_authority,
                            "cert": record.cert, "key": key})
        return out

    async def write_state(self) -> None:
        await self.ctx.store.save_encoded(self.name, self.encoded_state())
        await self.serials.save()

    # -- for the wire and for tests ---------------------------------------------------------
    def base_url(self) -> str:
        if self.options.public_url:
            return self.options.public_url.rstrip("/")
        label = "https" if "https" in self.bound else "http"
        host, port = self.bound[label]
        return f"{label}://{host}:{port}"

    def chain_url(self, authority: Authority) -> str:
        return self.base_url() + urls.CA_CERT.format(authority=authority)

    def crl_url(self, authority: Authority) -> str:
        return self.base_url() + urls.CA_CRL.format(authority=authority)

    async def check_faults(self, target: Target) -> None:
        """Fail this call when the scenario's faults say so; the countdown is saved."""
        counting = self.faults.remaining > 0
        try:
            self.faults.check(target)
        except Exception:
            if counting:
                await self.save()
            raise

    def inject_internal_errors(self, count: int) -> None:
        """The next ``count`` certificate calls answer 99500 (for clients' retry paths)."""
        self.faults.remaining = count

    def vendor_error(self, request: web.Request, message: str,
                     status: int | None = None) -> web.StreamResponse:
        """The farm's injected vendor errors and last-resort failures, in EnOS's own form."""
        return render_vendor_error(request, message, status)

    def body_too_large(self, request: web.Request) -> web.StreamResponse:
        return too_large()

    def build_app(self) -> web.Application:
        app = self.new_app(middlewares=[error_middleware, gateway.auth_middleware])
        app.router.add_routes(urls.ROUTES)
        return app

    # -- quirk profiles (core/quirks/replay.py) ----------------------------------------------
    def quirk_logins(self) -> dict[str, str]:
        return {a.app_key: a.app_secret for a in self.tokens.apps.values()}

    async def quirk_credentials(self, request: web.Request) -> str | None:
        try:
            return await gateway.judge(self, request)
        except web.HTTPException:
            return None  # a body it will not read: the member's own reply says so

    def credentials(self) -> dict[str, Any]:
        apps = [{"appKey": a.app_key, "appSecret": a.app_secret}
                for a in self.tokens.apps.values()]
        doc: dict[str, Any] = {"apps": apps, **(apps[0] if apps else {}),
                               "devices": self.device_logins()}
        if self.tokens.sdk_key is not None:
            # enos-poseidon's ``pubkey`` for this member: ``poseidon.poseidon.pubkey = ...``.
            doc["sdkPublicKey"] = public_key_text(self.tokens.sdk_key)
        return doc

    def device_logins(self) -> list[dict[str, Any]]:
        """The scenario's devices with a secret, each with an MQTT login ready to paste (a
        device of a bi-directional product logs in on the TLS port, with its certificate)."""
        out = []
        for device in self.options.devices:
            if not device.deviceSecret:
                continue
            product = next(p for p in self.options.products
                           if p.productKey == device.productKey)
            out.append({"assetId": device.assetId, "productKey": device.productKey,
                        "deviceKey": device.deviceKey,
                        "certificate_required": product.biDirectionalAuth,
                        **ready_login(device.deviceKey, device.productKey, device.deviceSecret)})
        return out

    def certificates(self) -> list[dict[str, Any]]:
        roots = [{"role": f"{a} root CA", "pem": r.pem} for a, r in self.roots.items()]
        issued = [{"role": f"device certificate of {r.asset_id}", "pem": r.cert,
                   "certSN": r.cert_sn, "revoked": r.revoked} for r in self.book.records.values()]
        return roots + issued

    def extra_description(self) -> dict[str, Any]:
        return {"orgs": [o.org_id for o in self.registry.orgs.values()],
                "ca_urls": {a: self.chain_url(a) for a in AUTHORITIES} if self.bound else {}}

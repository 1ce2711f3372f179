"""One camera's face toward camera software: its ONVIF services, its RTSP server, its
snapshots and its WS-Discovery presence, with the state they share (the camera's clock offset,
its scopes and hostname, whether it is up or rebooting).

A camera kind builds one ``VideoWing`` from its ``VideoFacts`` and ``VideoOptions``, adds the
ONVIF routes to the application that serves them (its own HTTP port, or the wing's own
listener on ``onvif_port``), and starts and stops it with itself. The protocols read what
they need from the wing: ``facts``, ``options``, ``camera_time()``, ``record()``,
``fault()``, the URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..journal import CORRELATION, Entry
from ..member import Member
from .digest import DigestAuth
from .facts import StreamProfile, VideoFacts
from .options import VideoOptions

if TYPE_CHECKING:
    from ..faults import FaultRule
    from .onvif.events import EventService
    from .onvif.service import OnvifService
    from .rtsp.server import RtspServer

log = logging.getLogger("emulators.video")

ONVIF_PREFIX = "/onvif/"


class VideoWing:
    def __init__(self, member: Member, facts: VideoFacts, options: VideoOptions, *,
                 rtsp_port: int | None, onvif_port: int | None,
                 http_url: Callable[[], str],
                 power: Callable[[bool], Awaitable[None]] | None = None) -> None:
        """``rtsp_port``: where RTSP listens (0 a free port, None no RTSP); ``onvif_port``:
        None serves ONVIF on the member's own HTTP application (``add_routes``), a number on
        a listener of the wing's own; ``http_url``: the member's HTTP base URL (snapshots);
        ``power(False)`` / ``power(True)``: the member's own listeners go down and come back
        (a SystemReboot)."""
        from .onvif.events import EventService
        from .onvif.service import OnvifService
        from .rtsp.server import RtspServer

        self.member = member
        self.facts = facts
        self.options = options
        self.clock = member.clock
        self.rtsp_port = rtsp_port
        self.onvif_port = onvif_port
        self.http_url = http_url
        self.power = power
        self.auth = DigestAuth(facts.realm)
        # State the camera keeps on flash (dump/load): what SetScopes, SetHostname and
        # SetSystemDateAndTime change.
        self.scopes: list[str] = []  # the configurable (non-fixed) scopes
        self.hostname = member.name
        self.clock_offset = options.clock_offset
        # SetSystemDateAndTime's settings besides the clock: how the time is set, daylight
        # saving, the POSIX time zone.
        self.date_time_type = "Manual"
        self.daylight_savings = False
        self.timezone = "UTC0"
        # The camera's WS-Discovery endpoint reference (and GetEndpointReference's GUID): a
        # UUID URN of its name and address, the same at every start, and apart from a camera
        # of the same name in another farm (discovery clients merge answers by it).
        self.endpoint = "urn:uuid:" + str(uuid.uuid5(
            uuid.NAMESPACE_URL, f"onvif-camera:{member.name}@{member.host}"))
        self.discoverable = options.discoverable and options.onvif
        # False while the camera reboots (SystemReboot): every listener of the wing is down.
        self.up = False
        self.onvif: OnvifService = OnvifService(self)
        self.events: EventService = EventService(self)
        self.rtsp: RtspServer | None = RtspServer(self) if rtsp_port is not None else None
        self._runner: web.AppRunner | None = None
        self._onvif_bound: tuple[str, int] | None = None
        self._reboot: asyncio.Task[None] | None = None

    # -- identity and URLs -------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.member.name

    @property
    def host(self) -> str:
        return self.member.host

    def camera_time(self) -> float:
        """The camera's own clock: the farm clock plus the camera's offset."""
        return self.clock.time() + self.clock_offset

    def onvif_base(self, host: str | None = None) -> str:
        """``http://host:port`` of the ONVIF services (``host``: as the client addressed the
        camera, when known; a camera answers with the address it was reached on)."""
        if self._onvif_bound is not None:
            port = self._onvif_bound[1]
        else:
            port = int(self.http_url().rsplit(":", 1)[1])
        return f"http://{host or self.url_host}:{port}"

    @property
    def url_host(self) -> str:
        host = self.member.host
        return "127.0.0.1" if host in ("0.0.0.0", "") else host

    def device_url(self, host: str | None = None) -> str:
        return f"{self.onvif_base(host)}/onvif/device_service"

    def service_url(self, service: str, host: str | None = None) -> str:
        return f"{self.onvif_base(host)}/onvif/{service}"

    def rtsp_url(self, profile: StreamProfile, host: str | None = None) -> str | None:
        if self.rtsp is None or self.rtsp.port is None:
            return None
        return f"rtsp://{host or self.url_host}:{self.rtsp.port}{profile.rtsp_path}"

    def snapshot_url(self, profile: StreamProfile, host: str | None = None) -> str:
        base = self.http_url()
        if host:
            base = f"http://{host}:{base.rsplit(':', 1)[1]}"
        return f"{base}{profile.snapshot_path}"

    def urls(self) -> dict[str, str]:
        found: dict[str, str] = {}
        if self.options.onvif:
            found["onvif"] = self.device_url()
        if self.facts.profiles and (rtsp := self.rtsp_url(self.facts.profiles[0])):
            found["rtsp"] = rtsp
        return found

    def bound_ports(self) -> dict[str, int]:
        ports = {}
        if self._onvif_bound is not None:
            ports["onvif"] = self._onvif_bound[1]
        if self.rtsp is not None and self.rtsp.port is not None:
            ports["rtsp"] = self.rtsp.port
        return ports

    def all_scopes(self) -> list[str]:
        """Fixed scopes first (profiles, hardware, name as set), then the configurable ones."""
        fixed = ["onvif://www.onvif.org/type/video_encoder",
                 "onvif://www.onvif.org/Profile/Streaming"]
        if self.facts.claims_profile_t:
            fixed.append("onvif://www.onvif.org/Profile/T")
        fixed.append(f"onvif://www.onvif.org/hardware/{_scope_part(self.facts.identity.model)}")
        fixed.extend(self.facts.extra_scopes)
        return fixed + self.scopes

    def default_scopes(self) -> list[str]:
        scopes = [f"onvif://www.onvif.org/name/{_scope_part(self.member.name)}"]
        if self.options.location:
            scopes.append(f"onvif://www.onvif.org/location/{_scope_part(self.options.location)}")
        return scopes

    # -- journal and faults ------------------------------------------------------------------
    def record(self, protocol: str, event: str, **fields: Any) -> Entry:
        m = self.member
        return m.ctx.journal.record(m.name, m.kind, protocol, event, **fields)

    def fault(self, protocol: str, types: tuple[str, ...], *, command: str | None = None,
              path: str | None = None, method: str | None = None) -> FaultRule | None:
        faults = self.member.ctx.faults
        if not faults.rules:
            return None
        m = self.member
        return faults.check(m.name, m.kind, protocol, types=types, command=command, path=path,
                            method=method, group=m.spec.group)

    # -- HTTP side ---------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        """The ONVIF service paths, on the application that serves them."""
        if self.options.onvif:
            self.onvif.add_routes(app)

    def owns(self, request: web.Request) -> bool:
        return request.path.startswith(ONVIF_PREFIX)

    def command_of(self, request: web.Request) -> str | None:
        """The SOAP operation of an ONVIF request, for fault rules: SOAP 1.2 names it in the
        Content-Type's ``action`` (SOAP 1.1 in SOAPAction); read without the body."""
        return self.onvif.operation_of(request)

    def vendor_error(self, request: web.Request, message: str,
                     status: int | None = None) -> web.StreamResponse:
        """An injected or unmapped failure on an ONVIF path: a SOAP fault."""
        return self.onvif.receiver_fault(message, status)

    # -- state -------------------------------------------------------------------------------
    def dump_state(self) -> dict[str, Any]:
        return {"scopes": list(self.scopes), "hostname": self.hostname,
                "clock_offset": self.clock_offset, "discoverable": self.discoverable,
                "date_time": {"type": self.date_time_type,
                              "daylight_savings": self.daylight_savings,
                              "timezone": self.timezone}}

    def load_state(self, data: dict[str, Any] | None) -> None:
        data = data or {}
        scopes = data.get("scopes")
        self.scopes = [str(s) for s in scopes] if isinstance(scopes, list) \
            else self.default_scopes()
        self.hostname = str(data.get("hostname") or self.member.name)
        self.clock_offset = float(data.get("clock_offset", self.options.clock_offset))
        self.discoverable = bool(data.get("discoverable", self.options.discoverable)) \
            and self.options.onvif
        found = data.get("date_time")
        date_time: dict[str, Any] = found if isinstance(found, dict) else {}
        self.date_time_type = "NTP" if date_time.get("type") == "NTP" else "Manual"
        self.daylight_savings = bool(date_time.get("daylight_savings", False))
        self.timezone = str(date_time.get("timezone") or "UTC0")

    def initial_state(self) -> dict[str, Any]:
        return {"scopes": self.default_scopes(), "hostname": self.member.name,
                "clock_offset": self.options.clock_offset,
                "discoverable": self.options.discoverable and self.options.onvif}

    def describe(self, *, now: bool = True) -> dict[str, Any]:
        """The wing's state for the control plane; ``now``: with the camera's clock reading
        (not in the member's state view, which a test compares before and after a request)."""
        doc: dict[str, Any] = {"up": self.up, "clock_offset": self.clock_offset,
                               "discoverable": self.discoverable, "scopes": self.all_scopes(),
                               "hostname": self.hostname}
        doc["rtsp_sessions"] = self.rtsp.session_count() if self.rtsp is not None else 0
        doc["subscriptions"] = self.events.subscription_count()
        if now:
            doc["camera_time"] = self.camera_time()
        return doc

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Bring up the wing's listeners (RTSP, ONVIF's own port), then announce the camera."""
        if self.onvif_port is not None and self.options.onvif and self._runner is None:
            await self._start_onvif_listener()
        if self.rtsp is not None:
            await self.rtsp.start(self.member.host, self.rtsp_port or 0)
            self.rtsp_port = self.rtsp.port  # a restart (reboot) keeps the port
        await self.events.start()
        self.up = True
        if self.discoverable:
            from .discovery import DISCOVERY

            await DISCOVERY.join(self)

    async def stop(self) -> None:
        if self._reboot is not None and self._reboot is not asyncio.current_task():
            self._reboot.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reboot
            self._reboot = None
        await self._down()

    async def _down(self) -> None:
        from .discovery import DISCOVERY

        self.up = False
        await DISCOVERY.leave(self)
        await self.events.stop()
        if self.rtsp is not None:
            await self.rtsp.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _start_onvif_listener(self) -> None:
        from ..httpserver import SHUTDOWN_GRACE, ObservedRunner  # the member's own server kind

        app = web.Application(client_max_size=self.onvif.MAX_BODY)
        from ..observe import MEMBER

        app[MEMBER] = self.member  # type: ignore[misc]  # an HttpEmulator: the kinds are
        self.onvif.add_routes(app)
        observe = self.member.ctx.http_observer
        dress = getattr(self.member, "dress_reply", lambda response: None)
        runner = ObservedRunner(
            app, None if observe is None else functools.partial(observe, self.member), dress,
            access_log=None, shutdown_timeout=SHUTDOWN_GRACE, handle_signals=False,
            keepalive_timeout=15.0)
        await runner.setup()
        site = web.TCPSite(runner, self.member.host, self.onvif_port or 0, reuse_address=True,
                           backlog=512)
        await site.start()
        from ..aiohttp_internals import bound_address

        self._onvif_bound = bound_address(site)
        self.onvif_port = self._onvif_bound[1]
        self._runner = runner

    async def set_clock_offset(self, offset: float) -> None:
        """The camera's clock now runs ``offset`` seconds from the farm clock (kept on
        flash, as a camera keeps the time it was set to across a restart)."""
        self.clock_offset = offset
        self.record("onvif", "clock", detail={"clock_offset": offset})
        await self.member.save()

    async def set_discoverable(self, on: bool) -> None:
        from .discovery import DISCOVERY

        on = on and self.options.onvif
        if on == self.discoverable:
            return
        self.discoverable = on
        if self.up:
            await (DISCOVERY.join(self) if on else DISCOVERY.leave(self))

    def reboot(self) -> None:
        """SystemReboot: the camera goes away (Bye, listeners closed) once the reply is out,
        and comes back after ``boot_seconds`` of the farm clock."""
        if self._reboot is not None and not self._reboot.done():
            return
        self._reboot = asyncio.get_running_loop().create_task(
            self._rebooting(), name=f"{self.name}-reboot")

    async def _rebooting(self) -> None:
        await asyncio.sleep(0.2)  # the SystemReboot reply leaves first
        self.record("onvif", "reboot", detail={"boot_seconds": self.options.boot_seconds})
        try:
            await self._down()
            if self.power is not None:
                await self.power(False)
            await self.clock.sleep(self.options.boot_seconds)
            if self.power is not None:
                await self.power(True)
            await self.start()
            self.record("onvif", "booted")
        except Exception as exc:  # noqa: BLE001 - a camera that cannot come back says so
            log.exception("%s: reboot failed", self.name)
            self.member.report_failure(f"the camera did not come back from a reboot: {exc}")

    # -- snapshots ---------------------------------------------------------------------------
    async def snapshot(self, request: web.Request, profile: StreamProfile,
                       login: Callable[[web.Request], bool] | None = None) -> web.Response:
        """The JPEG of ``profile`` at its resolution, for a caller with HTTP Digest or Basic
        credentials of a camera user (or whom the kind's own ``login`` lets in: INSTAR's
        ``user``/``pwd`` query); else 401 with Digest and Basic challenges."""
        from .media import snapshot_jpeg

        if not (login is not None and login(request)):
            allowed = self.auth.check(request.method, request.headers.get("Authorization"),
                                      self._password_of)
            if not allowed:
                return web.Response(status=401, text=self.facts.unauthorized_body,
                                    headers=self._challenge_headers(stale=allowed is False))
        body = await snapshot_jpeg(profile.width, profile.height)
        return web.Response(body=body, content_type="image/jpeg")

    def _password_of(self, user: str) -> str | None:
        found = self.facts.user(user)
        return found.password if found is not None else None

    def _challenge_headers(self, *, stale: bool = False) -> Any:
        from multidict import CIMultiDict

        headers: CIMultiDict[str] = CIMultiDict()
        for value in self.auth.challenges(stale=stale):
            headers.add("WWW-Authenticate", value)
        return headers

    # -- events ------------------------------------------------------------------------------
    def motion(self, active: bool) -> None:
        """The camera saw motion start (or end): the ONVIF motion events go to every
        subscriber, under the correlation id of whatever raised the alarm."""
        correlation = CORRELATION.get() or self.member.ctx.journal.new_correlation_id()
        self.events.motion(active, correlation)


def _scope_part(text: str) -> str:
    """A scope path segment: ONVIF scopes are URIs, so spaces and reserved characters are
    percent-encoded."""
    from urllib.parse import quote

    return quote(text, safe="-._~")

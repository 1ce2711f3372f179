"""The INSTAR WQHD (2K+) camera as a farm member: saved settings, its SSH key, and the uploads
it makes on its own (testftp, alarms, the snapshot schedule). Its scenario keys: options.py."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .. import keypool, pki
from ..core.httpserver import HttpEmulator
from ..core.journal import CORRELATION
from ..core.replyheaders import ReplyHeaders
from ..core.video import control as video_control
from ..core.video.onvif.device import mac_address
from ..core.video.wing import VideoWing
from . import control, uploader, urls, video
from .exceptions import Busy, InternalError, InvalidValue
from .models.actions import TYPES, Cooldowns, FtpAction, default_actions
from .models.ftp import SSL_FTPS, SSL_NONE, SSL_SFTP, FtpSettings
from .models.schedule import (
    SnapSchedule,
    SnapTimerNaming,
    alarm_file_name,
    daily_folder,
)
from .options import InstarOptions, UserOption
from .picture import TEST_SNAPSHOT, snapshot
from .wire import render

if TYPE_CHECKING:
    import asyncssh

log = logging.getLogger("emulators.instar")

TEST_FILE = "Test-Snapshot.jpeg"
ADDRESS_KEYS = ("ft_server", "ft_port")
UPLOAD_LOG_SIZE = 100


class InstarCamera(HttpEmulator):
    kind = "instar-camera"
    role = "emulator"
    title = "INSTAR WQHD (2K+) IP camera: param.cgi FTP/FTPS/sFTP upload"
    Options = InstarOptions
    server_refs = ("upload_server",)
    probe_script = "emulators.instar.probe:SCRIPT"
    control_routes = (control.routes, video_control.routes)
    control_openapi = {**control.OPENAPI, **video_control.OPENAPI}
    # A body declared over 2 MiB: the web server's own 413 page at once, the body unread.
    refuses_large_bodies = True

    options: InstarOptions
    # The camera's own attributes in slots: with the base classes' they were 33, past the 30
    # an instance dict shares its keys for (CPython 3.11), so each camera had a dict of its
    # own, 1,584 bytes; now the dict holds the bases' 16 and shares their keys. With the
    # upload log made on the first upload, 1,000 cameras' Python heap is 11.9 -> 9.9 KB each
    # (tracemalloc, after start; bench/shards.py, 100,000 cameras: bench/README.md "Shards").
    __slots__ = ("profile", "logins", "ftp", "actions", "snapcount", "schedule", "snap_timer",
                 "pinned_hostkey", "server_address", "ssh_key", "_ssh_key_pem", "cooldowns",
                 "_uploads", "testftp_running", "_address_moved", "_scheduler", "_key_task",
                 "video")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.profile = self.options.profile
        # (name, password) -> the user; the first of two alike wins, as the list is read.
        self.logins: dict[tuple[str, str], UserOption] = {}
        for user in self.options.users:
            self.logins.setdefault((user.name, user.password), user)
        self.ftp = FtpSettings()
        self.actions: dict[str, FtpAction] = default_actions()
        self.snapcount = 5
        self.schedule = SnapSchedule()
        self.snap_timer = SnapTimerNaming()
        self.pinned_hostkey: str | None = None
        self.server_address: dict[str, str] | None = None  # upload_server's, as last seen
        self.ssh_key: asyncssh.SSHKey | None = None
        self._ssh_key_pem: str | None = None
        self.cooldowns = Cooldowns()
        self._uploads: collections.deque[dict[str, Any]] | None = None  # made on the first
        self.testftp_running = False
        self._address_moved = False  # the upload server's address differs from the loaded one
        self._scheduler: asyncio.Task[None] | None = None
        self._key_task: asyncio.Task[None] | None = None
        # ONVIF on its own port (none: ONVIF and discovery off), RTSP on another.
        video_options = self.options.video
        if self.options.onvif_port is None:
            video_options = video_options.model_copy(update={"onvif": False})
        self.video = VideoWing(self, video.facts(self.name, self.options), video_options,
                               rtsp_port=self.options.rtsp_port,
                               onvif_port=self.options.onvif_port or 0,
                               http_url=self._base_url, power=self._power)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        await super().start()  # loads the saved key, when there is one
        if self.ssh_key is None and self.options.ssh_key_generation == "at-start":
            self._start_key_task()
        if self._address_moved:
            # Only then does the state differ from what is on flash (or from the initial
            # state, which a start without a saved file makes again): a save per camera at
            # every start was a write and two fsyncs times 100,000 (bench/shards.py).
            await self.save()
        self._restart_scheduler()

    async def _make_ssh_key(self) -> None:
        key = await keypool.arsa_key(self.options.ssh_key_bits)
        self._set_ssh_key(pki.key_pem(key, traditional=True))
        await self.save()

    def _start_key_task(self) -> None:
        # RSA 4096 takes about a second of CPU: made off the loop, in the background; whoever
        # needs the key first (getpubkey, an sFTP upload) waits for it.
        self._key_task = asyncio.get_running_loop().create_task(
            self._make_ssh_key(), name=f"{self.name}-ssh-key")

    async def ensure_ssh_key(self) -> asyncssh.SSHKey:
        if self.ssh_key is None:
            if self._key_task is None or self._key_task.done():
                self._start_key_task()
            assert self._key_task is not None
            await asyncio.shield(self._key_task)
        assert self.ssh_key is not None
        return self.ssh_key

    async def after_start(self) -> None:
        await self.video.start()

    async def _power(self, on: bool) -> None:
        """A reboot: the web server goes down with the rest of the camera, and comes back."""
        if on:
            await self.listen("http", self.host, self.port)
        else:
            await self.unlisten("http")

    async def video_motion(self, active: bool) -> None:
        self.video.motion(active)

    async def before_stop(self) -> None:
        await self.video.stop()
        tasks = [t for t in (self._scheduler, self._key_task) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._scheduler = self._key_task = None

    async def state_changed(self) -> None:
        self._restart_scheduler()

    def reply_headers(self) -> ReplyHeaders:
        return ReplyHeaders(self.profile.reply_date, self.profile.reply_headers)

    def build_app(self) -> web.Application:
        app = self.new_app()
        urls.add_routes(app, self)
        return app

    def command_of(self, request: web.Request) -> str | None:
        if self.video.owns(request):
            return self.video.command_of(request)
        return request.query.get("cmd")

    def vendor_error(self, request: web.Request, message: str,
                     status: int | None = None) -> web.StreamResponse:
        """An injected or unmapped failure in the camera's form: ``response="<code>";``.
        A numeric ``message`` is the code; otherwise 214 for an internal error, else 213.
        On the ONVIF port: a SOAP fault."""
        if self.video.owns(request):
            return self.video.vendor_error(request, message, status)
        if message.isdigit():
            code = int(message)
        else:
            code = InternalError.code if message == "internal error" else 213
        reply = render([], code, request.query.get("cmd"), self.profile)
        if status is not None:
            reply.set_status(status)
        return reply

    def _set_ssh_key(self, pem: str) -> None:
        import asyncssh  # here, not at the top: see uploader's docstring

        self._ssh_key_pem = pem
        self.ssh_key = asyncssh.import_private_key(pem)

    # -- state -----------------------------------------------------------------------------
    def initial_state(self) -> dict[str, Any]:
        params = self._upload_server_params()
        params.update(self.options.ftp.params())
        ftp = FtpSettings().updated(params, self.profile)
        actions = default_actions()
        for kind, opt in self.options.ftp_actions.items():
            actions[kind] = FtpAction(opt.enable, opt.interval)
        sched = self.options.snap_schedule
        return {
            "ftp": ftp.to_dict(),
            "actions": {k: {"enable": a.enable, "interval": a.interval}
                        for k, a in actions.items()},
            "snapcount": self.options.snapcount,
            "snap_schedule": sched.model_dump(),
            "snap_timer": SnapTimerNaming().to_dict(),
            "pinned_hostkey": None,
            "upload_server_address": self._upload_server_address(),
            "video": self.video.initial_state(),
        }

    def _upload_server_address(self) -> dict[str, str] | None:
        params = self._upload_server_params()
        return {k: params[k] for k in ADDRESS_KEYS} if params else None

    def _upload_server_params(self) -> dict[str, str]:
        name = self.options.upload_server
        if not name:
            return {}
        wanted = self.options.upload_user
        try:
            target = self.ctx.member(name).upload_target(wanted)
        except LookupError:
            raise ValueError(f"upload server {name!r} has no user {wanted!r}") from None
        if target is None:
            raise ValueError(f"{name!r} takes no uploads")
        ssl = {"ftp": SSL_NONE, "ftps": SSL_FTPS, "sftp": SSL_SFTP}[target.protocol]
        params = {"ft_server": target.host, "ft_port": str(target.port), "ft_ssl": str(ssl)}
        if target.user is not None:
            params["ft_username"] = target.user
            params["ft_password"] = target.password or ""
        return params

    def load_state(self, data: dict[str, Any]) -> None:
        self.ftp = FtpSettings.from_dict(data.get("ftp", {}))
        self.actions = default_actions()
        for kind, value in (data.get("actions") or {}).items():
            if kind in TYPES:
                self.actions[kind] = FtpAction(int(value["enable"]), int(value["interval"]))
        self.snapcount = int(data.get("snapcount", 5))
        self.schedule = SnapSchedule.from_dict(data.get("snap_schedule") or {}, self.profile)
        self.snap_timer = SnapTimerNaming.from_dict(data.get("snap_timer") or {})
        self.pinned_hostkey = data.get("pinned_hostkey")
        self._follow_upload_server(data.get("upload_server_address"))
        self.video.load_state(data.get("video"))
        # Cooldowns live in RAM: a restart or a reset forgets when the last upload went out.
        self.cooldowns = Cooldowns()
        # A settings reset keeps the camera's identity key (the initial state has none).
        if data.get("ssh_key"):
            self._set_ssh_key(data["ssh_key"])

    def _follow_upload_server(self, saved: dict[str, str] | None) -> None:
        """A farm server on a free port gets a new one at every start: settings still holding
        the address it had are moved along (an address the user set stays)."""
        now = self._upload_server_address()
        self._address_moved = saved != now
        if saved and now:
            moved = {k: now[k] for k in ADDRESS_KEYS
                     if str(getattr(self.ftp, k)) == saved.get(k) != now[k]}
            if moved:
                self.ftp = self.ftp.updated(moved, self.profile)
        self.server_address = now

    def dump_state(self) -> dict[str, Any]:
        return {
            "ftp": self.ftp.to_dict(),
            "actions": {k: {"enable": a.enable, "interval": a.interval}
                        for k, a in self.actions.items()},
            "snapcount": self.snapcount,
            "snap_schedule": self.schedule.to_dict(),
            "snap_timer": self.snap_timer.to_dict(),
            "pinned_hostkey": self.pinned_hostkey,
            "upload_server_address": self.server_address,
            "ssh_key": self._ssh_key_pem,
            "video": self.video.dump_state(),
        }

    def state(self) -> dict[str, Any]:
        doc = self.dump_state()
        doc.pop("ssh_key", None)
        doc["ftp"].pop("ft_password", None)
        doc["public_key"] = self.public_key_line()
        doc["uploads"] = list(self._uploads or ())
        doc["testftp_running"] = self.testftp_running
        doc["video"] = self.video.describe(now=False)
        return doc

    def credentials(self) -> dict[str, Any]:
        admin = next((u for u in self.options.users if u.role == "admin"), None)
        return {"user": admin.name, "password": admin.password} if admin else {}

    def urls(self) -> dict[str, str]:
        return {**super().urls(), **self.video.urls()}

    def quirk_logins(self) -> dict[str, str]:
        logins: dict[str, str] = {}
        for user in self.options.users:  # the first of two alike wins, as logins are read
            logins.setdefault(user.name, user.password)
        return logins

    def quirk_values(self) -> dict[str, str]:
        return {"serial": self.video.facts.identity.serial, "mac": mac_address(self.name)}

    def extra_description(self) -> dict[str, Any]:
        return {"model": self.options.model, "param_cgi": f"{self._base_url()}/param.cgi"}

    def _base_url(self) -> str:
        bound = self.bound.get("http")
        return f"http://{bound[0]}:{bound[1]}" if bound else f"http://{self.host}:{self.port}"

    # -- settings commands -----------------------------------------------------------------
    async def set_ftp(self, params: dict[str, str]) -> None:
        if self.testftp_running and self.profile.setftpattr_busy_during_testftp:
            raise Busy("testftp is running")
        self.ftp = self.ftp.updated(params, self.profile)
        await self.save()

    async def set_action(self, kind: str, params: dict[str, str]) -> None:
        self.actions[kind] = self.actions[kind].updated(params)
        await self.save()
        self._restart_scheduler()

    async def set_snapcount(self, value: int) -> None:
        self.snapcount = value
        await self.save()

    async def set_schedule(self, params: dict[str, str]) -> None:
        self.schedule = self.schedule.updated(params, self.profile)
        await self.save()
        self._restart_scheduler()

    async def set_snap_timer(self, params: dict[str, str]) -> None:
        self.snap_timer = self.snap_timer.updated(params, self.profile)
        await self.save()

    def public_key_line(self) -> str | None:
        """``ssh-rsa AAAA...`` without a comment, as getpubkey answers it (None while the
        first key is still being made)."""
        if self.ssh_key is None:
            return None
        algorithm, blob = self.ssh_key.export_public_key("openssh").decode().split()[:2]
        return f"{algorithm} {blob}"

    # -- uploads ---------------------------------------------------------------------------
    def local_now(self) -> dt.datetime:
        """The camera's wall clock (naive), from the farm clock and the camera's zone."""
        offset = dt.timedelta(minutes=self.options.utc_offset_minutes)
        return (self.clock.now() + offset).replace(tzinfo=None)

    def _job(self, files: list[tuple[str, bytes]]) -> uploader.UploadJob:
        trust = []
        if self.options.trust_store in ("farm-ca", "farm-ca+system"):
            trust.append(self.ctx.ca.pem)
        if self.options.extra_ca_pem:
            trust.append(self.options.extra_ca_pem)
        folder = daily_folder(self.local_now(), self.profile) if self.ftp.ft_dirmode else None
        return uploader.UploadJob(
            on_connect=self._announcer(),
            settings=self.ftp, files=tuple(files), daily_folder=folder,
            trust_pem="\n".join(trust) or None,
            trust_system=self.options.trust_store != "farm-ca",
            client_key=self.ssh_key, pinned_hostkey=self.pinned_hostkey,
            connect_timeout=self.options.connect_timeout, io_timeout=self.options.io_timeout)

    def _announcer(self) -> Any:
        """Registers an upload's outbound address with the journal under the id of the HTTP
        request that started it (none for alarms and schedules). Thread-safe: FTP runs in a
        worker thread."""
        correlation = CORRELATION.get()
        if not correlation:
            return None
        loop = asyncio.get_running_loop()
        journal = self.ctx.journal

        def announce(local: tuple[str, int]) -> None:
            loop.call_soon_threadsafe(journal.register_outbound, local, correlation)

        return announce

    async def _upload(self, trigger: str, files: list[tuple[str, bytes]]
                      ) -> uploader.UploadOutcome:
        if self.ftp.ft_ssl == SSL_SFTP:
            await self.ensure_ssh_key()
        outcome = await uploader.upload(self._job(files))
        entry = {"time": self.clock.now().isoformat(), "trigger": trigger,
                 "protocol": ("ftp", "ftps", "sftp")[self.ftp.ft_ssl], **outcome.to_dict()}
        if self._uploads is None:
            self._uploads = collections.deque(maxlen=UPLOAD_LOG_SIZE)
        self._uploads.append(entry)
        if outcome.result != uploader.OK:
            log.info("%s: %s upload failed with %d: %s", self.name, trigger, outcome.result,
                     outcome.detail)
        return outcome

    async def testftp(self, sethost: str | None) -> uploader.UploadOutcome:
        """Pin ``sethost`` when given, then upload Test-Snapshot.jpeg with the settings."""
        if sethost is not None:
            await self.pin_hostkey(sethost)
        if self.testftp_running:
            return uploader.UploadOutcome(uploader.BUSY, detail="a testftp is running")
        self.testftp_running = True
        try:
            return await self._upload("testftp", [(TEST_FILE, TEST_SNAPSHOT)])
        finally:
            self.testftp_running = False

    async def pin_hostkey(self, blob: str) -> None:
        if blob == "":
            self.pinned_hostkey = None  # an empty sethost forgets the pinned key
        else:
            try:
                uploader.parse_key_blob(blob)
            except ValueError as exc:
                raise InvalidValue(f"sethost: {exc}") from None
            self.pinned_hostkey = blob
        await self.save()

    async def trigger_alarm(self) -> dict[str, Any]:
        """An alarm event (motion, PIR...): the ONVIF motion events go out (state true, then
        false once the alarm's uploads are done), and ``snapcount`` snapshots are uploaded
        when the ``snap`` action is enabled and its cooldown has run out; all under the
        correlation id of whatever raised the alarm."""
        # An alarm raised from the room (the control plane) has no request of the camera's
        # behind it: it gets an id of its own, which its events and uploads share.
        token = CORRELATION.set(CORRELATION.get() or self.ctx.journal.new_correlation_id())
        try:
            self.video.motion(True)
            try:
                outcome = await self._alarm_upload()
            finally:
                self.video.motion(False)
            return {**outcome, "correlation_id": CORRELATION.get()}
        finally:
            CORRELATION.reset(token)

    async def _alarm_upload(self) -> dict[str, Any]:
        action = self.actions["snap"]
        now = self.clock.time()
        if not action.enable:
            return {"uploaded": [], "skipped": "snap upload disabled"}
        wait = self.cooldowns.remaining("snap", action.interval, now)
        if wait > 0:
            return {"uploaded": [], "skipped": f"cooldown: {wait:.0f} s left"}
        self.cooldowns.mark("snap", now)
        local = self.local_now()
        files = [(alarm_file_name(local, i, self.profile),
                  snapshot(f"{self.options.model} alarm {local.isoformat()} #{i}"))
                 for i in range(1, self.snapcount + 1)]
        outcome = await self._upload("alarm", files)
        return {"result": outcome.result, "uploaded": outcome.uploaded,
                "detail": outcome.detail}

    # -- the snapshot schedule -------------------------------------------------------------
    def _restart_scheduler(self) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
            self._scheduler = None
        if self.runner is None:
            return
        if self.schedule.enable and self.actions["timersnap"].enable:
            self._scheduler = asyncio.get_running_loop().create_task(
                self._run_schedule(), name=f"{self.name}-snapshot-schedule")

    def _to_farm_time(self, local: dt.datetime) -> float:
        offset = dt.timedelta(minutes=self.options.utc_offset_minutes)
        return (local - offset).replace(tzinfo=dt.UTC).timestamp()

    async def _run_schedule(self) -> None:
        while True:
            nxt = self.schedule.next_after(self.local_now())
            if nxt is None:
                return
            if await self.clock.reached(self._to_farm_time(nxt)):
                await self.scheduled_snapshot(nxt)

    async def scheduled_snapshot(self, local: dt.datetime) -> dict[str, Any]:
        action = self.actions["timersnap"]
        now = self.clock.time()
        wait = self.cooldowns.remaining("timersnap", action.interval, now)
        if wait > 0:
            return {"uploaded": [], "skipped": f"cooldown: {wait:.0f} s left"}
        self.cooldowns.mark("timersnap", now)
        name = self.schedule.file_name(local, self.profile, "T")
        data = snapshot(f"{self.options.model} schedule {local.isoformat()}")
        outcome = await self._upload("schedule", [(name, data)])
        return {"result": outcome.result, "uploaded": outcome.uploaded}

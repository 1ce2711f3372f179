"""The INSTAR camera's scenario keys: users, initial FTP settings, actions and schedule, its
SSH key, trust store and timeouts, and the firmware ``profile``; checked by the camera's own
rules (``models/``) before anything starts."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, GetPydanticSchema, model_validator
from pydantic_core import core_schema

from ..core.member import KindOptions
from ..core.quirks.format import Profile as QuirkProfile
from ..core.quirks.replay import QuirkFile
from ..core.video.options import VideoOptions
from .exceptions import InvalidValue
from .models.ftp import FtpSettings
from .models.schedule import SnapSchedule
from .profiles import PROFILE, Profile

# ``profile:`` is validated as a mapping (so a scenario's errors read as for any mapping), then
# ``Profile.with_overrides`` checks each switch and makes the record.
_OVERRIDES = GetPydanticSchema(lambda _, handler: core_schema.no_info_after_validator_function(
    Profile.with_overrides, handler.generate_schema(dict[str, Any])))


class UserOption(KindOptions):
    name: str = Field(min_length=1, max_length=63)
    password: str = Field(max_length=63)
    # admin: everything; user: reads settings; guest: no FTP commands at all (211).
    role: Literal["admin", "user", "guest"] = "admin"


class FtpOption(KindOptions):
    """Initial ``setftpattr`` values (strings or numbers, checked by the camera's own rules)."""

    ft_server: str | None = None
    ft_port: int | None = None
    ft_username: str | None = None
    ft_password: str | None = None
    ft_mode: int | None = None
    ft_dirname: str | None = None
    ft_autocreatedir: int | None = None
    ft_dirmode: int | None = None
    ft_ssl: int | None = None
    ft_insecure: int | None = None

    def params(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.model_dump().items() if v is not None}


class ActionOption(KindOptions):
    enable: int = Field(default=0, ge=0, le=1)
    interval: int = Field(default=0, ge=0, le=3600)


class ScheduleOption(KindOptions):
    mode: int = Field(default=0, ge=0, le=1)
    prefix: int = Field(default=0, ge=0, le=1)
    name: str = "snapshot"
    enable: int = Field(default=0, ge=0, le=1)
    times: str = "0-1"


class InstarOptions(KindOptions):
    users: tuple[UserOption, ...] = (UserOption(name="admin", password="instar"),)
    # Initial FTP settings; keys not given keep the seed's example values.
    ftp: FtpOption = FtpOption()
    # A server of the scenario: fills ft_server, ft_port, ft_username, ft_password and
    # ft_ssl from it (keys given under ``ftp`` still win).
    upload_server: str | None = None
    upload_user: str | None = None  # which of its users (default: the first)
    ftp_actions: dict[Literal["rec", "snap", "timersnap"], ActionOption] = {}
    snapcount: int = Field(default=5, ge=1, le=10)
    snap_schedule: ScheduleOption = ScheduleOption()
    model: str = "IN-9408 2K+"
    # The camera's clock zone, minutes east of UTC: schedules and file names use it.
    utc_offset_minutes: int = Field(default=0, ge=-720, le=840)
    # The seed's public key ends in "==", which is the padding of a 4096-bit key blob.
    ssh_key_bits: Literal[1024, 2048, 3072, 4096] = 4096
    # When the camera makes its SSH key: on first need (getpubkey, an sFTP upload), or at its
    # first start in the background. "first-use" lets a fleet of thousands start without
    # spending a CPU-second of RSA-4096 per camera; the key persists either way.
    ssh_key_generation: Literal["first-use", "at-start"] = "first-use"
    # What a verifying FTPS upload trusts: the farm's local CA, the system's CAs, or both,
    # plus any extra PEM certificates.
    trust_store: Literal["farm-ca", "system", "farm-ca+system"] = "farm-ca"
    extra_ca_pem: str | None = None
    connect_timeout: float = Field(default=3.0, gt=0, le=120)
    io_timeout: float = Field(default=3.0, gt=0, le=600)
    # What GetDeviceInformation reports as FirmwareVersion.
    firmware: str = Field(default="4.1.2.69", min_length=1, max_length=64)
    # ONVIF runs on a port of its own (the camera's network menu; 8080 on the vendor's
    # cameras), RTSP on 554; 0 takes a free port, null switches the service off.
    onvif_port: int | None = Field(default=0, ge=0, le=65535)
    rtsp_port: int | None = Field(default=0, ge=0, le=65535)
    # Whether the camera claims ONVIF Profile T in its scopes (Profile S it always claims).
    onvif_profile_t: bool = False
    # Discovery, the camera's clock, ONVIF security and field quirks (core/video/options.py).
    video: VideoOptions = VideoOptions()
    # Firmware switches (profiles.py): a mapping of overrides, read once into the Profile.
    profile: Annotated[Profile, _OVERRIDES] = PROFILE
    # A quirk profile of a real camera (a file; docs/QUIRKS.md): its recorded replies replace
    # the camera's own for the requests it recorded (``profile`` above is another thing: the
    # firmware's switches).
    quirks: Annotated[QuirkProfile | None, QuirkFile("instar-camera")] = None

    @model_validator(mode="after")
    def _camera_rules(self) -> InstarOptions:
        try:
            FtpSettings().updated(self.ftp.params(), self.profile)
            SnapSchedule().updated(
                {k: str(v) for k, v in self.snap_schedule.model_dump().items()}, self.profile)
        except InvalidValue as exc:
            raise ValueError(str(exc)) from None
        return self

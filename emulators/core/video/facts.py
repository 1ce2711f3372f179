"""What a camera kind tells the video wing about itself: identity, stream profiles, users.

Plain frozen records: the kind builds them once from its options (its vendor's resolutions,
paths and defaults), the wing and its protocols read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# ONVIF's user levels (ONVIF Core, "User handling"); Anonymous is no user at all.
UserLevel = Literal["Administrator", "Operator", "User"]


@dataclass(frozen=True)
class StreamProfile:
    """One media profile: an H.264 stream at one resolution, its RTSP path and its snapshot."""

    token: str  # the ONVIF profile token
    name: str  # the profile's name as GetProfiles shows it
    width: int
    height: int
    rtsp_path: str  # path of the RTSP URL, "/" first
    snapshot_path: str  # path and query of the snapshot URL on the camera's HTTP port
    framerate: int = 15
    bitrate_kbps: int = 2048
    gov_length: int = 30  # frames from one keyframe to the next
    h264_profile: Literal["Baseline", "Main", "High"] = "Main"
    quality: float = 5.0

    @property
    def encoder_token(self) -> str:
        return f"{self.token}_VideoEncoder"


@dataclass(frozen=True)
class CameraIdentity:
    manufacturer: str
    model: str
    firmware: str
    serial: str
    hardware_id: str


@dataclass(frozen=True)
class VideoUser:
    name: str
    password: str
    level: UserLevel


@dataclass(frozen=True)
class VideoFacts:
    identity: CameraIdentity
    profiles: tuple[StreamProfile, ...]
    users: tuple[VideoUser, ...]
    # The realm of the camera's HTTP and RTSP Digest challenges.
    realm: str
    # Whether the vendor's RTSP server takes Basic credentials besides Digest.
    rtsp_basic: bool = False
    # ONVIF profiles the camera claims in its scopes (Profile S is "Streaming").
    claims_profile_t: bool = False
    # Whether the vendor has an imaging service.
    imaging: bool = True
    # The body of the web server's 401 (a snapshot without credentials), as the kind's own
    # refusals write it.
    unauthorized_body: str = "401 Unauthorized"
    # Scopes the firmware sets besides the profile, hardware and name ones (location...).
    extra_scopes: tuple[str, ...] = field(default_factory=tuple)

    def user(self, name: str) -> VideoUser | None:
        return next((u for u in self.users if u.name == name), None)

    def profile(self, token: str) -> StreamProfile | None:
        return next((p for p in self.profiles if p.token == token), None)

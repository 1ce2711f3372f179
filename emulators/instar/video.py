"""The INSTAR WQHD camera toward camera software: its ONVIF identity, its three streams with
their RTSP paths and snapshot URLs, and its users at ONVIF's levels. README.md ("ONVIF,
RTSP and discovery") gives the sources and the choices."""

from __future__ import annotations

import hashlib
from typing import Literal

from ..core.video.facts import CameraIdentity, StreamProfile, VideoFacts, VideoUser
from .options import InstarOptions

# The WQHD (2K+) models' three channels: 11 the full 1440p stream, 12 and 13 the smaller ones
# (RTSP paths /livestream/1x, snapshots /snap.cgi?chn=1x).
PROFILES = (
    StreamProfile("MainStream", "MainStream", 2560, 1440, "/livestream/11",
                  "/snap.cgi?chn=11", framerate=15, bitrate_kbps=4096, gov_length=30),
    StreamProfile("SubStream", "SubStream", 1280, 720, "/livestream/12",
                  "/snap.cgi?chn=12", framerate=15, bitrate_kbps=1024, gov_length=30),
    StreamProfile("MobileStream", "MobileStream", 640, 360, "/livestream/13",
                  "/snap.cgi?chn=13", framerate=15, bitrate_kbps=256, gov_length=30),
)
# The camera's three user classes at ONVIF's levels: admin configures, user may steer and
# watch, guest only watches.
LEVELS: dict[str, Literal["Administrator", "Operator", "User"]] = {
    "admin": "Administrator", "user": "Operator", "guest": "User"}


def facts(name: str, options: InstarOptions) -> VideoFacts:
    # A serial of the camera's own, the same at every start (the name is the identity).
    serial = hashlib.sha256(name.encode()).hexdigest()[:12].upper()
    identity = CameraIdentity("INSTAR", options.model, options.firmware, serial,
                              options.model.split()[0])
    users: list[VideoUser] = []
    for user in options.users:
        if all(u.name != user.name for u in users):  # the first of two alike wins
            users.append(VideoUser(user.name, user.password, LEVELS[user.role]))
    return VideoFacts(identity, PROFILES, tuple(users), realm=options.profile.realm,
                      rtsp_basic=True, claims_profile_t=options.onvif_profile_t,
                      unauthorized_body=options.profile.unauthorized_body)

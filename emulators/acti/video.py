"""The ACTi camera toward camera software: its ONVIF identity, its two streams with their
RTSP paths and snapshot URLs, and its accounts at ONVIF's levels. README.md ("ONVIF, RTSP
and discovery") gives the sources and the choices."""

from __future__ import annotations

import hashlib

from ..core.video.facts import CameraIdentity, StreamProfile, VideoFacts, VideoUser
from .options import ActiOptions
from .profiles import Firmware

# Stream 1 (1080p) and stream 2 (360p) at /stream1 and /stream2 of the RTSP port (7070 on
# ACTi's cameras); snapshots through the encoder CGI's SNAPSHOT command, N<w>x<h> for a size.
PROFILES = (
    StreamProfile("Profile1", "Stream1", 1920, 1080, "/stream1", "/cgi-bin/encoder?SNAPSHOT",
                  framerate=15, bitrate_kbps=3072, gov_length=30),
    StreamProfile("Profile2", "Stream2", 640, 360, "/stream2",
                  "/cgi-bin/encoder?SNAPSHOT=N640x360,100", framerate=15, bitrate_kbps=512,
                  gov_length=30),
)
REALM = "ACTi"


def facts(name: str, options: ActiOptions, firmware: Firmware) -> VideoFacts:
    serial = hashlib.sha256(name.encode()).hexdigest()[:12].upper()
    identity = CameraIdentity("ACTi", options.model, firmware.text, serial,
                              f"{firmware.platform.name} {firmware.platform.code}")
    users = tuple(VideoUser(u.user, u.password, "Administrator" if u.root else "User")
                  for u in options.users)
    return VideoFacts(identity, PROFILES, users, realm=REALM, rtsp_basic=True,
                      claims_profile_t=options.onvif_profile_t)

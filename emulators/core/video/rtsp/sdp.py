"""The session description (RFC 4566) a DESCRIBE answers: one H.264 video medium with the
RFC 6184 format parameters taken from the loop's own SPS and PPS."""

from __future__ import annotations

from ..facts import StreamProfile
from ..media import H264Loop
from .rtp import CLOCK_RATE, PAYLOAD_TYPE

TRACK = "trackID=1"  # the one medium's control URL, relative to Content-Base


def describe(media: H264Loop, profile: StreamProfile, *, session_id: int, address: str,
             tool: str) -> str:
    family = "IP6" if ":" in address else "IP4"
    lines = [
        "v=0",
        f"o=- {session_id} 1 IN {family} {address}",
        f"s={profile.name}",
        f"i={media.width}x{media.height} H.264",
        "t=0 0",
        f"a=tool:{tool}",
        "a=type:broadcast",
        "a=control:*",
        "a=range:npt=0-",
        f"m=video 0 RTP/AVP {PAYLOAD_TYPE}",
        f"c=IN {family} {'::' if family == 'IP6' else '0.0.0.0'}",
        f"b=AS:{profile.bitrate_kbps}",
        f"a=rtpmap:{PAYLOAD_TYPE} H264/{CLOCK_RATE}",
        f"a=fmtp:{PAYLOAD_TYPE} packetization-mode=1;profile-level-id={media.profile_level_id};"
        f"sprop-parameter-sets={media.sprop_parameter_sets}",
        f"a=framerate:{media.fps}",
        f"a=x-dimensions:{media.width},{media.height}",
        f"a=control:{TRACK}",
    ]
    return "\r\n".join(lines) + "\r\n"

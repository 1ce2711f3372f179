"""The scenario keys every camera kind takes under ``video:``: discovery, the camera's clock,
ONVIF security and the field quirks (each a documented switch; the kinds' READMEs say where
each was seen)."""

from __future__ import annotations

from pydantic import Field

from ..member import KindOptions


class QuirkOptions(KindOptions):
    # Advertises the PullPoint subscription (GetCapabilities, GetServices) but answers
    # CreatePullPointSubscription with a receiver fault, as INSTAR models in the field do.
    pullpoint_fails: bool = False
    # ONVIF operations (local names, "GetImagingSettings") the camera advertises but answers
    # with ter:ActionNotSupported.
    not_supported: tuple[str, ...] = ()
    # False: SETUP over UDP is answered 461 Unsupported Transport (TCP-interleaved only).
    rtsp_udp: bool = True
    # Seconds a new RTSP session streams before its first keyframe (0: it starts on one).
    idr_delay: float = Field(default=0.0, ge=0, le=600)


class VideoOptions(KindOptions):
    # False: no ONVIF services, no discovery (a camera that has ONVIF switched off).
    onvif: bool = True
    # False: the camera is in non-discoverable mode (no Hello/Bye, no answer to Probes).
    discoverable: bool = True
    # The ``onvif://www.onvif.org/location/...`` scope; empty: none.
    location: str = "farm"
    # Seconds the camera's own clock is ahead of the farm clock (negative: behind).
    clock_offset: float = Field(default=0.0, ge=-10 * 365 * 86400, le=10 * 365 * 86400)
    # A UsernameToken whose Created is further than this from the camera's clock is refused
    # with ter:NotAuthorized.
    token_skew: float = Field(default=300.0, gt=0, le=86400)
    # SystemReboot: seconds of the farm clock the camera is gone for.
    boot_seconds: float = Field(default=30.0, ge=0, le=3600)
    # An RTSP session with no request (GET_PARAMETER, OPTIONS, RTCP) for this long is closed;
    # DESCRIBE/SETUP announce it as ``Session: <id>;timeout=<n>``.
    rtsp_session_timeout: int = Field(default=60, ge=5, le=3600)
    quirks: QuirkOptions = QuirkOptions()

"""The ONVIF media service, ver10 (``trt``): the camera's fixed profiles (one video source,
one H.264 encoder per stream), their stream and snapshot URIs and the encoder options."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import soap
from ..facts import StreamProfile
from . import xml
from .call import Call, Operation
from .xml import child, child_text
from .xml import t as text

if TYPE_CHECKING:
    from ..wing import VideoWing


def capabilities(wing: VideoWing) -> str:
    return (f'<trt:Capabilities SnapshotUri="true" Rotation="false" VideoSourceMode="false" '
            f'OSD="false"><trt:ProfileCapabilities MaximumNumberOfProfiles='
            f'"{len(wing.facts.profiles)}"/><trt:StreamingCapabilities RTPMulticast="false" '
            f'RTP_TCP="true" RTP_RTSP_TCP="true" NonAggregateControl="false" '
            f'NoRTSPStreaming="false"/></trt:Capabilities>')


def no_profile(token: str | None) -> soap.SoapError:
    return soap.invalid_arg("ter:NoProfile",
                            f"The requested profile token {token or ''!s:.80} does not exist.")


def no_config(token: str | None) -> soap.SoapError:
    return soap.invalid_arg("ter:NoConfig",
                            f"The configuration token {token or ''!s:.80} does not exist.")


def profile_of(call: Call, field: str = "ProfileToken") -> StreamProfile:
    token = child_text(call.body, field)
    found = call.wing.facts.profile(token) if token else None
    if found is None:
        raise no_profile(token)
    return found


def encoder_of(call: Call, token: str) -> StreamProfile:
    found = next((p for p in call.wing.facts.profiles if p.encoder_token == token), None)
    if found is None:
        raise no_config(token)
    return found


def stream_uri(call: Call, profile: StreamProfile) -> str:
    """The profile's RTSP URL on the host the client addressed (the default RTSP port while
    the camera's RTSP server has none bound)."""
    wing = call.wing
    url = wing.rtsp_url(profile, call.host)
    if url is None:
        if wing.rtsp is None:
            raise soap.SoapError("env:Receiver", "ter:Action", "The camera streams no RTSP.",
                                 subsubcode="ter:IncompleteConfiguration")
        url = f"rtsp://{call.host or wing.url_host}{profile.rtsp_path}"
    return url


def _profile(call: Call, profile: StreamProfile, tag: str) -> str:
    facts = call.wing.facts
    return (f'<{tag} token={xml.a(profile.token)} fixed="true">'
            f"<tt:Name>{text(profile.name)}</tt:Name>"
            f"{xml.video_source_configuration(facts)}"
            f"{xml.video_encoder_configuration(profile)}</{tag}>")


async def get_service_capabilities(call: Call) -> str:
    return (f"<trt:GetServiceCapabilitiesResponse>{capabilities(call.wing)}"
            f"</trt:GetServiceCapabilitiesResponse>")


async def get_profiles(call: Call) -> str:
    profiles = "".join(_profile(call, p, "trt:Profiles") for p in call.wing.facts.profiles)
    return f"<trt:GetProfilesResponse>{profiles}</trt:GetProfilesResponse>"


async def get_profile(call: Call) -> str:
    profile = profile_of(call)
    body = _profile(call, profile, "trt:Profile")
    return f"<trt:GetProfileResponse>{body}</trt:GetProfileResponse>"


async def get_stream_uri(call: Call) -> str:
    profile = profile_of(call)
    setup = child(call.body, "StreamSetup")
    stream = child_text(setup, "Stream") if setup is not None else None
    transport = child(setup, "Transport") if setup is not None else None
    protocol = child_text(transport, "Protocol") if transport is not None else None
    if stream not in (None, "RTP-Unicast") or protocol not in (None, "UDP", "TCP", "RTSP"):
        raise soap.invalid_arg("ter:InvalidStreamSetup",
                               "Specification of StreamType or Transport part in StreamSetup "
                               "is not supported.")
    timeout = call.wing.options.rtsp_session_timeout
    return (f"<trt:GetStreamUriResponse><trt:MediaUri>"
            f"<tt:Uri>{text(stream_uri(call, profile))}</tt:Uri>"
            f"<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>"
            f"<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot>"
            f"<tt:Timeout>PT{timeout}S</tt:Timeout></trt:MediaUri></trt:GetStreamUriResponse>")


async def get_snapshot_uri(call: Call) -> str:
    profile = profile_of(call)
    return (f"<trt:GetSnapshotUriResponse><trt:MediaUri>"
            f"<tt:Uri>{text(call.wing.snapshot_url(profile, call.host))}</tt:Uri>"
            f"<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>"
            f"<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot>"
            f"<tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:GetSnapshotUriResponse>")


async def get_video_sources(call: Call) -> str:
    facts = call.wing.facts
    width, height = xml.main_size(facts)
    rate = max((p.framerate for p in facts.profiles), default=15)
    return (f'<trt:GetVideoSourcesResponse><trt:VideoSources token="{xml.SOURCE_TOKEN}">'
            f"<tt:Framerate>{rate}</tt:Framerate><tt:Resolution><tt:Width>{width}</tt:Width>"
            f"<tt:Height>{height}</tt:Height></tt:Resolution></trt:VideoSources>"
            f"</trt:GetVideoSourcesResponse>")


async def get_video_source_configurations(call: Call) -> str:
    config = xml.video_source_configuration(call.wing.facts, "trt:Configurations")
    return (f"<trt:GetVideoSourceConfigurationsResponse>{config}"
            f"</trt:GetVideoSourceConfigurationsResponse>")


async def get_video_encoder_configurations(call: Call) -> str:
    configs = "".join(xml.video_encoder_configuration(p, "trt:Configurations")
                      for p in call.wing.facts.profiles)
    return (f"<trt:GetVideoEncoderConfigurationsResponse>{configs}"
            f"</trt:GetVideoEncoderConfigurationsResponse>")


async def get_video_encoder_configuration(call: Call) -> str:
    profile = encoder_of(call, child_text(call.body, "ConfigurationToken") or "")
    config = xml.video_encoder_configuration(profile, "trt:Configuration")
    return (f"<trt:GetVideoEncoderConfigurationResponse>{config}"
            f"</trt:GetVideoEncoderConfigurationResponse>")


def check_option_tokens(call: Call) -> None:
    """GetVideoEncoderConfigurationOptions' optional tokens name something that exists."""
    config = child_text(call.body, "ConfigurationToken")
    if config:
        encoder_of(call, config)
    profile = child_text(call.body, "ProfileToken")
    if profile and call.wing.facts.profile(profile) is None:
        raise no_profile(profile)


def _h264_options(call: Call, tag: str, bitrate: str = "") -> str:
    return (f"<{tag}>{xml.resolutions(call.wing.facts)}"
            f"<tt:GovLengthRange><tt:Min>{xml.GOV_RANGE[0]}</tt:Min>"
            f"<tt:Max>{xml.GOV_RANGE[1]}</tt:Max></tt:GovLengthRange>"
            f"<tt:FrameRateRange><tt:Min>{xml.FRAMERATE_RANGE[0]}</tt:Min>"
            f"<tt:Max>{xml.FRAMERATE_RANGE[1]}</tt:Max></tt:FrameRateRange>"
            f"<tt:EncodingIntervalRange><tt:Min>1</tt:Min><tt:Max>1</tt:Max>"
            f"</tt:EncodingIntervalRange>"
            + "".join(f"<tt:H264ProfilesSupported>{p}</tt:H264ProfilesSupported>"
                      for p in xml.H264_PROFILES)
            + f"{bitrate}</{tag}>")


async def get_video_encoder_configuration_options(call: Call) -> str:
    check_option_tokens(call)
    top = max((p.bitrate_kbps for p in call.wing.facts.profiles), default=4096)
    bitrate = f"<tt:BitrateRange><tt:Min>32</tt:Min><tt:Max>{top * 2}</tt:Max></tt:BitrateRange>"
    return (f"<trt:GetVideoEncoderConfigurationOptionsResponse><trt:Options>"
            f"<tt:QualityRange><tt:Min>{xml.QUALITY_RANGE[0]}</tt:Min>"
            f"<tt:Max>{xml.QUALITY_RANGE[1]}</tt:Max></tt:QualityRange>"
            f"{_h264_options(call, 'tt:H264')}"
            f"<tt:Extension>{_h264_options(call, 'tt:H264', bitrate)}</tt:Extension>"
            f"</trt:Options></trt:GetVideoEncoderConfigurationOptionsResponse>")


async def get_audio_sources(call: Call) -> str:
    return "<trt:GetAudioSourcesResponse/>"


OPERATIONS: dict[str, Operation] = {
    "GetServiceCapabilities": Operation(get_service_capabilities, "pre_auth"),
    "GetProfiles": Operation(get_profiles, "read_media"),
    "GetProfile": Operation(get_profile, "read_media"),
    "GetStreamUri": Operation(get_stream_uri, "read_media"),
    "GetSnapshotUri": Operation(get_snapshot_uri, "read_media"),
    "GetVideoSources": Operation(get_video_sources, "read_media"),
    "GetVideoSourceConfigurations": Operation(get_video_source_configurations, "read_media"),
    "GetVideoEncoderConfigurations": Operation(get_video_encoder_configurations, "read_media"),
    "GetVideoEncoderConfiguration": Operation(get_video_encoder_configuration, "read_media"),
    "GetVideoEncoderConfigurationOptions": Operation(get_video_encoder_configuration_options,
                                                     "read_media"),
    "GetAudioSources": Operation(get_audio_sources, "read_media"),
}

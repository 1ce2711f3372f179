"""The ONVIF media service, ver20 (``tr2``, "Media2"): the same fixed profiles as ver10, with
their configurations selected by type, stream URIs by protocol, the encoders in the
VideoEncoder2 shape."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import soap
from ..facts import StreamProfile
from . import media, xml
from .call import Call, Operation
from .xml import child_text, children_text
from .xml import t as text

if TYPE_CHECKING:
    from ..wing import VideoWing

# The configuration types GetProfiles' Type may name (ver20 media wsdl, ConfigurationEnumeration).
CONFIGURATION_TYPES = frozenset({"All", "VideoSource", "VideoEncoder", "AudioSource",
                                 "AudioEncoder", "AudioOutput", "AudioDecoder", "Metadata",
                                 "Analytics", "PTZ", "Receiver"})
PROTOCOLS = frozenset({"RtspUnicast", "RTSP", "RtspOverHttp"})


def capabilities(wing: VideoWing) -> str:
    return (f'<tr2:Capabilities SnapshotUri="true" Rotation="false" VideoSourceMode="false" '
            f'OSD="false" TemporaryOSDText="false" Mask="false" SourceMask="false">'
            f'<tr2:ProfileCapabilities MaximumNumberOfProfiles="{len(wing.facts.profiles)}" '
            f'ConfigurationsSupported="VideoSource VideoEncoder"/>'
            f'<tr2:StreamingCapabilities RTSPStreaming="true" RTPMulticast="false" '
            f'RTP_RTSP_TCP="true" NonAggregateControl="false" AutoStartMulticast="false"/>'
            f"</tr2:Capabilities>")


async def get_service_capabilities(call: Call) -> str:
    return (f"<tr2:GetServiceCapabilitiesResponse>{capabilities(call.wing)}"
            f"</tr2:GetServiceCapabilitiesResponse>")


async def get_profiles(call: Call) -> str:
    facts = call.wing.facts
    token = child_text(call.body, "Token")
    profiles = facts.profiles
    if token:
        found = facts.profile(token)
        if found is None:
            raise media.no_profile(token)
        profiles = (found,)
    types = set(children_text(call.body, "Type"))
    if unknown := types - CONFIGURATION_TYPES:
        raise soap.invalid_arg("ter:InvalidArgVal",
                               f"unknown configuration type {sorted(unknown)[0][:40]}")
    every = "All" in types
    items = []
    for profile in profiles:
        parts = []
        if every or "VideoSource" in types:
            parts.append(xml.video_source_configuration(facts, "tr2:VideoSource"))
        if every or "VideoEncoder" in types:
            parts.append(xml.video_encoder2_configuration(profile, "tr2:VideoEncoder"))
        configs = f"<tr2:Configurations>{''.join(parts)}</tr2:Configurations>" if types else ""
        items.append(f'<tr2:Profiles token={xml.a(profile.token)} fixed="true">'
                     f"<tr2:Name>{text(profile.name)}</tr2:Name>{configs}</tr2:Profiles>")
    return f"<tr2:GetProfilesResponse>{''.join(items)}</tr2:GetProfilesResponse>"


async def get_stream_uri(call: Call) -> str:
    protocol = child_text(call.body, "Protocol")
    profile = media.profile_of(call)
    if protocol not in PROTOCOLS:
        raise soap.invalid_arg("ter:InvalidStreamSetup",
                               f"The protocol {protocol or ''!s:.40} is not supported.")
    return (f"<tr2:GetStreamUriResponse><tr2:Uri>{text(media.stream_uri(call, profile))}"
            f"</tr2:Uri></tr2:GetStreamUriResponse>")


async def get_snapshot_uri(call: Call) -> str:
    profile = media.profile_of(call)
    return (f"<tr2:GetSnapshotUriResponse><tr2:Uri>"
            f"{text(call.wing.snapshot_url(profile, call.host))}</tr2:Uri>"
            f"</tr2:GetSnapshotUriResponse>")


def _selected(call: Call) -> tuple[StreamProfile, ...]:
    """The encoders GetVideoEncoderConfigurations(Options) name: by configuration token, by
    profile token, else all."""
    facts = call.wing.facts
    config = child_text(call.body, "ConfigurationToken")
    if config:
        return (media.encoder_of(call, config),)
    token = child_text(call.body, "ProfileToken")
    if token:
        found = facts.profile(token)
        if found is None:
            raise media.no_profile(token)
        return (found,)
    return facts.profiles


async def get_video_encoder_configurations(call: Call) -> str:
    configs = "".join(xml.video_encoder2_configuration(p, "tr2:Configurations")
                      for p in _selected(call))
    return (f"<tr2:GetVideoEncoderConfigurationsResponse>{configs}"
            f"</tr2:GetVideoEncoderConfigurationsResponse>")


async def get_video_encoder_configuration_options(call: Call) -> str:
    _selected(call)
    facts = call.wing.facts
    top = max((p.bitrate_kbps for p in facts.profiles), default=4096)
    rates = " ".join(str(r) for r in (30, 25, 20, 15, 10, 5, 1))
    options = (f'<tr2:Options GovLengthRange="{xml.GOV_RANGE[0]} {xml.GOV_RANGE[1]}" '
               f'FrameRatesSupported="{rates}" ProfilesSupported="{" ".join(xml.H264_PROFILES)}" '
               f'ConstantBitRateSupported="true"><tt:Encoding>H264</tt:Encoding>'
               f"<tt:QualityRange><tt:Min>{xml.QUALITY_RANGE[0]}</tt:Min>"
               f"<tt:Max>{xml.QUALITY_RANGE[1]}</tt:Max></tt:QualityRange>"
               f"{xml.resolutions(facts)}"
               f"<tt:BitrateRange><tt:Min>32</tt:Min><tt:Max>{top * 2}</tt:Max></tt:BitrateRange>"
               f"</tr2:Options>")
    return (f"<tr2:GetVideoEncoderConfigurationOptionsResponse>{options}"
            f"</tr2:GetVideoEncoderConfigurationOptionsResponse>")


async def get_video_source_configurations(call: Call) -> str:
    config = child_text(call.body, "ConfigurationToken")
    if config and config != xml.SOURCE_CONFIG_TOKEN:
        raise media.no_config(config)
    token = child_text(call.body, "ProfileToken")
    if token and call.wing.facts.profile(token) is None:
        raise media.no_profile(token)
    body = xml.video_source_configuration(call.wing.facts, "tr2:Configurations")
    return (f"<tr2:GetVideoSourceConfigurationsResponse>{body}"
            f"</tr2:GetVideoSourceConfigurationsResponse>")


OPERATIONS: dict[str, Operation] = {
    "GetServiceCapabilities": Operation(get_service_capabilities, "pre_auth"),
    "GetProfiles": Operation(get_profiles, "read_media"),
    "GetStreamUri": Operation(get_stream_uri, "read_media"),
    "GetSnapshotUri": Operation(get_snapshot_uri, "read_media"),
    "GetVideoEncoderConfigurations": Operation(get_video_encoder_configurations, "read_media"),
    "GetVideoEncoderConfigurationOptions": Operation(get_video_encoder_configuration_options,
                                                     "read_media"),
    "GetVideoSourceConfigurations": Operation(get_video_source_configurations, "read_media"),
}

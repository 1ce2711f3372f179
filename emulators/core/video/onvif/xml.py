"""Reply pieces more than one ONVIF service renders: a profile's video source and encoder
configurations (media ver10 and ver20 show the same encoder in two shapes), dates, and the
request fields handlers read."""

from __future__ import annotations

import time

from .. import soap
from ..facts import StreamProfile, VideoFacts

TT = soap.NAMESPACES["tt"]
SOURCE_TOKEN = "VideoSource_1"
SOURCE_CONFIG_TOKEN = "VideoSourceConfig_1"
# The options a camera lists: the frame rates and GOV lengths its encoder takes.
FRAMERATE_RANGE = (1, 30)
GOV_RANGE = (1, 150)
QUALITY_RANGE = (1, 10)
H264_PROFILES = ("Baseline", "Main", "High")

t = soap.xml_text
a = soap.xml_attr


def child_text(parent: soap.Element, local: str) -> str | None:
    """The text of ``parent``'s first child named ``local`` in any namespace (requests name
    their fields in the service's namespace; a lenient read costs nothing)."""
    for el in parent:
        if el.tag.rpartition("}")[2] == local:
            return (el.text or "").strip()
    return None


def children_text(parent: soap.Element, local: str) -> list[str]:
    return [(el.text or "").strip() for el in parent if el.tag.rpartition("}")[2] == local]


def child(parent: soap.Element, local: str) -> soap.Element | None:
    return next((el for el in parent if el.tag.rpartition("}")[2] == local), None)


def boolean(value: bool) -> str:
    return "true" if value else "false"


def date_time(stamp: float) -> str:
    """A tt:DateTime (Time first, then Date, as the schema orders them)."""
    tm = time.gmtime(stamp)
    return (f"<tt:Time><tt:Hour>{tm.tm_hour}</tt:Hour><tt:Minute>{tm.tm_min}</tt:Minute>"
            f"<tt:Second>{tm.tm_sec}</tt:Second></tt:Time>"
            f"<tt:Date><tt:Year>{tm.tm_year}</tt:Year><tt:Month>{tm.tm_mon}</tt:Month>"
            f"<tt:Day>{tm.tm_mday}</tt:Day></tt:Date>")


def main_size(facts: VideoFacts) -> tuple[int, int]:
    """The sensor's size: the largest stream's."""
    if not facts.profiles:
        return 1920, 1080
    biggest = max(facts.profiles, key=lambda p: p.width * p.height)
    return biggest.width, biggest.height


def video_source_configuration(facts: VideoFacts, tag: str = "tt:VideoSourceConfiguration",
                               ) -> str:
    width, height = main_size(facts)
    return (f'<{tag} token="{SOURCE_CONFIG_TOKEN}"><tt:Name>VideoSourceConfig</tt:Name>'
            f"<tt:UseCount>{len(facts.profiles)}</tt:UseCount>"
            f"<tt:SourceToken>{SOURCE_TOKEN}</tt:SourceToken>"
            f'<tt:Bounds x="0" y="0" width="{width}" height="{height}"/></{tag}>')


def _multicast() -> str:
    return ("<tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type>"
            "<tt:IPv4Address>0.0.0.0</tt:IPv4Address></tt:Address><tt:Port>0</tt:Port>"
            "<tt:TTL>1</tt:TTL><tt:AutoStart>false</tt:AutoStart></tt:Multicast>")


def video_encoder_configuration(profile: StreamProfile,
                                tag: str = "tt:VideoEncoderConfiguration") -> str:
    """Media ver10's tt:VideoEncoderConfiguration of ``profile``'s stream."""
    return (f"<{tag} token={a(profile.encoder_token)}><tt:Name>{t(profile.encoder_token)}"
            f"</tt:Name><tt:UseCount>1</tt:UseCount><tt:Encoding>H264</tt:Encoding>"
            f"<tt:Resolution><tt:Width>{profile.width}</tt:Width>"
            f"<tt:Height>{profile.height}</tt:Height></tt:Resolution>"
            f"<tt:Quality>{profile.quality:g}</tt:Quality>"
            f"<tt:RateControl><tt:FrameRateLimit>{profile.framerate}</tt:FrameRateLimit>"
            f"<tt:EncodingInterval>1</tt:EncodingInterval>"
            f"<tt:BitrateLimit>{profile.bitrate_kbps}</tt:BitrateLimit></tt:RateControl>"
            f"<tt:H264><tt:GovLength>{profile.gov_length}</tt:GovLength>"
            f"<tt:H264Profile>{profile.h264_profile}</tt:H264Profile></tt:H264>"
            f"{_multicast()}<tt:SessionTimeout>PT60S</tt:SessionTimeout></{tag}>")


def video_encoder2_configuration(profile: StreamProfile,
                                 tag: str = "tr2:VideoEncoder") -> str:
    """Media2's tt:VideoEncoder2Configuration of the same stream: the encoding by its MIME
    subtype name, GOV length and H.264 profile as attributes."""
    return (f"<{tag} token={a(profile.encoder_token)} GovLength=\"{profile.gov_length}\" "
            f"Profile=\"{profile.h264_profile}\"><tt:Name>{t(profile.encoder_token)}</tt:Name>"
            f"<tt:UseCount>1</tt:UseCount><tt:Encoding>H264</tt:Encoding>"
            f"<tt:Resolution><tt:Width>{profile.width}</tt:Width>"
            f"<tt:Height>{profile.height}</tt:Height></tt:Resolution>"
            f'<tt:RateControl ConstantBitRate="false">'
            f"<tt:FrameRateLimit>{profile.framerate}</tt:FrameRateLimit>"
            f"<tt:BitrateLimit>{profile.bitrate_kbps}</tt:BitrateLimit></tt:RateControl>"
            f"{_multicast()}<tt:Quality>{profile.quality:g}</tt:Quality></{tag}>")


def resolutions(facts: VideoFacts, tag: str = "tt:ResolutionsAvailable") -> str:
    seen: list[tuple[int, int]] = []
    for p in facts.profiles:
        if (p.width, p.height) not in seen:
            seen.append((p.width, p.height))
    return "".join(f"<{tag}><tt:Width>{w}</tt:Width><tt:Height>{h}</tt:Height></{tag}>"
                   for w, h in seen)

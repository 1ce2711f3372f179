"""The ONVIF media services: ver10 through onvif-zeep-async (profiles, stream and snapshot
URIs, encoder options), ver20 (Media2: the client ships no WSDL for it) and imaging through
raw SOAP, and raw replies validated against the XSDs onvif-zeep-async ships."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import zeep.exceptions
from lxml import etree

from emulators.testing import RunningFarm
from tests.video.clients import (
    ONVIF_ADMINS,
    ONVIF_NS,
    ONVIF_WSDL,
    onvif_body,
    onvif_call,
    onvif_camera,
    onvif_fault,
    onvif_run,
    onvif_service_url,
    onvif_token,
    onvif_url,
)

# (token, width, height, RTSP path) of each kind's profiles.
PROFILES = {
    "instar-camera": [("MainStream", 2560, 1440, "/livestream/11"),
                      ("SubStream", 1280, 720, "/livestream/12"),
                      ("MobileStream", 640, 360, "/livestream/13")],
    "acti-camera": [("Profile1", 1920, 1080, "/stream1"), ("Profile2", 640, 360, "/stream2")],
}
KINDS = sorted(ONVIF_ADMINS)



def media(farm: RunningFarm, kind: str, fn: Any) -> Any:
    async def run() -> Any:
        cam = onvif_camera(onvif_url(farm), *ONVIF_ADMINS[kind])
        try:
            await cam.update_xaddrs()
            return await fn(cam, await cam.create_media_service())
        finally:
            await cam.close()

    return onvif_run(run())


def test_profiles_list_the_kinds_streams(camera: tuple[RunningFarm, str]) -> None:
    farm, kind = camera

    async def read(cam: Any, m: Any) -> Any:
        return await m.GetProfiles(), await m.GetProfile({"ProfileToken":
                                                           PROFILES[kind][0][0]})

    profiles, first = media(farm, kind, read)
    got = [(p.token, p.VideoEncoderConfiguration.Resolution.Width,
            p.VideoEncoderConfiguration.Resolution.Height) for p in profiles]
    assert got == [(t, w, h) for t, w, h, _ in PROFILES[kind]]
    assert all(p.fixed for p in profiles)
    encoder = profiles[0].VideoEncoderConfiguration
    assert encoder.Encoding == "H264"
    assert encoder.H264.GovLength == 30
    assert encoder.RateControl.FrameRateLimit == 15
    assert profiles[0].VideoSourceConfiguration.Bounds.width == PROFILES[kind][0][1]
    assert first.token == PROFILES[kind][0][0]


def test_stream_uris(camera: tuple[RunningFarm, str]) -> None:
    farm, kind = camera

    async def read(cam: Any, m: Any) -> Any:
        setup = {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}
        return [(await m.GetStreamUri({"StreamSetup": setup, "ProfileToken": t})).Uri
                for t, *_ in PROFILES[kind]]

    uris = media(farm, kind, read)
    for uri, (_, _, _, path) in zip(uris, PROFILES[kind], strict=True):
        parsed = urlparse(uri)
        assert (parsed.scheme, parsed.hostname, parsed.path) == ("rtsp", "127.0.0.1", path)
    main = farm.ready["emulators"][0]["urls"].get("rtsp")
    if main is not None:  # present once the camera's RTSP server has a port
        assert uris[0] == main


def test_wrong_profile_token_faults(camera: tuple[RunningFarm, str]) -> None:
    farm, kind = camera

    async def read(cam: Any, m: Any) -> Any:
        await m.GetStreamUri({"StreamSetup": {"Stream": "RTP-Unicast",
                                              "Transport": {"Protocol": "RTSP"}},
                              "ProfileToken": "nope"})

    with pytest.raises(zeep.exceptions.Fault, match="profile token nope does not exist"):
        media(farm, kind, read)
    status, _, text = onvif_call(
        onvif_service_url(onvif_url(farm), "media"),
        "<trt:GetStreamUri><trt:StreamSetup><tt:Stream>RTP-Multicast</tt:Stream>"
        "<tt:Transport><tt:Protocol>UDP</tt:Protocol></tt:Transport></trt:StreamSetup>"
        f"<trt:ProfileToken>{PROFILES[kind][0][0]}</trt:ProfileToken></trt:GetStreamUri>",
        header=onvif_token(*ONVIF_ADMINS[kind]))
    assert status == 400
    assert onvif_fault(text)[1:3] == ("ter:InvalidArgVal", "ter:InvalidStreamSetup")
    status, _, text = onvif_call(
        onvif_service_url(onvif_url(farm), "media"),
        "<trt:GetSnapshotUri><trt:ProfileToken>x</trt:ProfileToken></trt:GetSnapshotUri>",
        header=onvif_token(*ONVIF_ADMINS[kind]))
    assert onvif_fault(text)[1:3] == ("ter:InvalidArgVal", "ter:NoProfile")


def test_snapshot_uri(camera: tuple[RunningFarm, str]) -> None:
    farm, kind = camera

    async def read(cam: Any, m: Any) -> Any:
        return (await m.GetSnapshotUri({"ProfileToken": PROFILES[kind][0][0]})).Uri

    uri = media(farm, kind, read)
    http = farm.ready["emulators"][0]["urls"]["http"]
    snapshot = farm.farm.members["cam"].video.facts.profiles[0].snapshot_path
    assert uri == f"{http}{snapshot}"


def test_sources_encoders_and_options(camera: tuple[RunningFarm, str]) -> None:
    farm, kind = camera

    async def read(cam: Any, m: Any) -> Any:
        token = PROFILES[kind][0][0]
        return (await m.GetVideoSources(), await m.GetVideoSourceConfigurations(),
                await m.GetVideoEncoderConfigurations(),
                await m.GetVideoEncoderConfiguration({"ConfigurationToken":
                                                      f"{token}_VideoEncoder"}),
                await m.GetVideoEncoderConfigurationOptions({"ProfileToken": token}),
                await m.GetAudioSources(), await m.GetServiceCapabilities())

    sources, source_configs, encoders, encoder, options, audio, caps = media(farm, kind, read)
    assert [s.token for s in sources] == ["VideoSource_1"]
    assert sources[0].Resolution.Width == PROFILES[kind][0][1]
    assert source_configs[0].SourceToken == "VideoSource_1"
    assert len(encoders) == len(PROFILES[kind])
    assert encoder.Resolution.Height == PROFILES[kind][0][2]
    sizes = [(r.Width, r.Height) for r in options.H264.ResolutionsAvailable]
    assert sizes == [(w, h) for _, w, h, _ in PROFILES[kind]]
    assert options.H264.H264ProfilesSupported == ["Baseline", "Main", "High"]
    assert options.H264.GovLengthRange.Max >= 30
    assert audio == []
    assert caps.SnapshotUri is True
    assert caps.StreamingCapabilities.RTP_RTSP_TCP is True


def test_imaging(camera: tuple[RunningFarm, str]) -> None:
    farm, kind = camera

    async def run() -> Any:
        cam = onvif_camera(onvif_url(farm), *ONVIF_ADMINS[kind])
        try:
            await cam.update_xaddrs()
            imaging = await cam.create_imaging_service()
            source = {"VideoSourceToken": "VideoSource_1"}
            return (await imaging.GetImagingSettings(source), await imaging.GetOptions(source),
                    await imaging.GetServiceCapabilities())
        finally:
            await cam.close()

    settings, options, caps = onvif_run(run())
    assert settings.Brightness == 50
    assert options.IrCutFilterModes == ["ON", "OFF", "AUTO"]
    assert caps.ImageStabilization is False


# -- Media2 (ver20) -------------------------------------------------------------------------
def media2(farm: RunningFarm, kind: str, body: str) -> Any:
    status, _, text = onvif_call(onvif_service_url(onvif_url(farm), "media2"), body,
                                 header=onvif_token(*ONVIF_ADMINS[kind]))
    assert status == 200, text
    return onvif_body(text)


def test_media2_profiles_and_uris(camera: tuple[RunningFarm, str]) -> None:
    farm, kind = camera
    ns = ONVIF_NS
    reply = media2(farm, kind, "<tr2:GetProfiles><tr2:Type>All</tr2:Type></tr2:GetProfiles>")
    profiles = reply.findall("tr2:Profiles", ns)
    assert [p.get("token") for p in profiles] == [t for t, *_ in PROFILES[kind]]
    sizes = [(int(p.findtext("tr2:Configurations/tr2:VideoEncoder/tt:Resolution/tt:Width",
                             namespaces=ns)),
              int(p.findtext("tr2:Configurations/tr2:VideoEncoder/tt:Resolution/tt:Height",
                             namespaces=ns))) for p in profiles]
    assert sizes == [(w, h) for _, w, h, _ in PROFILES[kind]]
    assert profiles[0].find("tr2:Configurations/tr2:VideoEncoder", ns).get("GovLength") == "30"
    bare = media2(farm, kind, "<tr2:GetProfiles/>")
    assert bare.find("tr2:Profiles/tr2:Configurations", ns) is None
    token, _, _, path = PROFILES[kind][1]
    uri = media2(farm, kind, f"<tr2:GetStreamUri><tr2:Protocol>RtspUnicast</tr2:Protocol>"
                             f"<tr2:ProfileToken>{token}</tr2:ProfileToken></tr2:GetStreamUri>")
    assert urlparse(uri.findtext("tr2:Uri", namespaces=ns)).path == path
    snap = media2(farm, kind, f"<tr2:GetSnapshotUri><tr2:ProfileToken>{token}"
                              f"</tr2:ProfileToken></tr2:GetSnapshotUri>")
    assert snap.findtext("tr2:Uri", namespaces=ns).startswith("http://127.0.0.1:")


def test_media2_encoders_and_capabilities(camera: tuple[RunningFarm, str]) -> None:
    farm, kind = camera
    ns = ONVIF_NS
    encoders = media2(farm, kind, "<tr2:GetVideoEncoderConfigurations/>")
    assert len(encoders.findall("tr2:Configurations", ns)) == len(PROFILES[kind])
    options = media2(farm, kind, "<tr2:GetVideoEncoderConfigurationOptions/>")
    found = options.find("tr2:Options", ns)
    assert found.findtext("tt:Encoding", namespaces=ns) == "H264"
    assert found.get("ProfilesSupported") == "Baseline Main High"
    assert len(found.findall("tt:ResolutionsAvailable", ns)) == len(PROFILES[kind])
    sources = media2(farm, kind, "<tr2:GetVideoSourceConfigurations/>")
    assert sources.find("tr2:Configurations/tt:SourceToken", ns).text == "VideoSource_1"
    caps = media2(farm, kind, "<tr2:GetServiceCapabilities/>")
    assert caps.find("tr2:Capabilities/tr2:StreamingCapabilities", ns).get(
        "RTP_RTSP_TCP") == "true"
    status, _, text = onvif_call(
        onvif_service_url(onvif_url(farm), "media2"),
        "<tr2:GetStreamUri><tr2:Protocol>RtspMulticast</tr2:Protocol><tr2:ProfileToken>"
        f"{PROFILES[kind][0][0]}</tr2:ProfileToken></tr2:GetStreamUri>",
        header=onvif_token(*ONVIF_ADMINS[kind]))
    assert (status, onvif_fault(text)[2]) == (400, "ter:InvalidStreamSetup")


# -- raw replies against the shipped XSDs ---------------------------------------------------
def _schema(wsdl: str) -> etree.XMLSchema:
    """The schema a WSDL embeds (which imports onvif.xsd beside it)."""
    path = Path(ONVIF_WSDL) / wsdl
    embedded = etree.parse(str(path)).find(".//{http://www.w3.org/2001/XMLSchema}schema")
    return etree.XMLSchema(etree.fromstring(etree.tostring(embedded), base_url=str(path)))


VALIDATED = [
    ("device_service", "devicemgmt.wsdl", "<tds:GetDeviceInformation/>"),
    ("device_service", "devicemgmt.wsdl", "<tds:GetCapabilities/>"),
    ("device_service", "devicemgmt.wsdl",
     "<tds:GetServices><tds:IncludeCapability>true</tds:IncludeCapability></tds:GetServices>"),
    ("device_service", "devicemgmt.wsdl", "<tds:GetSystemDateAndTime/>"),
    ("device_service", "devicemgmt.wsdl", "<tds:GetScopes/>"),
    ("device_service", "devicemgmt.wsdl", "<tds:GetNetworkInterfaces/>"),
    ("device_service", "devicemgmt.wsdl", "<tds:GetNetworkProtocols/>"),
    ("device_service", "devicemgmt.wsdl", "<tds:GetServiceCapabilities/>"),
    ("media", "media.wsdl", "<trt:GetProfiles/>"),
    ("media", "media.wsdl", "<trt:GetVideoEncoderConfigurationOptions/>"),
    ("media", "media.wsdl", "<trt:GetServiceCapabilities/>"),
    ("imaging", "imaging.wsdl",
     "<timg:GetImagingSettings><timg:VideoSourceToken>VideoSource_1</timg:VideoSourceToken>"
     "</timg:GetImagingSettings>"),
    ("imaging", "imaging.wsdl",
     "<timg:GetOptions><timg:VideoSourceToken>VideoSource_1</timg:VideoSourceToken>"
     "</timg:GetOptions>"),
]


@pytest.mark.parametrize(("service", "wsdl", "body"), VALIDATED,
                         ids=[b.split(">")[0].strip("<") for _, _, b in VALIDATED])
def test_replies_validate_against_the_shipped_xsd(camera: tuple[RunningFarm, str],
                                                  service: str, wsdl: str, body: str) -> None:
    farm, kind = camera
    status, _, text = onvif_call(onvif_service_url(onvif_url(farm), service), body,
                                 header=onvif_token(*ONVIF_ADMINS[kind]))
    assert status == 200, text
    schema = _schema(wsdl)
    reply = onvif_body(text)
    assert schema.validate(reply), str(schema.error_log)

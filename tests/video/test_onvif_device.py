"""The ONVIF device service through onvif-zeep-async: connecting (with and without
adjust_time), identity, the camera's clock (scenario offset, the control route,
SetSystemDateAndTime), scopes and hostname kept across a restart, reboot, quirks and the
farm's HTTP faults on SOAP operations."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
import zeep.exceptions
from onvif.exceptions import ONVIFError

from emulators.testing import RunningFarm
from tests.video.clients import (
    ONVIF_ADMINS,
    onvif_call,
    onvif_camera,
    onvif_farm,
    onvif_fault,
    onvif_run,
    onvif_token,
    onvif_url,
)
from tests.video.discovery_clients import exchange, probe_bytes

MODELS = {"instar-camera": ("INSTAR", "IN-9408 2K+"), "acti-camera": ("ACTi", None)}
KINDS = sorted(ONVIF_ADMINS)



async def _with_device(url: str, kind: str, fn: Any, **options: Any) -> Any:
    cam = onvif_camera(url, *ONVIF_ADMINS[kind], **options)
    try:
        await cam.update_xaddrs()
        return await fn(cam, await cam.create_devicemgmt_service())
    finally:
        await cam.close()


def device(farm: RunningFarm, kind: str, fn: Any, **options: Any) -> Any:
    return onvif_run(_with_device(onvif_url(farm), kind, fn, **options))


@pytest.mark.parametrize("adjust_time", [True, False], ids=["adjust_time", "plain"])
def test_client_connects_and_reads_identity(camera: tuple[RunningFarm, str],
                                            adjust_time: bool) -> None:
    farm, kind = camera

    async def read(cam: Any, dev: Any) -> Any:
        return cam.xaddrs, await dev.GetDeviceInformation()

    xaddrs, info = device(farm, kind, read, adjust_time=adjust_time)
    manufacturer, model = MODELS[kind]
    assert info.Manufacturer == manufacturer
    member = farm.farm.members["cam"]
    assert info.Model == (model or member.video.facts.identity.model)
    assert info.SerialNumber == member.video.facts.identity.serial
    base = onvif_url(farm).rsplit("/onvif/", 1)[0]
    assert xaddrs["http://www.onvif.org/ver10/media/wsdl"] == f"{base}/onvif/media"
    assert xaddrs["http://www.onvif.org/ver20/media/wsdl"] == f"{base}/onvif/media2"
    assert xaddrs["http://www.onvif.org/ver10/events/wsdl"] == f"{base}/onvif/events"


def test_services_and_capabilities(camera: tuple[RunningFarm, str]) -> None:
    farm, kind = camera

    async def read(cam: Any, dev: Any) -> Any:
        return (await dev.GetServices({"IncludeCapability": True}),
                await dev.GetCapabilities({"Category": "All"}),
                await dev.GetServiceCapabilities())

    services, caps, service_caps = device(farm, kind, read)
    versions = {s.Namespace: (s.Version.Major, s.Version.Minor) for s in services}
    assert versions["http://www.onvif.org/ver10/device/wsdl"] == (2, 60)
    assert caps.Media.StreamingCapabilities.RTP_RTSP_TCP is True
    assert caps.Media.StreamingCapabilities.RTP_TCP is True
    assert caps.Events.WSPullPointSupport is True
    assert caps.Imaging.XAddr.endswith("/onvif/imaging")
    assert service_caps.Security.UsernameToken is True
    assert service_caps.Security.HttpDigest is True


def test_system_date_and_time_raw_without_credentials(camera: tuple[RunningFarm, str]) -> None:
    farm, _ = camera
    status, _, text = onvif_call(onvif_url(farm), "<tds:GetSystemDateAndTime/>")
    assert status == 200
    assert f"<tt:Year>{time.gmtime().tm_year}</tt:Year>" in text
    assert "<tt:DateTimeType>Manual</tt:DateTimeType>" in text


def _clock_refusal(farm: RunningFarm, kind: str) -> None:
    """A client that does not adjust its time is refused (the raw fault quoted); one that
    does is served."""
    header = onvif_token(*ONVIF_ADMINS[kind])
    status, _, text = onvif_call(onvif_url(farm), "<tds:GetDeviceInformation/>",
                                 header=header)
    assert status == 400
    assert onvif_fault(text)[:2] == ("env:Sender", "ter:NotAuthorized")

    async def info(cam: Any, dev: Any) -> Any:
        return await dev.GetDeviceInformation()

    with pytest.raises((zeep.exceptions.Fault, ONVIFError), match="the camera's clock"):
        device(farm, kind, info)
    assert device(farm, kind, info, adjust_time=True).Manufacturer == MODELS[kind][0]


@pytest.mark.parametrize("kind", KINDS)
def test_a_camera_clock_an_hour_ahead(tmp_path: Path, kind: str) -> None:
    farm = onvif_farm(tmp_path, kind, video={"clock_offset": 3600})
    try:
        _clock_refusal(farm, kind)
    finally:
        farm.stop()


def test_the_control_route_moves_the_clock(tmp_path: Path) -> None:
    farm = onvif_farm(tmp_path, "acti-camera")
    try:
        reply = requests.post(f"{farm.control_url}/emulators/cam/video/clock",
                              json={"offset": -7200}, timeout=10)
        assert reply.status_code == 200, reply.text
        _clock_refusal(farm, "acti-camera")
    finally:
        farm.stop()


def test_set_system_date_and_time(camera: tuple[RunningFarm, str]) -> None:
    farm, kind = camera
    wing = farm.farm.members["cam"].video
    target = time.gmtime(farm.clock.time() + 86400)

    async def set_manual(cam: Any, dev: Any) -> Any:
        await dev.SetSystemDateAndTime({
            "DateTimeType": "Manual", "DaylightSavings": False,
            "UTCDateTime": {"Date": {"Year": target.tm_year, "Month": target.tm_mon,
                                     "Day": target.tm_mday},
                            "Time": {"Hour": target.tm_hour, "Minute": target.tm_min,
                                     "Second": target.tm_sec}}})
        return await dev.GetSystemDateAndTime()

    try:
        reply = device(farm, kind, set_manual)
        assert reply.UTCDateTime.Date.Day == target.tm_mday
        assert abs(wing.clock_offset - 86400) < 60

        async def set_ntp(cam: Any, dev: Any) -> Any:
            await dev.SetSystemDateAndTime({"DateTimeType": "NTP", "DaylightSavings": False})
            return await dev.GetSystemDateAndTime()

        assert device(farm, kind, set_ntp, adjust_time=True).DateTimeType == "NTP"
        assert abs(wing.clock_offset - 86400) < 60  # NTP leaves the clock
    finally:
        farm.loop.run(wing.set_clock_offset(0.0))


def test_scopes_and_hostname_persist_across_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    location = "onvif://www.onvif.org/location/attic"

    async def change(cam: Any, dev: Any) -> Any:
        await dev.SetScopes({"Scopes": [location, "onvif://www.onvif.org/name/Attic"]})
        await dev.AddScopes({"ScopeItem": ["onvif://www.onvif.org/extra/one"]})
        await dev.RemoveScopes({"ScopeItem": ["onvif://www.onvif.org/extra/one"]})
        await dev.SetHostname({"Name": "attic-cam"})
        return await dev.GetScopes()

    farm = onvif_farm(state, "instar-camera")
    try:
        scopes = device(farm, "instar-camera", change)
        kinds = {s.ScopeItem: s.ScopeDef for s in scopes}
        assert kinds[location] == "Configurable"
        assert kinds["onvif://www.onvif.org/Profile/Streaming"] == "Fixed"
        assert "onvif://www.onvif.org/extra/one" not in kinds
    finally:
        farm.stop()

    async def read(cam: Any, dev: Any) -> Any:
        return await dev.GetScopes(), await dev.GetHostname()

    farm = onvif_farm(state, "instar-camera")
    try:
        scopes, hostname = device(farm, "instar-camera", read)
        assert location in [s.ScopeItem for s in scopes]
        assert hostname.Name == "attic-cam"
    finally:
        farm.stop()


def test_fixed_scopes_cannot_be_set(camera: tuple[RunningFarm, str]) -> None:
    farm, kind = camera
    status, _, text = onvif_call(
        onvif_url(farm), "<tds:SetScopes><tds:Scopes>onvif://www.onvif.org/Profile/Streaming"
        "</tds:Scopes></tds:SetScopes>", header=onvif_token(*ONVIF_ADMINS[kind]))
    assert status == 400
    assert onvif_fault(text)[1:3] == ("ter:OperationProhibited", "ter:ScopeOverwrite")


def test_network_users_and_discovery(camera: tuple[RunningFarm, str]) -> None:
    farm, kind = camera

    async def read(cam: Any, dev: Any) -> Any:
        interfaces = await dev.GetNetworkInterfaces()
        users = await dev.GetUsers()
        protocols = await dev.GetNetworkProtocols()
        return (interfaces, users, protocols, await dev.GetDiscoveryMode(), await dev.GetNTP(),
                await dev.GetDNS(), await dev.GetWsdlUrl(), await dev.GetEndpointReference())

    interfaces, users, protocols, mode, _, _, _, guid = device(farm, kind, read)
    assert interfaces[0].IPv4.Config.Manual[0].Address == "127.0.0.1"
    assert interfaces[0].Info.HwAddress == device(farm, kind, _mac)
    assert [(u.Username, u.UserLevel) for u in users] == [("admin", "Administrator")]
    assert all(u.Password is None for u in users)
    http = next(p for p in protocols if p.Name == "HTTP")
    assert int(onvif_url(farm).rsplit(":", 1)[1].split("/")[0]) in http.Port
    assert mode == "Discoverable"
    assert guid.GUID == farm.farm.members["cam"].video.endpoint


@pytest.mark.parametrize("kind", KINDS)
def test_discovery_mode_is_set_through_onvif(tmp_path: Path, kind: str) -> None:
    # A farm of its own on an address of its own: the camera's discovery sockets close and
    # open again as the mode changes (which the module's shared farm would count as sockets
    # left open), and a unicast Probe to an address other processes' cameras share may reach
    # their socket instead (SO_REUSEPORT spreads unicast datagrams).
    farm = onvif_farm(tmp_path, kind, host="127.0.0.41")
    address = ("127.0.0.41", 3702)
    try:
        async def hide(cam: Any, dev: Any) -> Any:
            await dev.SetDiscoveryMode({"DiscoveryMode": "NonDiscoverable"})
            return await dev.GetDiscoveryMode()

        async def show(cam: Any, dev: Any) -> Any:
            await dev.SetDiscoveryMode({"DiscoveryMode": "Discoverable"})
            return await dev.GetDiscoveryMode()

        assert device(farm, kind, hide) == "NonDiscoverable"
        mine = onvif_url(farm)
        assert exchange(probe_bytes()[1], to=address, wait=0.5) == []
        assert farm.farm.members["cam"].state()["video"]["discoverable"] is False
        assert device(farm, kind, show) == "Discoverable"
        answers = exchange(probe_bytes()[1], to=address, wait=1.0)
        assert [a.xaddrs for a in answers] == [mine]
    finally:
        farm.stop()


async def _mac(cam: Any, dev: Any) -> Any:
    return (await dev.GetNetworkInterfaces())[0].Info.HwAddress  # stable from call to call


@pytest.mark.parametrize("kind", KINDS)
def test_system_reboot_takes_boot_seconds_of_the_farm_clock(tmp_path: Path, kind: str) -> None:
    farm = onvif_farm(tmp_path, kind, video={"boot_seconds": 40})
    url = onvif_url(farm)
    try:
        farm.freeze_clock()

        async def reboot(cam: Any, dev: Any) -> Any:
            return await dev.SystemReboot()

        assert device(farm, kind, reboot) == "Rebooting in 40 seconds"
        assert _wait_answers(url, False), "the camera kept answering after SystemReboot"
        time.sleep(0.5)  # the frozen clock holds it down
        assert not _answers(url)
        farm.advance_clock(41)
        assert _wait_answers(url, True), "the camera did not come back"
        farm.wait_for(protocol="onvif", event="booted", timeout=10)
    finally:
        farm.stop()


def _answers(url: str) -> bool:
    async def probe() -> bool:
        try:
            async with aiohttp.ClientSession() as session, session.post(
                    url, data=b"<x/>", timeout=aiohttp.ClientTimeout(total=3)) as reply:
                return reply.status > 0
        except (aiohttp.ClientError, TimeoutError):
            return False

    return onvif_run(probe())


def _wait_answers(url: str, wanted: bool, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _answers(url) == wanted:
            return True
        time.sleep(0.1)
    return False


def test_not_supported_quirk(tmp_path: Path) -> None:
    farm = onvif_farm(tmp_path, "instar-camera",
                      video={"quirks": {"not_supported": ["GetImagingSettings"]}})

    async def read(cam: Any, dev: Any) -> Any:
        caps = await dev.GetCapabilities({"Category": "All"})
        imaging = await cam.create_imaging_service()
        options = await imaging.GetOptions({"VideoSourceToken": "VideoSource_1"})
        try:
            await imaging.GetImagingSettings({"VideoSourceToken": "VideoSource_1"})
        except zeep.exceptions.Fault as fault:
            return caps, options, fault
        return caps, options, None

    try:
        caps, options, fault = device(farm, "instar-camera", read)
        assert caps.Imaging.XAddr.endswith("/onvif/imaging")
        assert options.Brightness.Max == 100
        assert fault is not None
        assert fault.subcodes[0].text == "{http://www.onvif.org/ver10/error}ActionNotSupported"
    finally:
        farm.stop()


def test_http_faults_reach_soap_operations(camera: tuple[RunningFarm, str]) -> None:
    farm, kind = camera
    rule = farm.add_fault(fault="vendor_error", command="GetProfiles", message="busy")

    async def read(cam: Any, dev: Any) -> Any:
        media = await cam.create_media_service()
        info = await dev.GetDeviceInformation()
        try:
            await media.GetProfiles()
        except zeep.exceptions.Fault as fault:
            return info, fault
        return info, None

    try:
        info, fault = device(farm, kind, read)
        assert info.Manufacturer == MODELS[kind][0]
        assert fault is not None and fault.message == "busy"
    finally:
        farm.remove_fault(rule)
    rule = farm.add_fault(fault="latency", command="GetProfiles", latency_ms=400)

    async def timed(cam: Any, dev: Any) -> float:
        media = await cam.create_media_service()
        started = asyncio.get_running_loop().time()
        await media.GetProfiles()
        return asyncio.get_running_loop().time() - started

    try:
        assert device(farm, kind, timed) >= 0.4
    finally:
        farm.remove_fault(rule)


def test_operations_are_journalled(camera: tuple[RunningFarm, str]) -> None:
    farm, kind = camera

    async def read(cam: Any, dev: Any) -> Any:
        return await dev.GetHostname()

    device(farm, kind, read)
    entry = farm.journal(protocol="onvif", event="GetHostname")[-1]
    assert entry["detail"]["service"] == "device"
    assert entry["path"] == "/onvif/device_service"
    assert entry["status"] == 200

"""ONVIF authentication as onvif-zeep-async and raw SOAP meet it: WS-UsernameToken
(PasswordDigest, PasswordText), the token's clock window, HTTP Digest, the pre-auth
operations and the access classes per user level."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest
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

GUESTS = {"instar-camera": {"users": [{"name": "admin", "password": "instar"},
                                      {"name": "guest", "password": "guest-pw",
                                       "role": "guest"}]},
          "acti-camera": {"users": [{"user": "admin", "password": "123456", "root": True},
                                    {"user": "guest", "password": "guest-pw"}]}}
INFO = "<tds:GetDeviceInformation/>"


@pytest.fixture(scope="module", params=sorted(ONVIF_ADMINS))
def camera(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningFarm, str]]:
    farm = onvif_farm(tmp_path_factory.mktemp("farm"), request.param,
                      **GUESTS[request.param])
    yield farm, request.param
    farm.stop()


async def _device_information(url: str, user: str | None, password: str | None,
                              **options: Any) -> Any:
    cam = onvif_camera(url, user, password, **options)
    try:
        await cam.update_xaddrs()
        device = await cam.create_devicemgmt_service()
        return await device.GetDeviceInformation()
    finally:
        await cam.close()


@pytest.mark.parametrize("encrypt", [True, False], ids=["PasswordDigest", "PasswordText"])
def test_username_token_kinds_are_accepted(camera: tuple[RunningFarm, str],
                                           encrypt: bool) -> None:
    farm, kind = camera
    info = onvif_run(_device_information(onvif_url(farm), *ONVIF_ADMINS[kind],
                                         encrypt=encrypt))
    assert info.Manufacturer == ("INSTAR" if kind == "instar-camera" else "ACTi")
    entry = farm.journal(protocol="onvif", event="GetDeviceInformation")[-1]
    assert entry["user"] == "admin"
    assert entry["status"] == 200


def test_wrong_password_is_not_authorized(camera: tuple[RunningFarm, str]) -> None:
    farm, _ = camera
    with pytest.raises((zeep.exceptions.Fault, ONVIFError), match="Sender not Authorized"):
        onvif_run(_device_information(onvif_url(farm), "admin", "wrong"))
    status, _, text = onvif_call(onvif_url(farm), INFO,
                                 header=onvif_token("admin", "wrong"))
    assert status == 400
    assert onvif_fault(text)[:2] == ("env:Sender", "ter:NotAuthorized")


def test_pre_auth_operations_need_no_credentials(camera: tuple[RunningFarm, str]) -> None:
    farm, _ = camera
    for body in ("<tds:GetSystemDateAndTime/>", "<tds:GetServices><tds:IncludeCapability>"
                 "false</tds:IncludeCapability></tds:GetServices>",
                 "<tds:GetCapabilities/>", "<tds:GetHostname/>", "<tds:GetWsdlUrl/>",
                 "<tds:GetEndpointReference/>", "<tds:GetServiceCapabilities/>"):
        status, _, text = onvif_call(onvif_url(farm), body)
        assert status == 200, (body, text)
    # Anything else wants credentials: HTTP's challenge, the SOAP fault as its body.
    status, headers, text = onvif_call(onvif_url(farm), INFO)
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Digest ")
    assert onvif_fault(text)[1] == "ter:NotAuthorized"


def test_http_digest_without_ws_security(camera: tuple[RunningFarm, str]) -> None:
    farm, kind = camera
    status, _, text = onvif_call(onvif_url(farm), INFO, digest=ONVIF_ADMINS[kind])
    assert status == 200, text
    assert ">INSTAR<" in text or ">ACTi<" in text
    status, _, _ = onvif_call(onvif_url(farm), INFO, digest=("admin", "wrong"))
    assert status == 401


def test_created_outside_the_window_is_refused(camera: tuple[RunningFarm, str]) -> None:
    farm, kind = camera
    user, password = ONVIF_ADMINS[kind]
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, _, text = onvif_call(onvif_url(farm), INFO,
                                 header=onvif_token(user, password, created=old))
    assert status == 400
    code, subcode, _, reason = onvif_fault(text)
    assert (code, subcode) == ("env:Sender", "ter:NotAuthorized")
    assert "clock" in reason


def test_a_nonce_is_good_once(camera: tuple[RunningFarm, str]) -> None:
    farm, kind = camera
    header = onvif_token(*ONVIF_ADMINS[kind], nonce=f"nonce-{time.time()}".encode())
    assert onvif_call(onvif_url(farm), INFO, header=header)[0] == 200
    status, _, text = onvif_call(onvif_url(farm), INFO, header=header)
    assert status == 400
    assert "used before" in onvif_fault(text)[3]


def test_password_text_without_nonce_or_created(camera: tuple[RunningFarm, str]) -> None:
    farm, kind = camera
    user, password = ONVIF_ADMINS[kind]
    header = (f'<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-'
              f'wss-wssecurity-secext-1.0.xsd"><wsse:UsernameToken><wsse:Username>{user}'
              f"</wsse:Username><wsse:Password>{password}</wsse:Password>"
              f"</wsse:UsernameToken></wsse:Security>")
    assert onvif_call(onvif_url(farm), INFO, header=header)[0] == 200


def test_user_level_may_read_but_not_write(camera: tuple[RunningFarm, str]) -> None:
    farm, _ = camera
    guest = onvif_token("guest", "guest-pw")
    assert onvif_call(onvif_url(farm), INFO, header=guest)[0] == 200
    status, _, text = onvif_call(
        onvif_url(farm), "<tds:SetScopes><tds:Scopes>onvif://www.onvif.org/location/x"
        "</tds:Scopes></tds:SetScopes>", header=onvif_token("guest", "guest-pw"))
    assert status == 400
    code, subcode, _, reason = onvif_fault(text)
    assert (code, subcode) == ("env:Sender", "ter:NotAuthorized")
    assert "User users may not call SetScopes" in reason

    async def guest_sets_scopes() -> None:
        cam = onvif_camera(onvif_url(farm), "guest", "guest-pw")
        try:
            device = await cam.create_devicemgmt_service()
            await device.SetScopes({"Scopes": ["onvif://www.onvif.org/location/x"]})
        finally:
            await cam.close()

    with pytest.raises(zeep.exceptions.Fault, match="may not call SetScopes"):
        onvif_run(guest_sets_scopes())

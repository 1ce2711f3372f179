"""The console's "Generate Verification Code" button as a control-plane route, and the ready file."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from huaweicloudsdkiotda.v5 import (
    ListCertificatesRequest,
    ShowCertificateRequest,
    ShowDeviceRequest,
)

from emulators.testing import RunningFarm, single_member_scenario
from tests.control_support import urlopen_json

from .clients import AK, CA, OPTIONS, PROJECT, SK, ClientFactory
from .test_device_cas import upload

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def farm(farm_factory: Callable[..., RunningFarm]) -> RunningFarm:
    return farm_factory(single_member_scenario("iotda", "huawei", **OPTIONS))


@pytest.fixture
def control_url(farm: RunningFarm) -> str:
    """The farm's own control plane, where the route is mounted."""
    return farm.control_url


def post(url: str) -> tuple[int, Any]:
    return urlopen_json(urllib.request.Request(url, data=b"", method="POST",
                                               headers={"X-Requested-With": "tests"}))


def test_control_route_generates_a_new_code(farm: RunningFarm, control_url: str,
                                            make_client: ClientFactory) -> None:
    client = make_client(endpoint=farm["huawei"].url)
    record = upload(client, CA().pem)
    status, body = post(f"{control_url}/emulators/huawei/iotda/certificates/"
                        f"{record.certificate_id}/verify-code")
    assert status == 200
    assert body["certificate_id"] == record.certificate_id
    assert body["verify_code"] != record.verify_code
    shown = client.show_certificate(ShowCertificateRequest(certificate_id=record.certificate_id))
    assert shown.verify_code == body["verify_code"]
    # The new code is on flash, not only in memory.
    saved = farm["huawei"].call(lambda m: m.ctx.store.load(m.name))
    assert saved["device_cas"]["records"][0]["verify_code"] == body["verify_code"]


@pytest.mark.parametrize(("member", "cert_id"), [
    pytest.param("huawei", "0123456789abcdef01234567", id="unknown-certificate"),
    pytest.param("nobody", "0123456789abcdef01234567", id="unknown-member"),
])
def test_control_route_not_found(control_url: str, member: str, cert_id: str) -> None:
    status, body = post(f"{control_url}/emulators/{member}/iotda/certificates/{cert_id}"
                        "/verify-code")
    assert (status, body["error"]["code"]) == (404, "not_found")


def test_ready_file_carries_the_keys(farm: RunningFarm) -> None:
    (entry,) = farm.ready["emulators"]
    credentials = entry["credentials"]
    assert (credentials["ak"], credentials["sk"], credentials["project_id"]) == (AK, SK, PROJECT)
    assert credentials["region"] == "cn-north-4"


def test_example_scenario_starts_and_serves_the_sdk(farm_factory: Callable[..., RunningFarm],
                                                    make_client: ClientFactory) -> None:
    scenario = yaml.safe_load((ROOT / "scenarios" / "iotda.yaml").read_text())
    scenario["emulators"][0]["port"] = 0  # the example's fixed port may be taken
    running = farm_factory(scenario, control=False)
    (key,) = scenario["emulators"][0]["credentials"]
    client = make_client(key["ak"], key["sk"], key["project_id"],
                         endpoint=running["iotda"].url)
    assert client.list_certificates(ListCertificatesRequest()).page.count == 0
    device = client.show_device(ShowDeviceRequest(device_id="camera_cam-1"))
    assert (device.status, device.auth_info.secret) == ("INACTIVE", "CameraSecret01")


def test_state_view_shows_when_a_code_expires(farm: RunningFarm,
                                              make_client: ClientFactory) -> None:
    handle = farm["huawei"]
    record = upload(make_client(endpoint=handle.url), CA().pem)
    (shown,) = [r for r in handle.state()["device_cas"]["records"]
                if r["certificate_id"] == record.certificate_id]
    assert shown["verify_code_expires"] - shown["verify_code_created"] == 7 * 86_400

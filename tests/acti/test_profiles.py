"""Firmware profiles: each platform's first HTTPS_CER release and the releases before it,
compared numerically (V4.9 < V4.10), chosen by the scenario."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from emulators import scenario
from emulators.acti.profiles import Firmware
from emulators.testing import MemberHandle

from .clients import ADMIN, body_of, get, multipart_body, post, upload

OK = b"HTTP/1.0 200 OK\r\nContent-type: text/plain\r\nContent-Length: 3\r\n\r\nOK\n"
NOT_FOUND = b"ERROR: HTTPS_CER not found\n"

# (platform, first firmware with HTTPS_CER (seed 000), later ones, earlier ones)
PROFILES = [
    ("PlatformA", "A1D-220-V3.14", ["A1D-220-V3.15", "A1D-220-V4.01"],
     ["A1D-220-V3.13", "A1D-220-V3.2", "A1D-220-V2.99"]),
    ("PlatformT", "A1D-310-V4.10", ["A1D-310-V4.12.09-AC", "A1D-310-V4.100"],
     ["A1D-310-V4.9", "A1D-310-V4.09", "A1D-310-V3.99"]),
    ("PlatformK", "A1D-311-V5.02", ["A1D-311-V5.2.0", "A1D-311-V5.10"],
     ["A1D-311-V5.01", "A1D-311-V4.99.99"]),
]
WITH_HTTPS = [(p, v) for p, first, later, _ in PROFILES for v in [first, *later]]
WITHOUT_HTTPS = [(p, v) for p, _, _, earlier in PROFILES for v in earlier]


@pytest.mark.parametrize(("platform", "firmware"), WITH_HTTPS, ids=[v for _, v in WITH_HTTPS])
def test_firmware_with_https(emulator_factory: Callable[..., MemberHandle], self_signed,
                             platform: str, firmware: str) -> None:
    camera = emulator_factory("acti-camera", firmware=firmware)
    assert camera.description["firmware"]["platform"] == platform
    assert body_of(get(camera.url, f"{ADMIN}&HTTPS_CER")) == b"HTTPS_CER='none'\n"
    assert upload(camera.url, self_signed.combined) == OK
    assert camera.state()["https"]["active"] is True


@pytest.mark.parametrize(("platform", "firmware"), WITHOUT_HTTPS,
                         ids=[v for _, v in WITHOUT_HTTPS])
def test_firmware_without_https(emulator_factory: Callable[..., MemberHandle], self_signed,
                                platform: str, firmware: str) -> None:
    camera = emulator_factory("acti-camera", firmware=firmware)
    assert camera.description["firmware"] == {
        "version": firmware, "platform": platform,
        "devices": ["Camera"] if platform == "PlatformK" else ["Camera", "Video server"],
        "https": False, "https_since": next(first for p, first, _, _ in PROFILES
                                            if p == platform)}
    for command in ("HTTPS_CER", "HTTPS_CER=upload", "HTTPS_CER=remove", "HTTPS=upload"):
        assert get(camera.url, f"{ADMIN}&{command}") == (
            b"HTTP/1.0 200 OK\r\nContent-type: text/plain\r\nContent-Length: 27\r\n\r\n"
            + NOT_FOUND), command
    assert body_of(get(camera.url, f"{ADMIN}&HTTPS_CSR_CREATE=TW,a,b,c,d,e,2048")) == (
        b"ERROR: HTTPS_CSR_CREATE not found\n")
    # Seed 000 lists "ERROR: HTTPS_CER not found" among the stage-4 answers.
    assert body_of(post(camera.url, "HTTPS_CER_SAVE", *multipart_body(self_signed.combined))) \
        == NOT_FOUND
    state = camera.state()["https"]
    assert state["active"] is False
    assert state["reason"] == f"firmware {firmware} has no HTTPS"
    # Factory default still works on the older firmware.
    assert get(camera.url, f"{ADMIN}&FACTORY_DEFAULT", path="/cgi-bin/system") == OK


@pytest.mark.parametrize(("older", "newer"), [
    ("A1D-310-V4.9", "A1D-310-V4.10"), ("A1D-310-V4.10", "A1D-310-V4.10.1"),
    ("A1D-220-V3.2", "A1D-220-V3.14"), ("A1D-311-V5.01", "A1D-311-V5.2"),
    ("A1D-311-V4.99", "A1D-311-V5.0"),
])
def test_versions_compare_numerically(older: str, newer: str) -> None:
    assert Firmware.parse(older).version < Firmware.parse(newer).version


@pytest.mark.parametrize(("firmware", "problem"), [
    ("V4.10", "not an ACTi version string"),
    ("A1D-310-4.10", "not an ACTi version string"),
    ("A1D-310-V4.x", "not an ACTi version string"),
    ("A1D-999-V4.10", "unknown platform code"),
    ("", "not an ACTi version string"),
], ids=["no-prefix", "no-v", "letters", "unknown-platform", "empty"])
def test_scenario_rejects_bad_firmware(firmware: str, problem: str) -> None:
    doc = {"name": "bad", "emulators": [{"name": "cam", "kind": "acti-camera",
                                         "firmware": firmware}]}
    with pytest.raises(scenario.ScenarioInvalid, match=problem):
        scenario.load(doc)


def test_scenario_rejects_a_certificate_on_firmware_without_https(self_signed) -> None:
    doc = {"name": "bad", "emulators": [{
        "name": "cam", "kind": "acti-camera", "firmware": "A1D-310-V4.09",
        "https_certificate": self_signed.combined.decode()}]}
    with pytest.raises(scenario.ScenarioInvalid, match="has no HTTPS_CER"):
        scenario.load(doc)


def test_example_scenario_is_valid() -> None:
    path = Path(__file__).resolve().parents[2] / "scenarios" / "acti-camera.yaml"
    loaded = scenario.load(path)
    assert [m.name for m in loaded.members] == [
        "acti-camera", "acti-camera-platform-a", "acti-camera-platform-k",
        "acti-camera-no-https"]

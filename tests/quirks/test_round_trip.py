"""The whole story of a quirk profile, as a QA engineer lives it: capture a device (a stand-in
with what the emulators have no option for), start a farm whose camera says ``quirks: FILE``,
and the camera answers the probe's requests with the device's bytes; drift finds nothing
between the profile and that camera, and finds the difference against the plain one."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from emulators.testing import RunningFarm
from tests.quirks.clients import quirk_target, raw_get
from tests.quirks.standins import (
    ACTI_PASSWORD,
    ACTI_USER,
    INSTAR_PASSWORD,
    INSTAR_USER,
    StandIn,
    acti_standin,
    emulators,
    instar_standin,
)

KINDS = {
    "instar-camera": (instar_standin, INSTAR_USER, INSTAR_PASSWORD, ("admin", "instar")),
    "acti-camera": (acti_standin, ACTI_USER, ACTI_PASSWORD, ("admin", "123456")),
}
# A reply's Date and Content-Length are values a replay makes anew; the stand-ins' session
# cookie is a secret a capture redacts (the camera answers its own in its place).
_VOLATILE = re.compile(rb"(?im)^(date|content-length|set-cookie):[^\r\n]*")
# What a capture redacts is answered with the emulator's own value: not the device's bytes.
_REDACTED = re.compile(r"<(address|serial|mac|secret|key|token|pem)>")


def normalised(reply: bytes) -> bytes:
    return _VOLATILE.sub(lambda m: m.group(1).lower() + b": -", reply)


@pytest.fixture(params=list(KINDS))
def captured(request: pytest.FixtureRequest,
             tmp_path: Path) -> Iterator[tuple[str, StandIn, Path]]:
    kind = request.param
    make, user, password, _ = KINDS[kind]
    standin, _device = make()
    out = tmp_path / "device.yaml"
    try:
        result = emulators("capture", "--kind", kind, "--target", standin.url, "--user", user,
                           "--password", password, "--out", out)
        assert result.returncode == 0, result.stderr
        yield kind, standin, out
    finally:
        standin.close()


def farm_with(kind: str, profile: Path | None, tmp_path: Path,
              start: Callable[..., RunningFarm]) -> RunningFarm:
    entry: dict = {"name": "cam", "kind": kind, "port": 0}
    if profile is not None:
        entry["quirks"] = str(profile)
    return start({"version": 1, "name": "quirks", "emulators": [entry]}, tmp_path / "state")


def test_the_camera_answers_the_probe_as_the_device_did(
        captured: tuple[str, StandIn, Path], tmp_path: Path,
        farm_factory: Callable[..., RunningFarm]) -> None:
    kind, standin, profile = captured
    _, user, password, (farm_user, farm_password) = KINDS[kind]
    farm = farm_with(kind, profile, tmp_path, farm_factory)
    url = farm.ready["emulators"][0]["urls"]["http"]
    doc = yaml.safe_load(profile.read_text())
    compared = 0
    for exchange in doc["exchanges"]:
        replies = exchange["replies"]
        # Byte identity where the device's bytes are the answer: one state, nothing redacted,
        # not merged with the camera's own settings (those follow the emulator's state).
        if len(replies) != 1 or exchange.get("merge") or exchange["request"].get("headers") \
                or _REDACTED.search(replies[0].get("body", "")):
            continue
        method = exchange["request"]["method"]
        device = raw_get(standin.url, quirk_target(exchange, {user: password}), method=method)
        camera = raw_get(url, quirk_target(exchange, {farm_user: farm_password}), method=method)
        assert normalised(camera) == normalised(device), exchange["step"]
        compared += 1
    assert compared >= 3


def test_drift_finds_nothing_against_the_camera_with_the_profile_and_the_gap_without(
        captured: tuple[str, StandIn, Path], tmp_path: Path,
        farm_factory: Callable[..., RunningFarm]) -> None:
    kind, _standin, profile = captured
    _, _user, _password, (farm_user, farm_password) = KINDS[kind]
    with_profile = farm_with(kind, profile, tmp_path / "a", farm_factory)
    plain = farm_with(kind, None, tmp_path / "b", farm_factory)
    for farm, expected in ((with_profile, 0), (plain, 1)):
        url = farm.ready["emulators"][0]["urls"]["http"]
        result = emulators("drift", "--profile", profile, "--target", url, "--user", farm_user,
                           "--password", farm_password)
        assert result.returncode == expected, (expected, result.stdout, result.stderr)
    assert "step " in result.stdout  # the plain camera's differences, named by step


def test_a_replayed_reply_keeps_or_closes_the_connection_as_the_device_did(
        captured: tuple[str, StandIn, Path], tmp_path: Path,
        farm_factory: Callable[..., RunningFarm]) -> None:
    # The INSTAR stand-in answers HTTP/1.1 (the connection stays open: two pipelined requests
    # get two replies); the ACTi one HTTP/1.0 (closed after the first, as the device does).
    kind, _standin, profile = captured
    _, _user, _password, (farm_user, farm_password) = KINDS[kind]
    doc = yaml.safe_load(profile.read_text())
    exchange = next(e for e in doc["exchanges"] if not e["request"].get("headers")
                    and all(h[0].lower() != "connection" for h in e["replies"][0]["headers"]))
    recorded = exchange["replies"][0]
    farm = farm_with(kind, profile, tmp_path, farm_factory)
    host, port = farm.ready["emulators"][0]["host"], farm.ready["emulators"][0]["port"]
    target = quirk_target(exchange, {farm_user: farm_password})
    first = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
    last = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    with socket.create_connection((host, port), timeout=20) as sock:
        sock.sendall((first + last).encode())  # pipelined on one connection
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = f"{recorded['version']} {recorded['status']} ".encode()
    expected = 2 if recorded["version"] == "HTTP/1.1" else 1
    assert data.count(status) == expected, (kind, data[:400])

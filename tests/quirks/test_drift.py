"""``emulators drift``: a profile's requests replayed against a target; every difference
printed (step, the profile's, the target's); exit 0 none, 1 drift, 2 cannot run."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.testing import RunningFarm
from tests.quirks.standins import (
    INSTAR_PASSWORD,
    INSTAR_USER,
    StandIn,
    emulators,
    instar_standin,
)

CREDENTIALS = ("--user", INSTAR_USER, "--password", INSTAR_PASSWORD)


@pytest.fixture
def captured(tmp_path: Path) -> Iterator[tuple[StandIn, Path]]:
    standin, _ = instar_standin()
    out = tmp_path / "cam.yaml"
    result = emulators("capture", "--kind", "instar-camera", "--target", standin.url,
                       *CREDENTIALS, "--out", out)
    assert result.returncode == 0, result.stderr
    yield standin, out
    standin.close()


def test_no_drift_against_the_same_device(captured: tuple[StandIn, Path]) -> None:
    standin, profile = captured
    result = emulators("drift", "--profile", profile, "--target", standin.url, *CREDENTIALS)
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("no drift:")
    assert result.stderr == ""


def test_a_changed_header_is_drift_naming_step_and_header(
        captured: tuple[StandIn, Path]) -> None:
    _, profile = captured
    changed, _ = instar_standin(server="GoAhead-Webs/2.5")
    try:
        result = emulators("drift", "--profile", profile, "--target", changed.url,
                           *CREDENTIALS)
    finally:
        changed.close()
    assert result.returncode == 1
    assert "step getftpattr: header Server\n  profile:\n    GoAhead-Webs\n" \
           "  target:\n    GoAhead-Webs/2.5\n" in result.stdout
    assert "difference(s)" in result.stdout


def test_a_stand_in_profile_drifts_from_the_plain_emulator(
        captured: tuple[StandIn, Path], tmp_path: Path) -> None:
    _, profile = captured
    farm = RunningFarm.start({"version": 1, "name": "t", "emulators": [
        {"name": "cam", "kind": "instar-camera", "port": 0,
         "users": [{"name": INSTAR_USER, "password": INSTAR_PASSWORD}]}]},
        tmp_path / "farm")
    try:
        url = farm.ready["emulators"][0]["urls"]["http"]
        result = emulators("drift", "--profile", profile, "--target", url, *CREDENTIALS)
    finally:
        farm.stop()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "step getftpattr: header names\n  profile:\n" \
           "    Server, content-type, Set-Cookie, Content-Length\n" in result.stdout


def test_unreachable_target_exits_2(captured: tuple[StandIn, Path]) -> None:
    _, profile = captured
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = emulators("drift", "--profile", profile, "--target", f"http://127.0.0.1:{port}")
    assert result.returncode == 2
    assert result.stderr.startswith(f"emulators drift: cannot reach http://127.0.0.1:{port}: ")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("content", ["format: 7\nkind: x\nexchanges: []\n", "a: [\n", None],
                         ids=["unknown-format", "not-yaml", "missing-file"])
def test_unreadable_profile_exits_2(tmp_path: Path, content: str | None) -> None:
    profile = tmp_path / "cam.yaml"
    if content is not None:
        profile.write_text(content)
    result = emulators("drift", "--profile", profile, "--target", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert result.stderr.startswith("emulators drift: cannot read the profile: ")
    assert result.stderr.count("\n") == 1

"""Snapshots as camera software fetches them (curl with Digest, Basic, INSTAR's and ACTi's
own query logins) at each profile's real size, the refusal without credentials, and the
media they and the RTSP streams come from (the committed loops and JPEGs)."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from emulators.core.video import media
from emulators.testing import RunningFarm
from tests.video.rtsp_clients import RTSP_LOGINS, jpeg_size

PROFILES = [("cam", 0), ("cam", 1), ("cam", 2), ("acti", 0), ("acti", 1)]


def _snapshot_url(farm: RunningFarm, name: str, profile: int) -> str:
    return str(farm[name].call(
        lambda m: m.video.snapshot_url(m.video.facts.profiles[profile])))


def _size(farm: RunningFarm, name: str, profile: int) -> tuple[int, int]:
    found = farm[name].call(lambda m: m.video.facts.profiles[profile])
    return found.width, found.height


def _curl(*args: str) -> tuple[int, dict[str, list[str]], bytes]:
    """Status, headers (lower-case names, every value) and body of the last response."""
    run = subprocess.run(["curl", "-s", "-i", "--max-time", "20", *args], capture_output=True,
                         timeout=30, check=True)
    # With --digest curl shows the 401 first, then the answer: keep the last response.
    raw = run.stdout
    responses = []
    while raw.startswith(b"HTTP/"):
        head, _, raw = raw.partition(b"\r\n\r\n")
        responses.append(head)
    head = responses[-1]
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(lines[0].split(" ")[1]), headers, raw


@pytest.mark.parametrize(("name", "profile"), PROFILES,
                         ids=[f"{n}-{p}" for n, p in PROFILES])
def test_digest_snapshot_is_a_jpeg_of_the_profile_size(rtsp_farm: RunningFarm, name: str,
                                                       profile: int) -> None:
    user, password = RTSP_LOGINS[name]
    status, headers, body = _curl("--digest", "-u", f"{user}:{password}",
                                  _snapshot_url(rtsp_farm, name, profile))
    assert status == 200
    assert headers["content-type"] == ["image/jpeg"]
    assert jpeg_size(body) == _size(rtsp_farm, name, profile)


@pytest.mark.parametrize("name", ["cam", "acti"])
def test_basic_snapshot(rtsp_farm: RunningFarm, name: str) -> None:
    user, password = RTSP_LOGINS[name]
    status, _, body = _curl("--basic", "-u", f"{user}:{password}",
                            _snapshot_url(rtsp_farm, name, 0))
    assert status == 200
    assert jpeg_size(body) == _size(rtsp_farm, name, 0)


def test_instar_query_login_snapshot(rtsp_farm: RunningFarm) -> None:
    url = _snapshot_url(rtsp_farm, "cam", 1) + "&user=admin&pwd=instar"
    status, _, body = _curl(url)
    assert status == 200
    assert jpeg_size(body) == (1280, 720)
    status, _, _ = _curl(_snapshot_url(rtsp_farm, "cam", 1) + "&user=admin&pwd=wrong")
    assert status == 401


def test_acti_query_login_snapshot(rtsp_farm: RunningFarm) -> None:
    url = _snapshot_url(rtsp_farm, "acti", 1) + "&USER=admin&PWD=123456"
    status, _, body = _curl(url)
    assert status == 200
    assert jpeg_size(body) == (640, 360)


@pytest.mark.parametrize("name", ["cam", "acti"])
@pytest.mark.parametrize("credentials", [None, "admin:wrong"], ids=["none", "wrong"])
def test_snapshot_refused_with_both_challenges(rtsp_farm: RunningFarm, name: str,
                                               credentials: str | None) -> None:
    args = ["--digest", "-u", credentials] if credentials else []
    status, headers, body = _curl(*args, _snapshot_url(rtsp_farm, name, 0))
    assert status == 401
    challenges = headers["www-authenticate"]
    assert [c.split(" ")[0] for c in challenges] == ["Digest", "Basic"]
    assert not body.startswith(b"\xff\xd8")


# -- the media themselves -----------------------------------------------------------------------
@pytest.mark.parametrize("size", media.ASSETS, ids=[f"{w}x{h}" for w, h in media.ASSETS])
def test_every_keyframe_of_a_loop_carries_its_parameter_sets(size: tuple[int, int]) -> None:
    loop = media.load_loop(*size)
    assert (loop.width, loop.height, loop.fps) == (*size, 15)
    assert len(loop.frames) == 30  # 2 s at 15 fps, one GOP
    keyframes = [f for f in loop.frames if f.idr]
    assert keyframes and loop.frames[0].idr
    for frame in keyframes:
        types = [n[0] & 0x1F for n in frame.nals]
        assert types.index(7) < types.index(8) < types.index(5)
    # One keyframe per loop: every other frame is non-IDR slices (and SEI at most).
    assert all(not f.idr and {n[0] & 0x1F for n in f.nals} <= {1, 6}
               for f in loop.frames[1:])
    assert loop.profile_level_id.startswith("4D")  # Main profile


def test_a_resolution_without_an_asset_gets_the_nearest() -> None:
    assert media.nearest(704, 576) == (640, 360)
    assert media.nearest(3840, 2160) == (2560, 1440)
    assert media.nearest(1280, 960) == (1280, 720)
    body = asyncio.run(media.snapshot_jpeg(800, 600))
    assert jpeg_size(body) == (640, 360)


def test_snapshot_bytes_are_cached() -> None:
    first = asyncio.run(media.snapshot_jpeg(1920, 1080))
    second = asyncio.run(media.snapshot_jpeg(1920, 1080))
    assert first is second

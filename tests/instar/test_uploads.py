"""Uploads the camera makes on its own: alarm snapshots (snapcount, cooldown) and the snapshot
schedule on the farm clock, with the documented file names. Both ways (tests/ways.py): one
process, and four shards with the camera on shard 1 and the FTP server on shard 0."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from emulators.testing import RemoteMember, ShardedFarm
from tests.ways import WAYS, both_ways

from .clients import FIXTURE_JPEG, cgi

SCENARIO: dict[str, Any] = {
    "name": "instar-uploads",
    "servers": [{"name": "ftp", "kind": "ftp", "users": [{"name": "cam", "password": "s"}]}],
    "emulators": [
        {"name": "cam", "kind": "instar-camera", "upload_server": "ftp", "ssh_key_bits": 1024,
         "ftp": {"ft_dirname": "alarms", "ft_autocreatedir": 1, "ft_dirmode": 0}},
    ],
}
# Monday 2026-11-23, 09:59:30 UTC (the camera runs on UTC here).
MONDAY_BEFORE_TEN = dt.datetime(2026, 11, 23, 9, 59, 30, tzinfo=dt.UTC).timestamp()


@pytest.fixture(scope="module", params=WAYS)
def farm(request: pytest.FixtureRequest) -> Iterator[ShardedFarm]:
    yield from both_ways(SCENARIO, request.param, across=["cam"])


@pytest.fixture
def cam(farm: ShardedFarm) -> Iterator[RemoteMember]:
    farm.freeze_clock(MONDAY_BEFORE_TEN)
    handle = farm["cam"]
    handle.reset()
    farm["ftp"].reset()
    yield handle
    handle.reset()
    farm.reset_clock()


def arrived(farm: ShardedFarm) -> list[dict[str, Any]]:
    return farm.files("ftp")


def wait_for_files(farm: ShardedFarm, count: int, timeout: float = 5) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(files := arrived(farm)) < count:
        assert time.monotonic() < deadline, f"{len(files)} of {count} files arrived"
        time.sleep(0.02)
    return files


def advance(farm: ShardedFarm, seconds: float) -> None:
    farm.advance_clock(seconds)


def alarm(cam: RemoteMember) -> dict[str, Any]:
    return cam.farm.alarm(cam.name)


def stored(farm: ShardedFarm, path: str) -> bytes:
    data = farm.file("ftp", "cam", path)
    assert data is not None, f"{path} is not on the server"
    return data


# -- alarms -----------------------------------------------------------------------------------

def test_no_alarm_upload_while_snap_is_disabled(cam: RemoteMember, farm: ShardedFarm) -> None:
    assert alarm(cam)["skipped"] == "snap upload disabled"
    assert arrived(farm) == []


def test_alarm_uploads_snapcount_snapshots_then_cools_down(cam: RemoteMember,
                                                          farm: ShardedFarm) -> None:
    assert cgi(cam.url, "cmd=setftpaction&type=snap&enable=1&interval=60").response == "200"
    assert cgi(cam.url, "cmd=setftpactionattr&snapcount=3").response == "200"
    result = alarm(cam)
    assert result["result"] == 0
    names = [f"alarms/A_20261123-095930_{i}.jpeg" for i in (1, 2, 3)]
    assert [r["path"] for r in arrived(farm)] == names
    pictures = [stored(farm, name) for name in names]
    for picture in pictures:
        assert picture[:4] == b"\xff\xd8\xff\xe0"  # SOI, then JFIF's APP0 first
        assert picture[-2:] == b"\xff\xd9"
        assert b"alarm 2026-11-23T09:59:30" in picture
        assert picture.endswith(FIXTURE_JPEG[20:])
    assert len(set(pictures)) == 3

    advance(farm, 30)
    assert alarm(cam)["skipped"] == "cooldown: 30 s left"
    assert len(arrived(farm)) == 3
    advance(farm, 30)
    assert alarm(cam)["result"] == 0
    assert arrived(farm)[-1]["path"] == "alarms/A_20261123-100030_3.jpeg"


def test_alarm_to_an_unreachable_server_is_logged(cam: RemoteMember) -> None:
    cgi(cam.url, "cmd=setftpaction&type=snap&enable=1&interval=1")
    cgi(cam.url, "cmd=setftpattr&ft_password=wrong")
    assert alarm(cam)["result"] == -2
    assert cam.state()["uploads"][-1]["trigger"] == "alarm"


def test_alarm_through_the_control_route(cam: RemoteMember, farm: ShardedFarm) -> None:
    cgi(cam.url, "cmd=setftpaction&type=snap&enable=1&interval=5")
    cgi(cam.url, "cmd=setftpactionattr&snapcount=1")

    def post(name: str) -> tuple[int, dict[str, Any]]:
        out = subprocess.run(["curl", "-sS", "-X", "POST", "-H", "X-Requested-With: curl",
                              "-w", "\n%{http_code}",
                              f"{farm.control_url}/emulators/{name}/alarm"],
                             capture_output=True, check=True, timeout=15).stdout.decode()
        body, _, status = out.rpartition("\n")
        return int(status), json.loads(body)

    status, doc = post("cam")
    assert status == 200
    assert doc["alarm"] == "cam"
    assert doc["uploaded"] == ["/alarms/A_20261123-095930_1.jpeg"]
    status, doc = post("ftp")
    assert (status, doc["error"]["code"]) == (404, "not_found")


# -- the snapshot schedule --------------------------------------------------------------------

@pytest.mark.parametrize(("naming", "expected"), [
    pytest.param("mode=0&prefix=0", "T_20261123-100000.jpeg", id="timestamp"),
    pytest.param("mode=0&prefix=1&name=door", "door_20261123-100000.jpeg", id="prefix"),
    pytest.param("mode=1&prefix=0&name=door", "door.jpeg", id="fixed-name"),
])
def test_schedule_uploads_at_its_time(cam: RemoteMember, farm: ShardedFarm, naming: str,
                                      expected: str) -> None:
    cgi(cam.url, "cmd=setftpaction&type=timersnap&enable=1&interval=1")
    assert cgi(cam.url, f"cmd=setsnapschedftpattr&enable=1&times=36000-1&{naming}"
               ).response == "200"
    time.sleep(0.1)
    assert arrived(farm) == []  # 09:59:30: not yet
    advance(farm, 29)
    time.sleep(0.1)
    assert arrived(farm) == []
    advance(farm, 1)  # 10:00:00 on a Monday
    record = wait_for_files(farm, 1)[0]
    assert record["path"] == f"alarms/{expected}"
    assert stored(farm, record["path"])[:2] == b"\xff\xd8"


def test_schedule_skips_days_outside_its_mask(cam: RemoteMember, farm: ShardedFarm) -> None:
    cgi(cam.url, "cmd=setftpaction&type=timersnap&enable=1&interval=1")
    cgi(cam.url, "cmd=setsnapschedftpattr&enable=1&times=36000-2,36060-1")  # Tue 10:00, Mon 10:01
    advance(farm, 31)
    time.sleep(0.2)
    assert arrived(farm) == []
    advance(farm, 60)
    assert wait_for_files(farm, 1)[0]["path"] == "alarms/T_20261123-100100.jpeg"


def test_schedule_needs_the_timersnap_action(cam: RemoteMember, farm: ShardedFarm) -> None:
    cgi(cam.url, "cmd=setsnapschedftpattr&enable=1&times=36000-127")
    advance(farm, 31)
    time.sleep(0.2)
    assert arrived(farm) == []


def test_schedule_follows_the_clock_back(cam: RemoteMember, farm: ShardedFarm) -> None:
    cgi(cam.url, "cmd=setftpaction&type=timersnap&enable=1&interval=1")
    advance(farm, 3600)  # 10:59:30: today's 10:00 is gone, the next one is on Tuesday
    cgi(cam.url, "cmd=setsnapschedftpattr&enable=1&times=36000-127")
    farm.set_clock(MONDAY_BEFORE_TEN)  # back to 09:59:30 Monday
    time.sleep(0.1)
    advance(farm, 30)
    assert wait_for_files(farm, 1)[0]["path"] == "alarms/T_20261123-100000.jpeg"

"""Events (logins, refusals) share the next save instead of saving one by one; a login with no
upload after it is still saved, on its own a moment later or at the latest when the farm
stops, and is there after a restart."""

from __future__ import annotations

from pathlib import Path

import asyncssh
import pytest

from emulators.testing import single_member_scenario
from tests.servers.clients import FTP_USER, SFTP_USER, events_of, ftp_login, run, ssh_options


def login_ftp(farm, name: str) -> None:
    with ftp_login(farm[name]) as client:
        client.quit()


def login_sftp(farm, name: str) -> None:
    async def go() -> None:
        options = ssh_options(farm[name], username="ipcamera", password="password")
        async with asyncssh.connect("127.0.0.1", farm[name].port, **options):
            pass
    run(go())


@pytest.mark.parametrize(("kind", "user", "login"), [
    ("ftp", FTP_USER, login_ftp),
    ("sftp", SFTP_USER, login_sftp),
], ids=["ftp", "sftp"])
def test_a_login_without_upload_survives_a_stop(farm_factory, tmp_path: Path, kind, user,
                                                login) -> None:
    scenario = single_member_scenario(kind, "srv", users=[user])
    first = farm_factory(scenario, tmp_path, control=False)
    login(first, "srv")
    events_of(first["srv"], "login")
    first.stop()  # straight away: the login may still be waiting for its save

    second = farm_factory(scenario, tmp_path, control=False)
    logins = [e for e in second["srv"].call(lambda m: m.events()) if e["event"] == "login"]
    assert [e["user"] for e in logins] == [user["name"]]

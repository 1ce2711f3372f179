"""scenarios/instar-camera.yaml works as shipped: both cameras reach their servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .clients import FIXTURE_JPEG, cgi

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "instar-camera.yaml"


def on_free_ports(doc: dict[str, Any]) -> dict[str, Any]:
    """The shipped scenario, moved to free ports so tests never collide with a running farm."""
    for entry in doc["servers"] + doc["emulators"]:
        entry["port"] = 0
        entry.pop("passive_ports", None)
    for entry in doc["emulators"]:
        entry["ssh_key_bits"] = 1024  # key size is not what this test is about; speed is
    doc["control"]["port"] = 0
    return doc


def test_shipped_scenario_uploads_over_ftps_and_sftp(farm_factory) -> None:  # type: ignore[no-untyped-def]
    farm = farm_factory(on_free_ports(yaml.safe_load(SCENARIO.read_text())), control=False)
    ftps_cam, sftp_cam = farm["instar-camera"], farm["instar-camera-sftp"]

    settings = cgi(ftps_cam.url, "cmd=getftpattr").values
    assert (settings["ft_username"], settings["ft_ssl"], settings["ft_insecure"]) == (
        "ftpuser", "1", "0")
    assert settings["ft_port"] == str(farm["ftp"].port)
    assert cgi(ftps_cam.url, "cmd=testftp").values["result"] == "0"
    record = farm["ftp"].call(lambda m: m.received_files())[-1]
    assert record["user"] == "ftpuser"
    assert record["protocol"] == "ftps"
    day = ftps_cam.call(lambda m: m.local_now().strftime("%Y%m%d"))
    assert record["path"] == f"hello/{day}/Test-Snapshot.jpeg"

    values = cgi(sftp_cam.url, "cmd=testftp").values
    assert values["result"] == "0"
    assert values["hostkey"] == farm["sftp"].call(lambda m: m.host_key_blob())
    path = farm["sftp"].call(lambda m: m.user_root("ipcamera") / "recordings"
                             / "Test-Snapshot.jpeg")
    assert path.read_bytes() == FIXTURE_JPEG

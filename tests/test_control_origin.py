"""What a web page of another origin could make a browser send to a farm without a control
token, refused: a state change that is not JSON and says no ``X-Requested-With`` (a form, a
``text/plain`` fetch, a body-less POST), and any request naming a host that is not loopback,
an IP address or a configured name (DNS rebinding). Driven with curl at a real `emulators run`,
with a name given in the scenario (``control.allowed_hosts``) and one on the command line
(``--allow-host``)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.farm_process import wait_ready

ROOT = Path(__file__).parent.parent
SCENARIO = ("name: origin\n"
            "control: {port: 0, allowed_hosts: [farm.scenario.test]}\n"
            "emulators:\n"
            "  - {name: c, kind: instar-camera, port: 0}\n")


class Farm:
    def __init__(self, url: str) -> None:
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])

    def curl(self, route: str, *args: str) -> tuple[int, Any]:
        out = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *args,
                              self.url + route], capture_output=True, text=True, timeout=30,
                             check=True).stdout
        body, _, status = out.rpartition("\n")
        return int(status), json.loads(body) if body.startswith("{") else body

    def clock(self) -> float:
        status, doc = self.curl("/v1/clock")
        assert status == 200, doc
        return float(doc["time"])


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    where = tmp_path_factory.mktemp("origin")
    (where / "farm.yaml").write_text(SCENARIO)
    ready = where / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "emulators", "run", str(where / "farm.yaml"),
                             "--ready-file", str(ready), "--allow-host", "farm-control",
                             "--allow-host", "Farm.CLI.test"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield Farm(wait_ready(proc, ready, 60)["control"]["url"])
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


def assert_error(reply: tuple[int, Any], status: int, code: str) -> None:
    assert reply[0] == status, reply
    assert isinstance(reply[1], dict) and set(reply[1]) == {"error"}, reply
    assert reply[1]["error"]["code"] == code and reply[1]["error"]["message"], reply


# -- state changes a page of another origin could send ----------------------------------------
CROSS_SITE = [
    pytest.param(["-H", "Content-Type: text/plain", "--data", '{"seconds": 86400}'],
                 id="text-plain"),
    pytest.param(["--data", "seconds=86400"], id="form-urlencoded"),
    pytest.param(["-F", "seconds=86400"], id="form-multipart"),
    pytest.param(["-X", "POST"], id="no-body-no-type"),
    pytest.param(["-X", "POST", "-H", "Content-Type: text/plain"], id="no-body-text-plain"),
    pytest.param(["-H", "Content-Type: application/json-seq", "--data", '{"seconds": 86400}'],
                 id="json-lookalike-type"),
]


@pytest.mark.parametrize("args", CROSS_SITE)
@pytest.mark.parametrize("route", ["/v1/clock/advance", "/v1/reset", "/v1/clock/freeze"])
def test_a_cross_site_simple_post_is_refused(farm: Farm, route: str, args: list[str]) -> None:
    before = farm.clock()
    assert_error(farm.curl(route, *args), 415, "unsupported_media_type")
    status, doc = farm.curl("/v1/clock")
    assert doc["frozen"] is False and abs(farm.clock() - before) < 3600


def test_body_less_deletes_need_the_header_too(farm: Farm) -> None:
    assert_error(farm.curl("/v1/journal", "-X", "DELETE"), 415, "unsupported_media_type")
    assert farm.curl("/v1/journal", "-X", "DELETE", "-H", "X-Requested-With: curl") == (
        200, {"cleared": True})


def test_json_or_the_header_is_obeyed(farm: Farm) -> None:
    before = farm.clock()
    status, doc = farm.curl("/v1/clock/advance", "-H", "Content-Type: application/json",
                            "--data", '{"seconds": 86400}')
    assert status == 200, doc
    assert farm.clock() - before >= 86400
    assert farm.curl("/v1/clock/reset", "-X", "POST", "-H", "X-Requested-With: curl")[0] == 200
    assert farm.curl("/v1/reset", "-X", "POST", "-H",
                     "Content-Type: application/json; charset=utf-8") == (200, {"reset": ["c"]})
    assert abs(farm.clock() - time.time()) < 3600


# -- names a rebinding page would send --------------------------------------------------------
@pytest.mark.parametrize("host", [
    "evil.example", "evil.example:{port}", "localhost.evil.example:{port}", "127.0.0.1.nip.io",
    "farm-control.evil.example", "[::1", "localhost:{port}:1", "::1",
])
@pytest.mark.parametrize(("method", "route", "args"), [
    ("GET", "/v1/farm", []), ("GET", "/v1/emulators/c/state", []), ("GET", "/ui", []),
    ("POST", "/v1/reset", ["-H", "Content-Type: application/json"])],
    ids=["farm", "state", "dashboard", "reset"])
def test_another_host_name_is_refused(farm: Farm, host: str, method: str, route: str,
                                      args: list[str]) -> None:
    given = host.format(port=farm.port)
    assert_error(farm.curl(route, "-X", method, "-H", f"Host: {given}", *args),
                 421, "misdirected_request")


@pytest.mark.parametrize("host", [
    "localhost:{port}", "LOCALHOST:{port}", "localhost", "127.0.0.1:{port}", "[::1]:{port}",
    "app.localhost:{port}", "10.20.30.40:{port}", "farm-control:{port}", "farm-control",
    "farm.cli.test:{port}", "farm.scenario.test", "farm.scenario.test.:{port}",
])
def test_loopback_addresses_and_configured_names_are_served(farm: Farm, host: str) -> None:
    status, doc = farm.curl("/v1/farm", "-H", f"Host: {host.format(port=farm.port)}")
    assert status == 200 and doc["scenario"] == "origin", doc


def readme_curl_lines() -> list[str]:
    """README's one-line curl commands to the control plane (a line that goes on, ending in a
    backslash, is part of a recipe that tests/test_readme_mqtt.py runs whole)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    return [line for line in lines if line.startswith("curl ") and "/v1/" in line
            and not line.endswith("\\")]


def test_the_readme_curl_lines_work_as_written(farm: Farm) -> None:
    found = readme_curl_lines()
    assert any("-X POST" in line for line in found), found  # a body-less state change too
    for line in found:
        command = shlex.split(line.replace("http://127.0.0.1:8700", farm.url))
        status = subprocess.run([*command, "-sS", "-o", "/dev/null", "-w", "%{http_code}"],
                                capture_output=True, text=True, timeout=30, check=True).stdout
        assert status == "200", line
    farm.curl("/v1/clock/reset", "-X", "POST", "-H", "X-Requested-With: curl")


@pytest.mark.parametrize("name", ["http://farm", "farm:8700", "farm/v1", "", "-farm", "a..b"])
def test_a_name_that_is_no_host_name_is_refused_before_anything_starts(
        tmp_path: Path, name: str) -> None:
    from emulators import scenario as scenario_mod

    with pytest.raises(scenario_mod.ScenarioInvalid, match="allowed_hosts"):
        scenario_mod.load({"name": "x", "control": {"allowed_hosts": [name]}})
    for command in ("run", "front"):
        (tmp_path / "farm.yaml").write_text(SCENARIO)
        extra = ["--count", "1", "--shards-at", "http://127.0.0.1:9/{i}"] if command == "front" \
            else []
        done = subprocess.run([sys.executable, "-m", "emulators", command,
                               str(tmp_path / "farm.yaml"), *extra, f"--allow-host={name}"],
                              capture_output=True, text=True, timeout=60, cwd=ROOT,
                              env={**os.environ, "EMULATORS_SHARD_TOKEN": "t" * 24})
        assert done.returncode == 2 and "allowed_hosts" in done.stderr, (command, done.stderr)

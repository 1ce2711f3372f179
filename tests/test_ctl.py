"""``emulators ctl`` as a user runs it: the real command in a subprocess, against a real farm."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from emulators.testing import RunningFarm

ROOT = Path(__file__).parent.parent
COMMAND = [sys.executable, "-m", "emulators", "ctl"]
SCENARIO = {"emulators": [{"name": "a", "kind": "tests.kinds:Counter"}],
            "servers": [{"name": "files", "kind": "sftp",
                         "users": [{"name": "u", "password": "p"}]}]}


def ctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("EMULATORS_CONTROL_URL", "EMULATORS_CONTROL_TOKEN")}
    return subprocess.run([*COMMAND, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**environment, **(env or {})})


def ok(*args: str) -> Any:
    done = ctl(*args)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)


def refused(*args: str) -> str:
    done = ctl(*args)
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and done.stderr.startswith("emulators ctl: ")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr


@pytest.fixture
def farm(farm_factory: Callable[..., RunningFarm]) -> RunningFarm:
    return farm_factory(SCENARIO)


@pytest.fixture
def ready_file(farm: RunningFarm, tmp_path: Path) -> Path:
    path = tmp_path / "ready.json"
    path.write_text(json.dumps(farm.ready))
    return path


@pytest.mark.parametrize("form", ["api", "api-slash", "root", "root-slash"])
def test_url_may_be_the_ready_files_api_url_or_its_root(farm: RunningFarm, form: str) -> None:
    control = farm.ready["control"]
    url = {"api": control["api"], "api-slash": control["api"] + "/",
           "root": control["url"], "root-slash": control["url"] + "/"}[form]
    assert control["api"].endswith("/v1")
    assert [m["name"] for m in ok("--url", url, "members")["emulators"]] == ["a"]


def test_url_and_ready_file_combine_and_url_wins(farm: RunningFarm, ready_file: Path,
                                                 tmp_path: Path) -> None:
    assert ok("--ready-file", str(ready_file), "clock")["frozen"] is False
    stale = tmp_path / "stale.json"  # a ready file of a farm that has gone away
    stale.write_text(json.dumps({**farm.ready, "control": {
        **farm.ready["control"], "url": "http://127.0.0.1:9", "api": "http://127.0.0.1:9/v1"}}))
    assert ok("--ready-file", str(stale), "--url", farm.ready["control"]["api"], "clock")
    assert "cannot reach http://127.0.0.1:9" in refused("--ready-file", str(stale), "clock")


def test_a_token_farms_ready_file_asks_for_the_token(farm_factory: Callable[..., RunningFarm],
                                                     tmp_path: Path) -> None:
    token_farm = farm_factory({**SCENARIO, "control": {"token": "t0ken-long-enough"}})
    path = tmp_path / "ready.json"
    path.write_text(json.dumps(token_farm.ready))
    assert "requires a token" in refused("--ready-file", str(path), "members")
    assert ok("--ready-file", str(path), "--token", "t0ken-long-enough", "members")["servers"]
    done = ctl("--ready-file", str(path), "members", env={"EMULATORS_CONTROL_TOKEN": "t0ken-long-enough"})
    assert done.returncode == 0, done.stderr
    assert "401: this control plane requires" in refused(
        "--url", token_farm.ready["control"]["api"], "--token", "wrong", "members")


def test_state_and_reset_find_emulators_and_servers_and_name_what_is_missing(
        farm: RunningFarm) -> None:
    url = farm.ready["control"]["api"]
    urllib.request.urlopen(urllib.request.Request(farm["a"].url, method="POST"), timeout=10)
    assert ok("--url", url, "state", "a") == {"value": 1}
    assert "authorized_keys" in ok("--url", url, "state", "files")
    assert ok("--url", url, "reset", "a") == {"reset": "a"}
    assert ok("--url", url, "reset", "files") == {"reset": "files"}
    for action in ("state", "reset"):
        message = refused("--url", url, action, "nosuch")
        assert "no member named 'nosuch' (emulators: a; servers: files)" in message
        assert "server named" not in message


@pytest.mark.parametrize(("args", "says"), [
    pytest.param(["fault", "add", "{not json"], "the fault rule is not JSON", id="fault-not-json"),
    pytest.param(["fault", "add", '{"fault": "nope"}'], "400: ", id="fault-refused"),
    pytest.param(["fault", "rm"], "fault rm ID", id="fault-rm-without-id"),
    pytest.param(["fault", "rm", "a/b?c"], "400: 'a/b?c' is not a fault rule id",
                 id="fault-rm-odd-id"),
    pytest.param(["clock", "advance", "soon"], "'soon' is not a number", id="advance-not-number"),
    pytest.param(["clock", "set"], "clock set ISO", id="set-without-instant"),
    pytest.param(["snapshot", "restore"], "snapshot restore NAME", id="restore-without-name"),
    pytest.param(["snapshot", "restore", "../x"], "400: '../x' is not a snapshot name",
                 id="restore-hostile-name"),
    pytest.param(["state", "a/../../v1/reset"], "no member named", id="state-name-with-slashes"),
])
def test_mistakes_are_one_line_not_a_traceback(farm: RunningFarm, args: list[str],
                                               says: str) -> None:
    assert says in refused("--url", farm.ready["control"]["api"], *args)


@pytest.mark.parametrize(("content", "says"), [
    pytest.param(None, "cannot read", id="missing"),
    pytest.param("not json", "is not a farm's ready file", id="not-json"),
    pytest.param('{"control": null}', "is not a farm's ready file", id="no-control"),
    pytest.param("[]", "is not a farm's ready file", id="not-an-object"),
])
def test_a_bad_ready_file_is_one_line(tmp_path: Path, content: str | None, says: str) -> None:
    path = tmp_path / "ready.json"
    if content is not None:
        path.write_text(content)
    assert says in refused("--ready-file", str(path), "members")


def test_output_piped_into_head_ends_without_a_traceback(farm: RunningFarm) -> None:
    for _ in range(300):  # a journal far longer than a pipe holds
        urllib.request.urlopen(farm["a"].url + "/?padding=" + "x" * 200, timeout=10).close()
    command = " ".join(shlex.quote(a) for a in [*COMMAND, "--url", farm.ready["control"]["api"],
                                                "journal"])
    done = subprocess.run(["bash", "-c", f"{command} | head -1; echo \"status=${{PIPESTATUS[0]}}\""],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[0] == "{"
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.stderr == ""
    assert done.stdout.splitlines()[-1] in ("status=141", "status=0")

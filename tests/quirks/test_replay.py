"""Replay of quirk profiles: a camera with ``quirks: FILE`` answers the recorded requests with
the device's bytes (docs/QUIRKS.md's own examples), keeps its own state behind them, and
answers everything else as it always does; a bad profile is a scenario problem."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulators.scenario import ScenarioInvalid
from emulators.testing import RunningFarm, ShardedFarm
from tests.instar.clients import cgi, curl
from tests.quirks.clients import doc_profiles, quirk_target, raw_get

PROFILES = doc_profiles()
LOGINS = {"instar-camera": {"admin": "instar"}, "acti-camera": {"admin": "123456"}}
CAMERAS = {"instar-camera": "instar", "acti-camera": "acti"}


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def doc_farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFarm]:
    """One camera of each kind with the document's profile, and one of each without."""
    tmp = tmp_path_factory.mktemp("quirks")
    entries: list[dict[str, Any]] = []
    for kind, text in PROFILES.items():
        path = write(tmp, f"{kind}.yaml", text)
        entries.append({"name": CAMERAS[kind], "kind": kind, "quirks": str(path)})
        entries.append({"name": f"plain-{CAMERAS[kind]}", "kind": kind})
    farm = RunningFarm.start({"version": 1, "name": "quirks", "emulators": entries}, tmp)
    yield farm
    farm.stop()


def http_url(farm: RunningFarm | ShardedFarm, name: str) -> str:
    return farm[name].urls["http"]


def split_reply(reply: bytes, eol: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    head, sep, body = reply.partition(eol + eol)
    assert sep, reply
    status, *lines = head.decode("latin-1").split(eol.decode())
    return status, [(name, value) for name, _, value in
                    (line.partition(": ") for line in lines)], body


def expected_body(text: str, user: str) -> bytes:
    return text.replace("<<", "<").replace("<user>", user).encode()


def assert_recorded(reply: bytes, recorded: dict[str, Any], user: str) -> None:
    """``reply`` is the recorded one byte for byte: the status line, the header lines in the
    recorded order and casing (Date a real HTTP date, Content-Length the body's length), the
    body."""
    eol = b"\n" if recorded.get("line_ending") == "lf" else b"\r\n"
    status, headers, body = split_reply(reply, eol)
    assert status == f"{recorded['version']} {recorded['status']} {recorded['reason']}"
    assert body == expected_body(recorded["body"], user)
    assert [name for name, _ in headers] == [name for name, _ in recorded["headers"]]
    for (_name, value), (_, want) in zip(headers, recorded["headers"], strict=True):
        if want == "<date>":
            assert parsedate_to_datetime(value).tzinfo is not None, value
        elif want == "<length>":
            assert value == str(len(body))
        else:
            assert value == want


DOC_EXCHANGES = [(kind, exchange) for kind, text in PROFILES.items()
                 for exchange in yaml.safe_load(text)["exchanges"]]


def test_the_document_has_an_example_of_each_camera_kind() -> None:
    assert set(PROFILES) == {"instar-camera", "acti-camera"}
    assert len(DOC_EXCHANGES) >= 6


@pytest.mark.parametrize(("kind", "exchange"), DOC_EXCHANGES,
                         ids=[f"{k}-{e['step']}" for k, e in DOC_EXCHANGES])
def test_every_request_of_the_examples_gets_the_recorded_bytes(
        doc_farm: RunningFarm, kind: str, exchange: dict[str, Any]) -> None:
    doc_farm.reset()
    target = quirk_target(exchange, LOGINS[kind])
    reply = raw_get(http_url(doc_farm, CAMERAS[kind]), target)
    assert_recorded(reply, exchange["replies"][0], "admin")
    # ... and the same camera without the profile answers otherwise: the bytes are the
    # profile's, not the emulator's.
    assert raw_get(http_url(doc_farm, f"plain-{CAMERAS[kind]}"), target) != reply


@pytest.mark.parametrize(("kind", "target"), [
    ("instar-camera", "/param.cgi?cmd=getftpattr&user=admin&pwd=instar&extra=1"),
    ("instar-camera", "/param.cgi?user=admin&pwd=instar&cmd=getftpattr"),
    ("instar-camera", "/param.cgi?cmd=getftpattr&user=nobody&pwd=instar"),
    ("instar-camera", "/param.cgi?cmd=getsnapcount&user=admin&pwd=instar"),
    ("instar-camera", "/nothing-here"),
    ("acti-camera", "/cgi-bin/update?USER=admin&PWD=123456&HTTPS_CER&VERSION"),
    ("acti-camera", "/cgi-bin/system?USER=admin&PWD=123456&SYSTEM_INFO"),
], ids=["extra-pair", "other-order", "unknown-user", "other-command", "other-path",
        "two-commands", "other-cgi"])
def test_a_request_no_exchange_names_gets_the_emulators_own_reply(
        doc_farm: RunningFarm, kind: str, target: str) -> None:
    own = raw_get(http_url(doc_farm, f"plain-{CAMERAS[kind]}"), target)
    assert raw_get(http_url(doc_farm, CAMERAS[kind]), target) == own


def test_a_login_by_basic_auth_is_not_the_recorded_query_and_gets_the_own_reply(
        doc_farm: RunningFarm) -> None:
    with_profile = cgi(http_url(doc_farm, "instar"), "cmd=getftpattr")
    plain = cgi(http_url(doc_farm, "plain-instar"), "cmd=getftpattr")
    assert with_profile.body == plain.body
    assert "server" not in with_profile.headers


def test_setftpattr_then_getftpattr_shows_the_new_value_in_the_devices_format(
        doc_farm: RunningFarm) -> None:
    doc_farm.reset()
    url = http_url(doc_farm, "instar")
    changed = cgi(url, "cmd=setftpattr&ft_server=10.0.0.9&ft_port=2121", how="query")
    assert changed.response == "200"  # the emulator's own reply: setftpattr is not recorded
    reply = curl(f"{url}/param.cgi?cmd=getftpattr&user=admin&pwd=instar")
    assert reply.headers["server"] == "GoAhead-Webs"
    assert reply.body == ('cmd="getftpattr";\nft_server="10.0.0.9";\nft_port="2121";\n'
                          'ft_dirname="./hello";\nft_username="admin";\nft_mode="1";\n'
                          'ft_dirmode="1";\nft_autocreatedir="1";\nft_ssl="1";\n'
                          'ft_insecure="1";\nresponse="200";\n')
    assert doc_farm["instar"].state()["ftp"]["ft_server"] == "10.0.0.9"


def test_the_acti_read_merges_the_cameras_own_value(doc_farm: RunningFarm) -> None:
    doc_farm.reset()
    reply = raw_get(http_url(doc_farm, "acti"), "/cgi-bin/update?USER=admin&PWD=123456&HTTPS_CER")
    assert reply.startswith(b"HTTP/1.0 200 OK\r\nServer: Boa/0.94.14rc21\r\n")
    assert reply.endswith(b"\r\n\r\nHTTPS_CER='none'\n")


def test_a_replayed_request_is_journalled_with_its_step(doc_farm: RunningFarm) -> None:
    doc_farm.reset()
    doc_farm.clear_journal()
    raw_get(http_url(doc_farm, "instar"), "/param.cgi?cmd=getnosuch&user=admin&pwd=instar")
    [request] = doc_farm.journal(member="instar", event="request")
    [quirk] = doc_farm.journal(member="instar", event="quirk")
    assert quirk["detail"] == {"quirks": "unknown-command", "reply": 1}
    assert quirk["correlation_id"] == request["correlation_id"]
    assert request["status"] == 200
    assert request["reply_excerpt"] == "[Error] cmd=getnosuch: unknown command\n"


def test_the_description_shows_the_profile(doc_farm: RunningFarm) -> None:
    described = {e["name"]: e for e in doc_farm.ready["emulators"]}
    quirks = described["instar"]["quirks"]
    assert quirks["kind"] == "instar-camera"
    assert quirks["model"] == "IN-8015 Full HD"
    assert quirks["firmware"] == "2.6.1.4"
    assert quirks["exchanges"] == 3
    assert quirks["file"].endswith("instar-camera.yaml")
    assert "quirks" not in described["plain-instar"]
    with urllib.request.urlopen(f"{doc_farm.control_url}/emulators/acti",
                                timeout=20) as reply:
        assert json.load(reply)["quirks"]["firmware"] == "A1D-310-V4.12.09-AC"


# -- ordered states and placeholders -----------------------------------------------------------
STATES = """\
format: 1
kind: instar-camera
exchanges:
  - step: getstate
    request:
      path: /param.cgi
      query: [[cmd, getstate], [user, <user>], [pwd, <password>]]
    replies:
      - {status: 200, reason: OK, headers: [[Content-Length, <length>]], body: "first\\n"}
      - {status: 200, reason: OK, headers: [[Content-Length, <length>]], body: "second\\n"}
      - {status: 503, reason: Busy, headers: [[Content-Length, <length>]],
         body: "third for <user>, serial <serial>, mac <mac>, <<tag>\\n"}
  - step: wrong
    request:
      path: /param.cgi
      query: [[cmd, getstate], [user, <user>], [pwd, <wrong-password>]]
    replies:
      - {status: 401, reason: Nope, headers: [[X-Who, <user>]], body: ""}
"""


@pytest.fixture
def states_farm(tmp_path: Path) -> Iterator[RunningFarm]:
    path = write(tmp_path, "states.yaml", STATES)
    farm = RunningFarm.start({"version": 1, "name": "states", "emulators": [
        {"name": "cam", "kind": "instar-camera", "quirks": str(path),
         "users": [{"name": "admin", "password": "instar"},
                   {"name": "viewer", "password": "look", "role": "user"}]}]}, tmp_path)
    yield farm
    farm.stop()


def bodies(farm: RunningFarm, target: str, count: int) -> list[bytes]:
    return [raw_get(http_url(farm, "cam"), target).partition(b"\r\n\r\n")[2]
            for _ in range(count)]


def test_ordered_states_the_nth_request_gets_the_nth_reply_and_the_last_repeats(
        states_farm: RunningFarm) -> None:
    target = "/param.cgi?cmd=getstate&user=admin&pwd=instar"
    serial = states_farm["cam"].call(lambda m: m.video.facts.identity.serial)
    third = f"third for admin, serial {serial}, mac ".encode()
    got = bodies(states_farm, target, 4)
    assert got[:2] == [b"first\n", b"second\n"]
    for body in got[2:]:
        assert body.startswith(third) and body.endswith(b", <tag>\n")
        assert re.fullmatch(rb".*mac 02(:[0-9a-f]{2}){5}, .*", body, flags=re.DOTALL), body
    assert raw_get(http_url(states_farm, "cam"), target).startswith(b"HTTP/1.1 503 Busy\r\n")


def test_a_reset_and_a_restart_start_the_states_again(states_farm: RunningFarm) -> None:
    target = "/param.cgi?cmd=getstate&user=admin&pwd=instar"
    assert bodies(states_farm, target, 2) == [b"first\n", b"second\n"]
    states_farm.reset("cam")
    assert bodies(states_farm, target, 1) == [b"first\n"]
    states_farm.loop.run(states_farm.farm.members["cam"].stop())
    states_farm.loop.run(states_farm.farm.members["cam"].start())
    assert bodies(states_farm, target, 1) == [b"first\n"]


@pytest.mark.parametrize(("query", "answer"), [
    ("user=admin&pwd=instar", b"first\n"),
    ("user=viewer&pwd=look", b"first\n"),
    ("user=admin&pwd=look", b"HTTP/1.1 401 Nope\r\nX-Who: admin\r\n\r\n"),
    ("user=viewer&pwd=instar", b"HTTP/1.1 401 Nope\r\nX-Who: viewer\r\n\r\n"),
    ("user=nobody&pwd=instar", None),
    ("user=Admin&pwd=instar", None),
], ids=["admin-right", "other-user-right", "admin-wrong", "other-user-wrong", "unknown-user",
        "name-in-other-case"])
def test_placeholders_match_the_members_own_users(
        states_farm: RunningFarm, query: str, answer: bytes | None) -> None:
    states_farm.reset("cam")
    reply = raw_get(http_url(states_farm, "cam"), f"/param.cgi?cmd=getstate&{query}")
    if answer is None:  # not a login the camera knows: its own reply (a refusal)
        assert b"first" not in reply and b"Nope" not in reply
        assert reply.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    elif answer.startswith(b"HTTP/"):
        assert reply == answer
    else:
        assert reply.endswith(b"\r\n\r\n" + answer)


# -- bad profiles -----------------------------------------------------------------------------
GOOD = "format: 1\nkind: instar-camera\nexchanges: []\n"
BAD_PROFILES = [
    ("missing-file", None, "No such file or directory"),
    ("bad-yaml", "format: 1\nkind: instar-camera\nexchanges: [\n  - step: x\n  bad: ]\n",
     "cam.yaml:4: not YAML"),
    ("wrong-format", GOOD.replace("format: 1", "format: 7"),
     "format 7: this farm reads format 1"),
    ("kind-mismatch", GOOD.replace("instar-camera", "acti-camera"),
     "a profile of a acti-camera, this member is a instar-camera"),
    ("unknown-top-key", GOOD + "extras: 1\n", "unknown key(s) extras"),
    ("unknown-reply-key", GOOD.replace("exchanges: []", "exchanges:\n  - step: s\n"
                                       "    request: {path: /x}\n    replies:\n"
                                       "      - {status: 200, colour: red}"),
     "exchanges[0] (s).replies[0]: unknown key(s) colour"),
    ("not-a-mapping", "- just a list\n", "a YAML mapping"),
    ("unknown-credentials", GOOD.replace("exchanges: []", "exchanges:\n  - step: s\n"
                                         "    request: {path: /x, credentials: maybe}\n"
                                         "    replies: [{status: 200}]"),
     "exchanges[0] (s).request.credentials: right, wrong, none (or absent)"),
    ("unknown-request-key", GOOD.replace("exchanges: []", "exchanges:\n  - step: s\n"
                                         "    request: {path: /x, signature: abc}\n"
                                         "    replies: [{status: 200}]"),
     "exchanges[0] (s).request: unknown key(s) signature"),
    ("params-not-a-mapping", GOOD.replace("exchanges: []",
                                          "provenance: {params: [a]}\nexchanges: []"),
     "provenance.params: a mapping of names to values"),
]


@pytest.mark.parametrize(("text", "message"), [(t, m) for _, t, m in BAD_PROFILES],
                         ids=[i for i, _, _ in BAD_PROFILES])
def test_a_bad_profile_is_a_scenario_problem(tmp_path: Path, text: str | None,
                                             message: str) -> None:
    if text is not None:
        write(tmp_path, "cam.yaml", text)
    scenario = write(tmp_path, "farm.yaml", "version: 1\nemulators:\n  - name: cam\n"
                     "    kind: instar-camera\n    quirks: cam.yaml\n")
    done = subprocess.run([sys.executable, "-m", "emulators", "validate", str(scenario)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done
    assert "Traceback" not in done.stdout + done.stderr
    assert f"{scenario}:5: emulators[0].quirks: " in done.stdout
    assert message in done.stdout
    with pytest.raises(ScenarioInvalid, match=re.escape(message)):
        RunningFarm.start(str(scenario), tmp_path / "state").stop()


@pytest.mark.parametrize("value", [17, "", ["a.yaml"]], ids=["number", "empty", "list"])
def test_a_quirks_value_that_is_not_a_path_is_a_scenario_problem(tmp_path: Path,
                                                                 value: Any) -> None:
    with pytest.raises(ScenarioInvalid, match="quirks: the path of a quirk profile file"):
        RunningFarm.start({"version": 1, "emulators": [
            {"name": "cam", "kind": "acti-camera", "quirks": value}]}, tmp_path)


def test_a_relative_path_is_read_from_the_scenario_files_folder(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    write(tmp_path / "profiles", "cam.yaml", PROFILES["acti-camera"])
    scenario = write(tmp_path, "farm.yaml", "version: 1\nemulators:\n  - name: cam\n"
                     "    kind: acti-camera\n    quirks: profiles/cam.yaml\n")
    done = subprocess.run([sys.executable, "-m", "emulators", "validate", str(scenario)],
                          capture_output=True, text=True, timeout=120, check=False,
                          cwd="/")
    assert done.returncode == 0, done


def test_a_profile_survives_on_shards(tmp_path: Path) -> None:
    path = write(tmp_path, "instar.yaml", PROFILES["instar-camera"]).resolve()
    farm = ShardedFarm.start({"version": 1, "name": "sharded", "emulators": [
        {"name": "cam", "kind": "instar-camera", "quirks": str(path), "count": 2}]}, 2)
    try:
        for name in ("cam-1", "cam-2"):
            reply = raw_get(farm[name].url, "/param.cgi?cmd=getnosuch&user=admin&pwd=instar")
            assert reply.endswith(b"\r\n\r\n[Error] cmd=getnosuch: unknown command\n")
            assert farm[name].description["quirks"]["file"] == str(path)
    finally:
        farm.stop()

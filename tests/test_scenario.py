"""Scenario files: every problem reported with its path and line; fleets stamped as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from emulators import scenario

FIXTURES = Path(__file__).parent.parent / "fixtures" / "scenarios"
COUNTER = "tests.kinds:Counter"


def problems_of(data: object) -> list[str]:
    with pytest.raises(scenario.ScenarioInvalid) as info:
        scenario.validate(data)
    return [str(p) for p in info.value.problems]


def test_good_fleet_file_stamps_members_in_order() -> None:
    sc = scenario.load(FIXTURES / "good-fleet.yaml")
    names = [m.name for m in sc.members]
    assert names[0] == "counter"
    assert names[1:13] == [f"cam-{i:02d}" for i in range(1, 13)]
    assert names[13:] == ["row-1", "row-2", "row-3"]


def test_fleet_over_addresses_gives_each_member_its_own_loopback_ip() -> None:
    sc = scenario.load(FIXTURES / "good-fleet.yaml")
    cams = [m for m in sc.members if m.group == "cam"]
    assert [m.host for m in cams] == [f"127.0.10.{i}" for i in range(1, 13)]
    assert {m.port for m in cams} == {0}  # the farm shares the first member's port
    assert all(m.options.start == 7 for m in cams)  # type: ignore[attr-defined]


def test_fleet_over_ports_counts_up_from_a_fixed_port() -> None:
    sc = scenario.validate({"emulators": [
        {"name": "r", "kind": COUNTER, "port": 20100, "count": 3, "fleet": "ports"}]})
    assert [(m.host, m.port) for m in sc.members] == [
        ("127.0.0.1", 20100), ("127.0.0.1", 20101), ("127.0.0.1", 20102)]


def test_every_problem_of_a_broken_file_is_reported_with_its_line() -> None:
    with pytest.raises(scenario.ScenarioInvalid) as info:
        scenario.load(FIXTURES / "bad-many.yaml")
    report = info.value.report()
    assert "bad-many.yaml:4: control.port: Input should be less than or equal to 65535" in report
    lines = report.splitlines()
    assert any(line.endswith("emulators[0].port: Input should be greater than or equal to 0")
               and ":8:" in line for line in lines), report
    assert any(":9: emulators[1].name: duplicate name 'a'" in line for line in lines), report
    assert any(":12: emulators[2].kind: unknown kind 'no-such-kind'" in line
               for line in lines), report


def test_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(scenario.ScenarioInvalid) as info:
        scenario.load(FIXTURES / "bad-yaml.yaml")
    assert info.value.problems[0].line == 5
    assert "not valid YAML" in info.value.problems[0].message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param([], "(top): a scenario is a mapping", id="not-a-mapping"),
        pytest.param({"emulatorz": []}, "emulatorz: unknown key", id="unknown-top-key"),
        pytest.param({"version": 2}, "version: Input should be 1", id="wrong-version"),
        pytest.param({"emulators": [{"kind": COUNTER}]}, "emulators[0].name: Field required",
                     id="missing-name"),
        pytest.param({"emulators": [{"name": "-x", "kind": COUNTER}]}, "emulators[0].name: ",
                     id="bad-name"),
        pytest.param({"emulators": [{"name": "a", "kind": COUNTER, "host": "example.com"}]},
                     "emulators[0].host: Value error, host must be an IP address",
                     id="host-not-ip"),
        pytest.param({"emulators": [{"name": "a", "kind": COUNTER, "count": 0}]},
                     "emulators[0].count: Input should be greater than or equal to 1",
                     id="count-zero"),
        pytest.param({"emulators": [{"name": "a", "kind": COUNTER, "fleet": "sideways"}]},
                     "emulators[0].fleet: Input should be 'addresses' or 'ports'",
                     id="bad-fleet-mode"),
        pytest.param({"emulators": [{"name": "a", "kind": COUNTER, "nonsense": 1}]},
                     "emulators[0].nonsense: unknown key", id="unknown-kind-option"),
        pytest.param({"emulators": [{"name": "a", "kind": COUNTER, "start": "x"}]},
                     "emulators[0].start: Input should be a valid integer",
                     id="bad-kind-option"),
        pytest.param({"emulators": [{"name": "a", "kind": COUNTER, "host": "127.255.255.250",
                                     "count": 10}]},
                     "emulators[0].count: 10 addresses from 127.255.255.250 leave 127.0.0.0/8",
                     id="fleet-leaves-loopback"),
        pytest.param({"emulators": [{"name": "a", "kind": COUNTER, "host": "0.0.0.0",
                                     "count": 2}]},
                     "needs a loopback base host", id="fleet-on-wildcard"),
        pytest.param({"emulators": [{"name": "a", "kind": COUNTER, "port": 65535, "count": 2,
                                     "fleet": "ports"}]},
                     "emulators[0].count: 2 ports from 65535 pass 65535", id="ports-overflow"),
        pytest.param({"emulators": [{"name": "a", "kind": COUNTER, "port": 9000},
                                    {"name": "b", "kind": COUNTER, "port": 9000}]},
                     "'b' and 'a' both listen on 127.0.0.1:9000", id="port-clash"),
        pytest.param({"control": {"port": 9000},
                      "emulators": [{"name": "a", "kind": COUNTER, "port": 9000}]},
                     "control.port: the control plane's port is taken by 'a'",
                     id="control-port-clash"),
        pytest.param({"emulators": [{"name": "a", "kind": COUNTER, "count": 2},
                                    {"name": "a-1", "kind": COUNTER}]},
                     "fleet member name 'a-1' clashes", id="fleet-name-clash"),
        pytest.param({"control": {"token": "short"}}, "control.token: String should have at "
                     "least 8 characters", id="short-token"),
        pytest.param({"servers": [{"name": "a", "kind": COUNTER}]},
                     "servers[0].kind: 'tests.kinds:Counter' is a emulator, list it under "
                     "'emulators'", id="emulator-under-servers"),
    ],
)
def test_invalid_scenarios_are_refused_with_their_path(data: object, expected: str) -> None:
    problems = problems_of(data)
    assert any(expected in p for p in problems), problems


def test_validate_command_reports_problems_and_exit_status(tmp_path: Path) -> None:
    bad = subprocess.run([sys.executable, "-m", "emulators", "validate",
                          str(FIXTURES / "bad-many.yaml")], capture_output=True, text=True,
                         cwd=Path(__file__).parent.parent, timeout=60)
    assert bad.returncode == 1
    assert "bad-many.yaml:9: emulators[1].name: duplicate name 'a'" in bad.stdout
    good = subprocess.run([sys.executable, "-m", "emulators", "validate",
                           str(FIXTURES / "good-fleet.yaml")], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent, timeout=60)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "ok (16 members)" in good.stdout


def test_every_shipped_scenario_is_valid() -> None:
    shipped = sorted((Path(__file__).parent.parent / "scenarios").glob("*.yaml"))
    assert any(p.name == "default.yaml" for p in shipped)
    for path in shipped:
        scenario.load(path)  # raises with the full report when not


def test_builtin_name_loads_the_packaged_default() -> None:
    assert scenario.load("default").name == "default"


def test_a_ports_fleet_moves_every_listener_along_with_the_port() -> None:
    from emulators import scenario as scenario_mod

    loaded = scenario_mod.load({"name": "f", "emulators": [
        {"name": "iot", "kind": "iotda", "count": 3, "fleet": "ports", "port": 9000,
         "mqtt_port": 11883, "mqtts_port": 18883}]})
    got = [(m.port, m.options.mqtt_port, m.options.mqtts_port) for m in loaded.members]
    assert got == [(9000, 11883, 18883), (9001, 11884, 18884), (9002, 11885, 18885)]
    spread = scenario_mod.load({"name": "f", "emulators": [
        {"name": "iot", "kind": "iotda", "count": 2, "host": "127.0.3.1", "port": 9000}]})
    assert [(m.host, m.options.mqtts_port) for m in spread.members] == [
        ("127.0.3.1", 8883), ("127.0.3.2", 8883)]


def test_validate_reports_all_six_problems_of_a_file_with_their_lines() -> None:
    """A bad option beside a bad port, a bad option of a duplicate, and port clashes that
    would only fail at run time: every one, in one run."""
    out = subprocess.run([sys.executable, "-m", "emulators", "validate",
                          str(FIXTURES / "bad-six.yaml")], capture_output=True, text=True,
                         cwd=Path(__file__).parent.parent, timeout=60)
    assert out.returncode == 1
    where = f"{FIXTURES / 'bad-six.yaml'}"
    assert out.stdout.splitlines() == [
        f"{where}:7: emulators[0].port: Input should be greater than or equal to 0",
        f"{where}:8: emulators[0].colour: unknown key",
        f"{where}:9: emulators[1].name: duplicate name 'cam'",
        f"{where}:11: emulators[1].speed: unknown key",
        f"{where}:15: emulators[2].mqtts_port: 'iot' mqtts_port and 'iot' mqtt_port both "
        "listen on 127.0.0.1:1883",
        f"{where}:26: emulators[4].port: 'other' and 'fleet-2' mqtt_port both listen on "
        "127.0.0.1:2884"], out.stdout


@pytest.mark.parametrize(("entries", "expected"), [
    pytest.param([{"name": "a", "kind": "iotda"}, {"name": "b", "kind": "iotda", "port": 0}],
                 ["emulators[1].mqtt_port: 'b' mqtt_port and 'a' mqtt_port both listen on "
                  "127.0.0.1:1883",
                  "emulators[1].mqtts_port: 'b' mqtts_port and 'a' mqtts_port both listen on "
                  "127.0.0.1:8883",
                  "emulators[1].amqps_port: 'b' amqps_port and 'a' amqps_port both listen on "
                  "127.0.0.1:5671"], id="two-members-options"),
    pytest.param([{"name": "a", "kind": "acti-camera", "port": 9000},
                  {"name": "b", "kind": "acti-camera", "host": "0.0.0.0", "port": 9000}],
                 ["emulators[1].port: 'b' and 'a' both listen on 0.0.0.0:9000"],
                 id="wildcard-takes-every-address"),
    pytest.param([{"name": "f", "kind": "iotda", "count": 3, "fleet": "ports", "port": 9000,
                   "mqtt_port": 9001, "mqtts_port": 0}],
                 ["emulators[0].port: 'f-2' and 'f-1' mqtt_port both listen on 127.0.0.1:9001",
                  "emulators[0].port: 'f-3' and 'f-2' mqtt_port both listen on "
                  "127.0.0.1:9002"], id="fleet-counted-per-member"),
])
def test_listeners_on_one_address_are_reported(entries: list[dict[str, object]],
                                               expected: list[str]) -> None:
    assert problems_of({"emulators": entries}) == expected


@pytest.mark.parametrize("entries", [
    pytest.param([{"name": "a", "kind": "iotda", "port": 0, "mqtt_port": 0, "mqtts_port": 0,
                   "amqps_port": 0},
                  {"name": "b", "kind": "iotda", "port": 0, "mqtt_port": 0,
                   "mqtts_port": 0, "amqps_port": 0}], id="port-0-never-clashes"),
    pytest.param([{"name": "a", "kind": "iotda", "host": "127.0.3.1"},
                  {"name": "b", "kind": "iotda", "host": "127.0.3.2"}], id="other-addresses"),
    pytest.param([{"name": "f", "kind": "iotda", "count": 3, "fleet": "ports", "port": 9000}],
                 id="ports-fleet-moves-every-listener"),
])
def test_listeners_that_do_not_clash_pass(entries: list[dict[str, object]]) -> None:
    scenario.validate({"emulators": entries})

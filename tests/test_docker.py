"""docker-compose.yml in step with the default scenario (no container engine runs here, so the
file's structure is checked against the ports the default farm really opens)."""

from __future__ import annotations

from pathlib import Path

import yaml

from emulators.scenario import load as load_scenario

ROOT = Path(__file__).parent.parent


def published(compose: dict) -> dict[int, int]:  # type: ignore[type-arg]
    """container port -> host port, with ranges expanded; all bound to 127.0.0.1."""
    out = {}
    for entry in compose["services"]["farm"]["ports"]:
        host_ip, host, container = entry.split(":")
        assert host_ip == "127.0.0.1", f"{entry} must publish on the host's loopback only"
        if "-" in container:
            (c0, c1), (h0, _h1) = (map(int, container.split("-")), map(int, host.split("-")))
            out.update({c: h0 + (c - c0) for c in range(c0, c1 + 1)})
        else:
            out[int(container)] = int(host)
    return out


def test_compose_publishes_every_port_of_the_default_scenario() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    ports = published(compose)
    # The scenario as the farm loads it: a listener an option opens by default counts too.
    scenario = load_scenario(ROOT / "scenarios" / "default.yaml")
    expected = {scenario.control.port}
    for member in scenario.members:
        expected.add(member.port)
        for key, value in member.options:
            if key.endswith("_port") and value:
                expected.add(value)
            elif key == "passive_ports" and value:
                expected.update(range(value[0], value[1] + 1))
    assert set(ports) == expected
    assert {1883, 8883} <= expected  # IoTDA device access
    assert all(host == container for container, host in ports.items())


def test_compose_runs_the_default_scenario_on_a_volume() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["farm"]
    assert service["build"] == "."
    command = service["command"]
    assert command[:3] == ["emulators", "run", "default"]
    assert command[command.index("--state-dir") + 1] == "/state"
    assert command[command.index("--listen-host") + 1] == "0.0.0.0"
    assert "farm-state:/state" in service["volumes"]
    assert "farm-state" in compose["volumes"]
    assert service["stop_signal"] == "SIGTERM"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install" in dockerfile and 'VOLUME ["/state"]' in dockerfile
    assert "COPY scenarios ./scenarios" in dockerfile and "COPY emulators ./emulators" in dockerfile

"""Scenario options are checked by the camera's own rules before anything starts."""

from __future__ import annotations

from typing import Any

import pytest

from emulators import scenario


def camera(**options: Any) -> dict[str, Any]:
    return {"name": "opts", "servers": [{"name": "ftp", "kind": "ftp",
                                         "users": [{"name": "u", "password": "p"}]}],
            "emulators": [{"name": "cam", "kind": "instar-camera", **options}]}


@pytest.mark.parametrize(("options", "complaint"), [
    pytest.param({"ftp": {"ft_port": 70000}}, "ft_port", id="port-out-of-range"),
    pytest.param({"ftp": {"ft_ssl": 3}}, "ft_ssl", id="ft_ssl-3"),
    pytest.param({"ftp": {"ft_username": 'a"b'}}, "ft_username", id="quote-in-user"),
    pytest.param({"snap_schedule": {"times": "90000-1"}}, "times", id="schedule-time"),
    pytest.param({"snapcount": 11}, "snapcount", id="snapcount-11"),
    pytest.param({"upload_server": "nowhere"}, "upload_server", id="unknown-server"),
    pytest.param({"profile": {"auth_failure": "teapot"}}, "auth_failure", id="profile-choice"),
    pytest.param({"profile": {"line_ending": 5}}, "line_ending", id="profile-type"),
    pytest.param({"profile": {"no_such_switch": True}}, "no_such_switch", id="profile-unknown"),
    pytest.param({"trust_store": "everything"}, "trust_store", id="trust-store"),
    pytest.param({"ssh_key_bits": 512}, "ssh_key_bits", id="key-bits"),
    pytest.param({"bogus": 1}, "bogus", id="unknown-option"),
])
def test_bad_options_are_reported(options: dict[str, Any], complaint: str) -> None:
    with pytest.raises(scenario.ScenarioInvalid) as caught:
        scenario.load(camera(**options))
    assert complaint in str(caught.value)


def test_good_options_load() -> None:
    loaded = scenario.load(camera(upload_server="ftp", upload_user="u",
                                  ftp={"ft_dirname": "./cams", "ft_mode": 0},
                                  profile={"auth_failure": "response-211"}))
    assert [m.name for m in loaded.members] == ["ftp", "cam"]

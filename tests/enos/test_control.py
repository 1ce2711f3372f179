"""EnOS's control-plane route (``EnosService.control_routes``): ``POST
/v1/emulators/{name}/enos/faults`` arms the next N certificate calls to answer 99500, which
the SDK then meets; the plane mounts it only when the farm runs an EnOS member."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from tests.control_support import urlopen_json
from tests.enos.clients import Enos, base_options


def post(farm: Any, path: str, body: Any) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return urlopen_json(urllib.request.Request(farm.control_url + path, data=data, method="POST",
                                               headers={"Content-Type": "application/json"}))


@pytest.fixture
def farm(farm_factory: Any, roots: dict[str, Any]) -> Any:
    return farm_factory({"name": "enos-control", "emulators": [
        {"name": "enos", "kind": "enos", **base_options(roots)},
        {"name": "cam", "kind": "acti-camera"}]}, control_port=0)


def test_armed_errors_are_met_by_the_sdk_then_calls_succeed(farm: Any) -> None:
    enos = Enos(farm["enos"])
    assert post(farm, "/emulators/enos/enos/faults", {"internal_errors": 2}) == (
        200, {"emulator": "enos", "internal_errors": 2})
    assert enos.state()["faults"]["remaining"] == 2
    for _ in range(2):
        reply = enos.sdk("list")
        assert (reply["code"], reply["msg"]) == (99500, "Internal error of certificate service.")
    assert enos.sdk("list")["code"] == 0


@pytest.mark.parametrize("body", [{}, {"internal_errors": -1}, {"internal_errors": "2"},
                                  {"internal_errors": 1.5}, {"internal_errors": True},
                                  {"internal_errors": 10**7}, b"[1]", b"{"],
                         ids=["missing", "negative", "string", "float", "bool", "huge",
                              "not-an-object", "not-json"])
def test_a_bad_count_is_a_400_in_the_control_error_form(farm: Any, body: Any) -> None:
    status, reply = post(farm, "/emulators/enos/enos/faults", body)
    assert status == 400
    assert reply["error"]["code"] == "bad_request"
    assert Enos(farm["enos"]).state()["faults"]["remaining"] == 0


@pytest.mark.parametrize("name", ["cam", "nosuch"])
def test_only_an_enos_member_has_it(farm: Any, name: str) -> None:
    assert post(farm, f"/emulators/{name}/enos/faults", {"internal_errors": 1}) == (
        404, {"error": {"code": "not_found", "message": f"no enos emulator named {name!r}"}})


def test_a_farm_without_enos_has_no_such_route(farm_factory: Any) -> None:
    farm = farm_factory({"name": "no-enos", "emulators": [{"name": "cam",
                                                           "kind": "acti-camera"}]},
                        control_port=0)
    with urllib.request.urlopen(farm.control_url + "/openapi.json", timeout=10) as reply:
        paths = json.loads(reply.read())["paths"]
    assert "/v1/emulators/{name}/enos/faults" not in paths
    assert "/v1/emulators/{name}/alarm" not in paths  # INSTAR's, neither
    status, reply = post(farm, "/emulators/cam/enos/faults", {"internal_errors": 1})
    assert status == 404

"""Identifiers from a control-plane URL that become paths: every route that takes one refuses a
hostile one in the error form, and nothing on disk changes, inside the state directory or out.

The hostile values are sent as raw URL bytes (``%2f`` stays ``%2f`` on the wire; aiohttp
decodes it to ``/`` for the route), into every path parameter of every route the control plane
has (read from its own index, so a new route is covered the day it is added), and as JSON
names where a body names a snapshot or members.
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import json
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators.testing import RunningFarm
from tests.control_support import (
    SFTP_ROUTE,
    assert_error_form,
    control,
    fill,
    params,
    routes,
)
from tests.robustness.clients import Reply

# Raw URL bytes, each as it goes on the wire.
HOSTILE = [
    pytest.param("..", id="dotdot"),
    pytest.param(".", id="dot"),
    pytest.param("..%2f..%2fsomewhere%2fimportant", id="dotdot-slash-outside"),
    pytest.param("..%2F..%2Foutside%2Fcanary", id="dotdot-upper-2F"),
    pytest.param("..%2f_farm-ca", id="farm-ca-key-store"),
    pytest.param("_farm-ca", id="farm-ca-name"),
    pytest.param("..%2fftp", id="member-state-file"),
    pytest.param("..%2fsftp", id="sftp-state-file"),
    pytest.param("..%2fftp%2fftpuser%2fevil", id="snapshot-shaped-upload"),
    pytest.param("%2e%2e", id="encoded-dotdot"),
    pytest.param("%2e%2e%2f%2e%2e%2foutside", id="encoded-dotdot-slash"),
    pytest.param("%2fetc%2fpasswd", id="absolute"),
    pytest.param("%2f%2fetc", id="double-slash-absolute"),
    pytest.param("..%5c..%5coutside", id="backslashes"),
    pytest.param("good%00", id="nul"),
    pytest.param("good%0a", id="trailing-newline"),
    pytest.param("good%0d%0aX-Injected:%201", id="crlf"),
    pytest.param("x" * 3000, id="very-long"),
    pytest.param("%e2%80%a4%e2%80%a4", id="one-dot-leaders"),
    pytest.param("..%ef%bc%8f..%ef%bc%8foutside", id="fullwidth-solidus"),
    pytest.param("%c0%ae%c0%ae", id="overlong-utf8-dot"),
    pytest.param("%ff%fe", id="invalid-utf8"),
    pytest.param("good%20", id="trailing-space"),
    pytest.param("-rf", id="leading-dash"),
]
@pytest.fixture(scope="module")
def disk_farm(emulators_loop: Any, tmp_path_factory: pytest.TempPathFactory,
              ) -> Iterator[tuple[RunningFarm, Path]]:
    """The default farm with a state directory, a snapshot ``good``, one uploaded file, a
    snapshot-shaped file uploaded over FTP, and canaries outside the state directory."""
    root = tmp_path_factory.mktemp("paths")
    (root / "somewhere" / "important").mkdir(parents=True)
    (root / "somewhere" / "important" / "data.txt").write_text("keep me")
    (root / "somewhere" / "important.json").write_text("{}")
    (root / "outside").mkdir()
    (root / "outside" / "canary").write_text("keep me too")
    (root / "outside.json").write_text('{"members": {}}')
    farm = RunningFarm.start("default", root / "state", loop=emulators_loop)
    try:
        ftp = farm["ftp"]
        with ftplib.FTP() as client:
            client.connect(ftp.host, ftp.port, timeout=15)
            client.login("ftpuser", "123456")
            client.storbinary("STOR hello.txt", io.BytesIO(b"hello"))
            shaped = {"name": "evil", "time": 0, "members": {"ftp": {"received": [], "seq": 99}}}
            client.storbinary("STOR evil.json", io.BytesIO(json.dumps(shaped).encode()))
        assert control(farm, "POST", "/v1/snapshots", body={"name": "good"}).status == 201
        yield farm, root
    finally:
        farm.stop()


def tree(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with a digest of its content."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = "-> " + str(path.readlink())
        elif path.is_dir():
            found[rel] = "dir"
        else:
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def assert_refused(reply: Reply, what: str) -> None:
    assert 400 <= reply.status < 500, (what, reply.status, reply.body[:300])
    assert_error_form(reply, what)


def cases(farm: RunningFarm) -> list[tuple[str, str, str]]:
    """(method, route, parameter) for every parameter of every route the farm serves."""
    return [(method, route, param) for method, route in routes(farm) for param in params(route)]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_every_path_parameter_of_every_route_refuses_a_hostile_value(
        disk_farm: tuple[RunningFarm, Path], hostile: str) -> None:
    farm, root = disk_farm
    before = tree(root)
    for method, route, param in cases(farm):
        target = fill(route, hostile, param)
        body = {} if method in ("POST", "PUT") else None
        if route == SFTP_ROUTE and method != "GET":
            body = {"authorized_keys": []} if method == "PUT" else {"key": "ssh-ed25519 AAAA"}
        assert_refused(control(farm, method, target, body=body), f"{method} {target}")
    assert tree(root) == before  # nothing inside the state directory or beside it changed
    # The farm is intact: its snapshot restores, its CA and members are where they were.
    assert control(farm, "POST", "/v1/snapshots/good/restore", body={}).status == 200
    assert (root / "state" / "_farm-ca.json").is_file()
    assert (root / "outside" / "canary").read_text() == "keep me too"


@pytest.mark.parametrize("hostile", HOSTILE)
def test_snapshot_names_and_members_in_bodies_are_refused(
        disk_farm: tuple[RunningFarm, Path], hostile: str) -> None:
    farm, root = disk_farm
    name = urllib.parse.unquote(hostile, errors="surrogateescape")
    before = tree(root)
    for body in ({"name": name}, {"name": "fresh", "members": [name]}):
        assert_refused(control(farm, "POST", "/v1/snapshots", body=body), f"save {body!r}")
    assert_refused(control(farm, "POST", "/v1/snapshots/good/restore",
                           body={"members": [name]}), f"restore members {name!r}")
    assert tree(root) == before
    assert [s["name"] for s in control(farm, "GET", "/v1/snapshots").json()["snapshots"]] \
        == ["good"]


def test_the_routes_still_work_with_valid_identifiers(disk_farm: tuple[RunningFarm, Path]
                                                      ) -> None:
    farm, _ = disk_farm
    reply = control(farm, "GET", "/v1/servers/ftp/files/ftpuser/hello.txt")
    assert reply.status == 200 and reply.body == b"hello"
    assert reply.headers["content-type"] == "application/octet-stream"
    assert control(farm, "GET", "/v1/servers/sftp/users/ipcamera/authorized_keys").status == 200
    assert control(farm, "GET", "/v1/emulators/instar-camera/state").status == 200
    assert control(farm, "POST", "/v1/snapshots", body={"name": "second.one_2"}).status == 201
    assert control(farm, "DELETE", "/v1/snapshots/second.one_2").status == 200
    # A name that is valid but names nothing is a 404, not a 400.
    reply = control(farm, "POST", "/v1/snapshots/nosuch/restore", body={})
    assert reply.status == 404 and reply.json()["error"]["code"] == "not_found"


def test_a_damaged_snapshot_is_a_409_not_a_500(farm_factory: Callable[..., RunningFarm],
                                               tmp_path: Path) -> None:
    farm = farm_factory({"emulators": [{"name": "a", "kind": "tests.kinds:Counter"}]}, tmp_path)
    assert control(farm, "POST", "/v1/snapshots", body={"name": "ok"}).status == 201
    (tmp_path / "_snapshots" / "broken.json").write_text('{"name": "broken"')
    (tmp_path / "_snapshots" / "shape.json").write_text('{"name": "shape", "members": 3}')
    for name in ("broken", "shape"):
        reply = control(farm, "POST", f"/v1/snapshots/{name}/restore", body={})
        assert reply.status == 409 and reply.json()["error"]["code"] == "damaged_state", name
    # The catalogue lists what it can read.
    listed = control(farm, "GET", "/v1/snapshots")
    assert listed.status == 200 and [s["name"] for s in listed.json()["snapshots"]] == ["ok"]

"""EnOS test fixtures: one farm each way for the session (reset before each test), roots made
once for the session, and emulators of a test's own. The helpers they use are in clients.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators import pki
from emulators.enos.models.ca import make_root
from emulators.testing import MemberHandle, ShardedFarm
from tests.enos.clients import Enos, base_options, ec_key, rsa_key
from tests.ways import WAYS, both_ways


@pytest.fixture(scope="session")
def roots() -> dict[str, dict[str, str]]:
    """Roots made once for the session, supplied through the scenario (saves keygen per farm)."""
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    out = {}
    for authority, key in (("RSA", rsa_key(2048, 99)), ("ECC", ec_key("secp256r1", 99))):
        cert = make_root(authority, key, now, 3650)  # type: ignore[arg-type]
        out[authority.lower()] = {"cert": pki.cert_pem(cert), "key": pki.key_pem(key)}
    return out


@pytest.fixture(scope="session", params=WAYS)
def enos_farm(request: pytest.FixtureRequest, roots: dict[str, Any]) -> Iterator[ShardedFarm]:
    """The farm of one EnOS emulator the EnOS modules share, both ways (tests/ways.py): one
    process, and shard 1 of four (each test resets it: the ``enos`` fixture)."""
    scenario = {"name": "enos-tests", "emulators": [
        {"name": "enos", "kind": "enos", **base_options(roots)}]}
    yield from both_ways(scenario, request.param, across=["enos"])


@pytest.fixture
def enos(enos_farm: ShardedFarm) -> Enos:
    """The module's emulator, back at its scenario state and the real time."""
    enos_farm.reset_clock()
    handle = enos_farm["enos"]
    handle.reset()
    return Enos(handle)


@pytest.fixture
def start_enos(emulator_factory: Callable[..., MemberHandle],
               roots: dict[str, Any]) -> Callable[..., Enos]:
    """A fresh emulator of its own, with options changed from the base set."""

    def start(state_dir: Path | None = None, **changes: Any) -> Enos:
        options = {**base_options(roots), **changes}
        return Enos(emulator_factory("enos", name="enos", state_dir=state_dir, **options))

    return start

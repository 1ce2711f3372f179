"""Fixtures for the ACTi camera tests: a camera on free ports, and real certificates."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulators import pki
from emulators.testing import RemoteMember, ShardedFarm
from tests.acti.clients import SelfSigned, TestCA, make_self_signed
from tests.ways import WAYS, both_ways


@pytest.fixture(scope="session")
def test_ca() -> TestCA:
    key = pki.ec_key()
    return TestCA(pki.make_ca(pki.name(CN="ACTi Test CA", O="tests"), key), key)


@pytest.fixture(scope="session")
def self_signed() -> SelfSigned:
    return make_self_signed("camera.test")


@pytest.fixture(scope="session")
def other_self_signed() -> SelfSigned:
    return make_self_signed("other-camera.test")


@pytest.fixture(scope="session", params=WAYS)
def acti_farm(request: pytest.FixtureRequest) -> Iterator[ShardedFarm]:
    """A farm of one camera with the default options, both ways (tests/ways.py): on one
    process, and on shard 1 of four; the ACTi modules share it (``camera`` resets it)."""
    yield from both_ways({"name": "acti", "emulators": [
        {"name": "camera", "kind": "acti-camera", "https_port": 0}]},
        request.param, across=["camera"])


@pytest.fixture
def camera(acti_farm: ShardedFarm) -> RemoteMember:
    """The camera with the default options (PlatformT A1D-310-V4.10, admin / 123456), back at
    its scenario state and the farm clock at real time."""
    acti_farm.reset_clock()
    handle = acti_farm["camera"]
    handle.reset()
    return handle

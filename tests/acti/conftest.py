"""Fixtures for the ACTi camera tests: a camera on free ports, and real certificates."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from emulators import pki
from emulators.testing import MemberHandle
from tests.acti.clients import SelfSigned, TestCA, make_self_signed


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


@pytest.fixture
def camera(emulator_factory: Callable[..., MemberHandle]) -> MemberHandle:
    """A camera with the default options: PlatformT A1D-310-V4.10, admin / 123456."""
    return emulator_factory("acti-camera")

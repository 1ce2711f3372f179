"""Fixtures for the upload-server tests: servers started alone, with fast defaults."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from emulators.testing import MemberHandle
from tests.servers.clients import FTP_USER, SFTP_USER


@pytest.fixture
def ftp_server(emulator_factory: Callable[..., MemberHandle]) -> Callable[..., MemberHandle]:
    """Start an FTP server; failed logins answer at once so the tests stay fast."""

    def start(**options: Any) -> MemberHandle:
        options.setdefault("users", [FTP_USER])
        options.setdefault("failed_login_delay", 0)
        return emulator_factory("ftp", **options)

    return start


@pytest.fixture
def sftp_server(emulator_factory: Callable[..., MemberHandle]) -> Callable[..., MemberHandle]:
    def start(**options: Any) -> MemberHandle:
        options.setdefault("users", [SFTP_USER])
        return emulator_factory("sftp", **options)

    return start



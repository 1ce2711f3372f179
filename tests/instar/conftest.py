"""Fixtures for the INSTAR tests; the helpers are in clients.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.instar.clients import SilentServer


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()

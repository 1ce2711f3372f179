"""Fixtures for the video tests; the clients are in clients.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.testing import RunningFarm
from tests.video.clients import ONVIF_ADMINS, onvif_farm
from tests.video.rtsp_clients import RTSP_SCENARIO


@pytest.fixture(scope="session")
def rtsp_farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFarm]:
    farm = RunningFarm.start(RTSP_SCENARIO, Path(tmp_path_factory.mktemp("rtsp")))
    yield farm
    farm.stop()


@pytest.fixture(scope="module", params=sorted(ONVIF_ADMINS))
def camera(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningFarm, str]]:
    """One camera of each kind for a module's ONVIF tests, with its kind (a module that needs
    other users defines its own)."""
    farm = onvif_farm(tmp_path_factory.mktemp("farm"), request.param)
    yield farm, request.param
    farm.stop()

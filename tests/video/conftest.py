"""Fixtures for the video tests; the clients are in clients.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.testing import RunningFarm
from tests.video.rtsp_clients import RTSP_SCENARIO


@pytest.fixture(scope="session")
def rtsp_farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFarm]:
    farm = RunningFarm.start(RTSP_SCENARIO, Path(tmp_path_factory.mktemp("rtsp")))
    yield farm
    farm.stop()

"""The robustness suite's farm: one of every member on free ports, started once per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulators.testing import LoopThread, RunningFarm
from tests.robustness.clients import scenario


@pytest.fixture(scope="module")
def robust_farm(emulators_loop: LoopThread, request: pytest.FixtureRequest,
                ) -> Iterator[RunningFarm]:
    farm = RunningFarm.start(scenario(f"robustness-{request.module.__name__.rsplit('.', 1)[-1]}"),
                             loop=emulators_loop)
    try:
        yield farm
    finally:
        farm.stop()

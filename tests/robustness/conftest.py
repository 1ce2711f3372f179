"""The robustness suite's farm: one of every member on free ports, started once per module."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from emulators.testing import LoopThread, RunningFarm
from tests.robustness.clients import scenario

# To report a failing example hypothesis imports libcst, whose import raises a
# DeprecationWarning (mypy_extensions.TypedDict); filterwarnings=error would turn that into an
# INTERNALERROR that hides the failure itself. Import it once here, quietly.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:  # libcst absent: hypothesis then skips the patch suggestion
        pass


@pytest.fixture(scope="module")
def robust_farm(emulators_loop: LoopThread, request: pytest.FixtureRequest,
                ) -> Iterator[RunningFarm]:
    farm = RunningFarm.start(scenario(f"robustness-{request.module.__name__.rsplit('.', 1)[-1]}"),
                             loop=emulators_loop)
    try:
        yield farm
    finally:
        farm.stop()

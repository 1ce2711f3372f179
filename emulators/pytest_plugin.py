"""pytest fixtures for running emulators in-process on free ports (installed as a plugin).

- ``farm_factory(scenario, state_dir=None, free_ports=True, shards=1)``: start a farm from a
  file, a built-in name or a dict, every listener on a free port unless ``free_ports=False``;
  with ``shards=N`` > 1, ``emulators run --shards N`` in its own process (a ``ShardedFarm``:
  the members' addresses, the journal, faults, clock, reset and snapshots through the control
  plane). Every farm it started is stopped after the test.
- ``emulator_factory(kind, name=None, **options)``: start one member alone.
- ``farm``: the scenario of the test's ``@pytest.mark.emulators_scenario(...)`` marker, or
  the built-in default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .testing import LoopThread, MemberHandle, RunningFarm


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "emulators_scenario(source): the scenario the `farm` fixture starts")


@pytest.fixture(scope="session")
def emulators_loop() -> Iterator[LoopThread]:
    """The background event loop every farm of the session runs on."""
    from .testing import close_shared_loop, shared_loop

    yield shared_loop()
    close_shared_loop()


@pytest.fixture
def farm_factory(emulators_loop: LoopThread) -> Iterator[Callable[..., RunningFarm]]:
    from .testing import RunningFarm, ShardedFarm

    started: list[Any] = []

    def start(source: str | Path | dict[str, Any] = "default",
              state_dir: str | Path | None = None, *, shards: int = 1,
              **kwargs: Any) -> RunningFarm:
        farm: Any
        if shards > 1:
            farm = ShardedFarm.start(source, shards, state_dir, **kwargs)
        else:
            farm = RunningFarm.start(source, state_dir, loop=emulators_loop, **kwargs)
        started.append(farm)
        return farm

    yield start
    for farm in reversed(started):
        farm.stop()


@pytest.fixture
def emulator_factory(farm_factory: Callable[..., RunningFarm]) -> Callable[..., MemberHandle]:
    from .testing import single_member_scenario

    def start(kind: str, name: str | None = None, state_dir: str | Path | None = None,
              **options: Any) -> MemberHandle:
        # Options given here are the test's own choice: ports stay as given (0 by default).
        farm = farm_factory(single_member_scenario(kind, name, **options), state_dir,
                            control=False, free_ports=False)
        return next(iter(farm.members.values()))

    return start


@pytest.fixture
def farm(request: pytest.FixtureRequest, farm_factory: Callable[..., RunningFarm]) -> RunningFarm:
    marker = request.node.get_closest_marker("emulators_scenario")
    source = marker.args[0] if marker and marker.args else "default"
    return farm_factory(source)

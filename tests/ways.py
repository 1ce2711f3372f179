"""An emulator's integration tests, both ways: the farm as `emulators run` runs it on one
process, and on four shards (a sharded farm must behave, member for member, as the same
scenario on one process does). A module's ``farm`` fixture is

    @pytest.fixture(scope="module", params=WAYS)
    def farm(request):
        yield from both_ways(SCENARIO, request.param, across=["cam"])

and its tests drive the farm from outside, as a user does: the members' addresses, the real
clients, and the control plane's API (``ShardedFarm``), never the member objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators import scenario as scenario_mod
from emulators.shards.partition import shard_of
from emulators.testing import ShardedFarm

WAYS = [pytest.param(1, id="one-process"), pytest.param(4, id="4-shards")]


def both_ways(scenario: str | dict[str, Any], shards: int, *, across: list[str],
              state_dir: Path | None = None) -> Iterator[ShardedFarm]:
    """Start ``scenario`` on ``shards`` shards, yield it, stop it with SIGTERM (exit 0). On
    more than one shard, every member named in ``across`` must run on another shard than the
    servers (shard 0): the tests then cross shards wherever a device meets a server."""
    if shards > 1:
        owner = shard_of(scenario_mod.load(scenario), shards)
        assert all(owner[name] != 0 for name in across), owner
    farm = ShardedFarm.start(scenario, shards, state_dir)
    try:
        yield farm
    finally:
        assert farm.stop() == 0

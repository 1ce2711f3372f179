"""One sharded farm and its one-process twin for the modules of this package that only read
them or send them input they must refuse: a sharded farm takes seconds to start."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulators.testing import ShardedFarm
from tests.shards.test_sharded_farm import SCENARIO


@pytest.fixture(scope="package")
def farms() -> Iterator[tuple[ShardedFarm, ShardedFarm]]:
    """``emulators run`` of the same scenario on one process and on four shards, each also
    answering the host name ``farm-control`` (``--allow-host``)."""
    options = ("--allow-host", "farm-control")
    one = ShardedFarm.start(SCENARIO, 1, options=options)
    four = ShardedFarm.start(SCENARIO, 4, options=options)
    try:
        yield one, four
    finally:
        one.stop()
        four.stop()

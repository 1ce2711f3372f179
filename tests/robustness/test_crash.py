"""Crashes (bounded): SIGKILL the farm a few times while files arrive and
certificates are issued, restart it on the same state directory, check nothing is
half-written or lost. bench/crash.py is the full run (100 kills); same code, fewer kills."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import crash  # noqa: E402 - bench/ is a folder of scripts, not a package

KILLS = 6


@pytest.fixture(scope="module")
def tally(tmp_path_factory: pytest.TempPathFactory) -> crash.Tally:
    root = tmp_path_factory.mktemp("crash")
    result = crash.crash_test(kills=KILLS, max_delay=0.6, seed=11, state_dir=root / "state")
    crash.show(result, KILLS)
    return result


def test_the_farm_was_killed_and_restarted_every_time(tally: crash.Tally) -> None:
    assert tally.kills == KILLS
    assert tally.restarts == KILLS


def test_kills_landed_while_work_was_under_way(tally: crash.Tally) -> None:
    # Otherwise the checks below would only ever see finished work.
    assert sum(tally.acked.values()) > 0
    assert sum(tally.cut.values()) > 0


def test_state_always_loads_is_never_half_written_and_nothing_acknowledged_is_lost(
        tally: crash.Tally) -> None:
    assert tally.problems == []

"""Load (bounded): 150 concurrent clients mixing every emulator and both upload
servers against a farm in its own process, for a few seconds. bench/load.py is the full
run (500 clients, two rounds); this is the same code with smaller numbers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import load  # noqa: E402 - bench/ is a folder of scripts, not a package

CLIENTS, SECONDS, WORKERS = 150, 6.0, 2


@pytest.fixture(scope="module")
def report() -> load.Report:
    result = load.load_test(clients=CLIENTS, seconds=SECONDS, workers=WORKERS, rounds=2,
                            warmup_clients=10, warmup_seconds=1.5, settle_seconds=15.0)
    result.show()  # the figures, in the test's captured output
    return result


def test_every_operation_of_every_member_succeeds_under_load(report: load.Report) -> None:
    for round_ in report.rounds:
        assert round_["failures"] == {}, [p for p in report.problems if "failed" in p]
        assert set(round_["ops"]) == set(load.MIX), "every operation must have succeeded"
        assert round_["requests"] >= 2 * CLIENTS


def test_every_acknowledged_upload_is_recorded_with_its_digest(report: load.Report) -> None:
    for round_ in report.rounds:
        assert round_["uploads"] > 0
        assert round_["lost"] == 0


def test_the_farm_log_has_no_traceback_and_no_error(report: load.Report) -> None:
    assert report.log_problems == []


def test_sockets_and_threads_return_to_the_baseline(report: load.Report) -> None:
    assert report.after.sockets <= report.baseline.sockets
    assert report.after.threads <= report.baseline.threads + load.POOL_THREADS


def test_memory_returns_near_the_baseline(report: load.Report) -> None:
    # Reset and journal cleared first; the allowance is the allocator's retained high-water
    # mark of a round's work (bench/load.py says why and how much).
    assert report.after.rss_mb <= report.baseline.rss_mb + load.rss_allowance(CLIENTS)


def test_a_repeated_round_adds_no_memory(report: load.Report) -> None:
    # The leak check: the same work again on the same (reset) state reuses what the first
    # round's high-water mark left; a leak would grow by as much again.
    first, second = report.rounds
    assert second["rss_mb"] - first["rss_mb"] <= load.ROUND_GROWTH_MB


def test_nothing_else_went_wrong(report: load.Report) -> None:
    assert report.problems == []

"""The pytest plugin as a user meets it: installed entry point, fixtures, fast start and reset."""

from __future__ import annotations

import statistics
import time
import urllib.request
from collections.abc import Callable

import pytest

from emulators.testing import MemberHandle, RunningFarm

pytest_plugins = ["pytester"]


def test_plugin_is_installed_and_its_fixtures_work_in_a_user_suite(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user="""
        import urllib.request
        import pytest

        def test_single(emulator_factory):
            counter = emulator_factory("tests.kinds:Counter", start=41)
            req = urllib.request.Request(counter.url, method="POST")
            assert urllib.request.urlopen(req).read() == b"42"
            assert counter.state() == {"value": 42}
            counter.reset()
            assert counter.state() == {"value": 41}

        @pytest.mark.emulators_scenario({"emulators": [
            {"name": "cams", "kind": "tests.kinds:Counter", "count": 2, "host": "127.0.30.1"}]})
        def test_marked_farm(farm):
            assert [h.name for h in farm.emulators] == ["cams-1", "cams-2"]
            assert farm["cams-2"].url.startswith("http://127.0.30.2:")
    """)
    # A subprocess: the plugin must come from the installed pytest11 entry point, not from us.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--rootdir",
                                           str(pytester.path), "-o", "pythonpath=" + _repo())
    result.assert_outcomes(passed=2)


def _repo() -> str:
    from pathlib import Path

    return str(Path(__file__).parent.parent)


def test_emulator_factory_gives_urls_credentials_and_control(
        emulator_factory: Callable[..., MemberHandle]) -> None:
    counter = emulator_factory("tests.kinds:Counter", name="solo", start=5)
    assert counter.name == "solo" and counter.kind == "tests.kinds:Counter"
    assert counter.urls == {"http": counter.url}
    with urllib.request.urlopen(counter.url, timeout=5) as resp:
        assert resp.read() == b"5"
    assert counter.call(lambda member: member.value) == 5


def test_starting_one_emulator_takes_milliseconds_and_reset_less(
        emulator_factory: Callable[..., MemberHandle]) -> None:
    # Not a benchmark (bench/ has those): a guard that start-up stays in the millisecond class.
    starts, resets = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        handle = emulator_factory("tests.kinds:Counter")
        starts.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        handle.reset()
        resets.append(time.perf_counter() - t0)
    assert statistics.median(starts) < 0.5
    assert statistics.median(resets) < 0.1


def test_farm_fixture_runs_the_default_scenario(farm: RunningFarm) -> None:
    assert farm.ready["scenario"] == "default"
    assert farm.control_url.startswith("http://127.0.0.1:")

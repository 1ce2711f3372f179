"""Suite-wide checks: no test may leak a thread or a socket (pyftpdlib's conftest habit)."""

from __future__ import annotations

import gc
import shutil
import threading
import time
from collections.abc import Iterator

import pytest

from tests.leaks import open_sockets

# Threads that legitimately outlive a test: the farm's shared loop and its executor pool.
PERSISTENT_PREFIXES = ("emulators-loop", "asyncio_", "ThreadPoolExecutor")


def _threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if not t.name.startswith(PERSISTENT_PREFIXES)}




@pytest.fixture(scope="session", autouse=True)
def _shared_loop_first(emulators_loop: object) -> None:
    """Start the shared farm loop before any leak baseline is taken."""


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    threads_before = _threads()
    sockets_before = open_sockets()
    yield
    if request.node.get_closest_marker("allow_leaks"):
        return
    deadline = time.monotonic() + 3.0
    collected = False
    while True:
        new_threads = _threads() - threads_before
        new_sockets = open_sockets() - sockets_before
        if not new_threads and not new_sockets:
            return
        if not collected:
            # Some clients (the IoTDA SDK after an error) leave a socket in a reference cycle:
            # garbage, closed by the collector, not a leak.
            gc.collect()
            collected = True
            continue
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    problems = []
    if new_threads:
        problems.append(f"threads left running: {sorted(t.name for t in new_threads)}")
    if new_sockets:
        problems.append(f"sockets left open: {len(new_sockets)}")
    pytest.fail("; ".join(problems), pytrace=False)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Every module is imported once collection ends: what lives as long as the process (code,
    modules, the SDKs' tables: several hundred thousand objects) is frozen out of the cyclic
    collector's way. The leak checks' and fixtures' gc.collect() then walks only what the
    tests made: each cost about 0.3 s a test with the whole heap (200 s of a suite run).
    Hypothesis is imported first whatever was collected: its import runs plugins (trio's)
    whose check that a registered generator is referenced cannot see frozen referrers."""
    import hypothesis  # noqa: F401

    gc.collect()
    gc.freeze()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_leaks: skip the thread/socket leak check")
    # The suite drives the emulators with real command-line clients: say so plainly, once,
    # instead of failing test by test with FileNotFoundError.
    missing = [tool for tool in ("curl", "openssl") if shutil.which(tool) is None]
    if missing:
        raise pytest.UsageError(
            f"the test suite needs {' and '.join(missing)} on PATH (real clients of the "
            f"emulators): apt-get install {' '.join(missing)}, or run .ci/run, which does")

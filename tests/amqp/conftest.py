"""The AMQP tests' servers: each started on the farm's loop, stopped after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators import pki
from emulators.core.amqp.options import AmqpOptions
from emulators.core.amqp.server import AmqpServer, farm_tls
from emulators.core.farm_ca import FarmCA
from emulators.testing import LoopThread
from tests.amqp.clients import App, Served


@pytest.fixture(scope="session")
def farm_ca() -> FarmCA:
    key = pki.ec_key()
    return FarmCA(pki.make_ca(pki.name(CN="AMQP test farm CA"), key), key)


@pytest.fixture
def amqp_server(emulators_loop: LoopThread, farm_ca: FarmCA, tmp_path: Path
                ) -> Iterator[Callable[..., Served]]:
    """``amqp_server(tls=True, **options)``: a started server with one queue, ``q1``."""
    started: list[Served] = []

    def start(*, tls: bool = True, app: App | None = None, **options: Any) -> Served:
        app = app or App()
        if "q1" not in app.queues:
            app.queue("q1")
        ca_file = None
        if tls:
            ca_file = str(tmp_path / "farm-ca.pem")
            Path(ca_file).write_text(farm_ca.pem)

        async def make() -> Served:
            context = await farm_tls(farm_ca, "127.0.0.1") if tls else None
            served = Served(emulators_loop, None, app, ca_file)  # type: ignore[arg-type]
            served.server = AmqpServer(
                app, tls=context,
                journal=lambda protocol, event, **fields: served.journal.append(
                    (protocol, event, fields)),
                options=AmqpOptions(**options))
            await served.server.start()
            return served

        served = emulators_loop.run(make())
        started.append(served)
        return served

    yield start
    for served in started:
        emulators_loop.run(served.server.stop())

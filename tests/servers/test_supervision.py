"""A member whose server dies never dies silently: the farm restarts it with its state, or,
when it cannot, reports it failed (ERROR log, ``health`` in its description through the
control plane, the farm's exit status). The FTP server's loop is killed on purpose here."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from emulators.farm import RESTART_LIMIT
from tests.servers.clients import (
    FTP_USER,
    control_get,
    events_of,
    eventually,
    ftp_login,
    reset,
    store,
)


class LoopKilled(BaseException):
    """Not an Exception: nothing on the way may swallow it, the thread itself dies."""


def _break_the_loop(server, error: type[BaseException]) -> None:
    """Make the FTP thread's IO loop raise ``error`` at its next poll (and every one after)."""
    def patch(member: Any) -> None:
        def broken(timeout: float | None) -> None:
            raise error("killed on purpose by the test")
        member._server.ioloop.poll = broken
    server.call(patch)


@pytest.fixture
def farm(farm_factory):
    return farm_factory({"name": "supervised", "servers": [
        {"name": "ftp", "kind": "ftp", "users": [FTP_USER], "failed_login_delay": 0}]},
        control_port=0)


def _health(farm) -> dict[str, Any]:
    return control_get(farm, "/servers/ftp")["health"]


@pytest.mark.parametrize("error", [LoopKilled, RuntimeError],
                         ids=["loop-thread-dies", "loop-raises-at-every-poll"])
def test_a_dead_ftp_loop_is_restarted_with_its_state(farm, caplog, error):
    caplog.set_level(logging.INFO)
    server = farm["ftp"]
    port = server.port
    assert _health(farm) == {"status": "ok"}
    with ftp_login(server) as client:
        store(client, "before.jpg", b"before")
    _break_the_loop(server, error)
    health = eventually(lambda: (h := _health(farm)).get("restarts") == 1 and h, timeout=10)
    assert health["status"] == "ok"
    assert "killed on purpose by the test" in health["last_failure"]
    assert server.port == port  # the same port: clients configured for it keep working
    with ftp_login(server) as client:
        assert store(client, "after.jpg", b"after") == "226 Transfer complete."
        client.voidcmd("TYPE I")
        assert client.size("before.jpg") == len(b"before")  # the files are still there
    assert [r["path"] for r in server.call(lambda m: m.received_files())] == [
        "before.jpg", "after.jpg"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR
              and "killed on purpose by the test" in r.getMessage() + str(r.exc_info)]
    assert errors, "the failure was not logged at ERROR with its cause"
    assert farm.farm.exit_status == 0  # recovered: nothing to report at exit


def test_a_member_that_cannot_be_restarted_is_reported_failed(farm, caplog):
    caplog.set_level(logging.INFO)
    server = farm["ftp"]

    def no_restart(member: Any) -> None:
        async def refuse() -> None:
            raise OSError(98, "Address already in use")
        member.start = refuse
    server.call(no_restart)
    _break_the_loop(server, LoopKilled)
    health = eventually(lambda: (h := _health(farm))["status"] == "failed" and h, timeout=10)
    assert "killed on purpose by the test" in health["reason"]
    assert "Address already in use" in health["reason"]
    assert control_get(farm, "/farm")["servers"][0]["health"]["status"] == "failed"
    assert any(r.levelno >= logging.ERROR and "Address already in use" in r.getMessage()
               for r in caplog.records)
    assert farm.farm.exit_status == 1
    assert farm.farm.failures == {"ftp": health["reason"]}


def test_a_member_that_keeps_dying_is_given_up_on(farm):
    server = farm["ftp"]
    for restarts in range(1, RESTART_LIMIT + 1):
        _break_the_loop(server, LoopKilled)
        eventually(lambda n=restarts: _health(farm).get("restarts") == n, timeout=10)
        with ftp_login(server):
            pass  # it serves again after each restart
    _break_the_loop(server, LoopKilled)
    health = eventually(lambda: (h := _health(farm))["status"] == "failed" and h, timeout=10)
    assert f"{RESTART_LIMIT} times" in health["reason"]
    assert farm.farm.exit_status == 1


def test_a_broken_data_handler_is_closed_and_the_server_serves_on(farm, caplog):
    """A data handler whose close() raises (as a half-built one did when its client
    reset at once), injected. That one
    transfer is answered 426 and recorded incomplete; the session, the loop and every later
    login go on (no restart needed)."""
    caplog.set_level(logging.INFO)
    server = farm["ftp"]
    dtp = server.call(lambda m: m._server.handler.dtp_handler)  # this server's own class

    def broken(self: Any) -> None:
        raise AttributeError("'FarmDTPHandler' object has no attribute '_throttler'")
    dtp._cancel_throttler = broken
    try:
        with ftp_login(server) as client:
            client.voidcmd("TYPE I")
            data = client.transfercmd("STOR broken.jpg")
            data.sendall(b"x" * 5000)
            time.sleep(0.1)
            reset(data)
            assert client.getline().rstrip("\r\n") == "426 Connection closed; transfer aborted."
            assert client.voidcmd("NOOP").startswith("200")
    finally:
        del dtp._cancel_throttler
    assert events_of(server, "upload_incomplete")[0]["path"] == "broken.jpg"
    with ftp_login(server) as client:
        assert store(client, "fine.jpg", b"fine") == "226 Transfer complete."
    assert _health(farm) == {"status": "ok"}
    assert any(r.levelno >= logging.ERROR and "_throttler" in str(r.exc_info)
               for r in caplog.records)  # a bug is a bug: logged with its traceback


def test_an_io_loop_that_raises_once_serves_on(farm):
    server = farm["ftp"]

    def patch(member: Any) -> None:
        ioloop = member._server.ioloop
        original = ioloop.poll

        def once(timeout: float | None) -> None:
            ioloop.poll = original
            raise RuntimeError("one bad poll")
        ioloop.poll = once
    server.call(patch)
    time.sleep(0.3)
    with ftp_login(server) as client:
        assert store(client, "fine.jpg", b"fine") == "226 Transfer complete."
    assert _health(farm) == {"status": "ok"}


def test_emulators_run_exits_1_when_a_member_stayed_down(tmp_path, monkeypatch, capsys):
    """`emulators run` (its coroutine, on this main thread, with its own signal handling):
    stopped with SIGTERM after its FTP server died for good, it exits 1, not 0; a CI job that
    ran a farm learns that a member was lost."""
    import asyncio
    import os
    import signal

    from emulators import cli
    from emulators import scenario as scenario_mod
    from emulators.farm import Farm

    started: list[Farm] = []
    up, given_up = asyncio.Event(), asyncio.Event()
    real_start, real_give_up = Farm.start, Farm._give_up

    async def start(self: Farm) -> Any:
        document = await real_start(self)
        started.append(self)
        up.set()
        return document

    def give_up(self: Farm, *args: Any) -> None:
        real_give_up(self, *args)
        given_up.set()

    monkeypatch.setattr(Farm, "start", start)
    monkeypatch.setattr(Farm, "_give_up", give_up)

    async def kill_the_ftp_loop_for_good() -> None:
        await up.wait()
        member = started[0].members["ftp"]

        async def refuse() -> None:
            raise OSError(98, "Address already in use")

        def broken(timeout: float | None) -> None:
            raise LoopKilled("killed on purpose by the test")

        member.start = refuse  # type: ignore[method-assign]
        member._server.ioloop.poll = broken
        await given_up.wait()
        os.kill(os.getpid(), signal.SIGTERM)

    scenario = scenario_mod.with_free_ports(scenario_mod.load(
        {"name": "exit", "servers": [{"name": "ftp", "kind": "ftp", "users": [FTP_USER]}]}))

    async def main() -> int:
        killer = asyncio.create_task(kill_the_ftp_loop_for_good())
        status = await asyncio.wait_for(cli._run(scenario, None, tmp_path / "ready.json", 0), 30)
        await killer
        return status

    assert asyncio.run(main()) == 1
    assert "emulators: stopped" in capsys.readouterr().err
    assert not (tmp_path / "ready.json").exists()

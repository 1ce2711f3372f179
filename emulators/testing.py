"""Run farms from synchronous code (tests, scripts, notebooks) on a background event loop.

The farm's loop runs in its own thread, so a test may drive an emulator with a blocking client
(curl, ftplib, a vendor SDK) without deadlocking, and an async test with its own loop may too.
A sharded farm, in a process of its own, is ``testing_sharded.ShardedFarm`` (exported here).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from . import scenario as scenario_mod
from .core.member import Member
from .farm import Farm
from .kinds import resolve
from .testing_sharded import FarmChecks, JournalChecks, RemoteMember, ShardedClock, ShardedFarm

__all__ = ["DEFAULT_TIMEOUT", "FarmChecks", "JournalChecks", "LoopThread", "MemberHandle",
           "RemoteMember", "RunningFarm", "ShardedClock", "ShardedFarm", "close_shared_loop",
           "shared_loop", "single_member_scenario"]

T = TypeVar("T")
DEFAULT_TIMEOUT = 60.0


class LoopThread:
    """An event loop running in a daemon thread."""

    def __init__(self, name: str = "emulators-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = DEFAULT_TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float | None = DEFAULT_TIMEOUT) -> T:
        """Run a plain function on the loop (members are not thread-safe: touch them here)."""
        async def wrapper() -> T:
            result = fn()
            if isinstance(result, Awaitable):
                return await result
            return result
        return self.run(wrapper(), timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return

        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_default_executor()

        try:
            self.run(drain(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


class MemberHandle:
    """What a test holds of one member: where it listens, how to log in, its state, reset."""

    def __init__(self, farm: RunningFarm, member: Member) -> None:
        self._farm = farm
        self.member = member  # the live object: touch it only through ``call``
        self.name = member.name
        self.kind = member.kind
        self.role = member.role
        self.group = member.spec.group  # the scenario entry (fleet) it was stamped from

    @property
    def farm(self) -> RunningFarm:
        """The running farm this member belongs to (its clock, journal, faults)."""
        return self._farm

    @property
    def description(self) -> dict[str, Any]:
        return self._farm.loop.call(self.member.describe)

    @property
    def urls(self) -> dict[str, str]:
        return self._farm.loop.call(self.member.urls)

    @property
    def url(self) -> str:
        """The member's first URL (``http://...`` for a device)."""
        return next(iter(self.urls.values()))

    @property
    def host(self) -> str:
        return self.member.host

    @property
    def port(self) -> int:
        return self.member.port

    @property
    def credentials(self) -> dict[str, Any]:
        return self._farm.loop.call(self.member.credentials)

    def state(self) -> dict[str, Any]:
        return self._farm.loop.call(self.member.state)

    def reset(self) -> None:
        self._farm.loop.run(self.member.reset())

    def call(self, fn: Callable[[Member], Any]) -> Any:
        """Run ``fn(member)`` on the farm's loop and return its result (awaited if async)."""
        return self._farm.loop.call(lambda: fn(self.member))

    def __repr__(self) -> str:
        return f"<MemberHandle {self.kind} {self.name}>"


async def _start(farm: Farm, control_port: int | None) -> dict[str, Any]:
    """Start ``farm``, then its control plane on ``control_port`` (None: no control plane)."""
    await farm.start()
    if control_port is not None:
        from .control.server import ControlPlane

        try:
            await ControlPlane.serve(farm, control_port)
        except BaseException:
            await farm.stop()
            raise
    return farm.ready_document()


class RunningFarm(FarmChecks[MemberHandle]):
    """A started farm, driven from synchronous code."""

    def __init__(self, farm: Farm, loop: LoopThread) -> None:
        self.farm = farm
        self.loop = loop
        self.ready: dict[str, Any] = {}
        self.members: dict[str, MemberHandle] = {}

    @classmethod
    def start(
        cls,
        source: str | Path | dict[str, Any] | scenario_mod.Scenario = scenario_mod.DEFAULT_SCENARIO,
        state_dir: Path | str | None = None,
        *,
        loop: LoopThread | None = None,
        control: bool = True,
        control_port: int = 0,
        free_ports: bool = True,
    ) -> RunningFarm:
        """Start a farm; with ``free_ports`` (the default) every listener takes a free port
        whatever the scenario says, so tests never collide with each other or a running farm."""
        scenario = (source if isinstance(source, scenario_mod.Scenario)
                    else scenario_mod.load(source))
        if free_ports:
            scenario = scenario_mod.with_free_ports(scenario)
        loop = loop or shared_loop()
        farm = loop.call(lambda: Farm(scenario, state_dir))
        running = cls(farm, loop)
        running.ready = loop.run(_start(farm, control_port if control else None))
        running.members = {name: MemberHandle(running, m) for name, m in farm.members.items()}
        return running

    @property
    def control_url(self) -> str:
        if self.farm.control is None:
            raise RuntimeError("this farm runs without a control plane")
        return f"{self.farm.control.url}/v1"

    @property
    def clock(self):
        return self.farm.clock

    def reset(self, name: str | None = None) -> None:
        self.loop.run(self.farm.reset(name))

    # -- the request journal ---------------------------------------------------------------
    def journal(self, **filters: Any) -> list[dict[str, Any]]:
        """Journal entries matching ``filters`` (member, kind, protocol, event, method, path,
        status, correlation_id, since, until, after_seq, limit), oldest first."""
        return self.loop.call(lambda: [e.to_dict() for e in self.farm.journal.query(**filters)])

    def wait_for(self, timeout: float = 5.0, *, include_past: bool = True,
                 **filters: Any) -> dict[str, Any]:
        """Wait until the journal has an entry matching ``filters``; return it."""
        from .core.journal import FILTERS, matcher

        wanted = matcher(**{k: v for k, v in filters.items() if k in FILTERS})

        async def wait() -> dict[str, Any]:
            entry = await self.farm.journal.wait_for(wanted, timeout, include_past=include_past)
            return entry.to_dict()

        try:
            return self.loop.run(wait(), timeout + 5)
        except TimeoutError:
            raise AssertionError(
                f"no journal entry matching {filters} within {timeout} s") from None

    def wait_for_upload(self, server: str | None = None, timeout: float = 5.0,
                        **filters: Any) -> dict[str, Any]:
        """Wait until a file arrives at ``server`` (any server when None)."""
        return self.wait_for(timeout, event="upload", member=server or "*", **filters)

    def clear_journal(self) -> None:
        self.loop.call(self.farm.journal.clear)

    # -- faults ----------------------------------------------------------------------------
    def add_fault(self, **spec: Any) -> str:
        """Add a fault rule (see docs/FAULTS.md); returns its id."""
        return self.loop.call(lambda: self.farm.faults.add(spec).id)

    def faults(self) -> list[dict[str, Any]]:
        return self.loop.call(lambda: [r.to_dict() for r in self.farm.faults.list()])

    def remove_fault(self, rule_id: str) -> None:
        self.loop.call(lambda: self.farm.faults.remove(rule_id))

    def clear_faults(self) -> None:
        self.loop.call(self.farm.faults.clear)

    # -- the clock -------------------------------------------------------------------------
    def freeze_clock(self, at: float | None = None) -> None:
        self.loop.call(lambda: self.farm.clock.freeze(at))

    def advance_clock(self, seconds: float) -> None:
        self.loop.call(lambda: self.farm.clock.advance(seconds))

    def set_clock(self, at: float) -> None:
        self.loop.call(lambda: self.farm.clock.set(at))

    def reset_clock(self) -> None:
        self.loop.call(self.farm.clock.reset)

    # -- snapshots -------------------------------------------------------------------------
    def snapshot(self, name: str, members: list[str] | None = None) -> dict[str, Any]:
        return self.loop.run(self.farm.snapshots.save(name, members))

    def restore(self, name: str, members: list[str] | None = None) -> list[str]:
        return self.loop.run(self.farm.snapshots.restore(name, members))

    def stop(self) -> None:
        if self.farm.started:
            self.loop.run(self.farm.stop())

    def __enter__(self) -> RunningFarm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_counter = itertools.count(1)


def single_member_scenario(kind: str, name: str | None = None, **options: Any) -> dict[str, Any]:
    """A one-member scenario dict for ``kind`` with the given options. Every further listener
    of the kind (an option ``*_port`` whose default is a fixed port) takes a free port unless
    the options name one: a test's member never sits on a well-known port by accident."""
    cls = resolve(kind)
    default_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", kind.rsplit(":", 1)[-1]).strip("-.").lower()
    free = {field_name: 0 for field_name, info in cls.Options.model_fields.items()
            if field_name.endswith("_port") and isinstance(info.default, int) and info.default}
    entry = {"name": name or f"{default_name}-{next(_counter)}", "kind": kind, **free,
             **options}
    section = "servers" if cls.role == "server" else "emulators"
    return {"name": f"single-{kind}", section: [entry]}


_shared: LoopThread | None = None
_shared_lock = threading.Lock()


def shared_loop() -> LoopThread:
    """One background loop for the process, started on first use."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.loop.is_closed():
            _shared = LoopThread()
        return _shared


def close_shared_loop() -> None:
    global _shared
    with _shared_lock:
        if _shared is not None:
            _shared.close()
            _shared = None

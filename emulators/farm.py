"""The farm: every member of a scenario in one process and one event loop. Its caller attaches
the control plane (``ControlPlane.serve``): the farm names no part of it.

``Farm.start`` is all or nothing: if any member fails to start, those already started are
stopped again and the error is raised, so a farm never half-starts. Once running, a member
whose server dies (``Member.report_failure``) is restarted with its state, or reported failed
when it cannot be: never left dead in silence.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .core.clock import Clock
from .core.faults import FaultEngine
from .core.journal import Journal
from .core.member import FarmContext, Member, MemberSpec, fixed_ports
from .core.observe import HttpObserver
from .core.state import StateStore, atomic_write_bytes, encode_state
from .kinds import resolve
from .scenario import Scenario
from .snapshots import Snapshots

log = logging.getLogger("emulators.farm")

READY_VERSION = 1
# A member that dies is restarted at most RESTART_LIMIT times within RESTART_WINDOW seconds;
# past that it is left stopped and reported failed (a member that dies at once on every start
# would otherwise be restarted for ever).
RESTART_LIMIT = 3
RESTART_WINDOW = 60.0
# Members of a fleet start (and stop) this many at a time: each start of a camera with a state
# directory ends with a save (a write and two fsyncs in a thread), and one after another 2,000
# cameras took 8.0 s to start and 4.9 s to stop against 3.1 s / 0.6 s in memory
# (bench/README.md, "Shards").
FLEET_BATCH = 64


class PortInUse(OSError):
    """A member could not start because one of its listeners' addresses is taken: which
    member, which option and which address, so the message can say what to change."""

    def __init__(self, member: str, option: str | None, host: str, port: int | None) -> None:
        self.member, self.option, self.host, self.port = member, option, host, port
        where = f"{option} {port} is" if option else "a port is"
        at = f" ({host}:{port})" if port else ""
        super().__init__(errno.EADDRINUSE, f"member {member!r}: {where} already in use{at}")

    def __str__(self) -> str:
        return str(self.strerror)

    def with_cause(self, cause: BaseException) -> PortInUse:
        self.__cause__ = cause
        return self

    @classmethod
    def of(cls, spec: MemberSpec, exc: OSError) -> PortInUse:
        """Which listener of ``spec`` failed with ``exc``: the port asyncio names in its
        message ("... bind on address ('127.0.0.1', 1883) ..."), else the only fixed one, else
        the one that still cannot be bound (pyftpdlib's error names no address)."""
        ports = fixed_ports(spec)
        named = {int(p) for p in re.findall(r"\('[^']*', (\d+)", str(exc))}
        found = [(o, p) for o, p in ports if p in named]
        if not found and len(ports) == 1:
            found = ports
        if not found:
            found = [(o, p) for o, p in ports if not _bindable(spec.host, p)]
        option, port = found[0] if found else (None, None)
        return cls(spec.name, option, spec.host, port)


def _address_in_use(exc: OSError) -> bool:
    """EADDRINUSE, also as pyftpdlib raises it (an OSError whose one argument is the OSError
    that has the errno)."""
    inner = exc.args[0] if exc.errno is None and exc.args else exc
    return isinstance(inner, OSError) and inner.errno == errno.EADDRINUSE


def _bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class Farm:
    def __init__(
        self,
        scenario: Scenario,
        state_dir: Path | str | None = None,
        *,
        clock: Clock | None = None,
        elsewhere: Callable[[str], Member] | None = None,
    ) -> None:
        self.scenario = scenario
        # A member this farm does not run but its members may look up (a shard's view of a
        # server on another shard): name -> an unstarted copy that knows its address.
        self.elsewhere = elsewhere
        self.shard: dict[str, Any] | None = None  # {"index", "count", "incarnation"} in a shard
        self.clock = clock or Clock()
        self.store = StateStore(Path(state_dir) if state_dir is not None else None)
        self.journal = Journal(self.clock, scenario.journal.capacity,
                               scenario.journal.excerpt_bytes)
        self.journal.enabled = scenario.journal.enabled
        self.faults = FaultEngine(self.clock, scenario.fault_seed)
        for rule in scenario.faults:
            self.faults.add(rule)
        self.faults.on_fire.append(self._journal_fault)
        self.http = HttpObserver(self.journal, self.faults)
        self.ctx = FarmContext(self.clock, self.store, self._lookup, self.member_failed,
                               self.journal, self.faults, self.http.wrap)
        self.members: dict[str, Member] = {}
        self.snapshots = Snapshots(self)
        # The control plane, built and attached by the farm's caller (cli, testing) once the
        # farm has started (ControlPlane.serve); the farm only names it and stops it.
        self.control: Any = None
        self.started = False
        # Members that died and could not be restarted: name -> why (kept after stop).
        self.failures: dict[str, str] = {}
        self._restarts: dict[str, list[float]] = {}
        self._restarting: dict[str, asyncio.Task[None]] = {}

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> dict[str, Any]:
        """Start every member (servers first: emulators may upload to them); return the ready
        document."""
        if self.store.swept:
            log.info("swept %d temporary files left by an interrupted write", len(self.store.swept))
        started: list[Member] = []
        self.http.start()
        try:
            shared_ports: dict[str, int] = {}
            for batch in self._start_batches():
                members = [self._make(spec, shared_ports) for spec in batch]
                for member in members:
                    self.members[member.name] = member
                outcomes = await asyncio.gather(*(m.start() for m in members),
                                                return_exceptions=True)
                failed = None
                for member, outcome in zip(members, outcomes, strict=True):
                    if (isinstance(outcome, OSError) and not isinstance(outcome, PortInUse)
                            and _address_in_use(outcome)):
                        outcome = PortInUse.of(member.spec, outcome).with_cause(outcome)
                    if isinstance(outcome, BaseException):
                        failed = failed or outcome
                    else:
                        started.append(member)
                if failed is not None:
                    raise failed
                spec = batch[0]
                if (spec.group in self.scenario.fleets and spec.port == 0
                        and self.scenario.fleets[spec.group] == "addresses"):
                    shared_ports.setdefault(spec.group, members[0].port)
        except BaseException:
            for member in reversed(started):
                try:
                    await member.stop()
                except Exception:  # noqa: BLE001 - keep unwinding the rest
                    log.exception("stopping %s after a failed start", member.name)
            self.members.clear()
            await self.http.stop()
            self.store.close()
            raise
        self.started = True
        return self.ready_document()

    def _start_batches(self) -> list[list[MemberSpec]]:
        """The members in start order, a fleet's members FLEET_BATCH at a time after its first
        alone (whose port the rest of an address fleet may share); every other member alone."""
        batches: list[list[MemberSpec]] = []
        for spec in self.scenario.members:
            last = batches[-1] if batches else None
            if (last is not None and spec.group in self.scenario.fleets and spec.index > 1
                    and last[0].group == spec.group and len(last) < FLEET_BATCH):
                last.append(spec)
            else:
                batches.append([spec])
        return batches

    def _journal_fault(self, rule: Any, context: dict[str, Any]) -> None:
        self.journal.record(context["member"], context["kind"], context["protocol"], "fault",
                            method=context.get("method"), path=context.get("path"),
                            detail={"fault": rule.id, "fault_type": rule.fault,
                                    "command": context.get("command")})

    def _make(self, spec: MemberSpec, shared_ports: dict[str, int]) -> Member:
        if spec.group in shared_ports:
            # A fleet spread over addresses shares the port its first member was given.
            spec = MemberSpec(spec.name, spec.kind, spec.role, spec.host,
                              shared_ports[spec.group], spec.options, spec.group, spec.index,
                              spec.raw_options)
        return resolve(spec.kind)(spec, self.ctx)

    def _lookup(self, name: str) -> Member:
        try:
            return self.members[name]
        except KeyError:
            if self.elsewhere is not None:
                return self.elsewhere(name)
            raise LookupError(f"no member named {name!r}") from None

    # -- supervision -------------------------------------------------------------------------
    @property
    def exit_status(self) -> int:
        """What ``emulators run`` should exit with: 1 when a member died for good, else 0."""
        return 1 if self.failures else 0

    def member_failed(self, member: Member, reason: str) -> None:
        """A member's server died on its own (called on the farm's loop): log it at ERROR and
        restart the member with its state; when that fails, or it keeps dying, report it."""
        log.error("%s (%s) failed: %s", member.name, member.kind, reason)
        if not self.started or self.members.get(member.name) is not member:
            self._give_up(member, f"{reason} (the farm is not running: not restarted)")
            return
        if member.name in self._restarting:
            return  # a restart is already under way
        now = time.monotonic()
        recent = [t for t in self._restarts.get(member.name, []) if t > now - RESTART_WINDOW]
        if len(recent) >= RESTART_LIMIT:
            self._give_up(member, f"{reason}; restarted {len(recent)} times in "
                                  f"{RESTART_WINDOW:g} s already, not again")
            return
        recent.append(now)
        self._restarts[member.name] = recent
        member.health = {**member.health, "status": "restarting", "last_failure": reason}
        task = asyncio.get_running_loop().create_task(self._restart(member, reason))
        self._restarting[member.name] = task
        task.add_done_callback(lambda _t: self._restarting.pop(member.name, None))

    async def _restart(self, member: Member, reason: str) -> None:
        try:
            await member.stop()
        except Exception:  # noqa: BLE001 - what is left of it must not keep it down
            log.exception("%s: stopping it after its failure failed", member.name)
        try:
            await member.start()  # restores the saved state, as a farm restart does
        except Exception as exc:  # noqa: BLE001 - reported, not raised: the farm runs on
            self._give_up(member, f"{reason}; the restart failed: {type(exc).__name__}: {exc}")
            return
        restarts = member.health.get("restarts", 0) + 1
        member.health = {"status": "ok", "restarts": restarts, "last_failure": reason}
        log.warning("%s restarted (restart %d) after: %s", member.name, restarts, reason)

    def _give_up(self, member: Member, reason: str) -> None:
        log.error("%s (%s) is down and stays down: %s", member.name, member.kind, reason)
        member.health = {"status": "failed", "reason": reason,
                         "restarts": member.health.get("restarts", 0)}
        self.failures[member.name] = reason

    async def stop(self) -> None:
        """Stop the control plane, then emulators, then servers; flush state; idempotent."""
        for task in list(self._restarting.values()):
            task.cancel()
        await asyncio.gather(*self._restarting.values(), return_exceptions=True)
        if self.control is not None:
            await self.control.stop()
            self.control = None
        emulators = [m for m in reversed(list(self.members.values())) if m.role != "server"]
        for i in range(0, len(emulators), FLEET_BATCH):  # emulators first, then servers
            await self._stop_all(emulators[i:i + FLEET_BATCH])
        for member in reversed(list(self.members.values())):
            if member.role == "server":
                await self._stop_all([member])
        await self.store.flush()
        await self.http.stop()
        self.members.clear()
        self.store.close()
        if self.started and self.failures:
            log.error("the farm stops with members that had failed: %s",
                      "; ".join(f"{name}: {why}" for name, why in self.failures.items()))
        self.started = False

    @staticmethod
    async def _stop_all(members: list[Member]) -> None:
        outcomes = await asyncio.gather(*(m.stop() for m in members), return_exceptions=True)
        for member, outcome in zip(members, outcomes, strict=True):
            if isinstance(outcome, Exception):  # one broken member must not keep others up
                log.error("stopping %s", member.name, exc_info=outcome)
            elif isinstance(outcome, BaseException):
                raise outcome

    async def __aenter__(self) -> Farm:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- queries -----------------------------------------------------------------------------
    def member(self, name: str) -> Member:
        return self.members[name]

    def by_role(self, role: str) -> list[Member]:
        return [m for m in self.members.values() if m.role == role]

    async def reset(self, name: str | None = None) -> None:
        """Back to the scenario's initial state: one member, or all of them."""
        targets = [self.members[name]] if name is not None else list(self.members.values())
        # In start order (servers and clouds before the devices that use them), so a member
        # whose reset waits on another's (an iotda-device reconnecting to its cloud) finds
        # that one already reset. One that saved will write: it becomes a task, and the
        # writes overlap (800 cameras one write after another took 629 ms on a sharded farm);
        # the sleep lets its synchronous part (the initial state loaded) run before the next
        # member's, as gather did. One that never saved writes nothing and resets inline: a
        # task each was most of a reset of untouched cameras (800 over 8 shards: 49.7 ms
        # with a task each, 17-20 ms inline; bench/shards.py --part control, bench/README.md).
        writes: list[asyncio.Future[None]] = []
        try:
            for member in targets:
                if self.store.has(member.name):
                    writes.append(asyncio.ensure_future(member.reset()))
                    await asyncio.sleep(0)
                else:
                    await member.reset()
        except BaseException:
            await asyncio.gather(*writes, return_exceptions=True)  # none left running
            raise
        await asyncio.gather(*writes)

    def ready_document(self) -> dict[str, Any]:
        """The ready file's content; its shape is documented in README.md."""
        control = None
        if self.control is not None:
            control = {"url": self.control.url, "api": self.control.url + "/v1",
                       "token_required": self.control.token is not None}
        return {
            "version": READY_VERSION,
            "scenario": self.scenario.name,
            "pid": os.getpid(),
            "state_dir": str(self.store.directory) if self.store.directory else None,
            "control": control,
            # The farm's local CA, when a member used it: trust this to verify FTPS/HTTPS.
            "ca": ({"pem": self.ctx.ca.pem, "file": self._ca_file()}
                   if self.ctx.has_ca else None),
            "emulators": [m.describe() for m in self.by_role("emulator")],
            "servers": [m.describe() for m in self.by_role("server")],
            **({"shard": self.shard} if self.shard is not None else {}),
        }

    def _ca_file(self) -> str | None:
        if self.store.directory is None:
            return None
        path = self.store.directory / "farm-ca.pem"
        if not path.exists():
            atomic_write_bytes(path, self.ctx.ca.pem.encode())
        return str(path)

    def write_ready_file(self, path: Path | str) -> None:
        atomic_write_bytes(Path(path), encode_state(self.ready_document()))


async def run_until_signal(farm: Farm, stop: asyncio.Event) -> None:
    try:
        await stop.wait()
    finally:
        await farm.stop()

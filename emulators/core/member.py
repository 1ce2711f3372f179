"""The base class of everything a farm runs: emulated devices, cloud services, upload servers.

A kind (``acti-camera``, ``ftp``...) is a subclass with a scenario ``Options`` model, and one
object owns one running member: its listeners, its state and its saved copy of that state.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from .clock import Clock
from .faults import FaultEngine
from .journal import Journal
from .state import StateError, StateStore

if TYPE_CHECKING:
    from .farm_ca import FarmCA

Role = Literal["emulator", "server"]

log = logging.getLogger("emulators.member")


class KindOptions(BaseModel):
    """Base of every kind's scenario options: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class MemberSpec:
    """One member as stamped out of a scenario entry (a fleet entry gives several)."""

    name: str
    kind: str
    role: Role
    host: str
    port: int
    options: KindOptions
    group: str  # the scenario entry's name; equal to ``name`` unless stamped from a fleet
    index: int = 0  # position in the fleet, from 0
    raw_options: dict[str, Any] = field(default_factory=dict)


@functools.cache
def _port_options(options: type[BaseModel]) -> tuple[str, ...]:
    """A kind's ``*_port`` options (looked at per class: iterating a camera's options at each
    shard start was 6 us a camera)."""
    return tuple(name for name in options.model_fields if name.endswith("_port"))


def fixed_ports(spec: MemberSpec) -> list[tuple[str, int]]:
    """The fixed ports ``spec`` binds at start, each with the option that names it: the
    entry's ``port`` and every ``*_port`` option (0 and null are free or no listener). What a
    scenario checks for clashes and a port in use is reported by."""
    found = [("port", spec.port)] if spec.port else []
    for name in _port_options(type(spec.options)):
        value = getattr(spec.options, name)
        if type(value) is int and value:
            found.append((name, value))
    return found


@dataclass
class FarmContext:
    """What a member may use of the farm around it."""

    clock: Clock
    store: StateStore
    # Another member by name (LookupError when there is none), and where a member whose server
    # died reports it: the farm's, when there is a farm around the member.
    lookup: Callable[[str], Member] | None = None
    failed: Callable[[Member, str], None] | None = None
    journal: Journal = None  # type: ignore[assignment]  # set in __post_init__
    faults: FaultEngine = None  # type: ignore[assignment]
    # What every HTTP member's server runs around its application (journal, fault
    # injection): ``http_observer(member, handler)`` -> the handler the server calls.
    http_observer: Callable[[Any, Any], Any] | None = None

    _ca: Any = None

    def __post_init__(self) -> None:
        if self.journal is None:
            self.journal = Journal(self.clock)
        if self.faults is None:
            self.faults = FaultEngine(self.clock)

    @property
    def ca(self) -> FarmCA:
        """The farm's local CA (made on first use, kept in the state directory)."""
        if self._ca is None:
            from .farm_ca import FarmCA

            self._ca = FarmCA.load_or_create(self.store)
        return self._ca

    @property
    def has_ca(self) -> bool:
        """Whether the farm's CA exists yet (a member used it), without making it."""
        return self._ca is not None

    def member(self, name: str) -> Member:
        if self.lookup is None:
            raise LookupError(f"no farm to look up {name!r} in")
        return self.lookup(name)


@dataclass(frozen=True)
class UploadTarget:
    """Where and how a device uploads to a server member, as the server says it (a camera
    asks the server, it never reads the server's options)."""

    host: str
    port: int
    protocol: Literal["ftp", "ftps", "sftp"]
    user: str | None = None
    password: str | None = None


class Member:
    kind: ClassVar[str] = ""
    role: ClassVar[Role] = "emulator"
    title: ClassVar[str] = ""
    Options: ClassVar[type[KindOptions]] = KindOptions
    # Option fields whose value must name a server of the scenario.
    server_refs: ClassVar[tuple[str, ...]] = ()
    # Option fields whose value must name a member of the given kind (field -> kind).
    member_refs: ClassVar[dict[str, str]] = {}
    # Control-plane routes of this kind (an action its owner would take on the device itself,
    # an INSTAR alarm); the control plane mounts those of the kinds a farm runs, with their
    # OpenAPI operations (path -> method -> operation). A ``web.RouteTableDef``, or a tuple of
    # them (the kind's own and its shared machinery's).
    control_routes: ClassVar[Any] = None
    control_openapi: ClassVar[dict[str, dict[str, Any]]] = {}
    # The kind's probe script for `emulators capture` / `drift` ("package.module:SCRIPT"),
    # imported by name so that the platform never imports a kind's package itself.
    probe_script: ClassVar[str | None] = None

    def __init__(self, spec: MemberSpec, ctx: FarmContext) -> None:
        self.spec = spec
        self.name = spec.name
        self.host = spec.host
        self.port = spec.port
        self.options = spec.options
        self.ctx = ctx
        self.clock = ctx.clock
        self._next_save: asyncio.Task[None] | None = None
        self._last_save: asyncio.Task[None] | None = None  # the write under way, if any
        # In the description: "ok", with "restarts" and "last_failure" once the farm had to
        # restart it, or "failed" with a "reason" when it could not (Farm.member_failed).
        self.health: dict[str, Any] = {"status": "ok"}

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Load saved state (or the scenario's initial state) and start listening."""
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def report_failure(self, reason: str) -> None:
        """Called (on the farm's loop) by a member whose server died on its own, a loop or a
        thread that ended: the farm restarts it or reports it failed, never silently."""
        if self.ctx.failed is not None:
            self.ctx.failed(self, reason)
            return
        log.error("%s: %s", self.name, reason)
        self.health = {"status": "failed", "reason": reason}

    def upload_target(self, user: str | None = None) -> UploadTarget | None:
        """Where a device uploads to this member as ``user`` (the first user when None);
        None for a member that takes no uploads. LookupError for an unknown user."""
        return None

    # -- description -----------------------------------------------------------------------
    def urls(self) -> dict[str, str]:
        return {}

    def credentials(self) -> dict[str, Any]:
        return {}

    def bound_ports(self) -> dict[str, int]:
        """The kind's free listener options (``{label}_port: 0``) as bound now, read from
        ``urls()``: a shard that is restarted starts the member on these, so its clients find
        it where it was (the entry's own ``port`` is kept apart; a fixed one needs nothing)."""
        free = {name for name in _port_options(type(self.options))
                if (value := getattr(self.options, name)) == 0 and type(value) is int}
        if not free:  # most members (a fleet's cameras): no urls() built at a shard's start
            return {}
        return {f"{label}_port": port for label, url in self.urls().items()
                if f"{label}_port" in free and (port := urlsplit(url).port) is not None}

    def describe(self) -> dict[str, Any]:
        """This member's entry in the ready file and the control plane's lists."""
        doc: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "role": self.role,
            "group": self.spec.group,
            "host": self.host,
            "port": self.port,
            "urls": self.urls(),
            "credentials": self.credentials(),
            "health": dict(self.health),
        }
        doc.update(self.extra_description())
        return doc

    def extra_description(self) -> dict[str, Any]:
        return {}

    # -- quirk profiles (core/quirks/replay.py) ---------------------------------------------
    def quirk_logins(self) -> dict[str, str]:
        """The users a quirk profile's ``<user>``, ``<password>``, ``<wrong-password>`` and
        ``<basic>`` stand for: user name -> that user's right password."""
        return {}

    def quirk_values(self) -> dict[str, str]:
        """This member's own values for a profile's redacted ones (``serial``, ``mac``...):
        what a replayed reply says in their place."""
        return {}

    def certificates(self) -> list[dict[str, Any]]:
        """The certificates this member holds, for the control plane's certificate view:
        ``{"role": what it is to the member, "pem": the certificate}`` plus any fields of the
        vendor's record worth showing (a status, a certSN). Dates are judged there."""
        return []

    # -- state -----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The member's state as JSON, for the control plane (may add derived fields)."""
        return self.dump_state()

    def dump_state(self) -> dict[str, Any]:
        """What is saved to flash: enough to rebuild the member after a restart."""
        return {}

    def load_state(self, data: dict[str, Any]) -> None:
        """Take state from a saved document (or from the scenario's initial state)."""

    def initial_state(self) -> dict[str, Any]:
        """The scenario's initial state, as ``dump_state`` would write it: a new document at
        each call, which ``load_state`` may keep (no copy is made of it: a deep copy was half
        of a camera's reset, bench/shards.py --part control)."""
        return {}

    async def reset(self) -> None:
        """Back to the scenario's initial state (a factory reset of the emulator itself).
        A member that never saved has nothing to write: a start without a saved document
        makes the initial state again (a farm reset of 800 untouched cameras was 800 writes
        and 1,600 fsyncs, about 1 s; bench/shards.py --part control)."""
        self.load_state(self.initial_state())
        await self.state_changed()
        if self.ctx.store.has(self.name):
            await self.save()

    async def state_changed(self) -> None:
        """Hook: act on a state that was replaced wholesale (listeners, timers)."""

    def restore_saved(self) -> None:
        """Load the saved document when there is one, else the initial state."""
        saved = self.ctx.store.load(self.name)
        if saved is None:
            self.load_state(self.initial_state())
            return
        try:
            self.load_state(saved)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # A hand-edited or foreign file: say whose, never start on half-loaded state.
            raise StateError(f"saved state of {self.name!r} does not fit a {self.kind}: "
                             f"{type(exc).__name__}: {exc}") from exc

    async def save(self) -> None:
        """Persist the state; returns once it is on disk. Saves asked for in the same turn of
        the loop (concurrent requests) share one dump and one write, made once they have all
        made their changes."""
        await asyncio.shield(self.saving())

    def saving(self) -> asyncio.Future[None]:
        """A save of the state as it is now (shared as ``save`` shares it), not waited for:
        what is done once it is on disk (an MQTT PUBACK) waits for this instead."""
        if self._next_save is None:
            self._next_save = asyncio.get_running_loop().create_task(
                self._save_now(self._last_save))
            self._last_save = self._next_save
        return self._next_save

    async def _save_now(self, previous: asyncio.Task[None] | None) -> None:
        # One write at a time: changes made while the last one is on its way share the next
        # (MQTT reports, a save each, wrote twice per fsync before; bench/mqtt.py).
        if previous is not None and not previous.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(previous)
        await asyncio.sleep(0)  # one more turn: requests that just arrived join this save
        self._next_save = None  # a change made from here on waits for the next save
        await self.write_state()

    async def write_state(self) -> None:
        """One write of what is saved to flash (a kind that keeps more files extends it)."""
        await self.ctx.store.save(self.name, self.dump_state())

    def files_dir(self) -> Path:
        return self.ctx.store.files_dir(self.name)
